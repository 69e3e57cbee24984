package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"
)

func TestSteadyRate(t *testing.T) {
	// 1000 messages: 100 done at 1s, 900 done at 3s -> 800 messages in 2s.
	samples := []sample{{500 * time.Millisecond, 0}, {time.Second, 100}, {2 * time.Second, 500}, {3 * time.Second, 900}, {4 * time.Second, 1000}}
	if got := steadyRate(samples, 1000); got != 400 {
		t.Errorf("steadyRate = %v, want 400", got)
	}
	if got := steadyRate(samples[:2], 1000); got != 0 {
		t.Errorf("steadyRate without a 90%% sample = %v, want 0", got)
	}
}

func TestScrapeSumsSeries(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `# HELP iot_error_records x
# TYPE iot_error_records counter
iot_error_records{kind="decode"} 3
iot_error_records{kind="validation"} 4
influxdb_points_written 1.5e+06
influxdb_write_latency_ns_sum 2e+07
influxdb_write_latency_ns_count 10
`)
	}))
	defer srv.Close()
	m, err := scrape(srv.Client(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"iot_error_records": 7, "influxdb_points_written": 1.5e6,
		"influxdb_write_latency_ns_sum": 2e7, "influxdb_write_latency_ns_count": 10}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
}

func TestProcStatsOfThisProcess(t *testing.T) {
	// Burn a little CPU so utime is measurably above zero at USER_HZ resolution.
	deadline := time.Now().Add(50 * time.Millisecond)
	x := 0
	for time.Now().Before(deadline) {
		x++
	}
	cpu, err := procCPU(os.Getpid())
	if err != nil || cpu <= 0 {
		t.Errorf("procCPU = %v, %v; want a positive CPU time", cpu, err)
	}
	hwm, err := procHWM(os.Getpid())
	if err != nil || hwm < 1<<20 {
		t.Errorf("procHWM = %d, %v; want at least 1 MiB", hwm, err)
	}
}

func TestBodiesSplitAndCompress(t *testing.T) {
	lines := [][]byte{[]byte("m a=1 1"), []byte("m a=2 2"), []byte("m a=3 3")}
	plain := bodies(lines, 2, false)
	if len(plain) != 2 || string(plain[0]) != "m a=1 1\nm a=2 2\n" || string(plain[1]) != "m a=3 3\n" {
		t.Fatalf("plain bodies = %q", plain)
	}
	gz := bodies(lines, 2, true)
	zr, err := gzip.NewReader(bytes.NewReader(gz[0]))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil || string(got) != string(plain[0]) {
		t.Errorf("gzip body decodes to %q, %v; want %q", got, err, plain[0])
	}
}
