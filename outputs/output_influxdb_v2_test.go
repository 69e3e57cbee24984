package outputs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/preservarium/iot-ingestor/internal/backoff"
	"github.com/preservarium/iot-ingestor/internal/testkit/influxtest"
)

// newTestInfluxWriter parses conf (YAML of the influxdb_v2 fields) into a
// writer with mock resources and closes it at the end of the test.
func newTestInfluxWriter(t testing.TB, conf string) *influxWriter {
	t.Helper()
	pConf, err := influxdbV2OutputSpec().ParseYAML(conf, nil)
	if err != nil {
		t.Fatalf("parsing config: %v\n%s", err, conf)
	}
	w, err := newInfluxWriterFromConfig(pConf, service.MockResources())
	if err != nil {
		t.Fatalf("building writer: %v", err)
	}
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	return w
}

// recordWaits replaces the writer's retry sleep with one that records the
// wait asked for and returns at once.
func recordWaits(w *influxWriter) *[]time.Duration {
	var mu sync.Mutex
	waits := &[]time.Duration{}
	w.retry.policy.Jitter = 0 // exact waits
	w.sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		*waits = append(*waits, d)
		return ctx.Err()
	}
	return waits
}

func lpBatch(lines ...string) service.MessageBatch {
	b := make(service.MessageBatch, len(lines))
	for i, l := range lines {
		b[i] = service.NewMessage([]byte(l))
	}
	return b
}

// failedMessages returns index -> error text of the messages a BatchError
// fails; it fails the test when err is neither nil nor a BatchError.
func failedMessages(t testing.TB, err error) map[int]string {
	t.Helper()
	out := map[int]string{}
	if err == nil {
		return out
	}
	var bErr *service.BatchError
	if !errors.As(err, &bErr) {
		t.Fatalf("WriteBatch returned %T %v, want nil or a *service.BatchError", err, err)
	}
	bErr.WalkMessages(func(i int, _ *service.Message, e error) bool {
		if e != nil {
			out[i] = e.Error()
		}
		return true
	})
	return out
}

func TestInfluxOutputConfig(t *testing.T) {
	w := newTestInfluxWriter(t, `
url: http://localhost:8086/
token: s3cr3t
org: acme
bucket: iot_data
`)
	if want := "http://localhost:8086/api/v2/write?bucket=iot_data&org=acme&precision=ns"; w.writeURL != want {
		t.Errorf("write URL %q, want %q", w.writeURL, want)
	}
	if !w.gzip || w.maxInFlight != 8 || w.timeout != 10*time.Second || w.createBucket {
		t.Errorf("defaults: gzip=%v max_in_flight=%d timeout=%v create_bucket=%v", w.gzip, w.maxInFlight, w.timeout, w.createBucket)
	}
	if w.retry != (influxRetry{maxRetries: 3, policy: backoff.Policy{Initial: 500 * time.Millisecond, Max: 30 * time.Second, Jitter: backoff.DefaultJitter}, maxRetryAfter: 60 * time.Second}) {
		t.Errorf("retry defaults %+v", w.retry)
	}
	if w.authorization != "Token s3cr3t" || w.userAgent != "iot-ingestor" || w.maxRequestBytes != 10<<20 {
		t.Errorf("authorization %q, user agent %q, max_request_bytes %d", w.authorization, w.userAgent, w.maxRequestBytes)
	}

	bad := map[string]string{
		"not a URL":          "url: localhost:8086\nbucket: b",
		"credentials in URL": "url: http://u:p@localhost:8086\nbucket: b",
		"empty bucket":       "url: http://localhost:8086\nbucket: ' '",
		"zero timeout":       "url: http://localhost:8086\nbucket: b\ntimeout: 0s",
		"no in flight":       "url: http://localhost:8086\nbucket: b\nmax_in_flight: 0",
		"retry backwards":    "url: http://localhost:8086\nbucket: b\nretry:\n  initial_interval: 2s\n  max_interval: 1s",
		"no request bytes":   "url: http://localhost:8086\nbucket: b\nmax_request_bytes: 0",
		"proxy not http":     "url: http://localhost:8086\nbucket: b\nproxy_url: socks5://p:1080",
		"reserved header":    "url: http://localhost:8086\nbucket: b\nhttp_headers:\n  authorization: x",
	}
	for name, conf := range bad {
		pConf, err := influxdbV2OutputSpec().ParseYAML(conf, nil)
		if err != nil {
			continue // rejected while parsing: fine too
		}
		if _, err := newInfluxWriterFromConfig(pConf, service.MockResources()); err == nil {
			t.Errorf("%s: config accepted:\n%s", name, conf)
		} else if !strings.HasPrefix(err.Error(), "influxdb_v2: ") {
			t.Errorf("%s: error %q does not name the component", name, err)
		}
	}
	pConf, err := influxdbV2OutputSpec().ParseYAML("url: http://x\nbucket: b\nprecision: minutes", nil)
	if err == nil {
		if _, err = newInfluxWriterFromConfig(pConf, service.MockResources()); err == nil {
			t.Error("precision minutes accepted")
		}
	}
}

func TestInfluxOutputLintRetentionNeedsCreateBucket(t *testing.T) {
	env := service.NewEnvironment()
	b := env.NewStreamBuilder()
	err := b.AddOutputYAML(`
influxdb_v2:
  url: http://localhost:8086
  bucket: iot_data
  retention: 720h
`)
	if err == nil || !strings.Contains(err.Error(), "retention only applies") {
		t.Fatalf("want the retention lint error, got %v", err)
	}
	if err := env.NewStreamBuilder().AddOutputYAML(`
influxdb_v2:
  url: http://localhost:8086
  org: acme
  bucket: iot_data
  create_bucket: true
  retention: 720h
`); err != nil {
		t.Fatalf("valid create_bucket config rejected: %v", err)
	}
}

func TestInfluxOutputLintURLScheme(t *testing.T) {
	for conf, want := range map[string]string{
		"url: localhost:8086":                               "url must start with http:// or https://",
		"url: influxdb:8086":                                "url must start with http:// or https://",
		"url: ftp://influxdb:8086":                          "url must start with http:// or https://",
		"url: http://influxdb:8086\nproxy_url: proxy:3128":  "proxy_url must start with http:// or https://",
		"url: https://influxdb:8086\nmax_request_bytes: 0":  "max_request_bytes must be at least 1",
		"url: https://influxdb:8086\nproxy_url: http://p:1": "",
	} {
		err := service.NewEnvironment().NewStreamBuilder().AddOutputYAML("influxdb_v2:\n  bucket: b\n  " + strings.ReplaceAll(conf, "\n", "\n  "))
		switch {
		case want == "" && err != nil:
			t.Errorf("%q rejected: %v", conf, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: lint error %v, want %q", conf, err, want)
		}
	}
}

func TestInfluxHeadersAndUserAgent(t *testing.T) {
	fi := influxtest.NewFaultInjector(t, "")
	w := newTestInfluxWriter(t, stubConf(fi.URL(), "user_agent: ingestor-paris\nhttp_headers:\n  X-Tenant: plant-7\n"))
	if err := w.Connect(context.Background()); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	if err := w.WriteBatch(context.Background(), lpBatch("m v=1 1")); err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}
	ws := fi.Writes()
	if len(ws) != 2 {
		t.Fatalf("requests %d, want the probe and one write", len(ws))
	}
	for _, r := range ws {
		if r.Header.Get("X-Tenant") != "plant-7" || r.Header.Get("User-Agent") != "ingestor-paris" || r.Authorization != "Token SECRET-TOKEN-42" {
			t.Errorf("request headers %v", r.Header)
		}
	}
}

// proxy_url sends the requests through the named HTTP proxy, which sees absolute URLs.
func TestInfluxProxyURL(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.String())
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer proxy.Close()
	w := newTestInfluxWriter(t, stubConf("http://influxdb.invalid:8086", "proxy_url: "+proxy.URL+"\n"))
	if err := w.Connect(context.Background()); err != nil {
		t.Fatalf("Connect through the proxy: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || !strings.HasPrefix(seen[0], "http://influxdb.invalid:8086/api/v2/write?") {
		t.Fatalf("proxy saw %v, want the probe to influxdb.invalid", seen)
	}
}

// With routed buckets, only a 404 about the bucket is the message's: a missing organization, or
// a 404 that is not InfluxDB's, stays a deployment problem.
func TestInfluxRoutedBucketNotFound(t *testing.T) {
	cases := []struct {
		name   string
		fault  influxtest.Fault
		failed bool
	}{
		{"2.x bucket", influxtest.Fault{Status: 404, Body: `{"code":"not found","message":"bucket \"t_x\" not found"}`}, true},
		{"1.8 database", influxtest.Fault{Status: 404, Header: map[string]string{"X-Influxdb-Error": `database not found: "t_x"`}, Body: `{"error":"database not found: \"t_x\""}`}, true},
		{"2.x organization", influxtest.Fault{Status: 404, Body: `{"code":"not found","message":"organization name \"acme\" not found"}`}, false},
		{"proxy 404 page", influxtest.Fault{Status: 404, Header: map[string]string{"Content-Type": "text/html"}, Body: "<h1>bucket not found</h1>"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fi := influxtest.NewFaultInjector(t, "")
			fi.Plan(func(n int, req influxtest.WriteRequest) influxtest.Fault {
				if req.Query.Get("bucket") == "t_x" {
					return c.fault
				}
				return influxtest.Pass
			})
			w := newTestInfluxWriter(t, strings.Replace(stubConf(fi.URL(), ""), "bucket: iot_data", `bucket: 't_${! meta("t") }'`, 1))
			batch := lpBatch("m v=1 1", "m v=2 2")
			batch[0].MetaSetMut("t", "x")
			batch[1].MetaSetMut("t", "y")
			err := w.WriteBatch(context.Background(), batch)
			if !c.failed {
				if !errors.Is(err, service.ErrNotConnected) {
					t.Fatalf("WriteBatch: %v, want not connected", err)
				}
				return
			}
			failed := failedMessages(t, err)
			if len(failed) != 1 || !strings.HasPrefix(failed[0], `write: bucket "t_x" not found in InfluxDB (404): `) {
				t.Fatalf("failed %v, want only message 0 with the missing bucket", failed)
			}
			if got := fi.Accepted(); len(got) != 1 || got[0] != "m v=2 2" {
				t.Fatalf("stored %q, want message 1 in t_y", got)
			}
		})
	}
}

func TestInfluxRetryAfterHTTPDate(t *testing.T) {
	h := http.Header{}
	h.Set("Retry-After", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
	d := parseRetryAfter(h)
	if d <= 58*time.Minute || d > time.Hour {
		t.Fatalf("Retry-After an hour ahead read as %v", d)
	}
}

func TestInfluxClassify(t *testing.T) {
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	jsonH := hdr("Content-Type", "application/json")
	cases := []struct {
		name       string
		status     int
		header     http.Header
		body       string
		want       writeOutcome
		msg        string
		retryAfter time.Duration
	}{
		{"204", 204, jsonH, "", outcomeStored, "No Content, application/json", 0},
		{"400 2.x", 400, jsonH, `{"code":"invalid","message":"unable to parse 'x': missing fields"}`, outcomeRejected, "unable to parse 'x': missing fields", 0},
		{"400 1.8 header", 400, hdr("Content-Type", "application/json", "X-Influxdb-Error", "partial write: unable to parse 'bad': invalid field format dropped=0"), `{"error":"partial write: unable to parse 'bad': invalid field format dropped=0"}`, outcomeRejected, "partial write: unable to parse 'bad': invalid field format dropped=0", 0},
		{"400 1.8 body only", 400, jsonH, `{"error":"field type conflict"}`, outcomeRejected, "field type conflict", 0},
		{"400 1.8 series limit", 400, jsonH, `{"error":"partial write: max-series-per-database limit exceeded: (3) dropped=4"}`, outcomeRejected, "partial write: max-series-per-database limit exceeded: (3) dropped=4", 0},
		{"400 1.8 retention", 400, jsonH, `{"error":"partial write: points beyond retention policy dropped=1"}`, outcomeRejected, "partial write: points beyond retention policy dropped=1", 0},
		{"400 3.x cut at the bound", 400, jsonH, `{"code":"invalid","message":"failed to parse line protocol: errors encountered on line(s): error parsing line 2","line":2,"data":[{"x":`, outcomeRejected, "failed to parse line protocol: errors encountered on line(s): error parsing line 2", 0},
		{"422", 422, jsonH, `{"code":"unprocessable entity","message":"failure writing points to database: partial write: field type conflict"}`, outcomeRejected, "failure writing points to database: partial write: field type conflict", 0},
		{"500 partial write", 500, jsonH, `{"code":"internal error","message":"partial write: field type conflict: input field \"f\""}`, outcomeRejected, "partial write: field type conflict: input field \"f\"", 0},
		{"500 timeout", 500, hdr("X-Influxdb-Error", "timeout"), "", outcomeOutage, "timeout", 0},
		{"413", 413, jsonH, `{"error":"Request Entity Too Large"}`, outcomeTooLarge, "Request Entity Too Large", 0},
		{"401", 401, jsonH, `{"code":"unauthorized","message":"unauthorized access"}`, outcomeDeployment, "unauthorized access", 0},
		{"403", 403, jsonH, `{"code":"forbidden","message":"insufficient permissions"}`, outcomeDeployment, "insufficient permissions", 0},
		{"404", 404, hdr("X-Influxdb-Error", `database not found: "x"`), "", outcomeDeployment, `database not found: "x"`, 0},
		{"429 seconds", 429, hdr("Content-Type", "application/json", "Retry-After", "7"), `{"code":"too many requests","message":"exceeded rate limit"}`, outcomeOutage, "exceeded rate limit", 7 * time.Second},
		{"503 no message", 503, hdr("Retry-After", "2"), "", outcomeOutage, "Service Unavailable", 2 * time.Second},
		{"502 proxy", 502, hdr("Content-Type", "text/html"), "<html>upstream\nreset</html>", outcomeOutage, "Bad Gateway, text/html: <html>upstream reset</html>", 0},
		{"504", 504, http.Header{}, "", outcomeOutage, "Gateway Timeout", 0},
		{"405 proxy", 405, http.Header{}, "", outcomeDeployment, "Method Not Allowed", 0},
		{"503 date in the past", 503, hdr("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT"), "", outcomeOutage, "Service Unavailable", 0},
		// Answers that are not InfluxDB's, or not about the points: never stored, never rejected.
		{"200 maintenance page", 200, hdr("Content-Type", "text/html"), "<h1>Maintenance</h1>", outcomeDeployment, "OK, text/html: <h1>Maintenance</h1>", 0},
		{"302 SSO", 302, hdr("Location", "https://sso.example/login"), "", outcomeDeployment, "Found", 0},
		{"400 proxy HTML", 400, hdr("Content-Type", "text/html"), "<html><h1>400 Bad Request</h1>nginx</html>", outcomeDeployment, "Bad Request, text/html: <html><h1>400 Bad Request</h1>nginx</html>", 0},
		{"400 proxy JSON without code", 400, jsonH, `{"message":"unable to parse request"}`, outcomeDeployment, `Bad Request, application/json: {"message":"unable to parse request"}`, 0},
		{"400 2.x org", 400, jsonH, `{"code":"invalid","message":"Please provide either orgID or org"}`, outcomeDeployment, "Please provide either orgID or org", 0},
		{"400 1.8 gzip", 400, hdr("X-Influxdb-Error", "unexpected EOF"), "", outcomeDeployment, "unexpected EOF", 0},
		{"403 WAF", 403, hdr("Content-Type", "text/html"), "<html>Request blocked</html>", outcomeDeployment, "Forbidden, text/html: <html>Request blocked</html>", 0},
	}
	for _, c := range cases {
		a := classifyAnswer(c.status, c.header, []byte(c.body))
		if a.outcome != c.want || a.message != c.msg || a.retryAfter != c.retryAfter {
			t.Errorf("%s: got outcome %d message %q retry-after %v, want %d %q %v",
				c.name, a.outcome, a.message, a.retryAfter, c.want, c.msg, c.retryAfter)
		}
	}
	if a := classifyAnswer(302, hdr("Location", "https://sso.example/login"), nil); a.location != "https://sso.example/login" ||
		describeAnswer(a) != "302 redirect to https://sso.example/login" {
		t.Errorf("redirect: location %q, described %q", a.location, describeAnswer(a))
	}
	if a := transportAnswer(errors.New("dial tcp 127.0.0.1:1: connect: connection refused")); a.outcome != outcomeOutage || a.status != 0 {
		t.Errorf("transport error: %+v", a)
	}
	// The probe: only 204 and 2.x's "writing requires points" mean writable.
	for _, c := range []struct {
		status int
		header http.Header
		body   string
		ok     bool
	}{
		{204, http.Header{}, "", true},
		{400, jsonH, `{"code":"invalid","message":"writing requires points"}`, true},
		{400, jsonH, `{"code":"invalid","message":"Please provide either orgID or org"}`, false},
		{400, hdr("Content-Type", "text/html"), "writing requires points", false},
		{400, jsonH, `{"code":"invalid","message":"unable to parse ''"}`, false},
		{200, http.Header{}, "", false},
		{413, http.Header{}, "", false},
	} {
		a := classifyProbe(classifyAnswer(c.status, c.header, []byte(c.body)))
		if (a.outcome == outcomeStored) != c.ok || (!c.ok && a.outcome != outcomeDeployment) {
			t.Errorf("probe answer %d %s: outcome %d, want writable=%v", c.status, c.body, a.outcome, c.ok)
		}
	}
}

// stubConf is a writer config against a FaultInjector with quick retries.
func stubConf(url, extra string) string {
	return fmt.Sprintf(`
url: %s
token: SECRET-TOKEN-42
org: acme
bucket: iot_data
timeout: 2s
retry:
  max_retries: 3
  initial_interval: 10ms
  max_interval: 50ms
  max_retry_after: 3s
%s`, url, extra)
}

func TestInfluxFaultInjector429RetryAfter(t *testing.T) {
	fi := influxtest.NewFaultInjector(t, "")
	fi.Plan(func(n int, req influxtest.WriteRequest) influxtest.Fault {
		if n < 2 {
			return influxtest.Fault{Status: 429, Header: map[string]string{"Retry-After": "1"},
				Body: `{"code":"too many requests","message":"write limit reached"}`}
		}
		return influxtest.Pass
	})
	w := newTestInfluxWriter(t, stubConf(fi.URL(), ""))
	waits := recordWaits(w)
	if err := w.WriteBatch(context.Background(), lpBatch("m v=1 1", "m v=2 2")); err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}
	// Two 429s each asking for 1s, more than the 10ms/20ms back-off.
	if got := fmt.Sprint(*waits); got != "[1s 1s]" {
		t.Errorf("waits %s, want Retry-After honoured: [1s 1s]", got)
	}
	if got := fi.Accepted(); strings.Join(got, "|") != "m v=1 1|m v=2 2" {
		t.Errorf("stored %q", got)
	}
	if r := w.counts.retries.Load(); r != 2 {
		t.Errorf("retries counted %d, want 2", r)
	}
}

func TestInfluxFaultInjector429CapAndNotConnected(t *testing.T) {
	fi := influxtest.NewFaultInjector(t, "")
	fi.Plan(func(n int, req influxtest.WriteRequest) influxtest.Fault {
		return influxtest.Fault{Status: 429, Header: map[string]string{"Retry-After": "3600"}}
	})
	// A Retry-After of an hour is capped at max_retry_after (100ms), and after
	// max_retries the write reports not connected: no ack, no failed message.
	w := newTestInfluxWriter(t, strings.Replace(stubConf(fi.URL(), ""), "max_retry_after: 3s", "max_retry_after: 100ms", 1))
	waits := recordWaits(w)
	err := w.WriteBatch(context.Background(), lpBatch("m v=1 1"))
	if !errors.Is(err, service.ErrNotConnected) {
		t.Fatalf("want ErrNotConnected, got %v", err)
	}
	if got := fmt.Sprint(*waits); got != "[100ms 100ms 100ms]" {
		t.Errorf("waits %s, want the cap thrice", got)
	}
	if n := len(fi.Writes()); n != 4 {
		t.Errorf("write attempts %d, want 1 + 3 retries", n)
	}
	// Connect sees the same throttling and asks the engine to wait, capped.
	cerr := w.Connect(context.Background())
	var bo *service.ErrBackOff
	if !errors.As(cerr, &bo) || bo.Wait != 100*time.Millisecond {
		t.Fatalf("Connect: want ErrBackOff of 100ms, got %#v", cerr)
	}
}

func TestInfluxFaultInjector500PartialWrite(t *testing.T) {
	fi := influxtest.NewFaultInjector(t, "")
	// InfluxDB 2.0.x style: a 500 reporting a partial write when a request
	// holds a conflicting line; requests without one are stored.
	fi.Plan(func(n int, req influxtest.WriteRequest) influxtest.Fault {
		for _, l := range req.Lines {
			if strings.Contains(l, `"conflict"`) {
				return influxtest.Fault{Status: 500, Body: `{"code":"internal error","message":"partial write: field type conflict: input field \"v\" on measurement \"m\" is type string, already exists as type float dropped=1"}`}
			}
		}
		return influxtest.Pass
	})
	w := newTestInfluxWriter(t, stubConf(fi.URL(), ""))
	lines := []string{}
	for i := 0; i < 16; i++ {
		if i == 3 || i == 12 {
			lines = append(lines, fmt.Sprintf(`m v="conflict" %d`, i))
		} else {
			lines = append(lines, fmt.Sprintf("m v=%d %d", i, i))
		}
	}
	failed := failedMessages(t, w.WriteBatch(context.Background(), lpBatch(lines...)))
	want := `write: rejected by InfluxDB (500): partial write: field type conflict: input field "v" on measurement "m" is type string, already exists as type float dropped=1`
	if len(failed) != 2 || failed[3] != want || failed[12] != want {
		t.Fatalf("failed messages %v, want exactly 3 and 12 with %q", failed, want)
	}
	stored := map[string]bool{}
	for _, l := range fi.Accepted() {
		stored[l] = true
	}
	for i, l := range lines {
		if stored[l] == (i == 3 || i == 12) {
			t.Errorf("message %d %q stored=%v", i, l, stored[l])
		}
	}
	if w.counts.rejected.Load() != 2 || w.counts.split.Load() == 0 {
		t.Errorf("counters rejected=%d split=%d", w.counts.rejected.Load(), w.counts.split.Load())
	}
}

// A batch of one rejected message: the engine's fallback reports the batch-level text for it,
// so that text must be the message's own reason, not a summary around it.
func TestInfluxSingleRejectedMessageKeepsItsReason(t *testing.T) {
	fi := influxtest.NewFaultInjector(t, "")
	fi.Plan(func(n int, req influxtest.WriteRequest) influxtest.Fault {
		if len(req.Lines) > 0 {
			return influxtest.Fault{Status: 400, Body: `{"code":"invalid","message":"unable to parse 'm v=': missing field value"}`}
		}
		return influxtest.Pass
	})
	w := newTestInfluxWriter(t, stubConf(fi.URL(), ""))
	err := w.WriteBatch(context.Background(), lpBatch("m v="))
	want := `write: rejected by InfluxDB (400): unable to parse 'm v=': missing field value`
	if err == nil || err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	if failed := failedMessages(t, err); len(failed) != 1 || failed[0] != want {
		t.Fatalf("failed messages %v", failed)
	}
}

func TestInfluxFaultInjectorResetMidResponse(t *testing.T) {
	fi := influxtest.NewFaultInjector(t, "")
	fi.Plan(func(n int, req influxtest.WriteRequest) influxtest.Fault {
		if n == 0 {
			return influxtest.Fault{Reset: true}
		}
		return influxtest.Pass
	})
	w := newTestInfluxWriter(t, stubConf(fi.URL(), ""))
	if err := w.WriteBatch(context.Background(), lpBatch("m v=1 1", "m v=2 2")); err != nil {
		t.Fatalf("WriteBatch after a reset: %v", err)
	}
	if got := fi.Accepted(); len(got) != 2 {
		t.Errorf("stored %q, want both lines", got)
	}
	if ws := fi.Writes(); len(ws) != 2 || !ws[0].Fault.Reset {
		t.Errorf("writes %+v, want a reset then a pass", ws)
	}
}

func TestInfluxFaultInjectorSlowPastTimeout(t *testing.T) {
	fi := influxtest.NewFaultInjector(t, "")
	fi.Plan(func(n int, req influxtest.WriteRequest) influxtest.Fault {
		return influxtest.Fault{Delay: 2 * time.Second}
	})
	w := newTestInfluxWriter(t, strings.Replace(stubConf(fi.URL(), ""), "timeout: 2s", "timeout: 200ms", 1))
	err := w.WriteBatch(context.Background(), lpBatch("m v=1 1"))
	if !errors.Is(err, service.ErrNotConnected) {
		t.Fatalf("slow server: want ErrNotConnected, got %v", err)
	}
	if got := fi.Accepted(); len(got) != 0 {
		t.Fatalf("stub stored %q though every answer was late", got)
	}
	fi.Plan(func(n int, req influxtest.WriteRequest) influxtest.Fault { return influxtest.Pass })
	// The failed write left a back-off for Connect to answer first; then the check passes.
	var bo *service.ErrBackOff
	if err := w.Connect(context.Background()); !errors.As(err, &bo) {
		t.Fatalf("first Connect after the failed write: %v, want the back-off it owes", err)
	}
	if err := w.Connect(context.Background()); err != nil {
		t.Fatalf("Connect once fast again: %v", err)
	}
	if err := w.WriteBatch(context.Background(), lpBatch("m v=1 1")); err != nil {
		t.Fatalf("WriteBatch once fast again: %v", err)
	}
	if got := fi.Accepted(); len(got) != 1 {
		t.Fatalf("stored %q", got)
	}
}

func TestInfluxFaultInjectorBucketsAPI(t *testing.T) {
	fi := influxtest.NewFaultInjector(t, "")
	fi.EnableBucketsAPI("acme")
	w := newTestInfluxWriter(t, stubConf(fi.URL(), "create_bucket: true\nretention: 720h\n"))
	if err := w.Connect(context.Background()); err != nil {
		t.Fatalf("Connect with create_bucket: %v", err)
	}
	if ret, ok := fi.Bucket("iot_data"); !ok || ret != 720*3600 {
		t.Fatalf("bucket created=%v retention=%d, want 2592000", ok, ret)
	}
	if err := w.WriteBatch(context.Background(), lpBatch("m v=1 1")); err != nil {
		t.Fatalf("write after creating the bucket: %v", err)
	}

	// Without create_bucket a missing bucket is a deployment problem: Connect
	// fails with a back-off and says so, without the token.
	fi2 := influxtest.NewFaultInjector(t, "")
	fi2.EnableBucketsAPI("acme")
	w2 := newTestInfluxWriter(t, stubConf(fi2.URL(), ""))
	err := w2.Connect(context.Background())
	var bo *service.ErrBackOff
	if !errors.As(err, &bo) || !strings.Contains(err.Error(), "bucket or organization does not exist") {
		t.Fatalf("Connect to a missing bucket: %v", err)
	}
	if strings.Contains(err.Error(), "SECRET-TOKEN-42") {
		t.Fatalf("error leaks the token: %v", err)
	}
	if _, ok := fi2.Bucket("iot_data"); ok {
		t.Fatal("bucket created without create_bucket")
	}
}

func TestInfluxConnectBackOffGrows(t *testing.T) {
	fi := influxtest.NewFaultInjector(t, "")
	fi.Plan(func(n int, req influxtest.WriteRequest) influxtest.Fault {
		return influxtest.Fault{Status: 401, Body: `{"code":"unauthorized","message":"unauthorized access"}`}
	})
	w := newTestInfluxWriter(t, stubConf(fi.URL(), ""))
	w.retry.policy.Jitter = 0 // exact waits
	var waits []time.Duration
	for i := 0; i < 4; i++ {
		err := w.Connect(context.Background())
		var bo *service.ErrBackOff
		if !errors.As(err, &bo) {
			t.Fatalf("Connect %d: want ErrBackOff, got %v", i, err)
		}
		if !strings.Contains(err.Error(), "token is missing or invalid") || strings.Contains(err.Error(), "SECRET-TOKEN-42") {
			t.Fatalf("Connect error %q: must name the token problem and not the token", err)
		}
		waits = append(waits, bo.Wait)
	}
	if fmt.Sprint(waits) != "[10ms 20ms 40ms 50ms]" {
		t.Errorf("connect back-off %v, want doubling to the 50ms cap", waits)
	}
	// A write meeting the same 401 reports not connected; nothing fails.
	if err := w.WriteBatch(context.Background(), lpBatch("m v=1 1")); !errors.Is(err, service.ErrNotConnected) {
		t.Fatalf("WriteBatch on 401: %v", err)
	}
}

func TestInfluxCloseEndsRetries(t *testing.T) {
	fi := influxtest.NewFaultInjector(t, "")
	fi.Plan(func(n int, req influxtest.WriteRequest) influxtest.Fault {
		return influxtest.Fault{Status: 503, Header: map[string]string{"Retry-After": "3"}}
	})
	w := newTestInfluxWriter(t, stubConf(fi.URL(), "")+"\n")
	done := make(chan error, 1)
	go func() { done <- w.WriteBatch(context.Background(), lpBatch("m v=1 1")) }()
	for len(fi.Writes()) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-done; !errors.Is(err, service.ErrNotConnected) {
		t.Fatalf("write interrupted by Close: want ErrNotConnected (left unacknowledged), got %v", err)
	}
	if err := w.Connect(context.Background()); !errors.Is(err, service.ErrEndOfInput) {
		t.Fatalf("Connect after Close: %v", err)
	}
}

func TestInfluxEmptyMessagesAndGzip(t *testing.T) {
	fi := influxtest.NewFaultInjector(t, "")
	w := newTestInfluxWriter(t, stubConf(fi.URL(), ""))
	b := lpBatch("m v=1 1\n", "", "m v=2 2\nm v=3 3\n\n", "  \n")
	if err := w.WriteBatch(context.Background(), b); err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}
	if got := strings.Join(fi.Accepted(), "|"); got != "m v=1 1|m v=2 2|m v=3 3" {
		t.Fatalf("stored %q", got)
	}
	ws := fi.Writes()
	if q := ws[0].Query; q.Get("bucket") != "iot_data" || q.Get("org") != "acme" || q.Get("precision") != "ns" {
		t.Errorf("query %v", q)
	}
	if !ws[0].Gzip || ws[0].Authorization != "Token SECRET-TOKEN-42" {
		t.Errorf("request gzip=%v authorization=%q", ws[0].Gzip, ws[0].Authorization)
	}
	if w.counts.written.Load() != 3 {
		t.Errorf("points written %d, want 3", w.counts.written.Load())
	}
}

func TestInfluxShutdownLeavesInFlightUnacked(t *testing.T) {
	fi := influxtest.NewFaultInjector(t, "")
	// Connect's probe passes; every write with lines is throttled for good.
	fi.Plan(func(n int, req influxtest.WriteRequest) influxtest.Fault {
		if len(req.Lines) == 0 {
			return influxtest.Pass
		}
		return influxtest.Fault{Status: 503, Header: map[string]string{"Retry-After": "1"}}
	})
	s := startInfluxStream(t, stubConf(fi.URL(), ""))
	produced := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		defer cancel()
		produced <- s.produce(ctx, lpBatch("m v=1 1", "m v=2 2"))
	}()
	waitFor(t, "a throttled write", func() bool {
		for _, w := range fi.Writes() {
			if len(w.Lines) > 0 {
				return true
			}
		}
		return false
	})
	// The engine gives up waiting after 1s: the write in its back-off ends
	// and its messages stay unacknowledged (redelivered by the input).
	if err := s.stream.StopWithin(time.Second); err != nil {
		t.Logf("StopWithin: %v", err)
	}
	if err := <-produced; err == nil {
		t.Fatal("batch acknowledged though InfluxDB never stored it")
	}
	if got := s.capture.got(); len(got) != 0 {
		t.Fatalf("error branch received %+v at shutdown", got)
	}
	if got := fi.Accepted(); len(got) != 0 {
		t.Fatalf("stub stored %q", got)
	}
}

func TestInfluxTLS(t *testing.T) {
	var got []string
	var mu sync.Mutex
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.URL.Path)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	// Without the tls block the self-signed certificate is refused: an
	// outage to retry, not a reason to fail messages.
	plain := newTestInfluxWriter(t, stubConf(srv.URL, ""))
	var bo *service.ErrBackOff
	if err := plain.Connect(context.Background()); !errors.As(err, &bo) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Connect to an untrusted certificate: %v", err)
	}
	w := newTestInfluxWriter(t, stubConf(srv.URL, "tls:\n  enabled: true\n  skip_cert_verify: true\n"))
	if err := w.Connect(context.Background()); err != nil {
		t.Fatalf("Connect over TLS: %v", err)
	}
	if err := w.WriteBatch(context.Background(), lpBatch("m v=1 1")); err != nil {
		t.Fatalf("WriteBatch over TLS: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[1] != "/api/v2/write" {
		t.Fatalf("TLS server saw %v, want the probe and one write", got)
	}
}

func TestInfluxConnectProbeAnswers(t *testing.T) {
	cases := []struct {
		name   string
		fault  influxtest.Fault
		wantOK bool
		reason string
	}{
		{"1.8 204", influxtest.Pass, true, ""},
		{"2.x 400 writing requires points", influxtest.Fault{Status: 400, Body: `{"code":"invalid","message":"writing requires points"}`}, true, ""},
		{"403", influxtest.Fault{Status: 403, Body: `{"code":"forbidden","message":"insufficient permissions for write"}`}, false, "(403: insufficient permissions for write): the token may not write to this bucket"},
		{"404 org", influxtest.Fault{Status: 404, Body: `{"code":"not found","message":"organization name \"acme\" not found"}`}, false, "the bucket or organization does not exist"},
		{"503", influxtest.Fault{Status: 503}, false, "is not accepting writes (503: Service Unavailable, application/json)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fi := influxtest.NewFaultInjector(t, "")
			fi.Plan(func(n int, req influxtest.WriteRequest) influxtest.Fault { return c.fault })
			w := newTestInfluxWriter(t, stubConf(fi.URL(), ""))
			err := w.Connect(context.Background())
			if c.wantOK {
				if err != nil {
					t.Fatalf("Connect: %v", err)
				}
			} else {
				var bo *service.ErrBackOff
				if !errors.As(err, &bo) || !strings.Contains(err.Error(), c.reason) {
					t.Fatalf("Connect: %v, want a back-off error containing %q", err, c.reason)
				}
			}
			if ws := fi.Writes(); len(ws) != 1 || len(ws[0].Lines) != 0 {
				t.Fatalf("probe requests %+v, want one write without lines", ws)
			}
		})
	}
}

// FuzzInfluxClassify feeds arbitrary server answers to the classification:
// it must not panic, must keep the reason on one bounded line, and must never
// call stored what is not a 204, nor a data error what is a throttling, outage,
// deployment status or an answer without InfluxDB's error shape.
func FuzzInfluxClassify(f *testing.F) {
	f.Add(400, "application/json", `{"code":"invalid","message":"unable to parse 'x'"}`, "", "")
	f.Add(500, "application/json", `{"error":"partial write: field type conflict"}`, "", "")
	f.Add(429, "", "", "12", "")
	f.Add(503, "", "", "Wed, 21 Oct 2015 07:28:00 GMT", "")
	f.Add(400, "text/html", "unable to parse", "", "")
	f.Add(422, "", "", "", "partial write: x")
	f.Fuzz(func(t *testing.T, status int, ctype, body, retryAfter, influxErr string) {
		h := http.Header{}
		h.Set("Retry-After", retryAfter)
		h.Set("Content-Type", ctype)
		if influxErr != "" {
			h.Set("X-Influxdb-Error", influxErr)
		}
		if ta := transportAnswer(errors.New(body + "x")); strings.ContainsAny(ta.message, "\n\r") || ta.outcome != outcomeOutage {
			t.Fatalf("transport error %q: %+v", body, ta)
		}
		a := classifyAnswer(status, h, []byte(body))
		if strings.ContainsAny(a.message, "\n\r") || len(a.message) > 1100 {
			t.Fatalf("reason not one bounded line: %q", a.message)
		}
		if a.retryAfter < 0 {
			t.Fatalf("negative Retry-After %v", a.retryAfter)
		}
		if a.outcome == outcomeStored && status != 204 {
			t.Fatalf("status %d counted as stored", status)
		}
		if a.outcome == outcomeRejected && !a.influx {
			t.Fatalf("an answer without InfluxDB's error shape rejected points: %d %q", status, body)
		}
		switch status {
		case 401, 403, 404, 429, 502, 503, 504:
			if a.outcome == outcomeRejected || a.outcome == outcomeStored {
				t.Fatalf("status %d classified as %d", status, a.outcome)
			}
		}
	})
}
