package outputs

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/preservarium/iot-ingestor/internal/meta"
	"github.com/preservarium/iot-ingestor/internal/testkit/influxtest"
)

// These tests run the output against a real InfluxDB 1.8 started by
// internal/testkit/influxtest (build it with scripts/install-influxdb.sh).

const itDB = "iot_data"

// captureSinks holds what the influx_test_capture outputs received, by id:
// the error branch of the engine-level tests.
var captureSinks sync.Map // id -> *captureSink

type captureSink struct {
	mu   sync.Mutex
	msgs []capturedMsg
}

type capturedMsg struct {
	body, fallbackErr string
}

func (c *captureSink) Connect(context.Context) error { return nil }
func (c *captureSink) Close(context.Context) error   { return nil }
func (c *captureSink) WriteBatch(_ context.Context, b service.MessageBatch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range b {
		body, _ := m.AsBytes()
		fe, _ := m.MetaGet("fallback_error")
		c.msgs = append(c.msgs, capturedMsg{string(body), fe})
	}
	return nil
}

func (c *captureSink) got() []capturedMsg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]capturedMsg(nil), c.msgs...)
}

func init() {
	service.MustRegisterBatchOutput("influx_test_capture",
		service.NewConfigSpec().Fields(service.NewStringField("id")),
		func(conf *service.ParsedConfig, _ *service.Resources) (service.BatchOutput, service.BatchPolicy, int, error) {
			id, err := conf.FieldString("id")
			if err != nil {
				return nil, service.BatchPolicy{}, 0, err
			}
			s, _ := captureSinks.LoadOrStore(id, &captureSink{})
			return s.(*captureSink), service.BatchPolicy{}, 1, nil
		})
}

// itWriterConf is a writer config against a real server with quick retries.
func itWriterConf(url, token, bucket, extra string) string {
	return fmt.Sprintf(`
url: %s
token: %q
bucket: %s
timeout: 5s
retry:
  max_retries: 2
  initial_interval: 20ms
  max_interval: 200ms
%s`, url, token, bucket, extra)
}

// influxStream is a running stream: producer -> fallback[influxdb_v2, capture].
type influxStream struct {
	produce service.MessageBatchHandlerFunc
	mux     *http.ServeMux
	capture *captureSink
	stream  *service.Stream
	done    chan error
}

func startInfluxStream(t *testing.T, writerConf string) *influxStream {
	t.Helper()
	id := t.Name()
	sink := &captureSink{}
	captureSinks.Store(id, sink)
	t.Cleanup(func() { captureSinks.Delete(id) })

	indented := "      " + strings.ReplaceAll(strings.TrimSpace(writerConf), "\n", "\n      ")
	b := service.NewStreamBuilder()
	mux := http.NewServeMux()
	b.SetHTTPMux(mux)
	if err := b.SetLoggerYAML("level: warn"); err != nil {
		t.Fatal(err)
	}
	if err := b.SetMetricsYAML("json_api: {}"); err != nil {
		t.Fatal(err)
	}
	produce, err := b.AddBatchProducerFunc()
	if err != nil {
		t.Fatal(err)
	}
	out := fmt.Sprintf("fallback:\n  - influxdb_v2:\n%s\n  - influx_test_capture:\n      id: %q\n", indented, id)
	if err := b.AddOutputYAML(out); err != nil {
		t.Fatalf("output config: %v\n%s", err, out)
	}
	stream, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	s := &influxStream{produce: produce, mux: mux, capture: sink, stream: stream, done: make(chan error, 1)}
	go func() { s.done <- stream.Run(context.Background()) }()
	t.Cleanup(func() {
		if err := stream.StopWithin(10 * time.Second); err != nil {
			t.Logf("stopping stream: %v", err)
		}
	})
	return s
}

// ready returns the /ready status code and body.
func (s *influxStream) ready() (int, string) {
	rec := httptest.NewRecorder()
	s.mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ready", nil))
	return rec.Code, rec.Body.String()
}

// metrics returns the stream's metrics (json_api exporter): name -> a
// number for counters and gauges, an object of percentiles for timers.
func (s *influxStream) metrics(t *testing.T) map[string]any {
	t.Helper()
	rec := httptest.NewRecorder()
	s.mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	raw := map[string]any{}
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
		t.Fatalf("metrics answer %q: %v", rec.Body.String(), err)
	}
	// Keys carry labels (`name{label="",path="root.output.fallback.0"}`);
	// only the influxdb_v2 output reports influxdb_* metrics.
	out := map[string]any{}
	for k, v := range raw {
		name, _, _ := strings.Cut(k, "{")
		out[name] = v
	}
	return out
}

// waitFor polls cond for up to 60s; a liveness bound, not a speed check.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after 60s waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestInfluxIntegrationExactValuesAndTypes(t *testing.T) {
	srv := influxtest.Start(t, influxtest.Options{})
	srv.CreateDatabase(itDB)
	w := newTestInfluxWriter(t, itWriterConf(srv.URL(), srv.Token(), itDB, ""))
	if err := w.Connect(context.Background()); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	batch := lpBatch(
		`reading,device_id=282c02424eed temperature=21.5,humidity=48,count=7i,ok=true,label="a \"quoted\" \\ back, comma=x" 1750000000123456789`,
		`dev\ ice\,x,tag\ k=v\=1 f=-0.25 1750000000000000001`+"\n"+`dev\ ice\,x,tag\ k=v\=2 f=1e-07 1750000000000000002`,
	)
	if err := w.WriteBatch(context.Background(), batch); err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}

	rows := srv.Query(itDB, `SELECT * FROM reading`)
	if len(rows) != 1 || len(rows[0].Values) != 1 {
		t.Fatalf("reading rows: %+v", rows)
	}
	got := rows[0].Rows()[0]
	want := map[string]any{
		"time": json.Number("1750000000123456789"), "device_id": "282c02424eed",
		"temperature": json.Number("21.5"), "humidity": json.Number("48"), "count": json.Number("7"),
		"ok": true, "label": `a "quoted" \ back, comma=x`,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("reading.%s = %#v, want %#v", k, got[k], v)
		}
	}
	types := srv.FieldTypes(itDB, "reading")
	for k, v := range map[string]string{"temperature": "float", "humidity": "float", "count": "integer", "ok": "boolean", "label": "string"} {
		if types[k] != v {
			t.Errorf("field %s stored as %q, want %q", k, types[k], v)
		}
	}
	rows = srv.Query(itDB, `SELECT * FROM "dev ice,x"`)
	if len(rows) != 1 || len(rows[0].Values) != 2 {
		t.Fatalf("escaped measurement rows: %+v", rows)
	}
	r := rows[0].Rows()
	if r[0]["tag k"] != "v=1" || r[0]["f"] != json.Number("-0.25") || r[1]["tag k"] != "v=2" || r[1]["f"] != json.Number("1e-7") {
		t.Errorf("escaped rows %v", r)
	}
	if w.counts.written.Load() != 3 {
		t.Errorf("points written %d, want 3", w.counts.written.Load())
	}

	// precision us: the timestamp is read as microseconds.
	wus := newTestInfluxWriter(t, itWriterConf(srv.URL(), srv.Token(), itDB, "precision: us\ngzip: false"))
	if err := wus.WriteBatch(context.Background(), lpBatch("prec v=1 1750000000123456")); err != nil {
		t.Fatalf("WriteBatch us: %v", err)
	}
	rows = srv.Query(itDB, `SELECT v FROM prec`)
	if len(rows) != 1 || rows[0].Values[0][0] != json.Number("1750000000123456000") {
		t.Errorf("precision us stored %+v", rows)
	}
}

func TestInfluxIntegrationBadLinesIsolated(t *testing.T) {
	srv := influxtest.Start(t, influxtest.Options{})
	srv.CreateDatabase(itDB)
	w := newTestInfluxWriter(t, itWriterConf(srv.URL(), srv.Token(), itDB, ""))
	bad := map[int]string{4: "bad line here", 11: "m,=x f=1 11", 17: "m f=1 not-a-time"}
	var lines []string
	for i := 0; i < 20; i++ {
		if l, ok := bad[i]; ok {
			lines = append(lines, l)
			continue
		}
		lines = append(lines, fmt.Sprintf("m,dev=d%d v=%d %d", i, i, 1000+i))
	}
	failed := failedMessages(t, w.WriteBatch(context.Background(), lpBatch(lines...)))
	if len(failed) != len(bad) {
		t.Fatalf("failed %v, want exactly %v", failed, bad)
	}
	for i, l := range bad {
		// Alone in its request, a bad line is answered without "partial write".
		prefix := "write: rejected by InfluxDB (400): unable to parse '" + l + "'"
		if !strings.HasPrefix(failed[i], prefix) {
			t.Errorf("message %d error %q, want prefix %q", i, failed[i], prefix)
		}
	}
	if n := srv.Count(itDB, "m", "v"); n != 17 {
		t.Errorf("stored %d points, want the 17 good ones", n)
	}
	if w.counts.rejected.Load() != 3 || w.counts.split.Load() == 0 {
		t.Errorf("counters rejected=%d split=%d", w.counts.rejected.Load(), w.counts.split.Load())
	}
}

// Messages that carry an error from an earlier step (a rejected reading) are never written,
// even when their content would parse: each fails with its own error, and the rest are stored.
func TestInfluxIntegrationErroredMessagesNotWritten(t *testing.T) {
	srv := influxtest.Start(t, influxtest.Options{})
	srv.CreateDatabase(itDB)
	w := newTestInfluxWriter(t, itWriterConf(srv.URL(), srv.Token(), itDB, ""))
	var lines []string
	for i := 0; i < 10; i++ {
		lines = append(lines, fmt.Sprintf("m,dev=d%d v=%d %d", i, i, 1000+i))
	}
	batch := lpBatch(lines...)
	carried := map[int]string{2: "validation: device_id is empty", 7: "decode: message is not JSON: unexpected end"}
	for i, e := range carried {
		batch[i].SetError(errors.New(e))
	}
	failed := failedMessages(t, w.WriteBatch(context.Background(), batch))
	if len(failed) != len(carried) {
		t.Fatalf("failed %v, want exactly %v", failed, carried)
	}
	for i, e := range carried {
		if failed[i] != e {
			t.Errorf("message %d failed with %q, want its own error %q", i, failed[i], e)
		}
	}
	if n := srv.Count(itDB, "m", "v"); n != 8 {
		t.Errorf("stored %d points, want the 8 without an error", n)
	}
	if w.counts.rejected.Load() != 0 {
		t.Errorf("counted %d rejections by InfluxDB, want 0", w.counts.rejected.Load())
	}

	// A batch of errored messages only: each fails with its own reason, nothing is stored.
	single := lpBatch("m,dev=x v=1 2000")
	single[0].SetError(errors.New("validation: values is empty"))
	err := w.WriteBatch(context.Background(), single)
	if err == nil || err.Error() != "validation: values is empty" {
		t.Fatalf("one errored message: error %v, want its own reason", err)
	}
	if n := srv.Count(itDB, "m", "v"); n != 8 {
		t.Errorf("stored %d points after an errored-only batch, want still 8", n)
	}
}

func TestInfluxIntegrationFieldTypeConflicts(t *testing.T) {
	srv := influxtest.Start(t, influxtest.Options{})
	srv.CreateDatabase(itDB)
	w := newTestInfluxWriter(t, itWriterConf(srv.URL(), srv.Token(), itDB, ""))

	t.Run("against existing data", func(t *testing.T) {
		if code, body := srv.WriteLP(itDB, "conf,dev=x f=1.5 1\n"); code != http.StatusNoContent {
			t.Fatalf("seed write: %d %s", code, body)
		}
		var lines []string
		for i := 0; i < 10; i++ {
			if i == 6 {
				lines = append(lines, `conf,dev=y f="text" 100`)
			} else {
				lines = append(lines, fmt.Sprintf("conf,dev=y f=%d.5 %d", i, 200+i))
			}
		}
		failed := failedMessages(t, w.WriteBatch(context.Background(), lpBatch(lines...)))
		if len(failed) != 1 || !strings.HasPrefix(failed[6], "write: rejected by InfluxDB (400): partial write: field type conflict: input field \"f\" on measurement \"conf\" is type string, already exists as type float") {
			t.Fatalf("failed %v, want only message 6 with the conflict", failed)
		}
		if n := srv.Count(itDB, "conf", "f"); n != 10 {
			t.Errorf("stored %d, want seed + 9", n)
		}
	})

	t.Run("inside one batch", func(t *testing.T) {
		// Integers, a string and a boolean for one new field: the server keeps
		// one type; every message must end stored or failed with the reason.
		vals := []string{"1i", `"s"`, "3i", "true", "5i", "6i", `"t"`, "8i"}
		var lines []string
		for i, v := range vals {
			lines = append(lines, fmt.Sprintf("intra,k=k%d v=%s %d", i, v, 10+i))
		}
		failed := failedMessages(t, w.WriteBatch(context.Background(), lpBatch(lines...)))
		if len(failed) == 0 {
			t.Fatal("no message failed though the batch mixes types of one field")
		}
		stored := map[string]bool{}
		for _, ser := range srv.Query(itDB, `SELECT v FROM intra GROUP BY k`) {
			stored[ser.Tags["k"]] = len(ser.Values) == 1
		}
		for i := range vals {
			k := fmt.Sprintf("k%d", i)
			e, isFailed := failed[i]
			switch {
			case isFailed && stored[k]:
				t.Errorf("message %d both failed (%s) and stored", i, e)
			case !isFailed && !stored[k]:
				t.Errorf("message %d neither failed nor stored", i)
			case isFailed && !strings.Contains(e, "field type conflict"):
				t.Errorf("message %d failed with %q, want the type conflict", i, e)
			}
		}
	})
}

func TestInfluxIntegrationFallbackGetsExactlyRejected(t *testing.T) {
	srv := influxtest.Start(t, influxtest.Options{})
	srv.CreateDatabase(itDB)
	s := startInfluxStream(t, itWriterConf(srv.URL(), srv.Token(), itDB, ""))
	var lines []string
	for i := 0; i < 10; i++ {
		if i == 2 || i == 9 {
			lines = append(lines, fmt.Sprintf("fb v=%d not-a-time", i))
		} else {
			lines = append(lines, fmt.Sprintf("fb v=%d %d", i, i))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.produce(ctx, lpBatch(lines...)); err != nil {
		t.Fatalf("produce: %v", err)
	}
	got := s.capture.got()
	if len(got) != 2 || got[0].body != lines[2] || got[1].body != lines[9] {
		t.Fatalf("error branch received %+v, want exactly messages 2 and 9", got)
	}
	for _, m := range got {
		if !strings.HasPrefix(m.fallbackErr, "write: rejected by InfluxDB (400): unable to parse '"+m.body+"': bad timestamp") {
			t.Errorf("fallback_error %q", m.fallbackErr)
		}
	}
	if n := srv.Count(itDB, "fb", "v"); n != 8 {
		t.Errorf("stored %d, want 8", n)
	}
	m := s.metrics(t)
	if v, ok := m["influxdb_write_retries"]; ok && v != float64(0) {
		t.Errorf("metric influxdb_write_retries = %v, want 0", v)
	}
	for name, want := range map[string]float64{
		"influxdb_points_written": 8, "influxdb_points_rejected": 2, "influxdb_batch_size": 10,
	} {
		if got, ok := m[name].(float64); !ok || got != want {
			t.Errorf("metric %s = %v, want %v (all: %v)", name, m[name], want, m)
		}
	}
	// Isolating 2 bad lines among 10 takes several splits; each accepted
	// request is timed.
	if got, _ := m["influxdb_batches_split"].(float64); got < 2 {
		t.Errorf("metric influxdb_batches_split = %v, want >= 2", m["influxdb_batches_split"])
	}
	if _, ok := m["influxdb_write_latency_ns"].(map[string]any); !ok {
		t.Errorf("metric influxdb_write_latency_ns = %v, want a timer", m["influxdb_write_latency_ns"])
	}
}

func TestInfluxIntegrationDeploymentProblemsThenFixed(t *testing.T) {
	cases := []struct {
		name, token, bucket string
		fix                 func(srv *influxtest.Server)
	}{
		{"wrong token", "writer:pw", itDB, func(srv *influxtest.Server) {
			srv.Query("", `CREATE USER "writer" WITH PASSWORD 'pw'`)
			srv.Query("", `GRANT WRITE ON "iot_data" TO "writer"`)
		}},
		{"unknown database", "", "late_db", func(srv *influxtest.Server) { srv.CreateDatabase("late_db") }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := influxtest.Start(t, influxtest.Options{Auth: true})
			srv.CreateDatabase(itDB)
			token := c.token
			if token == "" {
				token = srv.Token()
			}
			s := startInfluxStream(t, itWriterConf(srv.URL(), token, c.bucket, ""))
			produced := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
				defer cancel()
				produced <- s.produce(ctx, lpBatch("dep v=1 1", "dep v=2 2", "dep v=3 3"))
			}()
			// Not ready while the server refuses: the connection check fails.
			waitFor(t, "/ready to answer 503 naming the refusal", func() bool {
				code, body := s.ready()
				return code == http.StatusServiceUnavailable && strings.Contains(body, "refuses writes")
			})
			// Let a few connection checks fail: still no ack, no error branch.
			time.Sleep(500 * time.Millisecond)
			select {
			case err := <-produced:
				t.Fatalf("batch finished (%v) while InfluxDB refused it", err)
			default:
			}
			if got := s.capture.got(); len(got) != 0 {
				t.Fatalf("error branch received %+v on a deployment problem", got)
			}
			if _, body := s.ready(); strings.Contains(body, token) {
				t.Fatalf("/ready leaks the token: %s", body)
			}

			c.fix(srv)
			select {
			case err := <-produced:
				if err != nil {
					t.Fatalf("produce after the fix: %v", err)
				}
			case <-time.After(90 * time.Second):
				t.Fatal("batch not written 90s after the fix")
			}
			if got := s.capture.got(); len(got) != 0 {
				t.Fatalf("error branch received %+v", got)
			}
			if n := srv.Count(c.bucket, "dep", "v"); n != 3 {
				t.Fatalf("stored %d, want 3", n)
			}
			waitFor(t, "/ready to answer 200", func() bool { code, _ := s.ready(); return code == http.StatusOK })
		})
	}
}

func TestInfluxIntegrationRestartLosesNothing(t *testing.T) {
	srv := influxtest.Start(t, influxtest.Options{})
	srv.CreateDatabase(itDB)
	s := startInfluxStream(t, itWriterConf(srv.URL(), srv.Token(), itDB, ""))
	const batches, perBatch = 200, 10
	var acked sync.WaitGroup
	acked.Add(1)
	progress := make(chan int, batches)
	errs := make(chan error, 1)
	go func() {
		defer acked.Done()
		for b := 0; b < batches; b++ {
			lines := make([]string, perBatch)
			for i := range lines {
				n := b*perBatch + i
				lines[i] = fmt.Sprintf("restart,dev=d%d v=%di %d", n%7, n, 1_000_000+n)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			err := s.produce(ctx, lpBatch(lines...))
			cancel()
			if err != nil {
				errs <- fmt.Errorf("batch %d: %w", b, err)
				return
			}
			progress <- b
		}
	}()
	for b := range progress {
		if b == 40 {
			break
		}
	}
	srv.Stop()
	waitFor(t, "/ready to answer 503 while InfluxDB is down", func() bool {
		code, _ := s.ready()
		return code == http.StatusServiceUnavailable
	})
	// Through the outage influxdb_up stays 0 and influxdb_write_retries keeps rising: the
	// reconnect checks while data waits count as failed attempts too.
	r0, _ := s.metrics(t)["influxdb_write_retries"].(float64)
	time.Sleep(2 * time.Second)
	during := s.metrics(t)
	if r1, _ := during["influxdb_write_retries"].(float64); r1 <= r0 {
		t.Errorf("influxdb_write_retries %v, then %v 2 s later in the outage: not rising", r0, r1)
	}
	if up := during["influxdb_up"]; up != float64(0) {
		t.Errorf("influxdb_up = %v while InfluxDB is down, want 0", up)
	}
	srv.Restart()
	acked.Wait()
	if up := s.metrics(t)["influxdb_up"]; up != float64(1) {
		t.Errorf("influxdb_up = %v once the writes were stored again, want 1", up)
	}
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	if got := s.capture.got(); len(got) != 0 {
		t.Fatalf("error branch received %d messages during the restart, first %+v", len(got), got[0])
	}
	if n := srv.Count(itDB, "restart", "v"); n != batches*perBatch {
		t.Fatalf("stored %d points, want %d", n, batches*perBatch)
	}
	if v, _ := s.metrics(t)["influxdb_write_retries"].(float64); v < 1 {
		t.Errorf("influxdb_write_retries = %v: the outage was not retried", v)
	}
}

func TestInfluxIntegration413Split(t *testing.T) {
	srv := influxtest.Start(t, influxtest.Options{MaxBodySize: 4096})
	srv.CreateDatabase(itDB)
	// gzip off: 1.8 compares the declared length of the body it receives.
	w := newTestInfluxWriter(t, itWriterConf(srv.URL(), srv.Token(), itDB, "gzip: false"))
	var lines []string
	for i := 0; i < 200; i++ {
		lines = append(lines, fmt.Sprintf("big,dev=device-%03d value=%d.25,note=\"padding-padding\" %d", i, i, 5000+i))
	}
	huge := 57
	lines[huge] = fmt.Sprintf("big,dev=huge value=1,note=%q 4999", strings.Repeat("x", 5000))
	failed := failedMessages(t, w.WriteBatch(context.Background(), lpBatch(lines...)))
	if len(failed) != 1 || !strings.HasPrefix(failed[huge], fmt.Sprintf("write: too large for InfluxDB (413): message of %d bytes", len(lines[huge]))) {
		t.Fatalf("failed %v, want only the oversized message %d", failed, huge)
	}
	if n := srv.Count(itDB, "big", "value"); n != 199 {
		t.Fatalf("stored %d, want 199", n)
	}
	if w.counts.split.Load() < 3 {
		t.Errorf("batches split %d: 13 KiB at a 4 KiB limit needs several", w.counts.split.Load())
	}
}

// A batch over max_request_bytes is split before it is sent, every request under the cap, and a
// single message over the cap fails as a write error naming the setting; the rest is stored.
func TestInfluxIntegrationMaxRequestBytes(t *testing.T) {
	srv := influxtest.Start(t, influxtest.Options{})
	srv.CreateDatabase(itDB)
	proxy := influxtest.NewFaultInjector(t, srv.URL()) // passes every write on, recording it
	const limit = 2048
	w := newTestInfluxWriter(t, itWriterConf(proxy.URL(), srv.Token(), itDB, fmt.Sprintf("max_request_bytes: %d", limit)))
	var lines []string
	total := 0
	for i := 0; i < 100; i++ {
		l := fmt.Sprintf("cap,dev=device-%03d value=%d.5,note=\"padding-padding\" %d", i, i, 7000+i)
		lines = append(lines, l)
		total += len(l) + 1
	}
	huge := 40
	lines[huge] = fmt.Sprintf("cap,dev=huge value=1,note=%q 6999", strings.Repeat("x", limit))
	failed := failedMessages(t, w.WriteBatch(context.Background(), lpBatch(lines...)))
	want := fmt.Sprintf("write: message of %d bytes exceeds max_request_bytes (%d)", len(lines[huge])+1, limit)
	if len(failed) != 1 || !strings.HasPrefix(failed[huge], want) {
		t.Fatalf("failed %v, want only message %d with %q", failed, huge, want)
	}
	if n := srv.Count(itDB, "cap", "value"); n != 99 {
		t.Fatalf("stored %d, want the 99 under the cap", n)
	}
	requests := 0
	for _, r := range proxy.Writes() {
		size := 0
		for _, l := range r.Lines {
			size += len(l) + 1
		}
		if size > limit {
			t.Errorf("a request of %d bytes was sent, over max_request_bytes %d", size, limit)
		}
		if len(r.Lines) > 0 {
			requests++
		}
	}
	if requests < total/limit {
		t.Errorf("%d requests for %d bytes at a %d-byte cap", requests, total, limit)
	}
	if w.counts.retries.Load() != 0 {
		t.Errorf("%d retries: a split is not a retry", w.counts.retries.Load())
	}
}

func TestInfluxIntegration503Throttled(t *testing.T) {
	srv := influxtest.Start(t, influxtest.Options{MaxConcurrentWriteLimit: 1, MaxEnqueuedWriteLimit: 1, EnqueuedWriteTimeout: time.Millisecond})
	srv.CreateDatabase(itDB)
	// 1.8 throttles its 1.x /write endpoint only: the fault injector passes
	// every write through to it unchanged but for the endpoint, so the 503s
	// ("request throttled") are the real server's.
	fi := influxtest.NewFaultInjector(t, srv.URL())
	fi.RouteWritesToV1()
	w := newTestInfluxWriter(t, itWriterConf(fi.URL(), srv.Token(), itDB, ""))
	const writers, batches, perBatch = 6, 8, 2000
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for b := 0; b < batches; b++ {
				lines := make([]string, perBatch)
				for i := range lines {
					n := (g*batches+b)*perBatch + i
					lines[i] = fmt.Sprintf("thr,g=g%d v=%d %d", g, n, n)
				}
				batch := lpBatch(lines...)
				// As the engine does: on not connected, reconnect and resend.
				for {
					err := w.WriteBatch(context.Background(), batch)
					if err == nil {
						break
					}
					if !errors.Is(err, service.ErrNotConnected) {
						errs <- fmt.Errorf("writer %d batch %d: %v", g, b, err)
						return
					}
					for w.Connect(context.Background()) != nil {
						time.Sleep(20 * time.Millisecond)
					}
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := srv.Count(itDB, "thr", "v"); n != writers*batches*perBatch {
		t.Fatalf("stored %d, want %d", n, writers*batches*perBatch)
	}
	if w.counts.retries.Load() == 0 {
		t.Error("no write was retried: the server never throttled, the test proves nothing")
	}
	if w.counts.rejected.Load() != 0 {
		t.Errorf("%d points rejected for throttling", w.counts.rejected.Load())
	}
}

// BenchmarkInfluxOutput compares the output with plain concurrent HTTP posts
// of the same pre-encoded line protocol against the same real server, in the
// same run: each iteration writes the workload once each way (order
// alternating), and the metrics report both rates and their ratio.
//
//	go test ./outputs -run '^$' -bench BenchmarkInfluxOutput -benchtime 3x
func BenchmarkInfluxOutput(b *testing.B) {
	srv := influxtest.Start(b, influxtest.Options{})
	srv.CreateDatabase(itDB)
	const concurrency = 8 // the output's default max_in_flight
	// Points written each way per iteration: enough batches of 5,000 that
	// every slice below keeps all workers busy for a few waves.
	pointsPerRound := map[int]int{100: 200_000, 5000: 640_000}

	for _, size := range []int{100, 5000} {
		for _, gz := range []bool{false, true} {
			b.Run(fmt.Sprintf("batch=%d/gzip=%v", size, gz), func(b *testing.B) {
				nBatches := pointsPerRound[size] / size
				batches := make([]service.MessageBatch, nBatches)
				bodies := make([][]byte, nBatches)
				for i := range batches {
					lines := make([]string, size)
					for j := range lines {
						n := i*size + j
						lines[j] = fmt.Sprintf("bench,device_id=dev%04d temperature=%d.5,humidity=48.25,count=%di %d",
							n%1000, n%40, n, 1_750_000_000_000_000_000+int64(n)*1000)
					}
					batches[i] = lpBatch(lines...)
					body := []byte(strings.Join(lines, "\n") + "\n")
					if gz {
						body = gzipBytes(b, body)
					}
					bodies[i] = body
				}
				w := newTestInfluxWriter(b, itWriterConf(srv.URL(), srv.Token(), itDB, fmt.Sprintf("gzip: %v\nmax_in_flight: %d", gz, concurrency)))
				if err := w.Connect(context.Background()); err != nil {
					b.Fatal(err)
				}
				raw := &http.Client{Transport: &http.Transport{MaxIdleConns: 2 * concurrency, MaxIdleConnsPerHost: 2 * concurrency, DisableCompression: true}}
				rawURL := srv.URL() + "/api/v2/write?bucket=" + itDB + "&precision=ns"

				// The workload is cut into slices written alternately by the
				// output and by raw posts (ABBA order), so load from other
				// processes on a shared machine hits both sides alike.
				slices := max(1, min(10, nBatches/(2*concurrency)))
				per := (nBatches + slices - 1) / slices
				runOutput := func(lo, hi int) time.Duration {
					return runConcurrently(b, concurrency, hi-lo, func(i int) error {
						return w.WriteBatch(context.Background(), batches[lo+i])
					})
				}
				runRaw := func(lo, hi int) time.Duration {
					return runConcurrently(b, concurrency, hi-lo, func(i int) error {
						req, err := http.NewRequest(http.MethodPost, rawURL, bytes.NewReader(bodies[lo+i]))
						if err != nil {
							return err
						}
						req.Header.Set("Authorization", "Token "+srv.Token())
						if gz {
							req.Header.Set("Content-Encoding", "gzip")
						}
						resp, err := raw.Do(req)
						if err != nil {
							return err
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						_ = resp.Body.Close()
						if resp.StatusCode != http.StatusNoContent {
							return fmt.Errorf("raw post: status %d", resp.StatusCode)
						}
						return nil
					})
				}
				// Warm up both paths (series creation, connections).
				runRaw(0, nBatches)
				runOutput(0, nBatches)

				var tOut, tRaw time.Duration
				b.ResetTimer()
				for n := 0; n < b.N; n++ {
					for k := 0; k < slices; k++ {
						lo, hi := k*per, min((k+1)*per, nBatches)
						if lo >= hi {
							break
						}
						if (n*slices+k)%2 == 0 {
							tRaw += runRaw(lo, hi)
							tOut += runOutput(lo, hi)
						} else {
							tOut += runOutput(lo, hi)
							tRaw += runRaw(lo, hi)
						}
					}
				}
				b.StopTimer()
				points := float64(b.N * nBatches * size)
				outRate, rawRate := points/tOut.Seconds(), points/tRaw.Seconds()
				b.ReportMetric(outRate, "output_points/s")
				b.ReportMetric(rawRate, "raw_points/s")
				b.ReportMetric(100*outRate/rawRate, "output_vs_raw_%")
			})
		}
	}
}

// runConcurrently runs fn(0..n-1) on `workers` goroutines and returns the
// elapsed time; any error fails the benchmark.
func runConcurrently(b *testing.B, workers, n int, fn func(i int) error) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	start := time.Now()
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	return d
}

func gzipBytes(b *testing.B, p []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if _, err := zw.Write(p); err != nil {
		b.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// iot_store_delay_seconds is observed per stored message from its Kafka record's time.
func TestInfluxIntegrationStoreDelay(t *testing.T) {
	srv := influxtest.Start(t, influxtest.Options{})
	srv.CreateDatabase(itDB)
	s := startInfluxStream(t, itWriterConf(srv.URL(), srv.Token(), itDB, ""))
	batch := lpBatch("delay v=1 1", "delay v=2 2")
	for _, m := range batch {
		m.MetaSetMut(meta.KafkaTimestampMs, time.Now().Add(-90*time.Second).UnixMilli())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.produce(ctx, batch); err != nil {
		t.Fatalf("produce: %v", err)
	}
	// json_api reports timers in nanoseconds with percentiles.
	timer, ok := s.metrics(t)["iot_store_delay_seconds"].(map[string]any)
	if !ok {
		t.Fatalf("iot_store_delay_seconds = %v, want a timer", s.metrics(t)["iot_store_delay_seconds"])
	}
	if p50, _ := timer["p50"].(float64); p50 < float64(90*time.Second) || p50 > float64(10*time.Minute) {
		t.Errorf("iot_store_delay_seconds p50 = %v ns, want about 90 s (%v)", p50, timer)
	}
}

// A bucket interpolated per message: batches are written per bucket, and a message naming a
// bucket InfluxDB does not have fails as a write error with the reason; the others are stored.
func TestInfluxIntegrationRoutedBuckets(t *testing.T) {
	srv := influxtest.Start(t, influxtest.Options{})
	srv.CreateDatabase("site_a")
	srv.CreateDatabase("site_b")
	s := startInfluxStream(t, itWriterConf(srv.URL(), srv.Token(), `'site_${! meta("site") }'`, ""))
	waitFor(t, "/ready to answer 200 (routed: InfluxDB's /health)", func() bool { code, _ := s.ready(); return code == http.StatusOK })
	sites := []string{"a", "b", "missing", "a", "b", "a", "missing", "b"}
	var lines []string
	for i := range sites {
		lines = append(lines, fmt.Sprintf("routed,n=%d v=%d %d", i, i, 100+i))
	}
	batch := lpBatch(lines...)
	for i, m := range batch {
		m.MetaSetMut("site", sites[i])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.produce(ctx, batch); err != nil {
		t.Fatalf("produce: %v", err)
	}
	got := s.capture.got()
	if len(got) != 2 || got[0].body != lines[2] || got[1].body != lines[6] {
		t.Fatalf("error branch received %+v, want exactly messages 2 and 6", got)
	}
	for _, m := range got {
		if want := `write: bucket "site_missing" not found in InfluxDB (404): database not found: "site_missing"`; !strings.HasPrefix(m.fallbackErr, want) {
			t.Errorf("fallback_error %q, want prefix %q", m.fallbackErr, want)
		}
	}
	if n := srv.Count("site_a", "routed", "v"); n != 3 {
		t.Errorf("site_a holds %d points, want 3", n)
	}
	if n := srv.Count("site_b", "routed", "v"); n != 3 {
		t.Errorf("site_b holds %d points, want 3", n)
	}
	if code, _ := s.ready(); code != http.StatusOK {
		t.Errorf("/ready answered %d after a routed bucket's 404: that is the message's problem", code)
	}
}
