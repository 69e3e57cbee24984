package outputs

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/preservarium/iot-ingestor/internal/dev/devbroker"
	"github.com/preservarium/iot-ingestor/internal/testkit/devbrokertest"
)

// connectedOutput builds and connects a kafka_franz output from the YAML of its fields.
func connectedOutput(t *testing.T, yaml string) *franzOutput {
	t.Helper()
	conf, err := kafkaFranzOutputSpec().ParseYAML(yaml, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := newFranzOutput(conf, service.MockResources())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	t.Cleanup(func() { _ = out.Close(context.Background()) })
	if err := out.Connect(ctx); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	return out
}

func withMeta(body string, meta map[string]string) *service.Message {
	m := service.NewMessage([]byte(body))
	for k, v := range meta {
		m.MetaSetMut(k, v)
	}
	return m
}

// partitioner manual puts each record on the partition `partition` gives; a value that is
// not a partition of the topic fails its message alone.
func TestKafkaFranzOutputManualPartition(t *testing.T) {
	b := startKafka(t, devbroker.Options{Topics: []string{"errs"}, Partitions: 3})
	out := connectedOutput(t, fmt.Sprintf("seed_brokers: [ %q ]\ntopic: errs\npartitioner: manual\npartition: '${! @p }'\n", b.Addr()))
	batch := service.MessageBatch{
		withMeta("a", map[string]string{"p": "2"}),
		withMeta("b", map[string]string{"p": "0"}),
		withMeta("c", map[string]string{"p": "x"}),
		withMeta("d", map[string]string{"p": "1"}),
		withMeta("e", map[string]string{"p": "2"}),
		withMeta("f", map[string]string{"p": "7"}),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	failed := failedMessages(t, out.WriteBatch(ctx, batch))
	if len(failed) != 2 || !strings.Contains(failed[2], `partition "x" is not a partition number`) || failed[5] == "" {
		t.Fatalf("failed messages %v, want exactly 2 (not a number) and 5 (no partition 7)", failed)
	}
	got := map[string]int32{}
	for _, r := range readAll(t, b.SeedBrokers(), "errs", 4) {
		got[string(r.Value)] = r.Partition
	}
	want := map[string]int32{"a": 2, "b": 0, "d": 1, "e": 2}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("partitions by value: got %v, want %v", got, want)
	}
}

// partitioner round_robin spreads records without a key evenly; the default (murmur2_hash,
// sticky for records without a key) puts one batch of them on one partition.
func TestKafkaFranzOutputRoundRobin(t *testing.T) {
	for _, tc := range []struct {
		partitioner string
		want        string // records per partition, sorted
	}{
		{"round_robin", "[3 3 3]"},
		{"", "[9]"},
	} {
		b := startKafka(t, devbroker.Options{Topics: []string{"errs"}, Partitions: 3})
		yaml := fmt.Sprintf("seed_brokers: [ %q ]\ntopic: errs\n", b.Addr())
		if tc.partitioner != "" {
			yaml += "partitioner: " + tc.partitioner + "\n"
		}
		out := connectedOutput(t, yaml)
		var batch service.MessageBatch
		for i := 0; i < 9; i++ {
			batch = append(batch, service.NewMessage([]byte(fmt.Sprint(i))))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if err := out.WriteBatch(ctx, batch); err != nil {
			t.Fatal(err)
		}
		cancel()
		per := map[int32]int{}
		for _, r := range readAll(t, b.SeedBrokers(), "errs", 9) {
			per[r.Partition]++
		}
		var counts []int
		for _, n := range per {
			counts = append(counts, n)
		}
		if fmt.Sprint(counts) != tc.want {
			t.Errorf("partitioner %q: records per partition %v, want %s", tc.partitioner, per, tc.want)
		}
	}
}

// timestamp_ms sets the record's timestamp; a value that is not an integer fails its message.
func TestKafkaFranzOutputTimestampMs(t *testing.T) {
	b := startKafka(t, devbroker.Options{Topics: []string{"errs"}, Partitions: 1})
	out := connectedOutput(t, fmt.Sprintf("seed_brokers: [ %q ]\ntopic: errs\ntimestamp_ms: '${! @ts }'\n", b.Addr()))
	batch := service.MessageBatch{
		withMeta("old", map[string]string{"ts": "1600000000123"}),
		withMeta("bad", map[string]string{"ts": "soon"}),
		withMeta("new", map[string]string{"ts": "1764238502118"}),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	failed := failedMessages(t, out.WriteBatch(ctx, batch))
	if len(failed) != 1 || !strings.Contains(failed[1], `timestamp_ms "soon" is not a time in milliseconds`) {
		t.Fatalf("failed messages %v, want exactly 1 (not a number)", failed)
	}
	got := map[string]int64{}
	for _, r := range readAll(t, b.SeedBrokers(), "errs", 2) {
		got[string(r.Value)] = r.Timestamp.UnixMilli()
	}
	if got["old"] != 1600000000123 || got["new"] != 1764238502118 {
		t.Fatalf("timestamps by value: %v", got)
	}
}

// acks below all, without the idempotent producer, still write every record.
func TestKafkaFranzOutputAcks(t *testing.T) {
	for _, acks := range []string{"leader", "none"} {
		b := startKafka(t, devbroker.Options{Topics: []string{"errs"}, Partitions: 1})
		out := connectedOutput(t, fmt.Sprintf("seed_brokers: [ %q ]\ntopic: errs\nacks: %s\nidempotent_write: false\n", b.Addr(), acks))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if err := out.WriteBatch(ctx, service.MessageBatch{service.NewMessage([]byte("a")), service.NewMessage([]byte("b"))}); err != nil {
			t.Fatalf("acks %s: %v", acks, err)
		}
		cancel()
		if got := readAll(t, b.SeedBrokers(), "errs", 2); len(got) != 2 {
			t.Fatalf("acks %s: read %d records, want 2", acks, len(got))
		}
	}
}

// allow_auto_topic_creation: by default (Connect's true) a missing topic is created by a
// broker that allows it; with false, a missing static topic fails Connect with its name, and a
// record for a missing interpolated topic fails its message saying why.
func TestKafkaFranzOutputAutoTopicCreation(t *testing.T) {
	devbrokertest.Gate(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.SeedTopics(1, "errs"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	addr := c.ListenAddrs()[0]

	out := connectedOutput(t, fmt.Sprintf("seed_brokers: [ %q ]\ntopic: fresh\n", addr))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := out.WriteBatch(ctx, service.MessageBatch{service.NewMessage([]byte("a"))}); err != nil {
		t.Fatalf("writing to a topic the broker may create: %v", err)
	}
	if got := readAll(t, []string{addr}, "fresh", 1); string(got[0].Value) != "a" {
		t.Fatalf("read %q from the created topic", got[0].Value)
	}

	conf, err := kafkaFranzOutputSpec().ParseYAML(fmt.Sprintf("seed_brokers: [ %q ]\ntopic: missing\nallow_auto_topic_creation: false\ntimeout: 3s\n", addr), nil)
	if err != nil {
		t.Fatal(err)
	}
	static, err := newFranzOutput(conf, service.MockResources())
	if err != nil {
		t.Fatal(err)
	}
	defer static.Close(ctx)
	cerr := static.Connect(ctx)
	if cerr == nil || !strings.Contains(cerr.Error(), `topic "missing" does not exist and allow_auto_topic_creation is false`) {
		t.Fatalf("Connect to a missing topic without auto creation: got %v, want the topic named", cerr)
	}

	dyn := connectedOutput(t, fmt.Sprintf("seed_brokers: [ %q ]\ntopic: '${! @target }'\nallow_auto_topic_creation: false\ntimeout: 5s\n", addr))
	batch := service.MessageBatch{withMeta("x", map[string]string{"target": "errs"}), withMeta("y", map[string]string{"target": "absent"})}
	failed := failedMessages(t, dyn.WriteBatch(ctx, batch))
	if len(failed) != 1 || !strings.Contains(failed[1], "the topic does not exist and allow_auto_topic_creation is false") {
		t.Fatalf("failed messages %v, want exactly 1 (the missing topic, named as such)", failed)
	}
	topics, err := kadm.NewClient(mustClient(t, addr)).ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if topics.Has("absent") || topics.Has("missing") {
		t.Fatalf("topics were created with allow_auto_topic_creation false: %v", topics.Names())
	}
}

func mustClient(t *testing.T, addr string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}
