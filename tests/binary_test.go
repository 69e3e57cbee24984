package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/preservarium/iot-ingestor/internal/testkit/testtier"
)

// buildIngestor builds ./cmd/ingestor with extra `go build` flags and GOFLAGS replaced (this
// machine sets GOFLAGS=-buildvcs=false), as an operator's plain `go build` would.
func buildIngestor(t *testing.T, goflags string, args ...string) string {
	t.Helper()
	testtier.Integration(t, "a build of the ingestor binary")
	bin := filepath.Join(t.TempDir(), "ingestor")
	cmd := exec.Command("go", append(append([]string{"build", "-o", bin}, args...), "../cmd/ingestor")...)
	cmd.Env = append(os.Environ(), "GOFLAGS="+goflags)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", args, err, out)
	}
	return bin
}

// expectedVersion reads what `go version -m` says of the binary and derives what --version
// must print from it: the main module's version unless it is (devel), else the VCS revision
// (with -dirty for a changed tree), else dev.
func expectedVersion(t *testing.T, bin string) (version, date string) {
	t.Helper()
	out, err := exec.Command("go", "version", "-m", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m: %v\n%s", err, out)
	}
	var mod, rev, modified string
	date = "unknown"
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "mod":
			mod = f[2]
		case len(f) == 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.revision="):
			rev = strings.TrimPrefix(f[1], "vcs.revision=")
		case len(f) == 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.modified="):
			modified = strings.TrimPrefix(f[1], "vcs.modified=")
		case len(f) == 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.time="):
			date = strings.TrimPrefix(f[1], "vcs.time=")
		}
	}
	switch {
	case mod != "" && mod != "(devel)":
		return mod, date
	case rev != "":
		if modified == "true" {
			rev += "-dirty"
		}
		return rev, date
	}
	return "dev", date
}

// TestVersionFromBuildInfo: built with a plain `go build` (VCS stamping on), --version prints
// the module version or revision the build info holds, "dev" when it holds neither (a git
// worktree, whose .git is a file, is not stamped by the go command); a version given at link
// time wins.
func TestVersionFromBuildInfo(t *testing.T) {
	bin := buildIngestor(t, "-buildvcs=true")
	version, date := expectedVersion(t, bin)
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("--version: %v\n%s", err, out)
	}
	if want := "Version: " + version + "\nDate: " + date + "\n"; string(out) != want {
		t.Fatalf("--version printed %q, want %q (from go version -m)", out, want)
	}
	t.Logf("--version of a -buildvcs=true build: %q", out)
	// In a clone (a .git directory, as CI has) the go command stamps the revision: then the
	// version must carry it, whatever go version -m says.
	if fi, err := os.Stat("../.git"); err == nil && fi.IsDir() {
		head, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
		if err != nil {
			t.Fatalf("git rev-parse: %v", err)
		}
		if !strings.Contains(version, strings.TrimSpace(string(head))) {
			t.Fatalf("in a git clone --version printed %q, want the revision %s in it", version, head)
		}
	}

	linked := buildIngestor(t, "-buildvcs=false", "-ldflags", "-X main.Version=v9.8.7-test")
	if out, err := exec.Command(linked, "--version").CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "Version: v9.8.7-test\n") {
		t.Fatalf("--version of a build with -X main.Version: %v %q", err, out)
	}
}

// TestHelpOfTheBinary: the built binary's --help says what it is, not what the engine is.
func TestHelpOfTheBinary(t *testing.T) {
	out, err := exec.Command(binary(t), "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("--help: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "ingestor - stage 3 of the IoT pipeline") || strings.Contains(string(out), "mundane") {
		t.Fatalf("--help does not say what the ingestor is:\n%s", out)
	}
}
