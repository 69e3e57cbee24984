package kafka

import (
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// checkpointer tracks the batches of one partition that are in flight, in
// offset order, and yields the offset that may be committed: the one after
// the last record of the longest run of acknowledged batches starting at the
// oldest. A batch acknowledged before an earlier one therefore moves nothing
// until that earlier one is acknowledged too, so a commit never passes a
// record still in flight.
type checkpointer struct {
	mu          sync.Mutex
	pending     []*checkpoint // in flight, oldest first
	records     int           // records in pending
	committable kgo.EpochOffset
	hasOffset   bool
	// drained is closed when nothing is left in flight; made only when a revoke waits for it,
	// so the fetch path never pays for it.
	drained chan struct{}
}

// closedChan is ready at once: what idle returns while nothing is in flight.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// checkpoint is one batch handed downstream.
type checkpoint struct {
	next     kgo.EpochOffset // offset after the batch's last record
	records  int
	bytes    int64 // of its records, as partition_buffer_bytes counts them
	done     bool
	rejected bool      // rejected downstream at least once and being delivered again
	since    time.Time // when it was handed on
}

// stuckAfter is how long the oldest batch in flight may take before its partition counts as
// held by it. A batch that is neither rejected nor acknowledged that long is waiting on a
// downstream outage (an error topic that refuses it waits inside its output, which tells the
// input nothing); ordinary batches take milliseconds. Longer than a short outage, so that the
// common case keeps the cheap global gate.
const stuckAfter = 10 * time.Second

// track registers a batch of records holding size bytes whose last record is at
// next.Offset-1. Batches must be tracked in offset order.
func (c *checkpointer) track(next kgo.EpochOffset, records int, size int64) *checkpoint {
	cp := &checkpoint{next: next, records: records, bytes: size, since: time.Now()}
	c.mu.Lock()
	c.pending = append(c.pending, cp)
	c.records += records
	c.mu.Unlock()
	return cp
}

// release marks a batch acknowledged and returns how many records, and bytes, became
// committable by it (zero while an earlier batch is still in flight).
// Releasing a batch twice is harmless.
func (c *checkpointer) release(cp *checkpoint) (freed int, freedBytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cp.done = true
	n := 0
	for n < len(c.pending) && c.pending[n].done {
		c.committable = c.pending[n].next
		c.hasOffset = true
		c.records -= c.pending[n].records
		freed += c.pending[n].records
		freedBytes += c.pending[n].bytes
		n++
	}
	if n > 0 {
		// Copy down rather than reslice so the backing array does not
		// keep acknowledged checkpoints alive on a busy partition.
		copy(c.pending, c.pending[n:])
		for i := len(c.pending) - n; i < len(c.pending); i++ {
			c.pending[i] = nil
		}
		c.pending = c.pending[:len(c.pending)-n]
	}
	c.signalIfDrained()
	return freed, freedBytes
}

// abandon forgets the newest batch, which was tracked but never handed on (its partition was
// stopped meanwhile): it is not in flight and makes nothing committable.
func (c *checkpointer) abandon(cp *checkpoint) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.pending); n > 0 && c.pending[n-1] == cp {
		c.pending[n-1] = nil
		c.pending = c.pending[:n-1]
		c.records -= cp.records
	}
	c.signalIfDrained()
}

// signalIfDrained wakes the waiter of idle once nothing is in flight; c.mu is held.
func (c *checkpointer) signalIfDrained() {
	if c.drained != nil && c.records == 0 {
		close(c.drained)
		c.drained = nil
	}
}

// idle is ready once no record is in flight.
func (c *checkpointer) idle() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.records == 0 {
		return closedChan
	}
	if c.drained == nil {
		c.drained = make(chan struct{})
	}
	return c.drained
}

// markRejected marks the batch holding offset off as rejected downstream; false when no
// batch in flight holds it.
func (c *checkpointer) markRejected(off int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cp := range c.pending {
		if off < cp.next.Offset {
			if cp.done {
				return false
			}
			cp.rejected = true
			return true
		}
	}
	return false
}

// stuck tells whether the commit is held by the oldest batch in flight, which every later one
// waits for: it has been rejected and is being delivered again, or it has been in flight for
// stuckAfter.
func (c *checkpointer) stuck() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) == 0 || c.pending[0].done {
		return false
	}
	return c.pending[0].rejected || time.Since(c.pending[0].since) >= stuckAfter
}

// inFlight is the number of records handed downstream whose offsets cannot
// be committed yet.
func (c *checkpointer) inFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.records
}

// offset returns the committable offset, if any batch has been fully
// acknowledged yet.
func (c *checkpointer) offset() (kgo.EpochOffset, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.committable, c.hasOffset
}
