package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/preservarium/iot-ingestor/internal/dev/devbroker"
	"github.com/preservarium/iot-ingestor/internal/meta"
)

// TestKafkaFranzInputPartitionBufferBytes sends readings of 1 MB with partition_buffer_bytes
// 4 MB and a checkpoint_limit no partition reaches. Nobody acknowledges at first: each
// partition must stop at about four readings (the bound, crossed by the last fetch), where
// without the bound it holds every reading of the topic. The batching policy asks for 1,000
// records or an hour, so a batch is also cut at the bound: otherwise the held readings would
// wait for the hour. Then everything is acknowledged: every reading arrives, the one of 6 MB
// (larger than the bound) alone in its batch, and the group commits every partition to its end.
func TestKafkaFranzInputPartitionBufferBytes(t *testing.T) {
	const (
		topic   = "huge-readings"
		group   = "g-huge-readings"
		parts   = 2
		perPart = 12
		size    = 1_000_000
		bound   = 4_000_000
		huge    = 6_000_000 // the last record of partition 0, larger than the bound
	)
	b := startBroker(t, devbroker.Options{Topics: []string{topic}, Partitions: parts})
	prod := manualProducer(t, b.SeedBrokers(), kgo.ProducerBatchMaxBytes(8<<20))
	produce := func(p int32, i, n int) {
		// One produce call per record: each is a record batch of its own, so a fetch of
		// fetch_max_partition_bytes (256KiB) brings one reading per partition.
		v := bytes.Repeat([]byte{'x'}, n)
		r := &kgo.Record{Topic: topic, Partition: p, Key: []byte(fmt.Sprintf("k-%d-%d", p, i)), Value: v}
		if err := prod.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatalf("producing a reading of %d bytes: %v", n, err)
		}
	}
	for i := 0; i < perPart; i++ {
		for p := int32(0); p < parts; p++ {
			produce(p, i, size)
		}
	}
	produce(0, perPart, huge)

	in := startInput(t, b.SeedBrokers(), topic, group, fmt.Sprintf(`
  checkpoint_limit: 100000
  partition_buffer_bytes: %dB
  batching:
    count: 1000
    period: 1h
`, bound))

	type held struct {
		batch service.MessageBatch
		ack   service.AckFunc
	}
	read := func(wait time.Duration) (held, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		batch, ack, err := in.ReadBatch(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			return held{}, false
		}
		if err != nil {
			t.Fatalf("reading a batch: %v", err)
		}
		return held{batch, ack}, true
	}
	partitionOf := func(m *service.Message) int {
		v, _ := m.MetaGetMut(meta.KafkaPartition)
		return v.(int)
	}

	// Nothing acknowledged: read until the input hands on nothing more for 3 s.
	var unacked []held
	perPartition := map[int]int{}
	for {
		h, ok := read(3 * time.Second)
		if !ok {
			break
		}
		unacked = append(unacked, h)
		for _, m := range h.batch {
			perPartition[partitionOf(m)]++
		}
	}
	t.Logf("held without acknowledgements, per partition: %v", perPartition)
	for p := 0; p < parts; p++ {
		// The last fetch below the bound crosses it by one reading.
		if n := perPartition[p]; n < bound/size || n > bound/size+1 {
			t.Errorf("partition %d holds %d readings of %d bytes unacknowledged, want %d or %d: partition_buffer_bytes %d bounds what a partition holds", p, n, size, bound/size, bound/size+1, bound)
		}
	}

	var (
		delivered = map[int]int{}
		hugeAlone bool
	)
	count := func(h held) {
		for _, m := range h.batch {
			delivered[partitionOf(m)]++
			if b, _ := m.AsBytes(); len(b) == huge {
				hugeAlone = len(h.batch) == 1
			}
		}
		if err := h.ack(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range unacked {
		count(h)
	}
	deadline := time.Now().Add(waitFor)
	for delivered[0] < perPart+1 || delivered[1] < perPart {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v: delivered %v of %d+1 and %d readings", waitFor, delivered, perPart, perPart)
		}
		if h, ok := read(time.Second); ok {
			count(h)
		}
	}
	if !hugeAlone {
		t.Errorf("the reading of %d bytes (over partition_buffer_bytes %d) did not arrive alone in its batch", huge, bound)
	}
	admin := newClient(t, b.SeedBrokers())
	eventually(t, "every partition committed to its end", func() bool {
		c := committedOffsets(t, admin, group, topic)
		return c[0] == perPart+1 && c[1] == perPart
	})
}
