package testtier

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestIntegrationSkipsOnlyUnderShort runs itself again in a child process, where it calls
// Integration: with -short the child must be skipped with the reason, without it must pass.
func TestIntegrationSkipsOnlyUnderShort(t *testing.T) {
	if os.Getenv("TESTTIER_CHILD") != "" {
		Integration(t, "a probe server")
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		short bool
		want  []string
	}{
		{true, []string{"--- SKIP: TestIntegrationSkipsOnlyUnderShort", "needs a probe server; skipped by -short"}},
		{false, []string{"--- PASS: TestIntegrationSkipsOnlyUnderShort"}},
	} {
		args := []string{"-test.run", "^TestIntegrationSkipsOnlyUnderShort$", "-test.v", "-test.count=1"}
		if tc.short {
			args = append(args, "-test.short")
		}
		cmd := exec.Command(exe, args...)
		cmd.Env = append(os.Environ(), "TESTTIER_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child (short=%v): %v\n%s", tc.short, err, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(string(out), w) {
				t.Fatalf("child (short=%v): want %q in\n%s", tc.short, w, out)
			}
		}
	}
}
