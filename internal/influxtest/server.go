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
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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
	t        testing.TB
	opts     Options
	bin      string
	dir      string
	cfgPath  string
	logPath  string
	httpAddr string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	http *http.Client
}

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
// t.Cleanup. It fails the test (never skips) when the binary is missing.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
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
	dir := t.TempDir()
	s := &Server{
		t:        t,
		opts:     opts,
		bin:      bin,
		dir:      dir,
		cfgPath:  filepath.Join(dir, "influxdb.conf"),
		logPath:  filepath.Join(dir, "influxd.log"),
		httpAddr: freeAddr(t),
		http:     client,
	}
	// The ports are picked free but may be taken by another process before influxd binds
	// them (tests of other packages run in parallel): start again on fresh ports then.
	for attempt := 1; ; attempt++ {
		if err := os.WriteFile(s.cfgPath, []byte(s.config(freeAddr(t))), 0o600); err != nil {
			t.Fatalf("influxtest: writing config: %v", err)
		}
		err := s.tryStart()
		if err == nil {
			break
		}
		if attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("influxtest: %v; retrying on other ports", firstLine(err.Error()))
		s.httpAddr = freeAddr(t)
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			if b, err := os.ReadFile(s.logPath); err == nil {
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

func (s *Server) config(rpcAddr string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "reporting-disabled = true\nbind-address = %q\n\n", rpcAddr)
	fmt.Fprintf(&b, "[meta]\n  dir = %q\n\n", filepath.Join(s.dir, "meta"))
	fmt.Fprintf(&b, "[data]\n  dir = %q\n  wal-dir = %q\n  query-log-enabled = false\n\n",
		filepath.Join(s.dir, "data"), filepath.Join(s.dir, "wal"))
	b.WriteString("[monitor]\n  store-enabled = false\n\n")
	b.WriteString("[continuous_queries]\n  enabled = false\n\n")
	b.WriteString("[subscriber]\n  enabled = false\n\n")
	b.WriteString("[logging]\n  level = \"warn\"\n\n")
	fmt.Fprintf(&b, "[http]\n  bind-address = %q\n  flux-enabled = true\n  log-enabled = false\n", s.httpAddr)
	fmt.Fprintf(&b, "  auth-enabled = %v\n", s.opts.Auth)
	if s.opts.TLSCertFile != "" {
		fmt.Fprintf(&b, "  https-enabled = true\n  https-certificate = %q\n  https-private-key = %q\n",
			s.opts.TLSCertFile, s.opts.TLSKeyFile)
	}
	if s.opts.MaxBodySize > 0 {
		fmt.Fprintf(&b, "  max-body-size = %d\n", s.opts.MaxBodySize)
	}
	if s.opts.MaxConcurrentWriteLimit > 0 {
		fmt.Fprintf(&b, "  max-concurrent-write-limit = %d\n", s.opts.MaxConcurrentWriteLimit)
	}
	if s.opts.MaxEnqueuedWriteLimit > 0 {
		fmt.Fprintf(&b, "  max-enqueued-write-limit = %d\n", s.opts.MaxEnqueuedWriteLimit)
	}
	if s.opts.EnqueuedWriteTimeout > 0 {
		// 1.8 reads this one as integer nanoseconds, not a duration string.
		fmt.Fprintf(&b, "  enqueued-write-timeout = %d\n", s.opts.EnqueuedWriteTimeout.Nanoseconds())
	}
	return b.String()
}

func (s *Server) start() {
	s.t.Helper()
	if err := s.tryStart(); err != nil {
		s.t.Fatal(err)
	}
}

// tryStart starts influxd and waits until it is healthy.
func (s *Server) tryStart() error {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("influxtest: opening log: %w", err)
	}
	cmd := exec.Command(s.bin, "-config", s.cfgPath)
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("influxtest: starting %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-done:
			s.mu.Lock()
			s.cmd = nil
			s.mu.Unlock()
			b, _ := os.ReadFile(s.logPath)
			return fmt.Errorf("influxtest: influxd exited during start-up; log:\n%s", tail(b, 4096))
		default:
		}
		resp, err := s.http.Get(s.URL() + "/health")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			s.stop()
			return fmt.Errorf("influxtest: influxd at %s not healthy after 60s (last error: %v)", s.URL(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Server) stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Stop terminates the server, keeping its data directory and port for Restart.
func (s *Server) Stop() { s.stop() }

// Restart starts the server again on the same port and data directory.
func (s *Server) Restart() {
	s.t.Helper()
	s.stop()
	s.start()
}

// URL is the server's base URL, e.g. http://127.0.0.1:40123.
func (s *Server) URL() string {
	if s.opts.TLSCertFile != "" {
		return "https://" + s.httpAddr
	}
	return "http://" + s.httpAddr
}

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

// freeAddr reserves a loopback port by listening and closing; the tiny race
// with other processes is acceptable in tests.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("influxtest: finding a free port: %v", err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
