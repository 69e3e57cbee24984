package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/preservarium/iot-ingestor/internal/dev/influxd"
)

// influxServer is the throw-away InfluxDB 1.8 the harness writes to: its own data directory,
// loopback only, flux off, HTTP request logging off (a log line per write would be measured
// too). The process itself is run by internal/dev/influxd, shared with the test harness.
type influxServer struct {
	proc *influxd.Process
	url  string
	http *http.Client
}

func startInflux(bin, dir string) (*influxServer, error) {
	httpAddr, err := influxd.FreeAddr()
	if err != nil {
		return nil, err
	}
	rpcAddr, err := influxd.FreeAddr()
	if err != nil {
		return nil, err
	}
	cfg := influxd.Config{
		Dir:      dir,
		HTTPAddr: httpAddr,
		RPCAddr:  rpcAddr,
		// The defaults the bench has always run with: these services on, flux off.
		ContinuousQueries: true,
		Subscriber:        true,
	}
	// Each bench run gets a fresh influxd log even when -work is reused.
	if err := os.Remove(cfg.LogPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("removing the old InfluxDB log: %w", err)
	}
	client := &http.Client{Timeout: 60 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	proc, err := influxd.Start(ctx, bin, cfg, client)
	if err != nil {
		return nil, err
	}
	return &influxServer{proc: proc, url: proc.URL(), http: client}, nil
}

func (s *influxServer) pid() int { return s.proc.PID() }

func (s *influxServer) stop() { s.proc.Stop(15 * time.Second) }

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
