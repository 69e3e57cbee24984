package outputs

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/preservarium/iot-ingestor/internal/testkit/influxtest"
)

// Middle boxes: a small proxy (influxtest.FaultInjector, named proxy here) in front of the
// real InfluxDB 1.8 answers as an SSO proxy, a load balancer, a reverse proxy or a WAF does,
// while readings are produced; then the way is cleared. Every value must be stored in the
// end, none may reach the error branch, /ready must answer 503 while it lasted, and the
// writes against the proxy must keep to the back-off.

// middleBoxConf is the writer behind the proxy: a back-off from 50 ms to 400 ms.
func middleBoxConf(url, token string) string {
	return fmt.Sprintf(`
url: %s
token: %q
bucket: %s
timeout: 5s
max_in_flight: 2
retry:
  max_retries: 2
  initial_interval: 50ms
  max_interval: 400ms
`, url, token, itDB)
}

// middleBoxWindow is how long a middle box misbehaves once /ready answers 503.
const middleBoxWindow = 3 * time.Second

// middleBoxMaxWrites bounds the writes with points that reach the proxy during the window: with
// a back-off of at least 25, 50, 100, 200 ms (half of 50 ms doubling, with jitter) and then
// 200 ms, 3 s hold at most 17 attempts, plus one first attempt per batch in flight (2) and
// in-place retries (2 per write). Without a back-off the engine retries at once: hundreds.
const middleBoxMaxWrites = 40

type middleBoxCase struct {
	name string
	// fault is the proxy's answer to a write while it misbehaves; probes is whether it
	// answers the empty connection check so too (a WAF that inspects bodies lets it pass).
	fault  influxtest.Fault
	probes bool
	// pages are the proxy's other answers (the login page a redirect points to).
	pages map[string]influxtest.Fault
}

func TestInfluxIntegrationMiddleBoxes(t *testing.T) {
	cases := []middleBoxCase{
		{name: "SSO redirect to a login page", probes: true,
			fault: influxtest.Fault{Status: http.StatusFound, Header: map[string]string{"Location": "/sso/login?next=/api/v2/write", "Content-Type": "text/html"}, Body: "<a href=\"/sso/login\">Found</a>"},
			pages: map[string]influxtest.Fault{"/sso/login": {Status: http.StatusOK, Header: map[string]string{"Content-Type": "text/html"}, Body: "<html><form>Sign in</form></html>"}}},
		{name: "load balancer maintenance page 200", probes: true,
			fault: influxtest.Fault{Status: http.StatusOK, Header: map[string]string{"Content-Type": "text/html"}, Body: "<html><h1>Down for maintenance</h1></html>"}},
		{name: "proxy HTML 400", probes: true,
			fault: influxtest.Fault{Status: http.StatusBadRequest, Header: map[string]string{"Content-Type": "text/html"}, Body: "<html><center><h1>400 Bad Request</h1></center><hr><center>nginx</center></html>"}},
		{name: "2.x 400 without org", probes: true,
			fault: influxtest.Fault{Status: http.StatusBadRequest, Body: `{"code":"invalid","message":"Please provide either orgID or org"}`}},
		{name: "WAF 403 on non-empty writes only", probes: false,
			fault: influxtest.Fault{Status: http.StatusForbidden, Header: map[string]string{"Content-Type": "text/html"}, Body: "<html>Request blocked by the web application firewall</html>"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { runMiddleBox(t, c) })
	}
}

func runMiddleBox(t *testing.T, c middleBoxCase) {
	srv := influxtest.Start(t, influxtest.Options{})
	srv.CreateDatabase(itDB)
	proxy := influxtest.NewFaultInjector(t, srv.URL())
	for path, page := range c.pages {
		proxy.Page(path, page)
	}
	var misbehaving atomic.Bool
	proxy.Plan(func(n int, req influxtest.WriteRequest) influxtest.Fault {
		if misbehaving.Load() && (len(req.Lines) > 0 || c.probes) {
			return c.fault
		}
		return influxtest.Pass
	})
	s := startInfluxStream(t, middleBoxConf(proxy.URL(), srv.Token()))
	waitFor(t, "/ready to answer 200 before the middle box misbehaves", func() bool { code, _ := s.ready(); return code == http.StatusOK })
	if up := s.metrics(t)["influxdb_up"]; up != float64(1) {
		t.Errorf("influxdb_up = %v once the check passed with nothing waiting, want 1", up)
	}

	misbehaving.Store(true)
	const batches, perBatch = 6, 10
	var produced sync.WaitGroup
	errs := make(chan error, batches)
	var acked atomic.Int64
	for b := 0; b < batches; b++ {
		lines := make([]string, perBatch)
		for i := range lines {
			n := b*perBatch + i
			lines[i] = fmt.Sprintf("mb,dev=d%d v=%di %d", n%5, n, 1_000_000+n)
		}
		produced.Add(1)
		go func() {
			defer produced.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer cancel()
			if err := s.produce(ctx, lpBatch(lines...)); err != nil {
				errs <- err
				return
			}
			acked.Add(1)
		}()
	}
	waitFor(t, "/ready to answer 503 while the middle box misbehaves", func() bool {
		code, _ := s.ready()
		return code == http.StatusServiceUnavailable
	})
	before := s.metrics(t)
	windowStart := time.Now()
	time.Sleep(middleBoxWindow)
	windowEnd := time.Now()
	during := s.metrics(t)
	code, body := s.ready()
	if code != http.StatusServiceUnavailable {
		t.Errorf("/ready answered %d after %v of the middle box, want 503", code, middleBoxWindow)
	}
	t.Logf("/ready during: %s", strings.TrimSpace(body))
	if n := acked.Load(); n != 0 {
		t.Errorf("%d batches acknowledged while the middle box answered", n)
	}
	if got := s.capture.got(); len(got) != 0 {
		t.Errorf("error branch received %d messages from a middle box's answer, first %+v", len(got), got[0])
	}
	if up := during["influxdb_up"]; up != float64(0) {
		t.Errorf("influxdb_up = %v during the middle box, want 0", up)
	}
	r0, _ := before["influxdb_write_retries"].(float64)
	r1, _ := during["influxdb_write_retries"].(float64)
	if r1 <= r0 {
		t.Errorf("influxdb_write_retries %v at the start of the window, %v at its end: not rising", r0, r1)
	}
	writes := 0
	for _, w := range proxy.Writes() {
		if len(w.Lines) > 0 && !w.At.Before(windowStart) && w.At.Before(windowEnd) {
			writes++
		}
	}
	t.Logf("%d writes with points reached the proxy in %v; retries %v -> %v", writes, middleBoxWindow, r0, r1)
	if writes > middleBoxMaxWrites {
		t.Errorf("%d writes with points reached the proxy in %v: more than the back-off allows (%d)", writes, middleBoxWindow, middleBoxMaxWrites)
	}

	for path := range c.pages {
		if n := proxy.Requests(path); n != 0 {
			t.Errorf("%d requests followed the redirect to %s", n, path)
		}
	}

	misbehaving.Store(false)
	done := make(chan struct{})
	go func() { produced.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(120 * time.Second):
		t.Fatal("batches not written 120 s after the way was cleared")
	}
	close(errs)
	for err := range errs {
		t.Errorf("produce: %v", err)
	}
	if got := s.capture.got(); len(got) != 0 {
		t.Errorf("error branch received %d messages, first %+v", len(got), got[0])
	}
	if n := srv.Count(itDB, "mb", "v"); n != batches*perBatch {
		t.Errorf("stored %d values, want every one of %d", n, batches*perBatch)
	}
	waitFor(t, "/ready to answer 200 after the way was cleared", func() bool { code, _ := s.ready(); return code == http.StatusOK })
	if up := s.metrics(t)["influxdb_up"]; up != float64(1) {
		t.Errorf("influxdb_up = %v after the writes were stored, want 1", up)
	}
}
