package metrics

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redpanda-data/benthos/v4/public/service"

	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
)

// parseText parses the Prometheus text format with the classic name rules, so
// any name the exporter failed to sanitise makes the test fail.
func parseText(t *testing.T, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics text: %v\n%s", err, body)
	}
	return fams
}

func scrape(t *testing.T, h http.HandlerFunc) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics answered %d: %s", rec.Code, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET /metrics content type %q, want text/plain", ct)
	}
	return parseText(t, rec.Body.Bytes())
}

// series finds the metric of family name whose labels are exactly want.
func series(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	t.Helper()
	fam, ok := fams[name]
	if !ok {
		names := make([]string, 0, len(fams))
		for n := range fams {
			names = append(names, n)
		}
		sort.Strings(names)
		t.Fatalf("metric %q not exported; exported: %v", name, names)
	}
	for _, m := range fam.GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		if len(got) != len(want) {
			continue
		}
		match := true
		for k, v := range want {
			if got[k] != v {
				match = false
				break
			}
		}
		if match {
			return m
		}
	}
	t.Fatalf("metric %q has no series with labels %v; it has %v", name, want, fam.GetMetric())
	return nil
}

func TestPrometheusStreamBuilderMetrics(t *testing.T) {
	mux := http.NewServeMux()
	sb := service.NewStreamBuilder()
	sb.SetHTTPMux(mux)
	if err := sb.SetMetricsYAML(`prometheus: {}`); err != nil {
		t.Fatalf("metrics config: %v", err)
	}
	if err := sb.SetLoggerYAML(`level: none`); err != nil {
		t.Fatalf("logger config: %v", err)
	}
	// Four messages n=1..4: odd and even alternate. The metric processor drives
	// a counter, a gauge and a timer with a label, with names that need
	// sanitising.
	if err := sb.AddInputYAML(`
generate:
  count: 4
  interval: ""
  mapping: |
    let n = counter()
    root.n = $n
    root.parity = if $n % 2 == 0 { "even" } else { "odd" }
`); err != nil {
		t.Fatalf("input config: %v", err)
	}
	for _, proc := range []string{`
metric:
  type: counter
  name: readings.consumed
  labels:
    parity: ${! json("parity") }
`, `
metric:
  type: gauge
  name: last-value
  labels:
    parity: ${! json("parity") }
  value: ${! json("n") }
`, `
metric:
  type: timing
  name: 1st.latency_ns
  labels:
    parity: ${! json("parity") }
  value: ${! json("n") * 1000 }
`} {
		if err := sb.AddProcessorYAML(proc); err != nil {
			t.Fatalf("processor config: %v", err)
		}
	}
	if err := sb.AddOutputYAML(`drop: {}`); err != nil {
		t.Fatalf("output config: %v", err)
	}
	stream, err := sb.Build()
	if err != nil {
		t.Fatalf("building stream: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := stream.Run(ctx); err != nil {
		t.Fatalf("running stream: %v", err)
	}

	srv := httptest.NewServer(mux)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics answered %d: %s", resp.StatusCode, body)
	}
	fams := parseText(t, body)
	// The engine adds the component's label and path to every metric.
	procLabels := func(i int, parity string) map[string]string {
		return map[string]string{"label": "", "path": fmt.Sprintf("root.pipeline.processors.%d", i), "parity": parity}
	}

	for parity, want := range map[string]float64{"odd": 2, "even": 2} {
		got := series(t, fams, "readings_consumed", procLabels(0, parity)).GetCounter().GetValue()
		if got != want {
			t.Errorf("readings_consumed{parity=%q} = %v, want %v", parity, got, want)
		}
	}
	for parity, want := range map[string]float64{"odd": 3, "even": 4} {
		got := series(t, fams, "last_value", procLabels(1, parity)).GetGauge().GetValue()
		if got != want {
			t.Errorf("last_value{parity=%q} = %v, want %v", parity, got, want)
		}
	}
	// Summaries observe the engine's nanoseconds unchanged.
	for parity, want := range map[string]struct {
		count uint64
		sum   float64
	}{"odd": {2, 4000}, "even": {2, 6000}} {
		s := series(t, fams, "_1st_latency_ns", procLabels(2, parity)).GetSummary()
		if s.GetSampleCount() != want.count || s.GetSampleSum() != want.sum {
			t.Errorf("_1st_latency_ns{parity=%q} count %d sum %v, want %d and %v", parity, s.GetSampleCount(), s.GetSampleSum(), want.count, want.sum)
		}
		if len(s.GetQuantile()) != 3 {
			t.Errorf("_1st_latency_ns{parity=%q} has %d quantiles, want the 3 defaults", parity, len(s.GetQuantile()))
		}
	}
	// The engine's own metrics go through the same exporter.
	got := series(t, fams, "input_received", map[string]string{"label": "", "path": "root.input"}).GetCounter().GetValue()
	if got != 4 {
		t.Errorf("input_received = %v, want 4", got)
	}
	if _, ok := fams["output_sent"]; !ok {
		t.Errorf("engine metric output_sent not exported")
	}
}

func newTestExporter(t *testing.T, yaml string) *prometheusExporter {
	t.Helper()
	conf, err := prometheusMetricsSpec().ParseYAML(yaml, nil)
	if err != nil {
		t.Fatalf("parsing config %q: %v", yaml, err)
	}
	e, err := newPrometheusExporterFromConfig(conf, nil)
	if err != nil {
		t.Fatalf("building exporter from %q: %v", yaml, err)
	}
	t.Cleanup(func() { _ = e.Close(context.Background()) })
	return e
}

func TestPrometheusExporterValues(t *testing.T) {
	e := newTestExporter(t, `
use_histogram_timing: true
histogram_buckets: [ 0.001, 0.01, 0.1 ]
`)
	written := e.NewCounterCtor("points.written", "bucket", "device")
	written("iot_data", "2261001").Incr(3)
	written("iot_data", "2261001").Incr(2)
	written("iot_data", "282c02424eed").Incr(1)
	written("iot_data", "282c02424eed").Incr(-7) // ignored: counters never go down
	written("iot_data", "bad\xffutf8").Incr(1)
	written("only-one-value").Incr(100) // wrong arity: dropped, not a panic

	lag := e.NewGaugeCtor("consumer-lag", "topic", "partition")
	lag("iot_validated_data", "0").Set(42)
	lag("iot_validated_data", "1").Set(7)
	lag("iot_validated_data", "1").Set(5)
	g := lag("iot_validated_data", "2")
	g.(interface{ SetFloat64(float64) }).SetFloat64(2.5)

	latency := e.NewTimerCtor("batch_latency", "__reserved")
	latency("x").Timing(int64(5 * time.Millisecond))
	latency("x").Timing(int64(50 * time.Millisecond))
	latency("x").Timing(int64(2 * time.Second))

	// A second kind under a taken name is dropped with a warning, not a panic.
	e.NewGaugeCtor("points.written", "bucket", "device")("a", "b").Set(1)
	// The same name and labels again share the series.
	e.NewCounterCtor("points_written", "bucket", "device")("iot_data", "2261001").Incr(10)

	fams := scrape(t, e.HandlerFunc())

	for dev, want := range map[string]float64{"2261001": 15, "282c02424eed": 1, "bad\uFFFDutf8": 1} {
		got := series(t, fams, "points_written", map[string]string{"bucket": "iot_data", "device": dev}).GetCounter().GetValue()
		if got != want {
			t.Errorf("points_written{device=%q} = %v, want %v", dev, got, want)
		}
	}
	if n := len(fams["points_written"].GetMetric()); n != 3 {
		t.Errorf("points_written has %d series, want 3", n)
	}
	if ty := fams["points_written"].GetType(); ty != dto.MetricType_COUNTER {
		t.Errorf("points_written type %v, want COUNTER", ty)
	}
	for part, want := range map[string]float64{"0": 42, "1": 5, "2": 2.5} {
		got := series(t, fams, "consumer_lag", map[string]string{"topic": "iot_validated_data", "partition": part}).GetGauge().GetValue()
		if got != want {
			t.Errorf("consumer_lag{partition=%q} = %v, want %v", part, got, want)
		}
	}

	h := series(t, fams, "batch_latency", map[string]string{"_reserved": "x"}).GetHistogram()
	if h.GetSampleCount() != 3 {
		t.Errorf("batch_latency count = %d, want 3", h.GetSampleCount())
	}
	if math.Abs(h.GetSampleSum()-2.055) > 1e-12 {
		t.Errorf("batch_latency sum = %v s, want 2.055 s", h.GetSampleSum())
	}
	wantBuckets := map[float64]uint64{0.001: 0, 0.01: 1, 0.1: 2, math.Inf(1): 3}
	if len(h.GetBucket()) != len(wantBuckets) {
		t.Errorf("batch_latency has %d buckets, want %d", len(h.GetBucket()), len(wantBuckets))
	}
	for _, b := range h.GetBucket() {
		if want, ok := wantBuckets[b.GetUpperBound()]; !ok || b.GetCumulativeCount() != want {
			t.Errorf("batch_latency bucket le=%v count %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
}

// A timer named *_seconds is a histogram in seconds even with summaries configured, so that a
// metric such as iot_store_delay_seconds is what its name says.
func TestPrometheusSecondsTimerIsAHistogram(t *testing.T) {
	e := newTestExporter(t, ``)
	delay := e.NewTimerCtor("iot_store_delay_seconds")
	delay().Timing(int64(1500 * time.Millisecond))
	delay().Timing(int64(90 * time.Second))
	e.NewTimerCtor("write_latency_ns")().Timing(int64(time.Millisecond))
	fams := scrape(t, e.HandlerFunc())
	if ty := fams["iot_store_delay_seconds"].GetType(); ty != dto.MetricType_HISTOGRAM {
		t.Fatalf("iot_store_delay_seconds type %v, want HISTOGRAM", ty)
	}
	h := series(t, fams, "iot_store_delay_seconds", nil).GetHistogram()
	if h.GetSampleCount() != 2 || math.Abs(h.GetSampleSum()-91.5) > 1e-9 {
		t.Errorf("iot_store_delay_seconds count %d sum %v, want 2 and 91.5 s", h.GetSampleCount(), h.GetSampleSum())
	}
	for _, b := range h.GetBucket() {
		want := uint64(0)
		if b.GetUpperBound() >= 90 {
			want = 2
		} else if b.GetUpperBound() >= 1.5 {
			want = 1
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("bucket le=%v count %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	if ty := fams["write_latency_ns"].GetType(); ty != dto.MetricType_SUMMARY {
		t.Errorf("write_latency_ns type %v, want the configured SUMMARY", ty)
	}
}

func TestPrometheusRuntimeCollectors(t *testing.T) {
	e := newTestExporter(t, `
add_process_metrics: true
add_go_metrics: true
`)
	e.NewCounterCtor("go_goroutines")().Incr(1) // clashes with the Go collector: dropped
	fams := scrape(t, e.HandlerFunc())
	if g := fams["go_goroutines"]; g == nil || g.GetType() != dto.MetricType_GAUGE || g.GetMetric()[0].GetGauge().GetValue() < 1 {
		t.Errorf("go_goroutines missing or not the runtime's gauge: %v", g)
	}
	if _, ok := fams["process_start_time_seconds"]; !ok {
		t.Errorf("process_start_time_seconds missing with add_process_metrics")
	}
}

func TestSanitisePrometheusNames(t *testing.T) {
	for _, tc := range []struct{ in, metric, label string }{
		{"input_received", "input_received", "input_received"},
		{"kafka.lag", "kafka_lag", "kafka_lag"},
		{"a:b", "a_b", "a_b"},
		{"1st", "_1st", "_1st"},
		{"", "_", "_"},
		{"__name__", "__name__", "_name__"},
		{"___", "___", "_label"},
		{"température moyenne", "temp_rature_moyenne", "temp_rature_moyenne"},
		{"bad\xffbyte", "bad_byte", "bad_byte"},
	} {
		if got := SanitisePrometheusName(tc.in); got != tc.metric {
			t.Errorf("SanitisePrometheusName(%q) = %q, want %q", tc.in, got, tc.metric)
		}
		if got := SanitisePrometheusLabelName(tc.in); got != tc.label {
			t.Errorf("SanitisePrometheusLabelName(%q) = %q, want %q", tc.in, got, tc.label)
		}
		if !model.LegacyValidation.IsValidMetricName(SanitisePrometheusName(tc.in)) {
			t.Errorf("SanitisePrometheusName(%q) is not a valid metric name", tc.in)
		}
		if !model.LegacyValidation.IsValidLabelName(SanitisePrometheusLabelName(tc.in)) {
			t.Errorf("SanitisePrometheusLabelName(%q) is not a valid label name", tc.in)
		}
	}
}

func TestPrometheusConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		yaml, want string
	}{
		{`histogram_buckets: [ 0.1, 0.01 ]`, "strictly increasing"},
		{`summary_quantiles_objectives: [ { quantile: 1.5, error: 0.01 } ]`, "not between 0 and 1"},
		{`push_interval: 10s`, "nowhere to push to"},
		{`{ push_url: "http://pg:9091", push_interval: soon }`, "not a duration"},
		{`push_url: "pg:9091"`, "not an http(s) URL"},
	} {
		conf, err := prometheusMetricsSpec().ParseYAML(tc.yaml, nil)
		if err != nil {
			t.Fatalf("parsing %q: %v", tc.yaml, err)
		}
		_, err = newPrometheusExporterFromConfig(conf, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config %q: error %v, want one containing %q", tc.yaml, err, tc.want)
		}
	}
}

func TestPrometheusLintRule(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{`prometheus: { push_interval: 10s }`, "nowhere to push to"},
		{`prometheus: { histogram_buckets: [ 0.1, 0.5, 0.5 ] }`, "strictly increasing"},
		{`prometheus: { summary_quantiles_objectives: [ { quantile: 2, error: 0.1 } ] }`, "between 0 and 1"},
	} {
		err := service.NewStreamBuilder().SetMetricsYAML(tc.yaml)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("lint of %s: %v, want the lint rule's message %q", tc.yaml, err, tc.want)
		}
	}
	for _, ok := range []string{
		`prometheus: {}`,
		`prometheus: { histogram_buckets: [ 0.01, 0.1, 1 ], use_histogram_timing: true }`,
		`prometheus: { push_url: "http://pg:9091", push_interval: 10s }`,
	} {
		if err := service.NewStreamBuilder().SetMetricsYAML(ok); err != nil {
			t.Errorf("lint of %s: %v, want no error", ok, err)
		}
	}
}

func TestPrometheusFileOutput(t *testing.T) {
	path := filepath.Join(t.TempDir(), "final.prom")
	conf, err := prometheusMetricsSpec().ParseYAML(`file_output_path: `+path, nil)
	if err != nil {
		t.Fatalf("parsing config: %v", err)
	}
	e, err := newPrometheusExporterFromConfig(conf, nil)
	if err != nil {
		t.Fatalf("building exporter: %v", err)
	}
	e.NewCounterCtor("errors_sent", "kind")("validation").Incr(9)
	if err := e.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s after Close: %v", path, err)
	}
	got := series(t, parseText(t, body), "errors_sent", map[string]string{"kind": "validation"}).GetCounter().GetValue()
	if got != 9 {
		t.Errorf("errors_sent in file = %v, want 9", got)
	}
}

// TestPrometheusPush uses a recording HTTP stub in place of a Pushgateway: no
// Pushgateway binary is available here, and the stub only records what the
// client library sends so the test can decode it.
func TestPrometheusPush(t *testing.T) {
	type pushed struct {
		method, path, user, pass string
		fams                     []*dto.MetricFamily
	}
	var mu sync.Mutex
	var pushes []pushed
	stub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		p := pushed{method: r.Method, path: r.URL.Path, user: user, pass: pass}
		dec := expfmt.NewDecoder(r.Body, expfmt.ResponseFormat(r.Header))
		for {
			mf := &dto.MetricFamily{}
			if err := dec.Decode(mf); err != nil {
				break
			}
			p.fams = append(p.fams, mf)
		}
		mu.Lock()
		pushes = append(pushes, p)
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer stub.Close()

	conf, err := prometheusMetricsSpec().ParseYAML(`
push_url: `+stub.URL+`
push_interval: 20ms
push_job_name: ingestor
push_basic_auth:
  username: metrics
  password: s3cret
`, nil)
	if err != nil {
		t.Fatalf("parsing config: %v", err)
	}
	e, err := newPrometheusExporterFromConfig(conf, nil)
	if err != nil {
		t.Fatalf("building exporter: %v", err)
	}
	e.NewCounterCtor("messages_consumed")().Incr(12)

	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(pushes)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no periodic push reached the stub within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.NewCounterCtor("messages_consumed")().Incr(3)
	if err := e.Close(context.Background()); err != nil {
		t.Fatalf("Close (final push): %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	last := pushes[len(pushes)-1]
	if last.method != http.MethodPut || last.path != "/metrics/job/ingestor" {
		t.Errorf("push was %s %s, want PUT /metrics/job/ingestor", last.method, last.path)
	}
	if last.user != "metrics" || last.pass != "s3cret" {
		t.Errorf("push basic auth %q/%q, want metrics/s3cret", last.user, last.pass)
	}
	var got float64 = -1
	for _, mf := range last.fams {
		if mf.GetName() == "messages_consumed" {
			got = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if got != 15 {
		t.Errorf("final push carried messages_consumed = %v, want 15", got)
	}
}

// BenchmarkCounterWithLabels is the engine's hot path: a labelled counter
// resolved and incremented once per message (as the metric processor does).
func BenchmarkCounterWithLabels(b *testing.B) {
	e, err := newPrometheusExporter(defaultPromExporterConfig(), nil)
	if err != nil {
		b.Fatal(err)
	}
	ctor := e.NewCounterCtor("iot_messages_rejected", "kind")
	kinds := []string{"decode", "validation", "write"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ctor(kinds[i%3]).Incr(1)
		i++
	}
}

func BenchmarkTimerSummary(b *testing.B) {
	e, err := newPrometheusExporter(defaultPromExporterConfig(), nil)
	if err != nil {
		b.Fatal(err)
	}
	t := e.NewTimerCtor("output_latency_ns", "label", "path")("", "root.output")
	b.ReportAllocs()
	for b.Loop() {
		t.Timing(123456)
	}
}

// TestPrometheusFinalPushBounded uses a fault-injecting stub that accepts the
// push and never answers: Close must give up with an error, not hang.
func TestPrometheusFinalPushBounded(t *testing.T) {
	release := make(chan struct{})
	stub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	defer stub.Close()
	defer close(release)

	old := finalPushTimeout
	finalPushTimeout = 200 * time.Millisecond
	defer func() { finalPushTimeout = old }()

	conf, err := prometheusMetricsSpec().ParseYAML(`push_url: `+stub.URL, nil)
	if err != nil {
		t.Fatalf("parsing config: %v", err)
	}
	e, err := newPrometheusExporterFromConfig(conf, nil)
	if err != nil {
		t.Fatalf("building exporter: %v", err)
	}
	err = e.Close(context.Background())
	if err == nil || !strings.Contains(err.Error(), "final push") {
		t.Fatalf("Close against a silent Pushgateway: %v, want a final push error", err)
	}
}
