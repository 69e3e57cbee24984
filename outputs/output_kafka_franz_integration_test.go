package outputs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/preservarium/iot-ingestor/internal/dev/devbroker"
	"github.com/preservarium/iot-ingestor/internal/kafkaclient"
	"github.com/preservarium/iot-ingestor/internal/testkit/devbrokertest"
)

func startKafka(t testing.TB, o devbroker.Options) *devbroker.Broker {
	t.Helper()
	devbrokertest.Gate(t)
	b, err := devbroker.Start(o)
	if err != nil {
		t.Fatalf("starting the embedded broker: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

// readAll consumes every record of a topic from the start, directly by
// partition, until want records are read.
func readAll(t testing.TB, seeds []string, topic string, want int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records from %s before giving up", len(out), want, topic)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

func outputYAML(seeds []string, extra string) string {
	return fmt.Sprintf(`
kafka_franz:
  seed_brokers: [ %q ]
  topic: '${! @target }'
  key: '${! json("id") }'
  metadata:
    include_prefixes: [ "h_" ]
  timeout: 3s
%s`, strings.Join(seeds, ","), extra)
}

// runOutput builds a stream whose input is a producer func and whose output
// is the given kafka_franz config.
func runOutput(t testing.TB, outYAML string) (service.MessageBatchHandlerFunc, func()) {
	t.Helper()
	sb := service.NewStreamBuilder()
	if err := sb.SetLoggerYAML("level: warn"); err != nil {
		t.Fatal(err)
	}
	send, err := sb.AddBatchProducerFunc()
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.AddOutputYAML(outYAML); err != nil {
		t.Fatalf("output config rejected: %v\n%s", err, outYAML)
	}
	s, err := sb.Build()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		// A stream whose output never connected stops only at this
		// deadline; the others stop at once.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
		<-done
	}
	t.Cleanup(stop)
	return send, stop
}

func msg(id, target string, meta map[string]string) *service.Message {
	m := service.NewMessage([]byte(fmt.Sprintf(`{"id":%q}`, id)))
	m.MetaSetMut("target", target)
	for k, v := range meta {
		m.MetaSetMut(k, v)
	}
	return m
}

func TestKafkaFranzOutputTopicKeyHeaders(t *testing.T) {
	b := startKafka(t, devbroker.Options{Topics: []string{"errs", "other"}, Partitions: 3})
	send, stop := runOutput(t, outputYAML(b.SeedBrokers(), ""))

	batch := service.MessageBatch{
		msg("r1", "errs", map[string]string{"h_kind": "validation", "secret": "x"}),
		msg("r2", "other", map[string]string{"h_kind": "write", "h_source": "t/1/2"}),
		msg("", "errs", nil),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := send(ctx, batch); err != nil {
		t.Fatalf("writing the batch: %v", err)
	}
	stop()

	type rec struct{ topic, key, value, headers string }
	flatten := func(r *kgo.Record) rec {
		var hs []string
		for _, h := range r.Headers {
			hs = append(hs, h.Key+"="+string(h.Value))
		}
		sort.Strings(hs)
		return rec{r.Topic, string(r.Key), string(r.Value), strings.Join(hs, ",")}
	}
	var got []rec
	for _, r := range readAll(t, b.SeedBrokers(), "errs", 2) {
		got = append(got, flatten(r))
	}
	for _, r := range readAll(t, b.SeedBrokers(), "other", 1) {
		got = append(got, flatten(r))
	}
	sort.Slice(got, func(i, j int) bool { return got[i].value < got[j].value })
	want := []rec{
		{"errs", "", `{"id":""}`, ""},
		{"errs", "r1", `{"id":"r1"}`, "h_kind=validation"},
		{"other", "r2", `{"id":"r2"}`, "h_kind=write,h_source=t/1/2"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("records:\n got %v\nwant %v", got, want)
	}
}

func TestKafkaFranzOutputReadBackByKcat(t *testing.T) {
	devbrokertest.Gate(t)
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatalf("kcat not found on PATH: install it with `apt-get update && apt-get install -y kcat`")
	}
	b := startKafka(t, devbroker.Options{Topics: []string{"errs"}, Partitions: 2})
	send, stop := runOutput(t, outputYAML(b.SeedBrokers(), "  compression: snappy\n"))
	var batch service.MessageBatch
	for i := 0; i < 20; i++ {
		batch = append(batch, msg(fmt.Sprintf("id-%02d", i), "errs", map[string]string{"h_n": fmt.Sprint(i)}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := send(ctx, batch); err != nil {
		t.Fatalf("writing the batch: %v", err)
	}
	stop()

	out, err := exec.Command(kcat, "-C", "-b", b.Addr(), "-t", "errs", "-o", "beginning", "-e", "-q",
		"-f", "%k|%s|%h\n").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat consuming from %s failed: %v\n%s", b.Addr(), err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	sort.Strings(lines)
	if len(lines) != 20 {
		t.Fatalf("kcat read %d records, want 20:\n%s", len(lines), out)
	}
	for i, l := range lines {
		want := fmt.Sprintf(`id-%02d|{"id":"id-%02d"}|h_n=%d`, i, i, i)
		if l != want {
			t.Errorf("kcat line %d: got %q, want %q", i, l, want)
		}
	}
}

// TestKafkaFranzOutputAbsentBrokerFails checks that nothing is acknowledged
// when no broker listens: the component reports the failure, and in a
// pipeline the message stays unacknowledged.
func TestKafkaFranzOutputAbsentBrokerFails(t *testing.T) {
	// A port that was free a moment ago: nothing listens there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	conf, err := kafkaFranzOutputSpec().ParseYAML(outputYAML([]string{addr}, "")[len("\nkafka_franz:\n"):], nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := newFranzOutput(conf, service.MockResources())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	defer out.Close(ctx)
	if err := out.Connect(ctx); err == nil {
		t.Fatalf("Connect to %s succeeded with no broker there", addr)
	}
	werr := out.WriteBatch(ctx, service.MessageBatch{msg("a", "errs", nil), msg("b", "errs", nil)})
	if werr == nil {
		t.Fatalf("WriteBatch to an absent broker returned nil (an ack)")
	}
	if !errors.Is(werr, service.ErrNotConnected) {
		t.Errorf("WriteBatch to an absent broker: got %v, want ErrNotConnected", werr)
	}

	// Pipeline level: the send never reports success.
	send, _ := runOutput(t, outputYAML([]string{addr}, ""))
	sctx, scancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer scancel()
	if err := send(sctx, service.MessageBatch{msg("c", "errs", nil)}); err == nil {
		t.Fatalf("a message sent to an absent broker was acknowledged")
	}
}

// TestKafkaFranzOutputPerMessageFailure writes a batch where one record is
// too large: only that message fails, the others are stored.
func TestKafkaFranzOutputPerMessageFailure(t *testing.T) {
	b := startKafka(t, devbroker.Options{Topics: []string{"errs"}, Partitions: 1})
	conf, err := kafkaFranzOutputSpec().ParseYAML(outputYAML(b.SeedBrokers(), "  max_message_bytes: 64KiB\n")[len("\nkafka_franz:\n"):], nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := newFranzOutput(conf, service.MockResources())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	defer out.Close(ctx)
	if err := out.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	big := service.NewMessage([]byte(`{"id":"big","pad":"` + strings.Repeat("x", 200<<10) + `"}`))
	big.MetaSetMut("target", "errs")
	noTopic := service.NewMessage([]byte(`{"id":"nt"}`))
	noTopic.MetaSetMut("target", "")
	batch := service.MessageBatch{msg("ok1", "errs", nil), big, msg("ok2", "errs", nil), noTopic}
	werr := out.WriteBatch(ctx, batch)
	var bErr *service.BatchError
	if !errors.As(werr, &bErr) {
		t.Fatalf("got %v, want a BatchError naming the failed messages", werr)
	}
	failed := map[int]string{}
	bErr.WalkMessages(func(i int, _ *service.Message, err error) bool {
		if err != nil {
			failed[i] = err.Error()
		}
		return true
	})
	if len(failed) != 2 || failed[1] == "" || failed[3] == "" {
		t.Fatalf("failed messages %v, want exactly 1 (too large) and 3 (empty topic)", failed)
	}
	got := readAll(t, b.SeedBrokers(), "errs", 2)
	if len(got) != 2 || string(got[0].Key) != "ok1" || string(got[1].Key) != "ok2" {
		t.Fatalf("stored records: %v, want ok1 and ok2", got)
	}
}

func TestKafkaFranzOutputTLSAndSCRAM(t *testing.T) {
	mat, err := devbroker.SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	srvTLS, err := mat.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	b := startKafka(t, devbroker.Options{Topics: []string{"errs"}, Partitions: 1, TLS: srvTLS, SASLUser: "ingestor", SASLPass: "s3cret"})
	indented := "      " + strings.ReplaceAll(strings.TrimSpace(string(mat.CertPEM)), "\n", "\n      ")
	send, stop := runOutput(t, outputYAML(b.SeedBrokers(), fmt.Sprintf(`
  tls:
    enabled: true
    root_cas: |
%s
  sasl:
    - mechanism: SCRAM-SHA-256
      username: ingestor
      password: s3cret
`, indented)))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := send(ctx, service.MessageBatch{msg("s1", "errs", nil)}); err != nil {
		t.Fatalf("writing over TLS and SCRAM: %v", err)
	}
	stop()
	mech, err := kafkaclient.Mechanism(kafkaclient.MechanismScramSHA256, "ingestor", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, b.SeedBrokers(), "errs", 1, kgo.DialTLSConfig(mat.ClientConfig()), kgo.SASL(mech))
	if string(got[0].Key) != "s1" {
		t.Fatalf("read key %q, want s1", got[0].Key)
	}
}

// BenchmarkKafkaFranzOutput measures synchronous produce of batches of 100
// small records (acks=all, idempotent) to the embedded broker.
func BenchmarkKafkaFranzOutput(b *testing.B) {
	br := startKafka(b, devbroker.Options{Topics: []string{"errs"}, Partitions: 6})
	conf, err := kafkaFranzOutputSpec().ParseYAML(outputYAML(br.SeedBrokers(), "")[len("\nkafka_franz:\n"):], nil)
	if err != nil {
		b.Fatal(err)
	}
	out, err := newFranzOutput(conf, service.MockResources())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	defer out.Close(ctx)
	if err := out.Connect(ctx); err != nil {
		b.Fatal(err)
	}
	batch := make(service.MessageBatch, 100)
	for i := range batch {
		batch[i] = msg(fmt.Sprintf("id-%d", i), "errs", map[string]string{"h_kind": "write"})
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if err := out.WriteBatch(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(batch)*b.N)/time.Since(start).Seconds(), "records/s")
}
