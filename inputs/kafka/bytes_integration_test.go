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
  buffer_bytes: 1GiB
  batching:
    count: 1000
    period: 1h
`, bound))

	read := func(wait time.Duration) (heldBatch, bool) { return readBatch(t, in, wait) }
	partitionOf := func(m *service.Message) int {
		v, _ := m.MetaGetMut(meta.KafkaPartition)
		return v.(int)
	}

	// Nothing acknowledged: read until the input hands on nothing more for 3 s.
	var unacked []heldBatch
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
	count := func(h heldBatch) {
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

// TestKafkaFranzInputBufferBytes holds 8 partitions of readings of 100 KB with buffer_bytes
// 400 KB, and per-partition bounds no partition reaches: without the input-wide bound the
// input would hold every reading of the topic (80, 8 MB), whatever the partition count. Nobody
// acknowledges at first: the input must stop at about four readings in all (the bound, crossed
// by the last fetch of at most fetch_max_bytes). The batching policy asks for 1,000 records or
// 5 seconds, so the input must also cut the batches it holds when it stops at the bound:
// otherwise nothing would be handed on before the period, and without a period never. Then
// everything is acknowledged: every reading arrives (the tail of each partition with the
// period) and the group commits every partition to its end.
func TestKafkaFranzInputBufferBytes(t *testing.T) {
	const (
		topic    = "buffered-readings"
		group    = "g-buffered-readings"
		parts    = 8
		perPart  = 10
		size     = 100_000
		bound    = 400_000
		maxFetch = 250_000 // fetch_max_bytes: a fetch brings at most 3 readings
	)
	b := startBroker(t, devbroker.Options{Topics: []string{topic}, Partitions: parts})
	// Uncompressed, so that fetch_max_bytes counts what a fetch brings.
	prod := manualProducer(t, b.SeedBrokers(), kgo.ProducerBatchCompression(kgo.NoCompression()))
	for i := 0; i < perPart; i++ {
		for p := int32(0); p < parts; p++ {
			// One produce call per record: each is a record batch of its own.
			r := &kgo.Record{Topic: topic, Partition: p, Key: []byte(fmt.Sprintf("k-%d-%d", p, i)), Value: bytes.Repeat([]byte{'x'}, size)}
			if err := prod.ProduceSync(context.Background(), r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}

	in := startInput(t, b.SeedBrokers(), topic, group, fmt.Sprintf(`
  checkpoint_limit: 100000
  partition_buffer_bytes: 100MiB
  buffer_bytes: %dB
  fetch_max_bytes: %dB
  fetch_max_partition_bytes: %dB
  batching:
    count: 1000
    period: 5s
`, bound, maxFetch, maxFetch))

	read := func(wait time.Duration) (heldBatch, bool) { return readBatch(t, in, wait) }

	// Read until nothing more comes for longer than the period (without the bound the period
	// would hand on every reading by then), and not as long as stuckAfter: batches unacknowledged
	// that long count as stuck, and their partitions as held back (see holdBack).
	var unacked []heldBatch
	n := 0
	started := time.Now()
	var first time.Duration
	for {
		h, ok := read(7 * time.Second)
		if !ok {
			break
		}
		if first == 0 {
			first = time.Since(started)
		}
		unacked = append(unacked, h)
		n += len(h.batch)
	}
	t.Logf("handed on without acknowledgements: %d readings in %d batches, the first after %v", n, len(unacked), first)
	if first == 0 || first > 2500*time.Millisecond {
		t.Errorf("the first batch came after %v, want it well before the batching period (5s): at buffer_bytes the input cuts the batches it holds", first)
	}
	// At most: what was held below the bound (3 readings), the fetch that crossed it, and the
	// fetch franz-go had buffered meanwhile.
	if lo, hi := bound/size, bound/size-1+2*(maxFetch/size+1); n < lo || n > hi {
		t.Errorf("the input handed on %d readings of %d bytes with none acknowledged, want %d to %d: buffer_bytes %d bounds what the input holds across its partitions, and the batches it holds are cut there", n, size, lo, hi, bound)
	}

	delivered := 0
	ack := func(h heldBatch) {
		delivered += len(h.batch)
		if err := h.ack(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range unacked {
		ack(h)
	}
	deadline := time.Now().Add(waitFor)
	for delivered < parts*perPart {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v: delivered %d of %d readings", waitFor, delivered, parts*perPart)
		}
		if h, ok := read(time.Second); ok {
			ack(h)
		}
	}
	admin := newClient(t, b.SeedBrokers())
	eventually(t, "every partition committed to its end", func() bool {
		c := committedOffsets(t, admin, group, topic)
		for p := int32(0); p < parts; p++ {
			if c[p] != perPart {
				return false
			}
		}
		return true
	})
}

// heldBatch is a batch read from the input and not yet acknowledged.
type heldBatch struct {
	batch service.MessageBatch
	ack   service.AckFunc
}

// readBatch reads the input's next batch; false when none comes within wait.
func readBatch(t *testing.T, in *franzInput, wait time.Duration) (heldBatch, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	batch, ack, err := in.ReadBatch(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return heldBatch{}, false
	}
	if err != nil {
		t.Fatalf("reading a batch: %v", err)
	}
	return heldBatch{batch, ack}, true
}
