// Package influxtest starts a real InfluxDB OSS 1.8 process for tests (built by
// scripts/install-influxdb.sh into .tools/bin/influxd) and offers the few
// helpers tests need around it: creating databases, InfluxQL queries with typed
// answers, stopping and restarting on the same port and data directory. It also
// holds FaultInjector, an HTTP stub for the failures 1.8 cannot produce.
//
// 1.8 serves the 2.x write API (/api/v2/write) through its compatibility layer:
// the bucket is the database, the org is ignored and, with auth enabled, the
// token is "user:password".
package influxtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/preservarium/iot-ingestor/internal/dev/influxd"
	"github.com/preservarium/iot-ingestor/internal/testkit/testtier"
)

// Options tunes the server. The zero value is an open server without limits.
type Options struct {
	// Auth turns on `auth-enabled` and creates an admin user; the write token
	// is then "AdminUser:AdminPassword" (see Server.Token).
	Auth bool
	// AdminUser and AdminPassword default to "admin" / "admin-secret".
	AdminUser     string
	AdminPassword string
	// MaxBodySize sets `[http] max-body-size` in bytes (0: server default).
	// 1.8 only compares the declared Content-Length, so it yields 413 only for
	// uncompressed writes.
	MaxBodySize int
	// MaxConcurrentWriteLimit, MaxEnqueuedWriteLimit and EnqueuedWriteTimeout
	// make 1.8 answer 503 "request throttled" when writes pile up. 1.8
	// throttles its 1.x /write endpoint only, not /api/v2/write: put a
	// FaultInjector with RouteWritesToV1 in front to meet these 503s.
	MaxConcurrentWriteLimit int
	MaxEnqueuedWriteLimit   int
	EnqueuedWriteTimeout    time.Duration
	// TLSCertFile and TLSKeyFile, when set, serve HTTPS only (`https-enabled`) with this
	// certificate, which must be its own CA (the helpers trust it).
	TLSCertFile string
	TLSKeyFile  string
}

// Server is one influxd process with its throw-away directory.
type Server struct {
	t    testing.TB
	opts Options
	proc *influxd.Process
	http *http.Client
}

// startTimeout bounds each start-up until /health answers; stopGrace is how
// long influxd gets to exit on SIGTERM before it is killed.
const (
	startTimeout = 60 * time.Second
	stopGrace    = 20 * time.Second
)

// BinaryPath returns where influxd is expected: .tools/bin/influxd under the
// module root (found by walking up from the working directory to go.mod).
func BinaryPath() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("influxtest: working directory: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, ".tools", "bin", "influxd"), nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("influxtest: no go.mod above %s", wd)
		}
	}
}

// Start launches influxd, waits for /health and registers its shutdown with
// t.Cleanup. Under -short it skips the test (the unit tier runs without servers);
// otherwise it fails the test (never skips) when the binary is missing.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	testtier.Integration(t, "a real InfluxDB 1.8 (scripts/install-influxdb.sh builds it)")
	bin, err := BinaryPath()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("influxtest: InfluxDB 1.8 binary not found at %s: run scripts/install-influxdb.sh", bin)
	}
	if opts.Auth {
		if opts.AdminUser == "" {
			opts.AdminUser = "admin"
		}
		if opts.AdminPassword == "" {
			opts.AdminPassword = "admin-secret"
		}
	}
	client := &http.Client{Timeout: 30 * time.Second}
	if opts.TLSCertFile != "" {
		pem, err := os.ReadFile(opts.TLSCertFile)
		if err != nil {
			t.Fatalf("influxtest: reading the TLS certificate: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			t.Fatalf("influxtest: no certificate in %s", opts.TLSCertFile)
		}
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	}
	cfg := influxd.Config{
		Dir:                     t.TempDir(),
		HTTPAddr:                freeAddr(t),
		Flux:                    true,
		Auth:                    opts.Auth,
		MaxBodySize:             opts.MaxBodySize,
		MaxConcurrentWriteLimit: opts.MaxConcurrentWriteLimit,
		MaxEnqueuedWriteLimit:   opts.MaxEnqueuedWriteLimit,
		EnqueuedWriteTimeout:    opts.EnqueuedWriteTimeout,
		TLSCertFile:             opts.TLSCertFile,
		TLSKeyFile:              opts.TLSKeyFile,
	}
	s := &Server{t: t, opts: opts, http: client}
	// The ports are picked free but may be taken by another process before influxd binds
	// them (tests of other packages run in parallel): start again on fresh ports then.
	for attempt := 1; ; attempt++ {
		cfg.RPCAddr = freeAddr(t)
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		proc, err := influxd.Start(ctx, bin, cfg, client)
		cancel()
		if err == nil {
			s.proc = proc
			break
		}
		if attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("influxtest: %v; retrying on other ports", firstLine(err.Error()))
		cfg.HTTPAddr = freeAddr(t)
	}
	t.Cleanup(func() {
		s.proc.Stop(stopGrace)
		if t.Failed() {
			if b, err := os.ReadFile(cfg.LogPath()); err == nil {
				t.Logf("influxd log (last 4 KiB):\n%s", tail(b, 4096))
			}
		}
	})
	if opts.Auth {
		// With no user yet, 1.8 accepts exactly this one unauthenticated
		// statement: creating the first admin.
		s.queryRaw("", fmt.Sprintf("CREATE USER %q WITH PASSWORD '%s' WITH ALL PRIVILEGES",
			opts.AdminUser, opts.AdminPassword), true)
	}
	return s
}

// Stop terminates the server, keeping its data directory and port for Restart.
func (s *Server) Stop() { s.proc.Stop(stopGrace) }

// Restart starts the server again on the same port and data directory.
func (s *Server) Restart() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := s.proc.Restart(ctx, stopGrace); err != nil {
		s.t.Fatal(err)
	}
}

// URL is the server's base URL, e.g. http://127.0.0.1:40123.
func (s *Server) URL() string { return s.proc.URL() }

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Token is the write token 1.8 expects: "user:password" with auth enabled,
// anything (here "unused") without.
func (s *Server) Token() string {
	if s.opts.Auth {
		return s.opts.AdminUser + ":" + s.opts.AdminPassword
	}
	return "unused"
}

// CreateDatabase runs CREATE DATABASE (idempotent in 1.8).
func (s *Server) CreateDatabase(name string) {
	s.t.Helper()
	s.queryRaw("", fmt.Sprintf("CREATE DATABASE %q", name), false)
}

// Series is one series of an InfluxQL answer. Numbers are json.Number so a
// test can tell 48 from 48.5 exactly; use FieldTypes for the stored type.
type Series struct {
	Name    string            `json:"name"`
	Tags    map[string]string `json:"tags"`
	Columns []string          `json:"columns"`
	Values  [][]any           `json:"values"`
}

// Rows returns the values as maps column -> value.
func (s Series) Rows() []map[string]any {
	out := make([]map[string]any, 0, len(s.Values))
	for _, v := range s.Values {
		row := make(map[string]any, len(s.Columns))
		for i, c := range s.Columns {
			if i < len(v) {
				row[c] = v[i]
			}
		}
		out = append(out, row)
	}
	return out
}

// Query runs one InfluxQL statement against db and returns its series; it
// fails the test on any error the server reports.
func (s *Server) Query(db, q string) []Series {
	s.t.Helper()
	return s.queryRaw(db, q, false)
}

// Count returns SELECT count(field) over a measurement (0 when empty).
func (s *Server) Count(db, measurement, field string) int64 {
	s.t.Helper()
	series := s.Query(db, fmt.Sprintf("SELECT count(%q) FROM %q", field, measurement))
	if len(series) == 0 || len(series[0].Values) == 0 {
		return 0
	}
	n, err := series[0].Values[0][1].(json.Number).Int64()
	if err != nil {
		s.t.Fatalf("influxtest: count answer %v: %v", series[0].Values[0], err)
	}
	return n
}

// FieldTypes returns field name -> InfluxDB type (float, integer, string,
// boolean, unsigned) for a measurement, from SHOW FIELD KEYS.
func (s *Server) FieldTypes(db, measurement string) map[string]string {
	s.t.Helper()
	out := map[string]string{}
	for _, ser := range s.Query(db, fmt.Sprintf("SHOW FIELD KEYS FROM %q", measurement)) {
		for _, v := range ser.Values {
			out[fmt.Sprint(v[0])] = fmt.Sprint(v[1])
		}
	}
	return out
}

// queryRaw runs q; anonymous skips authentication, which 1.8 requires for
// creating the first admin user.
func (s *Server) queryRaw(db, q string, anonymous bool) []Series {
	s.t.Helper()
	form := url.Values{"q": {q}, "epoch": {"ns"}}
	if db != "" {
		form.Set("db", db)
	}
	auth := s.opts.Auth && !anonymous
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+"/query",
		strings.NewReader(form.Encode()))
	if err != nil {
		s.t.Fatalf("influxtest: query %q: %v", q, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if auth {
		req.SetBasicAuth(s.opts.AdminUser, s.opts.AdminPassword)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		s.t.Fatalf("influxtest: query %q: %v", q, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var ans struct {
		Results []struct {
			Series []Series `json:"series"`
			Error  string   `json:"error"`
		} `json:"results"`
		Error string `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&ans); err != nil || resp.StatusCode != http.StatusOK {
		s.t.Fatalf("influxtest: query %q: status %d, body %s", q, resp.StatusCode, body)
	}
	if ans.Error != "" {
		s.t.Fatalf("influxtest: query %q: %s", q, ans.Error)
	}
	var out []Series
	for _, r := range ans.Results {
		if r.Error != "" {
			s.t.Fatalf("influxtest: query %q: %s", q, r.Error)
		}
		out = append(out, r.Series...)
	}
	return out
}

// WriteLP posts line protocol through the 2.x write endpoint and returns the
// status code and body; a helper to set up existing data in tests.
func (s *Server) WriteLP(db, lp string) (int, string) {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL()+"/api/v2/write?bucket="+url.QueryEscape(db)+"&precision=ns",
		strings.NewReader(lp))
	if err != nil {
		s.t.Fatalf("influxtest: write: %v", err)
	}
	req.Header.Set("Authorization", "Token "+s.Token())
	resp, err := s.http.Do(req)
	if err != nil {
		s.t.Fatalf("influxtest: write: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// freeAddr reserves a loopback port; the tiny race with other processes is
// what the retry in Start covers.
func freeAddr(t testing.TB) string {
	t.Helper()
	addr, err := influxd.FreeAddr()
	if err != nil {
		t.Fatalf("influxtest: %v", err)
	}
	return addr
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
