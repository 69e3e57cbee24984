package tests

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/preservarium/iot-ingestor/internal/testkit/influxtest"
)

// Scenario 10: middle boxes between the ingestor and InfluxDB. A small proxy in front of the
// real InfluxDB (influxtest.FaultInjector) answers in turn as an SSO proxy redirecting to its
// login page, a load balancer's 200 maintenance page, a reverse proxy's HTML 400 and a WAF
// refusing non-empty writes only, while readings arrive; then the way is cleared. Nothing a
// middle box said may count as stored or as rejected points: every value is stored in the
// end, the error topic holds only the readings' own errors, /ready answers 503 and
// influxdb_up 0 in every phase, influxdb_write_retries rises in each, and the WAF's phase
// sees writes at the back-off's pace.
func TestFaultMiddleBoxes(t *testing.T) {
	start := time.Now()
	s := newStack(t, stackOptions{partitions: 4})
	proxy := influxtest.NewFaultInjector(t, s.influx.URL())
	proxy.Page("/sso/login", influxtest.Fault{Status: http.StatusOK, Header: map[string]string{"Content-Type": "text/html"}, Body: "<html><form>Sign in</form></html>"})
	html := map[string]string{"Content-Type": "text/html"}
	// The WAF first, while the back-off is fresh: its phase measures the pace of writes.
	phases := []struct {
		name   string
		fault  influxtest.Fault
		probes bool // the empty connection check is answered so too
	}{
		{"waf-403-non-empty", influxtest.Fault{Status: http.StatusForbidden, Header: html, Body: "<html>Request blocked</html>"}, false},
		{"sso-redirect", influxtest.Fault{Status: http.StatusFound, Header: map[string]string{"Location": "/sso/login", "Content-Type": "text/html"}}, true},
		{"maintenance-200", influxtest.Fault{Status: http.StatusOK, Header: html, Body: "<h1>Down for maintenance</h1>"}, true},
		{"proxy-html-400", influxtest.Fault{Status: http.StatusBadRequest, Header: html, Body: "<html><h1>400 Bad Request</h1>nginx</html>"}, true},
	}
	var phase atomic.Int32 // 0: pass, i+1: phases[i]
	proxy.Plan(func(n int, req influxtest.WriteRequest) influxtest.Fault {
		p := phase.Load()
		if p == 0 {
			return influxtest.Pass
		}
		if ph := phases[p-1]; len(req.Lines) > 0 || ph.probes {
			return ph.fault
		}
		return influxtest.Pass
	})
	readings := generate(t, 23, 2000, 0.05)
	p := s.startIngestor(map[string]string{"INFLUXDB_URL": proxy.URL()})
	p.waitStatus("/ready", 200, 30*time.Second)
	st := s.stream(readings, 40, 400*time.Millisecond)
	time.Sleep(1 * time.Second)

	lastRetries := metricTotal(p.metrics(), "influxdb_write_retries")
	for i, ph := range phases {
		phase.Store(int32(i + 1))
		p.waitStatus("/ready", 503, 30*time.Second)
		if i == 0 {
			windowStart := time.Now()
			time.Sleep(4 * time.Second)
			windowEnd := time.Now()
			writes := 0
			for _, w := range proxy.Writes() {
				if len(w.Lines) > 0 && !w.At.Before(windowStart) && w.At.Before(windowEnd) {
					writes++
				}
			}
			t.Logf("%s: %d writes with points in 4 s", ph.name, writes)
			// The shipped back-off starts at 500 ms (at least 250 ms with jitter) and doubles:
			// 4 s hold a handful of reconnects, each followed by at most one request per
			// request slot (8) before the first refusal suspends writing again. Batches the
			// engine hands over in between are handed back without a request (64 callers:
			// one request each was 56 writes in 4 s). Retried at once, the WAF would see
			// about 1,600 writes a second.
			if writes > 40 {
				t.Errorf("%s: %d writes with points in 4 s, more than the back-off allows", ph.name, writes)
			}
		}
		// Each further attempt waits longer (up to the shipped 30 s): wait for the next one.
		deadline := time.Now().Add(75 * time.Second)
		retries := metricTotal(p.metrics(), "influxdb_write_retries")
		for retries <= lastRetries && time.Now().Before(deadline) {
			time.Sleep(250 * time.Millisecond)
			retries = metricTotal(p.metrics(), "influxdb_write_retries")
		}
		if retries <= lastRetries {
			t.Errorf("%s: influxdb_write_retries stayed at %v for 75 s", ph.name, retries)
		}
		lastRetries = retries
		if got := p.status("/ready"); got != 503 {
			t.Errorf("%s: /ready answered %d", ph.name, got)
		}
		if up := metricTotal(p.metrics(), "influxdb_up"); up != 0 {
			t.Errorf("%s: influxdb_up = %v, want 0", ph.name, up)
		}
		t.Logf("%s: retries %v at %v", ph.name, retries, time.Since(start).Round(time.Second))
	}
	phase.Store(0)
	p.waitStatus("/ready", 200, 90*time.Second)
	st.wait()
	s.waitDrained(180 * time.Second)
	if up := metricTotal(p.metrics(), "influxdb_up"); up != 1 {
		t.Errorf("influxdb_up = %v after recovery, want 1", up)
	}
	// The store delay through the binary's Prometheus exporter: a histogram in seconds, one
	// observation per stored message; the readings waited through the phases.
	text := p.metricsText()
	if !strings.Contains(text, "# TYPE iot_store_delay_seconds histogram") {
		t.Errorf("/metrics has no histogram iot_store_delay_seconds")
	}
	if m := regexp.MustCompile(`(?m)^iot_store_delay_seconds_count(?:\{[^}]*\})? (\S+)$`).FindStringSubmatch(text); m == nil {
		t.Errorf("/metrics has no iot_store_delay_seconds_count")
	} else if n, _ := strconv.ParseFloat(m[1], 64); n < 1 {
		t.Errorf("iot_store_delay_seconds_count = %v, want one per stored message", n)
	} else {
		t.Logf("iot_store_delay_seconds_count = %v", n)
	}
	if n := proxy.Requests("/sso/login"); n != 0 {
		t.Errorf("%d requests followed the redirect to the login page", n)
	}
	report(t, "middle-boxes", s.verify(readings, nil), time.Since(start))
}

// metricsText is /metrics as served, for what the parsed totals do not show (types, histograms).
func (p *ingestor) metricsText() string {
	p.t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + p.httpAddr + "/metrics")
	if err != nil {
		p.t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatalf("reading /metrics: %v", err)
	}
	return string(b)
}
