package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/preservarium/iot-ingestor/internal/dev/devbroker"
	"github.com/preservarium/iot-ingestor/internal/meta"
	"github.com/preservarium/iot-ingestor/internal/nackreplay"
)

// readOne reads a batch from in, failing the test after wait.
func readOne(t *testing.T, in service.BatchInput, wait time.Duration) (service.MessageBatch, service.AckFunc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	batch, ack, err := in.ReadBatch(ctx)
	if err != nil {
		t.Fatalf("reading a batch: %v", err)
	}
	return batch, ack
}

// The metadata Redpanda Connect's input sets beside ours: kafka_lag (the high watermark at the
// fetch minus the offset minus 1) and kafka_tombstone_message (a null value); and with
// multi_header a header key repeated in a record keeps every value, in order, where without
// it the key holds one string.
func TestKafkaFranzInputConnectMetadata(t *testing.T) {
	const topic = "connect-meta"
	b := startBroker(t, devbroker.Options{Topics: []string{topic}, Partitions: 1})
	prod := manualProducer(t, b.SeedBrokers())
	recs := make([]*kgo.Record, 5)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Value: []byte(fmt.Sprintf(`{"n":%d}`, i)), Headers: []kgo.RecordHeader{
			{Key: "tag", Value: []byte("a")}, {Key: "tag", Value: []byte("b")}, {Key: meta.KafkaTopic, Value: []byte("x")}, {Key: meta.KafkaTopic, Value: []byte("y")},
		}}
	}
	recs[4].Value = nil // a tombstone
	if err := prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	for _, multi := range []bool{false, true} {
		t.Run(fmt.Sprintf("multi_header %v", multi), func(t *testing.T) {
			in := startInput(t, b.SeedBrokers(), topic, fmt.Sprintf("g-connect-meta-%v", multi), fmt.Sprintf("  multi_header: %v\n  batching:\n    count: 5\n", multi))
			batch, ack := readOne(t, in, waitFor)
			defer func() { _ = ack(context.Background(), nil) }()
			if len(batch) != 5 {
				t.Fatalf("got %d messages, want the 5 records in one batch", len(batch))
			}
			for i, m := range batch {
				lag, _ := m.MetaGetMut(meta.KafkaLag)
				if lag != int64(4-i) {
					t.Errorf("record %d: %s = %v, want %d (high watermark 5 - offset - 1)", i, meta.KafkaLag, lag, 4-i)
				}
				tomb, _ := m.MetaGetMut(meta.KafkaTombstoneMessage)
				if tomb != (i == 4) {
					t.Errorf("record %d: %s = %v, want %v", i, meta.KafkaTombstoneMessage, tomb, i == 4)
				}
				tag, _ := m.MetaGetMut("tag")
				forged, _ := m.MetaGetMut(reservedHeaderPrefix + meta.KafkaTopic)
				if multi {
					if l, ok := tag.([]any); !ok || !slices.Equal(l, []any{"a", "b"}) {
						t.Errorf("record %d: tag = %#v, want both values [a b]", i, tag)
					}
					if l, ok := forged.([]any); !ok || !slices.Equal(l, []any{"x", "y"}) {
						t.Errorf("record %d: %s = %#v, want [x y] under the prefixed name", i, reservedHeaderPrefix+meta.KafkaTopic, forged)
					}
				} else if tag != "b" {
					t.Errorf("record %d: tag = %#v, want the last value b", i, tag)
				}
				if topicOf, _ := m.MetaGetMut(meta.KafkaTopic); topicOf != topic {
					t.Errorf("record %d: %s = %#v, want %q whatever the headers say", i, meta.KafkaTopic, topicOf, topic)
				}
			}
		})
	}
}

// timely_nacks_maximum_wait: a batch nobody answers is rejected after the wait and so
// delivered again by the nack replayer; its late acknowledgement is ignored, and once the
// redelivery is acknowledged the offset is committed. Without the wait the unanswered batch is
// never delivered again.
func TestKafkaFranzInputTimelyNacks(t *testing.T) {
	const topic = "timely-nacks"
	b := startBroker(t, devbroker.Options{Topics: []string{topic}, Partitions: 1})
	produceN(t, manualProducer(t, b.SeedBrokers()), topic, 1, 0, 3)
	admin := newClient(t, b.SeedBrokers())

	for _, wait := range []time.Duration{0, 300 * time.Millisecond} {
		t.Run(fmt.Sprintf("wait %v", wait), func(t *testing.T) {
			group := fmt.Sprintf("g-timely-%v", wait)
			raw := startInput(t, b.SeedBrokers(), topic, group, "  batching:\n    count: 3\n")
			in := withTimelyNacks(nackreplay.Wrap(raw), wait)
			first, lateAck := readOne(t, in, waitFor)

			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			again, ack, err := in.ReadBatch(ctx)
			cancel()
			if wait == 0 {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("without timely_nacks_maximum_wait the unanswered batch came again (%d messages, %v)", len(again), err)
				}
				_ = lateAck(context.Background(), nil)
				return
			}
			if err != nil {
				t.Fatalf("the batch unanswered for %v was not delivered again within 3 s: %v", wait, err)
			}
			offsets := func(b service.MessageBatch) []int64 {
				var out []int64
				for _, m := range b {
					o, _ := meta.Int(m, meta.KafkaOffset)
					out = append(out, o)
				}
				return out
			}
			if !slices.Equal(offsets(again), offsets(first)) {
				t.Fatalf("redelivered offsets %v, want those of the unanswered batch %v", offsets(again), offsets(first))
			}
			if err := lateAck(context.Background(), nil); err != nil {
				t.Fatalf("late acknowledgement: %v", err)
			}
			if err := ack(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the redelivered batch committed", func() bool {
				return committedOffsets(t, admin, group, topic)[0] == 3
			})
		})
	}
}

// regexp_topics: the entries of topics are regular expressions, as in Redpanda Connect:
// both matching topics are consumed, the other one is not.
func TestKafkaFranzInputRegexpTopics(t *testing.T) {
	topics := []string{"rx_a", "rx_b", "other"}
	b := startBroker(t, devbroker.Options{Topics: topics, Partitions: 1})
	prod := manualProducer(t, b.SeedBrokers())
	for _, tp := range topics {
		produceN(t, prod, tp, 1, 0, 2)
	}
	var c collector
	runStream(t, inputYAML(b.SeedBrokers(), "^rx_", "g-regexp-topics", "  regexp_topics: true\n"), &c)
	eventually(t, "both rx_ topics consumed", func() bool {
		seen := map[string]int{}
		for _, d := range c.snapshot() {
			seen[d.topic]++
		}
		return seen["rx_a"] == 2 && seen["rx_b"] == 2
	})
	for _, d := range c.snapshot() {
		if d.topic == "other" {
			t.Fatalf("topic %q, which ^rx_ does not match, was consumed", d.topic)
		}
	}
}
