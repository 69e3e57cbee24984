package kafka

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/preservarium/iot-ingestor/internal/dev/devbroker"
)

// One message that keeps failing holds back its own partition and nothing else: the other
// partitions are consumed and committed to their end while it is retried with back-off, the
// held partition takes no more than about checkpoint_limit records meanwhile, and once the
// message passes the partition resumes and completes. Before, the replayer slept its back-off
// inside ReadBatch (no partition was read meanwhile) and the input stopped fetching every
// partition once the held one reached checkpoint_limit. The same holds when the bound reached
// is the input-wide buffer_bytes: the stuck partition would otherwise fill it alone, and stop
// every partition for as long as the message fails.
func TestKafkaFranzInputStuckMessageHoldsBackOnlyItsPartition(t *testing.T) {
	// About 30 records: each is ~28 bytes (key, value, header).
	t.Run("checkpoint_limit", func(t *testing.T) { testStuckHoldsBack(t, "checkpoint_limit: 30") })
	t.Run("buffer_bytes", func(t *testing.T) { testStuckHoldsBack(t, "checkpoint_limit: 100000\n  buffer_bytes: 840B") })
}

func testStuckHoldsBack(t *testing.T, bound string) {
	const (
		topic   = "stuck"
		parts   = 6
		perPart = 300
		poison  = 3 // offset in partition 0 that is rejected until released
		group   = "g-stuck"
	)
	b := startBroker(t, devbroker.Options{Topics: []string{topic}, Partitions: parts})
	prod := manualProducer(t, b.SeedBrokers())
	// Separate produce calls make small record batches, so that fetches of 512 bytes bring a
	// few records at a time and the held partition reaches checkpoint_limit long before its end.
	for i := 0; i < parts*perPart; i += parts * 5 {
		produceN(t, prod, topic, parts, i, parts*5)
	}
	admin := newClient(t, b.SeedBrokers())

	var (
		c          collector
		mu         sync.Mutex
		rejections []time.Time
		release    = make(chan struct{})
	)
	c.fail = func(batch []delivery) error {
		for _, d := range batch {
			if d.partition != 0 || d.offset != poison {
				continue
			}
			select {
			case <-release:
				return nil
			default:
			}
			mu.Lock()
			rejections = append(rejections, time.Now())
			mu.Unlock()
			return fmt.Errorf("rejecting partition 0 offset %d", poison)
		}
		return nil
	}
	stop := runStream(t, inputYAML(b.SeedBrokers(), topic, group, fmt.Sprintf(`
  %s
  fetch_max_partition_bytes: 512B
  batching:
    count: 5
    period: 50ms
`, bound)), &c)

	delivered := func() map[int]int {
		out := map[int]int{}
		seen := map[[2]int]bool{}
		for _, d := range c.snapshot() {
			if k := [2]int{d.partition, d.offset}; !seen[k] {
				seen[k] = true
				out[d.partition]++
			}
		}
		return out
	}
	eventually(t, "partitions 1-5 to be consumed and committed to their end while partition 0 is stuck", func() bool {
		got := delivered()
		committed := committedOffsets(t, admin, group, topic)
		for p := 1; p < parts; p++ {
			if got[p] != perPart || committed[int32(p)] != perPart {
				return false
			}
		}
		return true
	})
	if off := committedOffsets(t, admin, group, topic)[0]; off > poison {
		t.Fatalf("partition 0 committed to %d, past offset %d which was never accepted", off, poison)
	}
	t.Logf("partition 0 delivered %d of %d records while stuck", delivered()[0], perPart)
	// Held back on its own: the stuck partition took about 30 records (plus a fetch or two in
	// flight), far from its end.
	if got := delivered()[0]; got > perPart/2 {
		t.Errorf("partition 0 delivered %d of %d records while stuck: it was not held back (%s)", got, perPart, bound)
	}
	mu.Lock()
	tries := len(rejections)
	mu.Unlock()
	if tries < 3 {
		t.Errorf("the stuck message was attempted %d times, want it kept retrying", tries)
	}

	close(release)
	eventually(t, "partition 0 to resume and be committed to its end once the message passes", func() bool {
		return delivered()[0] == perPart && committedOffsets(t, admin, group, topic)[0] == perPart
	})
	stop()

	// The retries backed off: after the immediate ones, successive attempts drift apart.
	mu.Lock()
	defer mu.Unlock()
	if n := len(rejections); n >= 5 {
		if early, late := rejections[1].Sub(rejections[0]), rejections[n-1].Sub(rejections[n-2]); late <= early {
			t.Errorf("retry gaps did not grow: first %v, last %v", early, late)
		}
	}
}
