package process

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Output goes to the log, and the exit status is kept.
func TestStartLogsOutputAndExitStatus(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "child.log")
	p, err := Start(exec.Command("sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"), logPath)
	if err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	if err := p.ExitErr(); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("exit %v, want status 3", err)
	}
	if p.Running() {
		t.Fatal("running after its exit")
	}
	b, _ := os.ReadFile(logPath)
	if !strings.Contains(string(b), "to-stdout") || !strings.Contains(string(b), "to-stderr") {
		t.Fatalf("log %q, want both streams", b)
	}
}

// A process that exits on SIGTERM stops within the grace; one that ignores it is killed after.
func TestStopTermsThenKills(t *testing.T) {
	dir := t.TempDir()
	polite, err := Start(exec.Command("sleep", "60"), filepath.Join(dir, "polite.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !polite.Stop(30 * time.Second) {
		t.Fatal("sleep did not exit on SIGTERM within the grace")
	}
	stubborn, err := Start(exec.Command("sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"), filepath.Join(dir, "stubborn.log"))
	if err != nil {
		t.Fatal(err)
	}
	waitForLog(t, filepath.Join(dir, "stubborn.log"), "ready")
	if stubborn.Stop(200 * time.Millisecond) {
		t.Fatal("a process ignoring SIGTERM reported as exited within the grace")
	}
	if stubborn.Running() {
		t.Fatal("still running after Stop killed it")
	}
}

func waitForLog(t *testing.T, path, text string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if b, _ := os.ReadFile(path); strings.Contains(string(b), text) {
			return
		}
	}
	t.Fatalf("%s never wrote %q", path, text)
}
