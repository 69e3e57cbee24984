package kafka

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/preservarium/iot-ingestor/internal/dev/devbroker"
	"github.com/preservarium/iot-ingestor/internal/meta"
	"github.com/preservarium/iot-ingestor/internal/testkit/streamtest"
)

// metricCapture is a metrics exporter keeping the value of every gauge and counter series,
// keyed name{label values}.
type metricCapture struct {
	mu     sync.Mutex
	values map[string]int64
}

type capturedSeries struct {
	c   *metricCapture
	key string
}

func (s capturedSeries) Set(v int64) {
	s.c.mu.Lock()
	s.c.values[s.key] = v
	s.c.mu.Unlock()
}
func (s capturedSeries) Incr(v int64) {
	s.c.mu.Lock()
	s.c.values[s.key] += v
	s.c.mu.Unlock()
}
func (s capturedSeries) SetFloat64(v float64)  { s.Set(int64(v)) }
func (s capturedSeries) IncrFloat64(v float64) { s.Incr(int64(v)) }
func (s capturedSeries) Decr(v int64)          { s.Incr(-v) }
func (s capturedSeries) DecrFloat64(v float64) { s.Incr(-int64(v)) }
func (s capturedSeries) Timing(int64)          {}

func (c *metricCapture) ctor(name string) func(...string) capturedSeries {
	return func(labelValues ...string) capturedSeries {
		return capturedSeries{c: c, key: name + "{" + strings.Join(labelValues, ",") + "}"}
	}
}
func (c *metricCapture) NewCounterCtor(name string, _ ...string) service.MetricsExporterCounterCtor {
	f := c.ctor(name)
	return func(lv ...string) service.MetricsExporterCounter { return f(lv...) }
}
func (c *metricCapture) NewTimerCtor(name string, _ ...string) service.MetricsExporterTimerCtor {
	f := c.ctor(name)
	return func(lv ...string) service.MetricsExporterTimer { return f(lv...) }
}
func (c *metricCapture) NewGaugeCtor(name string, _ ...string) service.MetricsExporterGaugeCtor {
	f := c.ctor(name)
	return func(lv ...string) service.MetricsExporterGauge { return f(lv...) }
}
func (c *metricCapture) Close(context.Context) error { return nil }

// get finds a series by name and trailing label values (the engine puts its own labels first).
func (c *metricCapture) get(name string, labelValues ...string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	suffix := "," + strings.Join(labelValues, ",") + "}"
	for k, v := range c.values {
		if strings.HasPrefix(k, name+"{") && strings.HasSuffix(k, suffix) {
			return v, true
		}
	}
	return 0, false
}

// runCapturedStream runs the input with consume as output and every metric captured.
func runCapturedStream(t *testing.T, inputYAML string, consume service.MessageBatchHandlerFunc) *metricCapture {
	t.Helper()
	capture := &metricCapture{values: map[string]int64{}}
	env := service.NewEnvironment()
	if err := env.RegisterMetricsExporter("capture", service.NewConfigSpec(),
		func(*service.ParsedConfig, *service.Logger) (service.MetricsExporter, error) { return capture, nil }); err != nil {
		t.Fatal(err)
	}
	sb := env.NewStreamBuilder()
	if err := sb.SetMetricsYAML("capture: {}"); err != nil {
		t.Fatal(err)
	}
	if err := sb.SetLoggerYAML("level: warn"); err != nil {
		t.Fatal(err)
	}
	if err := sb.AddInputYAML(inputYAML); err != nil {
		t.Fatal(err)
	}
	if err := sb.AddBatchConsumerFunc(consume); err != nil {
		t.Fatal(err)
	}
	streamtest.Run(t, sb, 20*time.Second)
	return capture
}

// TestKafkaFranzInputLagDuringStall blocks the output, as an InfluxDB outage does: the input
// holds checkpoint_limit records per partition and fetches no more, yet the lag of each
// partition must be everything not committed (here all of it), the idle partition must be
// reported too (at 0), and the stalled seconds of the partitions with lag must rise. Once the
// output moves, lag and stall go back to 0. The same when what stops the input is buffer_bytes
// across the partitions rather than each partition's checkpoint_limit.
func TestKafkaFranzInputLagDuringStall(t *testing.T) {
	t.Run("checkpoint_limit", func(t *testing.T) { testLagDuringStall(t, "checkpoint_limit: 20") })
	// About 20 records in all: each is ~28 bytes (key, value, header).
	t.Run("buffer_bytes", func(t *testing.T) { testLagDuringStall(t, "checkpoint_limit: 100000\n  buffer_bytes: 560B") })
}

func testLagDuringStall(t *testing.T, bound string) {
	const (
		topic   = "lag-stall"
		group   = "g-lag-stall"
		perPart = 150
	)
	b := startBroker(t, devbroker.Options{Topics: []string{topic}, Partitions: 3})
	prod := manualProducer(t, b.SeedBrokers())
	produceN(t, prod, topic, 2, 0, 2*perPart) // partitions 0 and 1; 2 stays empty

	gate := make(chan struct{})
	var (
		mu  sync.Mutex
		got int
	)
	capture := runCapturedStream(t, inputYAML(b.SeedBrokers(), topic, group, `
  `+bound+`
  topic_lag_refresh_period: 100ms
  batching:
    count: 5
`), func(ctx context.Context, batch service.MessageBatch) error {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
		mu.Lock()
		got += len(batch)
		mu.Unlock()
		return nil
	})

	eventually(t, "the lag of every partition, idle one included, with the output blocked", func() bool {
		l0, ok0 := capture.get(metricLag, topic, "0")
		l1, ok1 := capture.get(metricLag, topic, "1")
		l2, ok2 := capture.get(metricLag, topic, "2")
		return ok0 && ok1 && ok2 && l0 == perPart && l1 == perPart && l2 == 0
	})
	eventually(t, "the stalled seconds of the blocked partitions to rise", func() bool {
		s0, _ := capture.get(metricStalled, topic, "0")
		s1, _ := capture.get(metricStalled, topic, "1")
		return s0 >= 2 && s1 >= 2
	})
	if s2, ok := capture.get(metricStalled, topic, "2"); !ok || s2 != 0 {
		t.Errorf("idle partition: stalled %d (reported %v), want 0: it has no lag", s2, ok)
	}
	// Lag is measured from the commit, not from what was fetched: the input holds at most about
	// 20 records per partition (or in all) plus one fetch, which must not lower it.
	for p, want := range map[string]int64{"0": perPart, "1": perPart} {
		if l, _ := capture.get(metricLag, topic, p); l != want {
			t.Errorf("partition %s: lag %d with nothing committed, want %d", p, l, want)
		}
	}

	close(gate)
	eventually(t, "everything delivered, lag and stall back to 0", func() bool {
		mu.Lock()
		n := got
		mu.Unlock()
		for _, p := range []string{"0", "1", "2"} {
			if l, _ := capture.get(metricLag, topic, p); l != 0 {
				return false
			}
			if s, _ := capture.get(metricStalled, topic, p); s != 0 {
				return false
			}
		}
		return n >= 2*perPart
	})
	if r, ok := capture.get(metricResets, topic, "0"); ok && r != 0 {
		t.Errorf("offset resets %d without any deletion", r)
	}
}

// TestKafkaFranzInputOffsetReset commits offset 30 for the group, then deletes the records
// before 60, as retention does during a long outage: the input resumes at 60 and must count one
// reset of that partition.
func TestKafkaFranzInputOffsetReset(t *testing.T) {
	const (
		topic = "reset"
		group = "g-reset"
		n     = 100
	)
	b := startBroker(t, devbroker.Options{Topics: []string{topic}, Partitions: 1})
	produceN(t, manualProducer(t, b.SeedBrokers()), topic, 1, 0, n)
	adm := kadm.NewClient(newClient(t, b.SeedBrokers()))
	ctx := context.Background()
	commit := kadm.Offsets{}
	commit.Add(kadm.Offset{Topic: topic, Partition: 0, At: 30, LeaderEpoch: -1})
	if err := adm.CommitAllOffsets(ctx, group, commit); err != nil {
		t.Fatalf("committing offset 30: %v", err)
	}
	del := kadm.Offsets{}
	del.Add(kadm.Offset{Topic: topic, Partition: 0, At: 60, LeaderEpoch: -1})
	resp, err := adm.DeleteRecords(ctx, del)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("deleting the records before offset 60: %v", err)
	}

	var (
		mu      sync.Mutex
		offsets []int64
	)
	capture := runCapturedStream(t, inputYAML(b.SeedBrokers(), topic, group, "  topic_lag_refresh_period: 100ms\n"),
		func(_ context.Context, batch service.MessageBatch) error {
			mu.Lock()
			defer mu.Unlock()
			for _, m := range batch {
				off, _ := meta.Int(m, meta.KafkaOffset)
				offsets = append(offsets, off)
			}
			return nil
		})
	eventually(t, "the records from 60 on and one reset counted", func() bool {
		mu.Lock()
		got := len(offsets)
		mu.Unlock()
		r, _ := capture.get(metricResets, topic, "0")
		return got >= n-60 && r == 1
	})
	mu.Lock()
	defer mu.Unlock()
	if offsets[0] != 60 {
		t.Errorf("first offset delivered %d, want 60, the new log start", offsets[0])
	}
	eventually(t, "lag 0 once everything left is committed", func() bool {
		l, ok := capture.get(metricLag, topic, "0")
		return ok && l == 0
	})
	if r, _ := capture.get(metricResets, topic, "0"); r != 1 {
		t.Errorf("offset resets %d, want exactly 1", r)
	}
}
