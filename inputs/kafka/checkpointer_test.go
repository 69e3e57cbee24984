package kafka

import (
	"math/rand"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestCheckpointerOutOfOrderAcks(t *testing.T) {
	// Five batches of offsets [0,10), [10,20) ... [40,50), acknowledged in
	// the order below; after each ack the committable offset must be the
	// end of the longest fully acknowledged prefix.
	tests := []struct {
		name  string
		order []int
		want  []int64 // committable offset after each ack, -1 for none
		freed []int
	}{
		{
			name:  "in order",
			order: []int{0, 1, 2, 3, 4},
			want:  []int64{10, 20, 30, 40, 50},
			freed: []int{10, 10, 10, 10, 10},
		},
		{
			name:  "reverse",
			order: []int{4, 3, 2, 1, 0},
			want:  []int64{-1, -1, -1, -1, 50},
			freed: []int{0, 0, 0, 0, 50},
		},
		{
			name:  "later batch acked while earlier in flight",
			order: []int{0, 2, 3, 1, 4},
			want:  []int64{10, 10, 10, 40, 50},
			freed: []int{10, 0, 0, 30, 10},
		},
		{
			name:  "first batch last",
			order: []int{1, 2, 3, 4, 0},
			want:  []int64{-1, -1, -1, -1, 50},
			freed: []int{0, 0, 0, 0, 50},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c checkpointer
			cps := make([]*checkpoint, 5)
			for i := range cps {
				cps[i] = c.track(kgo.EpochOffset{Epoch: 1, Offset: int64(i+1) * 10}, 10, 1000)
			}
			if got := c.inFlight(); got != 50 {
				t.Fatalf("in flight after tracking: got %d, want 50", got)
			}
			for step, idx := range tc.order {
				freed, freedBytes := c.release(cps[idx])
				if freed != tc.freed[step] {
					t.Errorf("step %d (ack batch %d): freed %d records, want %d", step, idx, freed, tc.freed[step])
				}
				if want := int64(tc.freed[step]) * 100; freedBytes != want {
					t.Errorf("step %d (ack batch %d): freed %d bytes, want %d (100 a record)", step, idx, freedBytes, want)
				}
				off, ok := c.offset()
				got := int64(-1)
				if ok {
					got = off.Offset
				}
				if got != tc.want[step] {
					t.Errorf("step %d (ack batch %d): committable %d, want %d", step, idx, got, tc.want[step])
				}
			}
			if got := c.inFlight(); got != 0 {
				t.Errorf("in flight after all acks: got %d, want 0", got)
			}
		})
	}
}

func TestCheckpointerDoubleReleaseAndEpoch(t *testing.T) {
	var c checkpointer
	a := c.track(kgo.EpochOffset{Epoch: 3, Offset: 5}, 5, 500)
	b := c.track(kgo.EpochOffset{Epoch: 4, Offset: 7}, 2, 200)
	if freed, _ := c.release(a); freed != 5 {
		t.Fatalf("first release: freed %d, want 5", freed)
	}
	if freed, _ := c.release(a); freed != 0 {
		t.Fatalf("second release of the same batch: freed %d, want 0", freed)
	}
	if got := c.inFlight(); got != 2 {
		t.Fatalf("in flight: got %d, want 2", got)
	}
	c.release(b)
	off, ok := c.offset()
	if !ok || off != (kgo.EpochOffset{Epoch: 4, Offset: 7}) {
		t.Fatalf("committable: got %+v (%v), want epoch 4 offset 7", off, ok)
	}
}

// TestCheckpointerRandomOrder checks the invariant on random ack orders: the
// committable offset never passes a batch that is not acknowledged.
func TestCheckpointerRandomOrder(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for round := 0; round < 200; round++ {
		var c checkpointer
		n := 1 + rng.Intn(40)
		cps := make([]*checkpoint, n)
		acked := make([]bool, n)
		for i := range cps {
			cps[i] = c.track(kgo.EpochOffset{Offset: int64(i + 1)}, 1, 100)
		}
		for _, idx := range rng.Perm(n) {
			c.release(cps[idx])
			acked[idx] = true
			prefix := 0
			for prefix < n && acked[prefix] {
				prefix++
			}
			off, ok := c.offset()
			if prefix == 0 {
				if ok {
					t.Fatalf("round %d: committable %d with batch 0 unacknowledged", round, off.Offset)
				}
				continue
			}
			if !ok || off.Offset != int64(prefix) {
				t.Fatalf("round %d: committable %d (%v), want %d", round, off.Offset, ok, prefix)
			}
		}
	}
}

func BenchmarkCheckpointerTrackRelease(b *testing.B) {
	var c checkpointer
	window := make([]*checkpoint, 0, 64)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		window = append(window, c.track(kgo.EpochOffset{Offset: int64(i + 1)}, 100, 100))
		if len(window) == cap(window) {
			// Acknowledge newest first, the worst case for the prefix scan.
			for j := len(window) - 1; j >= 0; j-- {
				c.release(window[j])
			}
			window = window[:0]
		}
	}
}
