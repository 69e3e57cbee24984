package main

import (
	"bytes"
	"context"
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
	"syscall"
	"time"
)

// influxServer is the throw-away InfluxDB 1.8 the harness writes to: its own data directory,
// loopback only, HTTP request logging off (a log line per write would be measured too).
type influxServer struct {
	cmd  *exec.Cmd
	dir  string
	url  string
	http *http.Client
	done chan struct{}
}

func startInflux(bin, dir string) (*influxServer, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("InfluxDB 1.8 binary not found at %s: run scripts/install-influxdb.sh", bin)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	httpPort, err := freePort()
	if err != nil {
		return nil, err
	}
	rpcPort, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`reporting-disabled = true
bind-address = "127.0.0.1:%d"
[meta]
  dir = %q
[data]
  dir = %q
  wal-dir = %q
  query-log-enabled = false
[monitor]
  store-enabled = false
[logging]
  level = "warn"
[http]
  bind-address = "127.0.0.1:%d"
  flux-enabled = false
  log-enabled = false
`, rpcPort, filepath.Join(dir, "meta"), filepath.Join(dir, "data"), filepath.Join(dir, "wal"), httpPort)
	confPath := filepath.Join(dir, "influxdb.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("writing the InfluxDB config %s: %w", confPath, err)
	}
	logf, err := os.Create(filepath.Join(dir, "influxd.log"))
	if err != nil {
		return nil, err
	}
	s := &influxServer{
		dir:  dir,
		url:  fmt.Sprintf("http://127.0.0.1:%d", httpPort),
		http: &http.Client{Timeout: 60 * time.Second},
		done: make(chan struct{}),
	}
	s.cmd = exec.Command(bin, "-config", confPath)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() { _ = s.cmd.Wait(); _ = logf.Close(); close(s.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return nil, fmt.Errorf("influxd exited at start; log in %s", logf.Name())
		default:
		}
		if resp, err := s.http.Get(s.url + "/health"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.stop()
	return nil, fmt.Errorf("influxd did not answer %s/health within 60s; log in %s", s.url, logf.Name())
}

func (s *influxServer) pid() int { return s.cmd.Process.Pid }

func (s *influxServer) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// query runs one InfluxQL statement (POST /query) and returns the first series' values.
func (s *influxServer) query(db, q string) ([][]any, error) {
	form := url.Values{"q": {q}}
	if db != "" {
		form.Set("db", db)
	}
	resp, err := s.http.PostForm(s.url+"/query", form)
	if err != nil {
		return nil, fmt.Errorf("InfluxDB query %q: %w", q, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("InfluxDB query %q answered %d: %s", q, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	var out struct {
		Results []struct {
			Error  string `json:"error"`
			Series []struct {
				Values [][]any `json:"values"`
			} `json:"series"`
		} `json:"results"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("InfluxDB query %q: answer is not JSON: %w", q, err)
	}
	var vals [][]any
	for _, r := range out.Results {
		if r.Error != "" {
			return nil, fmt.Errorf("InfluxDB query %q: %s", q, r.Error)
		}
		for _, se := range r.Series {
			vals = append(vals, se.Values...)
		}
	}
	return vals, nil
}

func (s *influxServer) createDatabase(db string) error {
	_, err := s.query("", "CREATE DATABASE "+db)
	return err
}

func (s *influxServer) dropDatabase(db string) error {
	_, err := s.query("", "DROP DATABASE "+db)
	return err
}

// writeURL is the 2.x-compatible write endpoint for db, timestamps in nanoseconds (what the
// point mapper emits).
func (s *influxServer) writeURL(db string) string {
	return s.url + "/api/v2/write?" + url.Values{"bucket": {db}, "precision": {"ns"}}.Encode()
}

// post sends one write body and fails on anything but 204.
func post(ctx context.Context, c *http.Client, url string, body []byte, gz bool) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	if gz {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("raw write: %w", err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("raw write answered %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
