// Package influxd runs an InfluxDB OSS 1.8 process (the influxd binary built by
// scripts/install-influxdb.sh): it renders the config file from Config, starts
// `influxd -config`, waits for /health and stops it with SIGTERM, then SIGKILL.
// Both the test harness (internal/testkit/influxtest) and the benchmark harness
// (cmd/dev/ingestor-bench) use it, so the two cannot drift apart; it reports
// errors and leaves retries, logging and cleanup to its callers.
package influxd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/preservarium/iot-ingestor/internal/dev/process"
)

// Config is what goes into influxdb.conf. The zero value of every optional
// field keeps the server default, except the services listed below that are
// off unless asked for, because neither harness needs them.
type Config struct {
	// Dir holds meta/, data/, wal/, influxdb.conf and influxd.log.
	Dir string
	// HTTPAddr and RPCAddr are host:port for `[http] bind-address` and the
	// top-level (backup/restore RPC) `bind-address`.
	HTTPAddr string
	RPCAddr  string
	// Flux sets `[http] flux-enabled`.
	Flux bool
	// ContinuousQueries and Subscriber keep these services at the server
	// default (on); false writes `enabled = false` for them.
	ContinuousQueries bool
	Subscriber        bool
	// Auth sets `[http] auth-enabled`.
	Auth bool
	// MaxBodySize sets `[http] max-body-size` in bytes (0: server default).
	MaxBodySize int
	// MaxConcurrentWriteLimit, MaxEnqueuedWriteLimit and EnqueuedWriteTimeout
	// set the 1.x /write throttling knobs (0: server default).
	MaxConcurrentWriteLimit int
	MaxEnqueuedWriteLimit   int
	EnqueuedWriteTimeout    time.Duration
	// TLSCertFile and TLSKeyFile, when TLSCertFile is set, serve HTTPS only.
	TLSCertFile string
	TLSKeyFile  string
}

// ConfigPath and LogPath are where the config file and the process output go.
func (c Config) ConfigPath() string { return filepath.Join(c.Dir, "influxdb.conf") }

// LogPath is the file influxd's stdout and stderr are appended to.
func (c Config) LogPath() string { return filepath.Join(c.Dir, "influxd.log") }

// URL is the base URL of the HTTP API, https when a certificate is set.
func (c Config) URL() string {
	if c.TLSCertFile != "" {
		return "https://" + c.HTTPAddr
	}
	return "http://" + c.HTTPAddr
}

// Render returns the influxdb.conf text. Logging is at warn and HTTP request
// logging is off: a log line per write would cost time in benchmarks and
// bury what matters in test logs.
func (c Config) Render() string {
	var b strings.Builder
	fmt.Fprintf(&b, "reporting-disabled = true\nbind-address = %q\n\n", c.RPCAddr)
	fmt.Fprintf(&b, "[meta]\n  dir = %q\n\n", filepath.Join(c.Dir, "meta"))
	fmt.Fprintf(&b, "[data]\n  dir = %q\n  wal-dir = %q\n  query-log-enabled = false\n\n",
		filepath.Join(c.Dir, "data"), filepath.Join(c.Dir, "wal"))
	b.WriteString("[monitor]\n  store-enabled = false\n\n")
	if !c.ContinuousQueries {
		b.WriteString("[continuous_queries]\n  enabled = false\n\n")
	}
	if !c.Subscriber {
		b.WriteString("[subscriber]\n  enabled = false\n\n")
	}
	b.WriteString("[logging]\n  level = \"warn\"\n\n")
	fmt.Fprintf(&b, "[http]\n  bind-address = %q\n  flux-enabled = %v\n  log-enabled = false\n", c.HTTPAddr, c.Flux)
	fmt.Fprintf(&b, "  auth-enabled = %v\n", c.Auth)
	if c.TLSCertFile != "" {
		fmt.Fprintf(&b, "  https-enabled = true\n  https-certificate = %q\n  https-private-key = %q\n",
			c.TLSCertFile, c.TLSKeyFile)
	}
	if c.MaxBodySize > 0 {
		fmt.Fprintf(&b, "  max-body-size = %d\n", c.MaxBodySize)
	}
	if c.MaxConcurrentWriteLimit > 0 {
		fmt.Fprintf(&b, "  max-concurrent-write-limit = %d\n", c.MaxConcurrentWriteLimit)
	}
	if c.MaxEnqueuedWriteLimit > 0 {
		fmt.Fprintf(&b, "  max-enqueued-write-limit = %d\n", c.MaxEnqueuedWriteLimit)
	}
	if c.EnqueuedWriteTimeout > 0 {
		// 1.8 reads this one as integer nanoseconds, not a duration string.
		fmt.Fprintf(&b, "  enqueued-write-timeout = %d\n", c.EnqueuedWriteTimeout.Nanoseconds())
	}
	return b.String()
}

// FreeAddr reserves a loopback port by listening and closing. Another process
// may take it before influxd binds it; callers that care retry on new ports.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("influxd: finding a free loopback port: %w", err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr, nil
}

// startFailGrace is how long a process that never became healthy gets to
// exit on SIGTERM before it is killed.
const startFailGrace = 20 * time.Second

// ErrExited marks a start-up that failed because influxd exited, typically on
// a port already taken; a caller can retry on fresh ports.
var ErrExited = errors.New("influxd exited during start-up")

// Process is one influxd process for a Config; it can be stopped and
// started again on the same ports and data directory.
type Process struct {
	bin    string
	cfg    Config
	client *http.Client

	mu   sync.Mutex
	proc *process.Process // nil while stopped
}

// Start writes the config file, starts bin with it and waits until /health
// answers 200 through client or ctx ends (influxd is then stopped). The
// client must trust the certificate when TLSCertFile is set.
func Start(ctx context.Context, bin string, cfg Config, client *http.Client) (*Process, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("influxd: InfluxDB 1.8 binary not found at %s: run scripts/install-influxdb.sh", bin)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("influxd: creating the data directory: %w", err)
	}
	if err := os.WriteFile(cfg.ConfigPath(), []byte(cfg.Render()), 0o600); err != nil {
		return nil, fmt.Errorf("influxd: writing config %s: %w", cfg.ConfigPath(), err)
	}
	p := &Process{bin: bin, cfg: cfg, client: client}
	if err := p.run(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// run starts influxd on the written config and waits until it is healthy.
func (p *Process) run(ctx context.Context) error {
	proc, err := process.Start(exec.Command(p.bin, "-config", p.cfg.ConfigPath()), p.cfg.LogPath())
	if err != nil {
		return fmt.Errorf("influxd: %w", err)
	}
	p.mu.Lock()
	p.proc = proc
	p.mu.Unlock()

	url := p.cfg.URL() + "/health"
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-proc.Done():
			p.mu.Lock()
			p.proc = nil
			p.mu.Unlock()
			b, _ := os.ReadFile(p.cfg.LogPath())
			return fmt.Errorf("influxd: %w (log %s):\n%s", ErrExited, p.cfg.LogPath(), tail(b, 4096))
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			p.Stop(startFailGrace)
			return fmt.Errorf("influxd: health request: %w", err)
		}
		resp, err := p.client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		select {
		case <-ctx.Done():
			p.Stop(startFailGrace)
			return fmt.Errorf("influxd: %s not healthy: %v (last error: %v; log %s)", url, ctx.Err(), err, p.cfg.LogPath())
		case <-tick.C:
		}
	}
}

// Stop sends SIGTERM and kills influxd if it has not exited after grace
// (0: kill at once). The data directory and ports stay for Restart.
func (p *Process) Stop(grace time.Duration) {
	p.mu.Lock()
	proc := p.proc
	p.proc = nil
	p.mu.Unlock()
	if proc != nil {
		proc.Stop(grace)
	}
}

// Restart stops influxd (with grace) and starts it again on the same config.
func (p *Process) Restart(ctx context.Context, grace time.Duration) error {
	p.Stop(grace)
	return p.run(ctx)
}

// Config returns the configuration the process runs with.
func (p *Process) Config() Config { return p.cfg }

// URL is the base URL of the HTTP API, e.g. http://127.0.0.1:40123.
func (p *Process) URL() string { return p.cfg.URL() }

// PID is the process id of the running influxd, 0 when stopped.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		return 0
	}
	return p.proc.Pid()
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
