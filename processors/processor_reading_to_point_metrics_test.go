package processors

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	// The stream's defaults (tracer none, ...) live in the pure components.
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
)

// countingExporter is a metrics exporter that sums counters by name and by
// the value of their kind or tag label, so a test can read what a component counted.
type countingExporter struct {
	mu     sync.Mutex
	counts map[string]int64
}

func (e *countingExporter) NewCounterCtor(name string, labelKeys ...string) service.MetricsExporterCounterCtor {
	return func(labelValues ...string) service.MetricsExporterCounter {
		key := name
		for i, k := range labelKeys {
			if (k == "kind" || k == "tag") && i < len(labelValues) {
				key += "{" + k + "=" + labelValues[i] + "}"
			}
		}
		return countingCounter{e: e, key: key}
	}
}

func (e *countingExporter) NewTimerCtor(string, ...string) service.MetricsExporterTimerCtor {
	return func(...string) service.MetricsExporterTimer { return noopMetric{} }
}

func (e *countingExporter) NewGaugeCtor(string, ...string) service.MetricsExporterGaugeCtor {
	return func(...string) service.MetricsExporterGauge { return noopMetric{} }
}

func (e *countingExporter) Close(context.Context) error { return nil }

func (e *countingExporter) get(key string) int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.counts[key]
}

type countingCounter struct {
	e   *countingExporter
	key string
}

func (c countingCounter) Incr(n int64) {
	c.e.mu.Lock()
	c.e.counts[c.key] += n
	c.e.mu.Unlock()
}

type noopMetric struct{}

func (noopMetric) Timing(int64) {}
func (noopMetric) Set(int64)    {}

// logRecorder keeps every log line's message and attributes as text.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
	attrs []slog.Attr
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Level.String() + " " + rec.Message)
	for _, a := range r.attrs {
		b.WriteString(" " + a.String())
	}
	rec.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	r.mu.Lock()
	r.lines = append(r.lines, b.String())
	r.mu.Unlock()
	return nil
}

func (r *logRecorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &logRecorderView{r: r, attrs: attrs}
}

func (r *logRecorder) WithGroup(string) slog.Handler { return r }

// logRecorderView is the recorder with attributes added by With.
type logRecorderView struct {
	r     *logRecorder
	attrs []slog.Attr
}

func (v *logRecorderView) Enabled(ctx context.Context, l slog.Level) bool { return true }
func (v *logRecorderView) Handle(ctx context.Context, rec slog.Record) error {
	rec.AddAttrs(v.attrs...)
	return v.r.Handle(ctx, rec)
}
func (v *logRecorderView) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &logRecorderView{r: v.r, attrs: append(append([]slog.Attr{}, v.attrs...), attrs...)}
}
func (v *logRecorderView) WithGroup(string) slog.Handler { return v }

func (r *logRecorder) matching(substrings ...string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
next:
	for _, l := range r.lines {
		for _, s := range substrings {
			if !strings.Contains(l, s) {
				continue next
			}
		}
		out = append(out, l)
	}
	return out
}

// TestReadingToPointMetricsAndLogs runs the processor in a real stream and
// checks what it counts and logs for each kind of message.
func TestReadingToPointMetricsAndLogs(t *testing.T) {
	exporter := &countingExporter{counts: map[string]int64{}}
	env := service.NewEnvironment()
	if err := env.RegisterMetricsExporter("rtp_counting", service.NewConfigSpec(),
		func(*service.ParsedConfig, *service.Logger) (service.MetricsExporter, error) { return exporter, nil }); err != nil {
		t.Fatal(err)
	}
	logs := &logRecorder{}
	sb := env.NewStreamBuilder()
	sb.SetLogger(slog.New(logs))
	if err := sb.SetMetricsYAML("rtp_counting: {}"); err != nil {
		t.Fatal(err)
	}
	produce, err := sb.AddBatchProducerFunc()
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.AddProcessorYAML("reading_to_point: {}"); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	if err := sb.AddConsumerFunc(func(_ context.Context, m *service.Message) error {
		b, _ := m.AsBytes()
		mu.Lock()
		defer mu.Unlock()
		if e := m.GetError(); e != nil {
			got = append(got, "error: "+e.Error())
		} else {
			got = append(got, string(b))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	stream, err := sb.Build()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- stream.Run(ctx) }()

	inputs := []string{
		`{"request_id":"ok-1","device_id":"d","values":[1.5],"timestamp":"2025-06-08T18:27:17"}`,
		`{"request_id":"nf-1","device_id":"d","values":[NaN, 2.5, Infinity],"timestamp":"2025-06-08T18:27:18"}`,
		`{"request_id":"filtered-1","device_id":"d","values":[null, NaN],"timestamp":"2025-06-08T18:27:19"}`,
		`{"request_id":"bad-1","device_id":"","values":[1],"timestamp":"2025-06-08T18:27:20"}`,
		`not json`,
	}
	var batch service.MessageBatch
	for _, in := range inputs {
		m := service.NewMessage([]byte(in))
		m.MetaSetMut("kafka_key", "key-1")
		batch = append(batch, m)
	}
	if err := produce(ctx, batch); err != nil {
		t.Fatalf("produce: %v", err)
	}
	if err := stream.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	<-done

	want := []string{
		`d value_0=1.5 1749407237000000000`,
		`d value_1=2.5 1749407238000000000`,
		`error: validation: device_id is empty`,
		`error: decode: message is not JSON: cannot parse JSON: unexpected value found: "not json"; unparsed tail: "not json"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stream output\n got: %q\nwant: %q", got, want)
	}
	for key, n := range map[string]int64{
		"iot_messages_mapped":                    2,
		"iot_messages_filtered":                  1,
		"iot_messages_rejected{kind=validation}": 1,
		"iot_messages_rejected{kind=decode}":     1,
		"iot_values_nonfinite_skipped":           3,
	} {
		if v := exporter.get(key); v != n {
			t.Errorf("metric %s = %d, want %d (all: %v)", key, v, n, exporter.counts)
		}
	}
	// Each non-finite skip is logged at debug with its request id, and the
	// first one also in an info summary (the next comes 30s later at most).
	if l := logs.matching("DEBUG", "request_id=nf-1", "skipped 2 non-finite"); len(l) != 1 {
		t.Errorf("debug lines for nf-1: %q", l)
	}
	if l := logs.matching("DEBUG", "request_id=filtered-1", "skipped 1 non-finite"); len(l) != 1 {
		t.Errorf("debug lines for filtered-1: %q", l)
	}
	if l := logs.matching("INFO", "request_id=nf-1", "skipped 2 non-finite value(s) (NaN/Infinity) in 1 message(s)"); len(l) != 1 {
		t.Errorf("info summary: %q (all logs: %q)", l, logs.lines)
	}
	if l := logs.matching("INFO", "non-finite"); len(l) != 1 {
		t.Errorf("the info summary must be rate-limited, got %q", l)
	}
	if l := logs.matching("DEBUG", "request_id=bad-1", "validation: device_id is empty"); len(l) != 1 {
		t.Errorf("debug line for the rejected message: %q", l)
	}
}
