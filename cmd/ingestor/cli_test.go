package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/preservarium/iot-ingestor/metrics"
)

// runCLI runs the binary's CLI in this process with args and returns what it printed on
// stdout and its exit code. The CLI library writes help to os.Stdout, hence the pipe.
func runCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	setHelpTemplateOnce.Do(setHelpTemplate)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() { _, _ = io.Copy(&out, r); close(copied) }()
	code, runErr := service.RunCLIToCode(context.Background(),
		append(cliOptions(), service.CLIOptSetArgs(append([]string{"ingestor"}, args...)...))...)
	os.Stdout = stdout
	_ = w.Close()
	<-copied
	if runErr != nil && code == 0 {
		t.Fatalf("ingestor %v: %v", args, runErr)
	}
	return out.String(), code
}

var setHelpTemplateOnce sync.Once

func TestHelpSaysWhatItIs(t *testing.T) {
	out, code := runCLI(t, "--help")
	if code != 0 {
		t.Fatalf("--help exited %d:\n%s", code, out)
	}
	for _, want := range []string{
		"ingestor - stage 3 of the IoT pipeline: readings from Kafka into InfluxDB, failures to the error topic",
		"iot_validated_data", "iot_errors", "/ready", "MIT licence",
		"ingestor docs influxdb_v2",
		"docs          Print a component's documentation, every field described",
		"kafka-broker", "--version",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("--help lacks %q:\n%s", want, out)
		}
	}
	for _, engine := range []string{"mundane tasks", "benthos.dev", "create kafka//file"} {
		if strings.Contains(out, engine) {
			t.Errorf("--help still shows the engine's %q:\n%s", engine, out)
		}
	}
}

func TestVersionFromBuildInfo(t *testing.T) {
	vcs := func(rev, modified, when string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev},
			{Key: "vcs.time", Value: when}, {Key: "vcs.modified", Value: modified}}
	}
	const rev = "1abdd1982f3a5bd2a6d2b0f4b3fd1f53c5e0e9aa"
	for _, tc := range []struct {
		name             string
		linked           string
		info             *debug.BuildInfo
		version, dateWas string
	}{
		{"no build info", "", nil, "dev", "unknown"},
		{"linked version wins", "1.4.0", &debug.BuildInfo{Main: debug.Module{Version: "v1.3.0"}}, "1.4.0", "unknown"},
		{"module version (a tag)", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.3.0"}}, "v1.3.0", "unknown"},
		{"pseudo-version from the VCS", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261203144213-1abdd1982f3a"},
			Settings: vcs(rev, "false", "2026-12-03T14:42:13Z")}, "v0.0.0-20261203144213-1abdd1982f3a", "2026-12-03T14:42:13Z"},
		{"revision only", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "false", "2026-12-03T14:42:13Z")},
			rev, "2026-12-03T14:42:13Z"},
		{"revision of a changed tree", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "true", "2026-12-03T14:42:13Z")},
			rev + "-dirty", "2026-12-03T14:42:13Z"},
		{"built with -buildvcs=false", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev", "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, d := versionFromBuildInfo(tc.linked, tc.info)
			if v != tc.version || d != tc.dateWas {
				t.Fatalf("got version %q date %q, want %q %q", v, d, tc.version, tc.dateWas)
			}
		})
	}
}

func TestVersionFlagPrintsBuildVersion(t *testing.T) {
	out, code := runCLI(t, "--version")
	want, date := buildVersion(Version)
	if code != 0 || out != fmt.Sprintf("Version: %s\nDate: %s\n", want, date) {
		t.Fatalf("--version exited %d printing %q, want version %q date %q", code, out, want, date)
	}
}

// TestDocsDescribesEveryField: `ingestor docs` prints, for each of the project's components,
// every field of its spec with that field's description, which `create` leaves out.
func TestDocsDescribesEveryField(t *testing.T) {
	for _, c := range []string{"input/kafka_franz", "output/kafka_franz", "reading_to_point", "iot_error_record", "influxdb_v2", "metrics/prometheus"} {
		t.Run(c, func(t *testing.T) {
			out, code := runCLI(t, "docs", c)
			if code != 0 {
				t.Fatalf("docs %s exited %d:\n%s", c, code, out)
			}
			specs, err := findDocs(service.GlobalEnvironment(), []string{c})
			if err != nil || len(specs) != 1 {
				t.Fatalf("spec of %s: %v (%d found)", c, err, len(specs))
			}
			if len(specs[0].Fields) == 0 {
				t.Fatalf("spec of %s has %d fields", c, len(specs[0].Fields))
			}
			for _, f := range specs[0].Fields {
				if !strings.Contains(out, "\n  "+f.FullName+"  (") {
					t.Errorf("field %s missing from the docs of %s", f.FullName, c)
				}
				first := strings.TrimSpace(strings.SplitN(strings.TrimSpace(f.Description), "\n", 2)[0])
				if first == "" {
					t.Errorf("field %s of %s has no description in its spec", f.FullName, c)
				} else if !strings.Contains(out, first) {
					t.Errorf("the description of %s (%q) is missing from the docs of %s", f.FullName, first, c)
				}
			}
		})
	}
	// A fixed description, so that the test also fails if both sides lose the text.
	out, _ := runCLI(t, "docs", "influxdb_v2")
	if !strings.Contains(out, "token  (string, default \"\", secret)\n    API token with write permission on the bucket") {
		t.Errorf("docs influxdb_v2 lacks the token field's description:\n%s", out)
	}
	if out, code := runCLI(t, "docs", "no_such_component"); code == 0 {
		t.Errorf("docs of an unknown component exited 0:\n%s", out)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// TestReadyMetricIsWhatReadyAnswers runs the CLI on a pipeline whose input (a TCP client)
// cannot connect until the test listens on its address: ingestor_ready on /metrics must be 0
// while GET /ready answers 503, and 1 once it answers 200.
func TestReadyMetricIsWhatReadyAnswers(t *testing.T) {
	t.Cleanup(func() { metrics.SetReadiness(nil) })
	httpAddr, sockAddr := freePort(t), freePort(t)
	cfg := filepath.Join(t.TempDir(), "ready.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
http: {address: %s}
logger: {level: ERROR}
metrics: {prometheus: {}}
input:
  socket: {network: tcp, address: %s, codec: lines}
output:
  drop: {}
`, httpAddr, sockAddr)), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = service.RunCLIToCode(ctx, append(cliOptions(), service.CLIOptSetArgs("ingestor", "run", cfg))...)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("the CLI did not stop within 30s of its context's cancel")
		}
	})

	client := &http.Client{Timeout: 5 * time.Second}
	readyCode := func() int {
		resp, err := client.Get("http://" + httpAddr + "/ready")
		if err != nil {
			return 0
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	gauge := func() (float64, bool) {
		resp, err := client.Get("http://" + httpAddr + "/metrics")
		if err != nil {
			return 0, false
		}
		defer resp.Body.Close()
		parser := expfmt.NewTextParser(model.LegacyValidation)
		fams, err := parser.TextToMetricFamilies(resp.Body)
		if err != nil {
			t.Fatalf("parsing /metrics: %v", err)
		}
		f, ok := fams[metrics.ReadyMetricName]
		if !ok || len(f.GetMetric()) != 1 {
			t.Fatalf("/metrics has no single %s series: %v", metrics.ReadyMetricName, f)
		}
		return f.GetMetric()[0].GetGauge().GetValue(), true
	}
	// waitAgreement samples /ready, the gauge and /ready again until /ready answers want twice
	// around the scrape; the gauge must then say the same. Samples where /ready changed
	// between the two calls are not comparable and are taken again.
	waitAgreement := func(want int) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			before := readyCode()
			v, ok := gauge()
			after := readyCode()
			if ok && before == want && after == want {
				if wantV := map[int]float64{200: 1, 503: 0}[want]; v != wantV {
					t.Fatalf("/ready answered %d but %s = %v, want %v", want, metrics.ReadyMetricName, v, wantV)
				}
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("/ready never answered %d (last %d)", want, readyCode())
	}

	waitAgreement(http.StatusServiceUnavailable)
	l, err := net.Listen("tcp", sockAddr)
	if err != nil {
		t.Fatalf("listening where the input connects: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
		}
	}()
	waitAgreement(http.StatusOK)
}

func TestStreamReady(t *testing.T) {
	// The engine's ConnectionStatus values cannot be built outside it; the in-process run
	// above covers streamReady with real ones. Here: no statuses at all is not ready.
	if streamReady(nil) {
		t.Fatal("a stream with no connection statuses is reported ready; /ready answers 503 then")
	}
}
