package influxd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The test harness config: every option set, services off, HTTPS.
func TestRenderAllOptions(t *testing.T) {
	c := Config{
		Dir:                     "/tmp/x",
		HTTPAddr:                "127.0.0.1:1001",
		RPCAddr:                 "127.0.0.1:1002",
		Flux:                    true,
		Auth:                    true,
		MaxBodySize:             4096,
		MaxConcurrentWriteLimit: 2,
		MaxEnqueuedWriteLimit:   3,
		EnqueuedWriteTimeout:    1500 * time.Millisecond,
		TLSCertFile:             "/c/cert.pem",
		TLSKeyFile:              "/c/key.pem",
	}
	want := `reporting-disabled = true
bind-address = "127.0.0.1:1002"

[meta]
  dir = "/tmp/x/meta"

[data]
  dir = "/tmp/x/data"
  wal-dir = "/tmp/x/wal"
  query-log-enabled = false

[monitor]
  store-enabled = false

[continuous_queries]
  enabled = false

[subscriber]
  enabled = false

[logging]
  level = "warn"

[http]
  bind-address = "127.0.0.1:1001"
  flux-enabled = true
  log-enabled = false
  auth-enabled = true
  https-enabled = true
  https-certificate = "/c/cert.pem"
  https-private-key = "/c/key.pem"
  max-body-size = 4096
  max-concurrent-write-limit = 2
  max-enqueued-write-limit = 3
  enqueued-write-timeout = 1500000000
`
	if got := c.Render(); got != want {
		t.Fatalf("Render:\n%s\nwant:\n%s", got, want)
	}
	if c.URL() != "https://127.0.0.1:1001" {
		t.Fatalf("URL %q, want https://127.0.0.1:1001", c.URL())
	}
}

// The bench config: no limits, flux off, CQ and subscriber at server default.
func TestRenderDefaults(t *testing.T) {
	c := Config{Dir: "/d", HTTPAddr: "127.0.0.1:1", RPCAddr: "127.0.0.1:2",
		ContinuousQueries: true, Subscriber: true}
	got := c.Render()
	for _, must := range []string{
		"  flux-enabled = false\n", "  auth-enabled = false\n", "  log-enabled = false\n",
		"  level = \"warn\"\n", "  query-log-enabled = false\n", "  store-enabled = false\n",
	} {
		if !strings.Contains(got, must) {
			t.Errorf("Render lacks %q:\n%s", must, got)
		}
	}
	for _, mustNot := range []string{
		"[continuous_queries]", "[subscriber]", "https-enabled", "max-body-size",
		"max-concurrent-write-limit", "max-enqueued-write-limit", "enqueued-write-timeout",
	} {
		if strings.Contains(got, mustNot) {
			t.Errorf("Render has %q though it is unset:\n%s", mustNot, got)
		}
	}
	if c.URL() != "http://127.0.0.1:1" {
		t.Fatalf("URL %q, want http://127.0.0.1:1", c.URL())
	}
}

// A missing binary is reported with the script that installs it, before
// anything is written.
func TestStartMissingBinary(t *testing.T) {
	dir := t.TempDir()
	_, err := Start(t.Context(), filepath.Join(dir, "no-influxd"), Config{Dir: filepath.Join(dir, "d")}, nil)
	if err == nil || !strings.Contains(err.Error(), "scripts/install-influxdb.sh") {
		t.Fatalf("error %v, want one naming scripts/install-influxdb.sh", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "d")); !os.IsNotExist(err) {
		t.Fatalf("data directory created for a missing binary (stat: %v)", err)
	}
}
