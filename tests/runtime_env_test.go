package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/preservarium/iot-ingestor/internal/dev/process"
)

// GOGC and GOMEMLIMIT set in an env file given with -e (as config/ingestor-high-volume.env
// does) reach the Go runtime, although the runtime reads its own variables only at start; a
// malformed value stops the start with the variable named.
func TestRuntimeKnobsFromEnvFile(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	good := filepath.Join(dir, "good.env")
	writeFile(t, good, "GOGC=333\nGOMEMLIMIT=123MiB\nHTTP_ADDRESS="+addr+"\nKAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1\n")
	run := exec.Command(binary(t), "run", "-e", good, shippedConfig)
	run.Env = withoutRuntimeKnobs(os.Environ())
	proc, err := process.Start(run, filepath.Join(dir, "ingestor.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proc.Kill)
	p := &ingestor{t: t, proc: proc, httpAddr: addr}
	p.waitStatus("/ping", 200, 30*time.Second)
	ms := p.metrics()
	if got := metricTotal(ms, "go_gc_gogc_percent"); got != 333 {
		t.Errorf("go_gc_gogc_percent = %v with GOGC=333 in the env file", got)
	}
	if got := metricTotal(ms, "go_gc_gomemlimit_bytes"); got != 123<<20 {
		t.Errorf("go_gc_gomemlimit_bytes = %v with GOMEMLIMIT=123MiB in the env file", got)
	}

	bad := filepath.Join(dir, "bad.env")
	writeFile(t, bad, "GOMEMLIMIT=120MB\nHTTP_ADDRESS=127.0.0.1:0\nKAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1\n")
	cmd := exec.Command(binary(t), "run", "-e", bad, shippedConfig)
	cmd.Env = withoutRuntimeKnobs(os.Environ())
	done := make(chan struct{})
	var out []byte
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("`ingestor run` kept running with GOMEMLIMIT=120MB:\n%s", out)
	}
	if err == nil || !strings.Contains(string(out), "GOMEMLIMIT") {
		t.Errorf("GOMEMLIMIT=120MB: exit %v, want a failure naming GOMEMLIMIT:\n%s", err, out)
	}
}

func withoutRuntimeKnobs(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "GOGC=") && !strings.HasPrefix(kv, "GOMEMLIMIT=") {
			out = append(out, kv)
		}
	}
	return out
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
