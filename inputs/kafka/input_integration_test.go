package kafka

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/preservarium/iot-ingestor/internal/dev/devbroker"
	"github.com/preservarium/iot-ingestor/internal/kafkaclient"
	"github.com/preservarium/iot-ingestor/internal/meta"
	"github.com/preservarium/iot-ingestor/internal/testkit/devbrokertest"
	"github.com/preservarium/iot-ingestor/internal/testkit/streamtest"
)

// waitFor bounds how long a test waits for the pipeline to get somewhere;
// it is a failure deadline, not a performance assertion.
const waitFor = 60 * time.Second

func startBroker(t testing.TB, o devbroker.Options) *devbroker.Broker {
	t.Helper()
	devbrokertest.Gate(t)
	b, err := devbroker.Start(o)
	if err != nil {
		t.Fatalf("starting the embedded broker: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

func newClient(t testing.TB, seeds []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...)}, opts...)...)
	if err != nil {
		t.Fatalf("creating a test Kafka client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// produceN writes n records key-i/value-i, spreading them round robin over
// partitions, starting at index from.
func produceN(t testing.TB, cl *kgo.Client, topic string, partitions int32, from, n int) {
	t.Helper()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		idx := from + i
		recs[i] = &kgo.Record{
			Topic:     topic,
			Partition: int32(idx) % partitions,
			Key:       []byte(fmt.Sprintf("key-%d", idx)),
			Value:     []byte(fmt.Sprintf(`{"n":%d}`, idx)),
			Headers:   []kgo.RecordHeader{{Key: "origin", Value: []byte("test")}},
		}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatalf("producing %d records to %s: %v", n, topic, err)
	}
}

func manualProducer(t testing.TB, seeds []string, opts ...kgo.Opt) *kgo.Client {
	return newClient(t, seeds, append([]kgo.Opt{kgo.RecordPartitioner(kgo.ManualPartitioner())}, opts...)...)
}

// committedOffsets reads the group's committed offsets of a topic.
func committedOffsets(t testing.TB, cl *kgo.Client, group, topic string) map[int32]int64 {
	t.Helper()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic = topic
	for p := int32(0); p < 64; p++ {
		rt.Partitions = append(rt.Partitions, p)
	}
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kresp, err := cl.Request(ctx, req)
	if err != nil {
		t.Fatalf("fetching committed offsets of group %s: %v", group, err)
	}
	resp := kresp.(*kmsg.OffsetFetchResponse)
	if resp.ErrorCode == kerr.GroupIDNotFound.Code {
		return map[int32]int64{} // nothing committed yet
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		t.Fatalf("fetching committed offsets of group %s: %v", group, err)
	}
	out := map[int32]int64{}
	for _, rtp := range resp.Topics {
		for _, p := range rtp.Partitions {
			if p.Offset >= 0 && p.ErrorCode == 0 {
				out[p.Partition] = p.Offset
			}
		}
	}
	return out
}

// endOffsets lists each partition's high watermark.
func endOffsets(t testing.TB, cl *kgo.Client, topic string, partitions int32) map[int32]int64 {
	t.Helper()
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for p := int32(0); p < partitions; p++ {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition = p
		rp.Timestamp = -1
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	kresp, err := cl.Request(context.Background(), req)
	if err != nil {
		t.Fatalf("listing end offsets of %s: %v", topic, err)
	}
	out := map[int32]int64{}
	for _, rtp := range kresp.(*kmsg.ListOffsetsResponse).Topics {
		for _, p := range rtp.Partitions {
			out[p.Partition] = p.Offset
		}
	}
	return out
}

// delivery is one message as the pipeline's consumer saw it.
type delivery struct {
	key       string
	value     string
	topic     string
	partition int
	offset    int
	header    string
	tsMs      int64
}

// collector records every delivered message; fail, when set, decides per
// batch whether to nack it.
type collector struct {
	mu   sync.Mutex
	got  []delivery
	fail func(batch []delivery) error
}

func (c *collector) consume(_ context.Context, batch service.MessageBatch) error {
	ds := make([]delivery, len(batch))
	for i, m := range batch {
		b, _ := m.AsBytes()
		d := delivery{value: string(b)}
		d.key, _ = m.MetaGet(meta.KafkaKey)
		d.topic, _ = m.MetaGet(meta.KafkaTopic)
		d.header, _ = m.MetaGet("origin")
		if v, ok := m.MetaGetMut(meta.KafkaPartition); ok {
			d.partition = v.(int)
		}
		if v, ok := m.MetaGetMut(meta.KafkaOffset); ok {
			d.offset = v.(int)
		}
		if v, ok := m.MetaGetMut(meta.KafkaTimestampMs); ok {
			d.tsMs = v.(int64)
		}
		ds[i] = d
	}
	c.mu.Lock()
	fail := c.fail
	c.mu.Unlock()
	if fail != nil {
		if err := fail(ds); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.got = append(c.got, ds...)
	c.mu.Unlock()
	return nil
}

func (c *collector) snapshot() []delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]delivery(nil), c.got...)
}

func (c *collector) uniqueKeys() map[string]int {
	out := map[string]int{}
	for _, d := range c.snapshot() {
		out[d.key]++
	}
	return out
}

// runStream runs a stream with the given kafka_franz input config and the
// collector as output; the returned function stops it gracefully.
func runStream(t testing.TB, inputYAML string, c *collector) (stop func()) {
	t.Helper()
	b := service.NewStreamBuilder()
	if err := b.SetLoggerYAML("level: warn"); err != nil {
		t.Fatal(err)
	}
	if err := b.AddInputYAML(inputYAML); err != nil {
		t.Fatalf("input config rejected: %v\n%s", err, inputYAML)
	}
	if err := b.AddBatchConsumerFunc(c.consume); err != nil {
		t.Fatal(err)
	}
	s, err := b.Build()
	if err != nil {
		t.Fatalf("building the stream: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := s.Stop(ctx); err != nil {
				t.Errorf("stopping the stream: %v", err)
			}
			<-done
		})
	}
	t.Cleanup(stop)
	return stop
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", waitFor, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func inputYAML(seeds []string, topic, group string, extra string) string {
	return fmt.Sprintf(`
kafka_franz:
  seed_brokers: [ %q ]
  topics: [ %q ]
  consumer_group: %q
  fetch_max_wait: 100ms
  commit_period: 100ms
  session_timeout: 10s
  heartbeat_interval: 500ms
  rebalance_timeout: 6s
%s`, strings.Join(seeds, ","), topic, group, extra)
}

func requireKcat(t testing.TB) string {
	t.Helper()
	devbrokertest.Gate(t)
	p, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatalf("kcat not found on PATH: install it with `apt-get update && apt-get install -y kcat`")
	}
	return p
}

func TestKafkaFranzInputAllRecordsOnce(t *testing.T) {
	const (
		topic = "readings"
		parts = 6
		n     = 3000
	)
	b := startBroker(t, devbroker.Options{Topics: []string{topic}, Partitions: parts})
	prod := manualProducer(t, b.SeedBrokers())
	produceN(t, prod, topic, parts, 0, n)

	var c collector
	stop := runStream(t, inputYAML(b.SeedBrokers(), topic, "g-once", ""), &c)
	eventually(t, fmt.Sprintf("%d records", n), func() bool { return len(c.snapshot()) >= n })
	stop()

	got := c.snapshot()
	if len(got) != n {
		t.Fatalf("delivered %d messages, want exactly %d (no nack happened, so no redelivery is allowed)", len(got), n)
	}
	seen := map[string]bool{}
	lastOffset := map[int]int{}
	for _, d := range got {
		if seen[d.key] {
			t.Fatalf("key %s delivered twice", d.key)
		}
		seen[d.key] = true
		idx, _ := strconv.Atoi(strings.TrimPrefix(d.key, "key-"))
		if d.value != fmt.Sprintf(`{"n":%d}`, idx) || d.topic != topic || d.partition != idx%parts || d.header != "test" || d.tsMs <= 0 {
			t.Fatalf("message %+v: content or metadata does not match what was produced", d)
		}
		if prev, ok := lastOffset[d.partition]; ok && d.offset <= prev {
			t.Fatalf("partition %d: offset %d delivered after %d, want offset order", d.partition, d.offset, prev)
		}
		lastOffset[d.partition] = d.offset
	}
	// Shutdown commits everything acknowledged: the group is at the end.
	admin := newClient(t, b.SeedBrokers())
	committed := committedOffsets(t, admin, "g-once", topic)
	ends := endOffsets(t, admin, topic, parts)
	for p := int32(0); p < parts; p++ {
		if committed[p] != ends[p] {
			t.Errorf("partition %d: committed %d after shutdown, want the end offset %d", p, committed[p], ends[p])
		}
	}
}

func TestKafkaFranzInputNackRedeliversAndCommitNeverPassesIt(t *testing.T) {
	const (
		topic  = "nacks"
		n      = 100
		poison = 15 // offset of the rejected record; its batch is [10, 20)
		group  = "g-nack"
	)
	b := startBroker(t, devbroker.Options{Topics: []string{topic}, Partitions: 1})
	prod := manualProducer(t, b.SeedBrokers())
	produceN(t, prod, topic, 1, 0, n)
	admin := newClient(t, b.SeedBrokers())

	var (
		c          collector
		mu         sync.Mutex
		rejections int
		release    = make(chan struct{})
	)
	c.fail = func(batch []delivery) error {
		for _, d := range batch {
			if d.offset != poison {
				continue
			}
			select {
			case <-release:
				return nil
			default:
			}
			mu.Lock()
			rejections++
			mu.Unlock()
			return fmt.Errorf("rejecting offset %d", poison)
		}
		return nil
	}
	// Batches of 10 so that the batches after the rejected one are
	// acknowledged while it is still being retried.
	stop := runStream(t, inputYAML(b.SeedBrokers(), topic, group, `
  batching:
    count: 10
`), &c)

	eventually(t, "every batch but the rejected one to be delivered", func() bool {
		return len(c.snapshot()) >= n-10
	})
	eventually(t, "the commit to reach the start of the rejected batch", func() bool {
		return committedOffsets(t, admin, group, topic)[0] == 10
	})
	// While the batch keeps failing, the later batches are all acknowledged;
	// sample the committed offset over many commit periods: it must never
	// pass the rejected record.
	for i := 0; i < 30; i++ {
		if off := committedOffsets(t, admin, group, topic)[0]; off > poison {
			t.Fatalf("committed offset %d passed offset %d, which was rejected and not yet redelivered", off, poison)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	if rejections < 2 {
		t.Errorf("the rejected batch was attempted %d times, want it retried", rejections)
	}
	mu.Unlock()

	close(release)
	eventually(t, "the rejected batch to be redelivered and committed", func() bool {
		return committedOffsets(t, admin, group, topic)[0] == n
	})
	stop()
	keys := c.uniqueKeys()
	if len(keys) != n {
		t.Fatalf("delivered %d distinct records, want %d", len(keys), n)
	}
	for k, count := range keys {
		if count != 1 {
			t.Errorf("key %s accepted %d times, want once (only the rejected batch is retried)", k, count)
		}
	}
}

func TestKafkaFranzInputGroupTakeOver(t *testing.T) {
	const (
		topic = "shared"
		parts = 6
		group = "g-share"
	)
	b := startBroker(t, devbroker.Options{Topics: []string{topic}, Partitions: parts})
	prod := manualProducer(t, b.SeedBrokers())
	admin := newClient(t, b.SeedBrokers())

	var a, bb collector
	stopA := runStream(t, inputYAML(b.SeedBrokers(), topic, group, ""), &a)
	stopB := runStream(t, inputYAML(b.SeedBrokers(), topic, group, ""), &bb)

	// Keep producing until both members have received records: the group
	// has split the partitions between them.
	produced := 0
	eventually(t, "both members to receive records", func() bool {
		produceN(t, prod, topic, parts, produced, parts*10)
		produced += parts * 10
		return len(a.snapshot()) > 0 && len(bb.snapshot()) > 0
	})
	partsOf := func(c *collector) map[int]bool {
		out := map[int]bool{}
		for _, d := range c.snapshot() {
			out[d.partition] = true
		}
		return out
	}
	pa, pb := partsOf(&a), partsOf(&bb)
	for p := range pa {
		if pb[p] {
			// A partition may move once while the second member joins;
			// afterwards the split must be disjoint, checked below by
			// the take-over.
			t.Logf("partition %d was consumed by both members during the join rebalance", p)
		}
	}

	// A leaves; B must take over A's partitions and nothing is lost.
	stopA()
	beforeB := len(bb.snapshot())
	produceN(t, prod, topic, parts, produced, parts*50)
	produced += parts * 50
	eventually(t, "every produced record to be delivered", func() bool {
		all := map[string]bool{}
		for _, d := range a.snapshot() {
			all[d.key] = true
		}
		for _, d := range bb.snapshot() {
			all[d.key] = true
		}
		return len(all) == produced
	})
	after := map[int]bool{}
	for _, d := range bb.snapshot()[beforeB:] {
		after[d.partition] = true
	}
	if len(after) != parts {
		t.Errorf("after the first member left, the second consumed partitions %v, want all %d", after, parts)
	}
	eventually(t, "the group to commit every partition to its end", func() bool {
		committed := committedOffsets(t, admin, group, topic)
		ends := endOffsets(t, admin, topic, parts)
		for p := int32(0); p < parts; p++ {
			if committed[p] != ends[p] {
				return false
			}
		}
		return true
	})
	stopB()
	dups := len(a.snapshot()) + len(bb.snapshot()) - produced
	t.Logf("%d records produced, %d delivered again across the rebalances", produced, dups)
}

func TestKafkaFranzInputConsumesKcatRecords(t *testing.T) {
	kcat := requireKcat(t)
	const topic = "from_kcat"
	b := startBroker(t, devbroker.Options{Topics: []string{topic}, Partitions: 3})

	var lines strings.Builder
	want := map[string]string{}
	for i := 0; i < 50; i++ {
		k, v := fmt.Sprintf("dev-%d", i), fmt.Sprintf(`{"device_id": "dev-%d", "values": [%d.5]}`, i, i)
		want[k] = v
		fmt.Fprintf(&lines, "%s|%s\n", k, v)
	}
	cmd := exec.Command(kcat, "-b", b.Addr(), "-t", topic, "-P", "-K", "|", "-H", "origin=kcat")
	cmd.Stdin = strings.NewReader(lines.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat producing to %s failed: %v\n%s", b.Addr(), err, out)
	}

	var c collector
	stop := runStream(t, inputYAML(b.SeedBrokers(), topic, "g-kcat", ""), &c)
	eventually(t, "the kcat records", func() bool { return len(c.snapshot()) >= len(want) })
	stop()
	got := c.snapshot()
	if len(got) != len(want) {
		t.Fatalf("delivered %d records, want %d", len(got), len(want))
	}
	for _, d := range got {
		if want[d.key] != d.value || d.header != "kcat" || d.topic != topic {
			t.Errorf("record key %q value %q header %q topic %q: does not match what kcat produced (%q)", d.key, d.value, d.header, d.topic, want[d.key])
		}
	}
}

// TestKafkaFranzInputTLSAndSCRAM runs the input against a broker that
// requires TLS and SASL SCRAM-SHA-512.
func TestKafkaFranzInputTLSAndSCRAM(t *testing.T) {
	const topic = "secure"
	mat, err := devbroker.SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	srvTLS, err := mat.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, devbroker.Options{Topics: []string{topic}, Partitions: 2, TLS: srvTLS, SASLUser: "ingestor", SASLPass: "s3cret"})
	mech, err := kafkaclient.Mechanism("SCRAM-SHA-512", "ingestor", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	prod := manualProducer(t, b.SeedBrokers(), kgo.DialTLSConfig(mat.ClientConfig()), kgo.SASL(mech))
	produceN(t, prod, topic, 2, 0, 40)

	indented := "      " + strings.ReplaceAll(strings.TrimSpace(string(mat.CertPEM)), "\n", "\n      ")
	secure := fmt.Sprintf(`
  tls:
    enabled: true
    root_cas: |
%s
  sasl:
    - mechanism: SCRAM-SHA-512
      username: ingestor
      password: s3cret
`, indented)
	var c collector
	stop := runStream(t, inputYAML(b.SeedBrokers(), topic, "g-secure", secure), &c)
	eventually(t, "records over TLS and SCRAM", func() bool { return len(c.snapshot()) >= 40 })
	stop()
	if got := len(c.uniqueKeys()); got != 40 {
		t.Fatalf("delivered %d distinct records, want 40", got)
	}

	// Wrong password: the input must not connect.
	bad := strings.Replace(secure, "password: s3cret", "password: wrong", 1)
	conf, err := kafkaFranzInputSpec().ParseYAML(inputYAML(b.SeedBrokers(), topic, "g-secure", bad)[len("\nkafka_franz:\n"):], nil)
	if err != nil {
		t.Fatalf("parsing the config: %v", err)
	}
	in, err := newFranzInput(conf, service.MockResources())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := in.Connect(ctx); err == nil {
		t.Errorf("connecting with a wrong SCRAM password succeeded, want an error")
	}
	_ = in.Close(ctx)
}

// TestKafkaFranzInputReconnectsAfterBrokerOutage drives the input directly:
// while the broker is down it must report ErrNotConnected and refuse to
// connect; when the broker is back on the same address it must continue
// where it was, losing nothing.
func TestKafkaFranzInputReconnectsAfterBrokerOutage(t *testing.T) {
	const (
		topic = "outage"
		group = "g-outage"
	)
	devbrokertest.Gate(t)
	dir := t.TempDir()
	b1, err := devbroker.Start(devbroker.Options{Topics: []string{topic}, Partitions: 2, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	addr := b1.Addr()
	prod := manualProducer(t, []string{addr})
	produceN(t, prod, topic, 2, 0, 20)

	conf, err := kafkaFranzInputSpec().ParseYAML(inputYAML([]string{addr}, topic, group, "")[len("\nkafka_franz:\n"):], nil)
	if err != nil {
		t.Fatalf("parsing the config: %v", err)
	}
	in, err := newFranzInput(conf, service.MockResources())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	defer func() {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = in.Close(cctx)
	}()
	if err := in.Connect(ctx); err != nil {
		t.Fatalf("connecting: %v", err)
	}
	seen := map[string]int{}
	readUntil := func(n int) {
		t.Helper()
		eventually(t, fmt.Sprintf("%d distinct records", n), func() bool {
			rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			batch, ack, err := in.ReadBatch(rctx)
			if err == nil {
				for _, m := range batch {
					k, _ := m.MetaGet(meta.KafkaKey)
					seen[k]++
				}
				if err := ack(ctx, nil); err != nil {
					t.Fatalf("acknowledging: %v", err)
				}
			}
			return len(seen) >= n
		})
	}
	readUntil(20)
	admin := manualProducer(t, []string{addr})
	eventually(t, "offsets committed before the outage", func() bool {
		c := committedOffsets(t, admin, group, topic)
		return c[0] == 10 && c[1] == 10
	})

	b1.Close()
	eventually(t, "the input to report itself disconnected", func() bool {
		rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		_, _, err := in.ReadBatch(rctx)
		return errors.Is(err, service.ErrNotConnected)
	})
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = in.Connect(cctx)
	cancel()
	if err == nil {
		t.Fatalf("Connect succeeded with the broker down, want an error")
	}

	b2, err := devbroker.Start(devbroker.Options{Addr: addr, DataDir: dir})
	if err != nil {
		t.Fatalf("restarting the broker on %s: %v", addr, err)
	}
	t.Cleanup(b2.Close)
	eventually(t, "Connect to succeed once the broker is back", func() bool {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return in.Connect(cctx) == nil
	})
	prod2 := manualProducer(t, []string{addr})
	produceN(t, prod2, topic, 2, 20, 20)
	readUntil(40)
	for i := 0; i < 40; i++ {
		if seen[fmt.Sprintf("key-%d", i)] == 0 {
			t.Errorf("key-%d was never delivered", i)
		}
	}
	for k, n := range seen {
		if n > 1 {
			t.Logf("%s delivered %d times", k, n)
		}
	}
}

// gaugeCapture is a metrics exporter keeping the last value of every gauge,
// so a test can read kafka_consumer_lag.
type gaugeCapture struct {
	mu     sync.Mutex
	values map[string]int64 // name{label values} -> value
}

type captureGauge struct {
	c   *gaugeCapture
	key string
}

func (g captureGauge) Set(v int64) {
	g.c.mu.Lock()
	g.c.values[g.key] = v
	g.c.mu.Unlock()
}
func (g captureGauge) SetFloat64(v float64) { g.Set(int64(v)) }
func (g captureGauge) Incr(int64)           {}
func (g captureGauge) IncrFloat64(float64)  {}
func (g captureGauge) Decr(int64)           {}
func (g captureGauge) DecrFloat64(float64)  {}
func (g captureGauge) Timing(int64)         {}

func (c *gaugeCapture) NewCounterCtor(string, ...string) service.MetricsExporterCounterCtor {
	return func(...string) service.MetricsExporterCounter { return captureGauge{c: c} }
}
func (c *gaugeCapture) NewTimerCtor(string, ...string) service.MetricsExporterTimerCtor {
	return func(...string) service.MetricsExporterTimer { return captureGauge{c: c} }
}
func (c *gaugeCapture) NewGaugeCtor(name string, _ ...string) service.MetricsExporterGaugeCtor {
	return func(labelValues ...string) service.MetricsExporterGauge {
		return captureGauge{c: c, key: name + "{" + strings.Join(labelValues, ",") + "}"}
	}
}
func (c *gaugeCapture) Close(context.Context) error { return nil }

// get finds a gauge by name and trailing label values; the engine adds its
// own labels (component label and path) before the component's.
func (c *gaugeCapture) get(name string, labelValues ...string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	suffix := strings.Join(labelValues, ",") + "}"
	for k, v := range c.values {
		if strings.HasPrefix(k, name+"{") && strings.HasSuffix(k, suffix) {
			return v, true
		}
	}
	return 0, false
}

// TestKafkaFranzInputBackPressureAndLag blocks the output: the input must
// stop fetching at checkpoint_limit (the lag gauge stays high), then drain
// everything in order once the output moves, with the lag back at zero.
func TestKafkaFranzInputBackPressureAndLag(t *testing.T) {
	const (
		topic = "slow"
		n     = 1000
	)
	b := startBroker(t, devbroker.Options{Topics: []string{topic}, Partitions: 1})
	prod := manualProducer(t, b.SeedBrokers())
	// Separate produce calls make separate record batches, so a small
	// fetch_max_partition_bytes returns a few at a time.
	for i := 0; i < n; i += 10 {
		produceN(t, prod, topic, 1, i, 10)
	}

	capture := &gaugeCapture{values: map[string]int64{}}
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
	if err := sb.AddInputYAML(inputYAML(b.SeedBrokers(), topic, "g-slow", `
  checkpoint_limit: 20
  fetch_max_partition_bytes: 512B
  topic_lag_refresh_period: 100ms
  batching:
    count: 5
`)); err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		offsets []int
		gate    = make(chan struct{})
	)
	if err := sb.AddBatchConsumerFunc(func(ctx context.Context, batch service.MessageBatch) error {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
		mu.Lock()
		defer mu.Unlock()
		if len(batch) > 5 {
			t.Errorf("batch of %d records, want at most batching.count = 5", len(batch))
		}
		for _, m := range batch {
			v, _ := m.MetaGetMut(meta.KafkaOffset)
			offsets = append(offsets, v.(int))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	streamtest.Run(t, sb, 20*time.Second)

	eventually(t, "the lag gauge to be reported", func() bool {
		_, ok := capture.get(metricLag, topic, "0")
		return ok
	})
	// The output is blocked: with checkpoint_limit 20 the input holds a few
	// dozen records at most, so most of the partition stays unfetched. The
	// sampling spans many fetch_max_wait periods.
	for i := 0; i < 20; i++ {
		if lag, _ := capture.get(metricLag, topic, "0"); lag < n/2 {
			t.Fatalf("lag %d with the output blocked: the input fetched %d records past checkpoint_limit 20", lag, n-lag)
		}
		time.Sleep(25 * time.Millisecond)
	}

	close(gate)
	eventually(t, "all records and a zero lag", func() bool {
		mu.Lock()
		got := len(offsets)
		mu.Unlock()
		lag, _ := capture.get(metricLag, topic, "0")
		return got >= n && lag == 0
	})
	mu.Lock()
	defer mu.Unlock()
	for i, off := range offsets {
		if off != i {
			t.Fatalf("delivery %d has offset %d, want %d: records of a partition must arrive in offset order", i, off, i)
		}
	}
}

// BenchmarkKafkaFranzInput measures the input alone (ReadBatch and ack, no
// pipeline) draining a topic of small records from the embedded broker.
func BenchmarkKafkaFranzInput(b *testing.B) {
	const (
		topic = "bench"
		parts = 6
		n     = 120000 // a multiple of parts*100, for BENCH_EXTRA batching by count
	)
	br := startBroker(b, devbroker.Options{Topics: []string{topic}, Partitions: parts})
	prod := manualProducer(b, br.SeedBrokers(), kgo.ProducerLinger(5*time.Millisecond))
	for i := 0; i < n; i += 5000 {
		produceN(b, prod, topic, parts, i, 5000)
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		conf, err := kafkaFranzInputSpec().ParseYAML(inputYAML(br.SeedBrokers(), topic, fmt.Sprintf("bench-%d", i), os.Getenv("BENCH_EXTRA"))[len("\nkafka_franz:\n"):], nil)
		if err != nil {
			b.Fatal(err)
		}
		in, err := newFranzInput(conf, service.MockResources())
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		if err := in.Connect(ctx); err != nil {
			b.Fatal(err)
		}
		got := 0
		for got < n {
			batch, ack, err := in.ReadBatch(ctx)
			if err != nil {
				b.Fatalf("reading: %v", err)
			}
			got += len(batch)
			_ = ack(ctx, nil)
		}
		_ = in.Close(ctx)
	}
	b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "records/s")
}

// runToEnd runs a stream that must end by itself (end_timestamp) and
// returns once it has.
func runToEnd(t testing.TB, inputYAML string, c *collector) {
	t.Helper()
	b := service.NewStreamBuilder()
	if err := b.SetLoggerYAML("level: warn"); err != nil {
		t.Fatal(err)
	}
	if err := b.AddInputYAML(inputYAML); err != nil {
		t.Fatalf("input config rejected: %v\n%s", err, inputYAML)
	}
	if err := b.AddBatchConsumerFunc(c.consume); err != nil {
		t.Fatal(err)
	}
	s, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := s.Run(ctx); err != nil {
		t.Fatalf("the stream did not end by itself at end_timestamp: %v (delivered %d)", err, len(c.snapshot()))
	}
}

func TestKafkaFranzInputTimeRangeBackfill(t *testing.T) {
	const (
		topic = "history"
		parts = 3
		n     = 90
		group = "g-backfill"
	)
	b := startBroker(t, devbroker.Options{Topics: []string{topic}, Partitions: parts})
	prod := manualProducer(t, b.SeedBrokers())
	base := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{
			Topic: topic, Partition: int32(i % parts),
			Key: []byte(fmt.Sprintf("key-%d", i)), Value: []byte("{}"),
			Timestamp: base.Add(time.Duration(i) * time.Second),
		}
	}
	if err := prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	var c collector
	runToEnd(t, inputYAML(b.SeedBrokers(), topic, group, fmt.Sprintf(`
  start_timestamp: %s
  end_timestamp: %s
`, base.Add(20*time.Second).Format(time.RFC3339), base.Add(70*time.Second).Format(time.RFC3339))), &c)

	keys := c.uniqueKeys()
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("key-%d", i)
		inRange := i >= 20 && i < 70
		if inRange && keys[k] != 1 {
			t.Errorf("%s (in range) delivered %d times, want once", k, keys[k])
		}
		if !inRange && keys[k] != 0 {
			t.Errorf("%s (outside the range) delivered %d times", k, keys[k])
		}
	}
	// The group is committed exactly at each partition's cut-off: the
	// first record at 70s is key-70 (partition 1, offset 23), key-71
	// (partition 2, offset 23) and key-72 (partition 0, offset 24).
	committed := committedOffsets(t, newClient(t, b.SeedBrokers()), group, topic)
	want := map[int32]int64{0: 24, 1: 23, 2: 23}
	for p, off := range want {
		if committed[p] != off {
			t.Errorf("partition %d committed at %d, want the cut-off %d", p, committed[p], off)
		}
	}
}

func TestKafkaFranzInputStartOffsets(t *testing.T) {
	const (
		topic = "replay"
		parts = 3
		group = "g-offsets"
	)
	b := startBroker(t, devbroker.Options{Topics: []string{topic}, Partitions: parts})
	prod := manualProducer(t, b.SeedBrokers())
	produceN(t, prod, topic, parts, 0, 30) // offsets 0..9 on each partition
	extra := fmt.Sprintf(`
  start_offsets: [ "%[1]s:0:5", "%[1]s:2:8" ]
  end_timestamp: %[2]s
`, topic, time.Now().Add(time.Hour).Format(time.RFC3339))

	var c collector
	runToEnd(t, inputYAML(b.SeedBrokers(), topic, group, extra), &c)
	got := map[int][]int{}
	for _, d := range c.snapshot() {
		got[d.partition] = append(got[d.partition], d.offset)
	}
	want := map[int][]int{0: {5, 6, 7, 8, 9}, 1: {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 2: {8, 9}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delivered offsets per partition %v, want %v", got, want)
	}

	// A second run of the same group resumes from its commits: the
	// explicit offsets only apply to partitions without one.
	produceN(t, prod, topic, parts, 30, 3)
	var again collector
	runToEnd(t, inputYAML(b.SeedBrokers(), topic, group, fmt.Sprintf(`
  start_offsets: [ "%[1]s:0:5", "%[1]s:2:8" ]
  end_timestamp: %[2]s
`, topic, time.Now().Add(time.Hour).Format(time.RFC3339))), &again)
	keys := again.uniqueKeys()
	if len(keys) != 3 || keys["key-30"] != 1 || keys["key-31"] != 1 || keys["key-32"] != 1 {
		t.Fatalf("second run delivered %v, want only key-30, key-31, key-32", keys)
	}
}

// TestKafkaFranzInputNackWithoutReplay documents auto_replay_nacks: false:
// a rejected batch counts as done, is committed and is not redelivered.
func TestKafkaFranzInputNackWithoutReplay(t *testing.T) {
	const (
		topic = "noreplay"
		group = "g-noreplay"
	)
	b := startBroker(t, devbroker.Options{Topics: []string{topic}, Partitions: 1})
	produceN(t, manualProducer(t, b.SeedBrokers()), topic, 1, 0, 20)
	var (
		c        collector
		mu       sync.Mutex
		attempts int
	)
	c.fail = func(batch []delivery) error {
		for _, d := range batch {
			if d.offset == 7 {
				mu.Lock()
				attempts++
				mu.Unlock()
				return fmt.Errorf("rejecting offset 7")
			}
		}
		return nil
	}
	stop := runStream(t, inputYAML(b.SeedBrokers(), topic, group, `
  auto_replay_nacks: false
  batching:
    count: 5
`), &c)
	admin := newClient(t, b.SeedBrokers())
	eventually(t, "the group to commit past the rejected batch", func() bool {
		return committedOffsets(t, admin, group, topic)[0] == 20
	})
	stop()
	mu.Lock()
	defer mu.Unlock()
	if attempts != 1 {
		t.Errorf("the rejected batch was attempted %d times, want once with auto_replay_nacks off", attempts)
	}
	if got := len(c.snapshot()); got != 15 {
		t.Errorf("accepted %d records, want the 15 outside the rejected batch", got)
	}
}

// BenchmarkKafkaFranzInputPipeline measures records through a whole stream
// (input, engine, a consumer that accepts everything) with the shipped
// pipeline's per-partition batching of 100.
func BenchmarkKafkaFranzInputPipeline(b *testing.B) {
	const (
		topic = "bench_pipeline"
		parts = 6
		// A multiple of parts*100, so every batch is cut by count and the
		// measure does not include waiting for the period.
		n = 120000
	)
	br := startBroker(b, devbroker.Options{Topics: []string{topic}, Partitions: parts})
	prod := manualProducer(b, br.SeedBrokers(), kgo.ProducerLinger(5*time.Millisecond))
	for i := 0; i < n; i += 5000 {
		produceN(b, prod, topic, parts, i, 5000)
	}
	b.ResetTimer()
	var busy, shutdown time.Duration
	for i := 0; i < b.N; i++ {
		var (
			mu  sync.Mutex
			got int
		)
		all := make(chan struct{})
		sb := service.NewStreamBuilder()
		_ = sb.SetLoggerYAML("level: warn")
		if err := sb.AddInputYAML(inputYAML(br.SeedBrokers(), topic, fmt.Sprintf("benchp-%d", i), os.Getenv("BENCH_EXTRA")+`
  batching:
    count: 100
    period: 1s
`)); err != nil {
			b.Fatal(err)
		}
		if err := sb.AddBatchConsumerFunc(func(_ context.Context, batch service.MessageBatch) error {
			mu.Lock()
			got += len(batch)
			if got == n {
				close(all)
			}
			mu.Unlock()
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		s, err := sb.Build()
		if err != nil {
			b.Fatal(err)
		}
		began := time.Now()
		go func() { _ = s.Run(context.Background()) }()
		<-all
		busy += time.Since(began)
		// Shutdown (final commit, leaving the group) is not throughput.
		b.StopTimer()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		stopStart := time.Now()
		_ = s.Stop(ctx)
		shutdown += time.Since(stopStart)
		cancel()
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/busy.Seconds(), "records/s")
	b.ReportMetric(float64(shutdown.Milliseconds())/float64(b.N), "shutdown-ms")
}

// TestKafkaFranzInputRebalanceWithBatchesInFlight has the first member stuck
// on its output when a second member joins: the partitions it gives up are
// redelivered to the newcomer from the last commit (nothing skipped), and
// its late acknowledgements for them never move their commits.
func TestKafkaFranzInputRebalanceWithBatchesInFlight(t *testing.T) {
	const (
		topic = "stuck"
		parts = 4
		n     = 160
		group = "g-stuck"
	)
	b := startBroker(t, devbroker.Options{Topics: []string{topic}, Partitions: parts})
	produceN(t, manualProducer(t, b.SeedBrokers()), topic, parts, 0, n)
	admin := newClient(t, b.SeedBrokers())

	gate := make(chan struct{})
	blocked := make(chan struct{}, 1)
	var a, bb collector
	a.fail = func([]delivery) error {
		select {
		case blocked <- struct{}{}:
		default:
		}
		<-gate
		return nil
	}
	stopA := runStream(t, inputYAML(b.SeedBrokers(), topic, group, ""), &a)
	select {
	case <-blocked:
	case <-time.After(waitFor):
		t.Fatal("the first member never received a batch")
	}
	stopB := runStream(t, inputYAML(b.SeedBrokers(), topic, group, ""), &bb)
	eventually(t, "the second member to take over partitions", func() bool { return len(bb.snapshot()) > 0 })
	close(gate)

	eventually(t, "every record delivered and every partition committed to its end", func() bool {
		all := map[string]bool{}
		for _, d := range append(a.snapshot(), bb.snapshot()...) {
			all[d.key] = true
		}
		if len(all) != n {
			return false
		}
		committed := committedOffsets(t, admin, group, topic)
		for p := int32(0); p < parts; p++ {
			if committed[p] != n/parts {
				return false
			}
		}
		return true
	})
	stopA()
	stopB()
	committed := committedOffsets(t, admin, group, topic)
	for p := int32(0); p < parts; p++ {
		if committed[p] != n/parts {
			t.Errorf("partition %d committed at %d after both members left, want %d", p, committed[p], n/parts)
		}
	}
	t.Logf("first member delivered %d, second %d, for %d records", len(a.snapshot()), len(bb.snapshot()), n)
}

// TestKafkaFranzInputPartialRejection rejects one message of a batch by
// index, several times in a row: only that message is redelivered, every
// other one is accepted once, and nothing is acknowledged to Kafka before
// the rejected message is accepted.
func TestKafkaFranzInputPartialRejection(t *testing.T) {
	testPartialRejection(t, "  batching:\n    count: 10\n")
}

// With batching processors a batch is no longer one message per record, so the replayer keeps
// copies instead of building messages again from the records: the same guarantee holds.
func TestKafkaFranzInputPartialRejectionWithBatchingProcessors(t *testing.T) {
	testPartialRejection(t, "  batching:\n    count: 10\n    processors:\n      - mapping: 'root = content().uppercase()'\n")
}

func testPartialRejection(t *testing.T, batching string) {
	const (
		topic  = "partial"
		group  = "g-partial"
		n      = 100
		poison = 15
	)
	b := startBroker(t, devbroker.Options{Topics: []string{topic}, Partitions: 1})
	produceN(t, manualProducer(t, b.SeedBrokers()), topic, 1, 0, n)
	admin := newClient(t, b.SeedBrokers())

	var (
		mu         sync.Mutex
		accepted   = map[int]int{}
		rejections int
	)
	sb := service.NewStreamBuilder()
	if err := sb.SetLoggerYAML("level: warn"); err != nil {
		t.Fatal(err)
	}
	if err := sb.AddInputYAML(inputYAML(b.SeedBrokers(), topic, group, batching)); err != nil {
		t.Fatal(err)
	}
	if err := sb.AddBatchConsumerFunc(func(_ context.Context, batch service.MessageBatch) error {
		mu.Lock()
		defer mu.Unlock()
		var bErr *service.BatchError
		for i, m := range batch {
			v, _ := m.MetaGetMut(meta.KafkaOffset)
			off := v.(int)
			if off == poison && rejections < 4 {
				rejections++
				if bErr == nil {
					bErr = service.NewBatchError(batch, errors.New("partial rejection"))
				}
				bErr = bErr.Failed(i, fmt.Errorf("rejecting offset %d", off))
				continue
			}
			accepted[off]++
		}
		if bErr != nil {
			return bErr
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	streamtest.Run(t, sb, 20*time.Second)

	eventually(t, "every record accepted and committed", func() bool {
		if off := committedOffsets(t, admin, group, topic)[0]; off > poison {
			mu.Lock()
			ok := accepted[poison] > 0
			mu.Unlock()
			if !ok {
				t.Fatalf("committed offset %d passed offset %d before it was accepted", off, poison)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		return len(accepted) == n && committedOffsets(t, admin, group, topic)[0] == n
	})
	mu.Lock()
	defer mu.Unlock()
	if rejections != 4 {
		t.Errorf("offset %d rejected %d times, want 4", poison, rejections)
	}
	for off := 0; off < n; off++ {
		if accepted[off] != 1 {
			t.Errorf("offset %d accepted %d times, want once: only the rejected message is redelivered", off, accepted[off])
		}
	}
}
