package kafka

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"
)

// partitionConsumer turns the records of one owned partition into batches,
// in offset order, and tracks them until they are acknowledged.
type partitionConsumer struct {
	in        *franzInput
	client    *kgo.Client
	topic     string
	topicMeta any // topic, boxed once for the metadata of every message
	partition int32
	batcher   *service.Batcher // nil: one batch per fetch
	cp        checkpointer

	// held counts records queued, batching or in flight, and heldBytes their bytes; the input
	// takes no fetch while either is at its limit (checkpoint_limit, partition_buffer_bytes).
	held      atomic.Int64
	heldBytes atomic.Int64

	mu       sync.Mutex
	queue    []*kgo.Record
	gone     bool
	finished bool // reached end_timestamp: fetching of the partition is paused for good
	heldBack bool // full behind a batch that keeps failing: paused until that batch passes

	// Guarded by in.commitMu.
	committed    kgo.EpochOffset
	hasCommitted bool

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

// full tells whether the partition holds checkpoint_limit records or partition_buffer_bytes.
func (p *partitionConsumer) full() bool {
	return p.held.Load() >= int64(p.in.limit) || p.heldBytes.Load() >= p.in.limitBytes
}

// recordBytes is what a record counts against partition_buffer_bytes: what its message holds.
func recordBytes(r *kgo.Record) int64 {
	n := len(r.Value) + len(r.Key)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return int64(n)
}

func (p *partitionConsumer) enqueue(recs []*kgo.Record) {
	var size int64
	for _, r := range recs {
		size += recordBytes(r)
	}
	p.mu.Lock()
	p.queue = append(p.queue, recs...)
	p.held.Add(int64(len(recs)))
	p.heldBytes.Add(size)
	p.mu.Unlock()
	p.nudge()
}

// nudge wakes the partition's loop: to take queued records, or to cut its batch at buffer_bytes.
func (p *partitionConsumer) nudge() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *partitionConsumer) isHeldBack() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.heldBack
}

// finish stops fetching a partition that has reached its end_timestamp
// cut-off; what is already queued is still delivered.
func (p *partitionConsumer) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.finished || p.gone {
		return
	}
	p.finished = true
	p.client.PauseFetchPartitions(map[string][]int32{p.topic: {p.partition}})
}

// holdBack pauses a partition, full or with the input at buffer_bytes, whose commit is held by
// a batch that keeps failing or waits downstream (checkpointer.stuck), and tells whether it is
// held back. Such a partition frees no room until that batch is accepted, however long that
// takes (an error topic that refuses it), so it must not stop the others at the gate; paused,
// it takes no more records meanwhile, which keeps its memory bounded. Only this case pauses:
// for ordinary back pressure pausing halves the rate (see pollLoop).
func (p *partitionConsumer) holdBack() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.heldBack {
		return true
	}
	if p.gone || !p.cp.stuck() {
		return false
	}
	p.heldBack = true
	if !p.finished {
		p.client.PauseFetchPartitions(map[string][]int32{p.topic: {p.partition}})
	}
	p.in.log.Warnf("kafka_franz: topic %q partition %d holds %s behind a batch that is being retried or has waited downstream for %v; fetching of the partition is paused until that batch is done, the other partitions go on", p.topic, p.partition, p.holding(), stuckAfter)
	return true
}

// holding says what the partition holds, by the bound it has reached.
func (p *partitionConsumer) holding() string {
	n, size := p.held.Load(), p.heldBytes.Load()
	switch {
	case n >= int64(p.in.limit):
		return fmt.Sprintf("checkpoint_limit (%d) records", p.in.limit)
	case size >= p.in.limitBytes:
		return fmt.Sprintf("partition_buffer_bytes (%s) of records", humanize.IBytes(uint64(p.in.limitBytes)))
	default:
		return fmt.Sprintf("%d records (%s) while the input holds buffer_bytes (%s)", n, humanize.IBytes(uint64(size)), humanize.IBytes(uint64(p.in.bufferBytes)))
	}
}

// resumeIfFreed resumes a held-back partition once it is no longer full behind a rejected
// batch.
func (p *partitionConsumer) resumeIfFreed() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.heldBack || (p.full() && p.cp.stuck()) {
		return
	}
	p.heldBack = false
	if !p.finished && !p.gone {
		p.client.ResumeFetchPartitions(map[string][]int32{p.topic: {p.partition}})
	}
}

func (p *partitionConsumer) take() []*kgo.Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	recs := p.queue
	p.queue = nil
	return recs
}

func (p *partitionConsumer) run() {
	defer close(p.done)
	var (
		raw      []*service.Message // the batch's messages, handed on as they are if batch processors fail
		records  recordBatch        // their records
		rawBytes int64              // their size, as partition_buffer_bytes counts it
	)
	flush := func() bool {
		if len(raw) == 0 {
			return true
		}
		batch, err := p.batcher.Flush(p.in.ctx)
		sent := records
		switch {
		case err != nil || len(batch) == 0:
			if err != nil {
				p.in.log.Errorf("kafka_franz: batching processors failed on topic %q partition %d, handing on the batch unprocessed: %v", p.topic, p.partition, err)
			}
			batch = raw
		case p.in.batchProcs:
			sent = nil
		}
		ok := p.send(batch, sent, records[len(records)-1], len(raw), rawBytes)
		raw, records, rawBytes = nil, nil, 0
		return ok
	}
	for {
		var tick <-chan time.Time
		if p.batcher != nil && len(raw) > 0 {
			if d, ok := p.batcher.UntilNext(); ok {
				tick = time.After(d)
			}
		}
		select {
		case <-p.stop:
			if p.batcher != nil {
				_ = p.batcher.Close(context.Background())
			}
			return
		case <-tick:
			if !flush() {
				return
			}
			continue
		case <-p.wake:
		}
		recs := p.take()
		if p.batcher == nil {
			if len(recs) == 0 {
				continue
			}
			batch := make(service.MessageBatch, len(recs))
			var size int64
			for i, r := range recs {
				batch[i] = recordToMessage(r, p.topicMeta)
				size += recordBytes(r)
			}
			if !p.send(batch, recs, recs[len(recs)-1], len(recs), size) {
				return
			}
			continue
		}
		for _, r := range recs {
			msg := recordToMessage(r, p.topicMeta)
			raw = append(raw, msg)
			records = append(records, r)
			rawBytes += recordBytes(r)
			// A partition takes no fetch while it holds checkpoint_limit records or
			// partition_buffer_bytes, so a batch that reaches either can grow no further: it
			// is cut there, whatever the policy asks (a count above the limit, a byte size,
			// no period), instead of waiting for the period or, without one, for ever.
			if p.batcher.Add(msg) || len(raw) >= p.in.limit || rawBytes >= p.in.limitBytes {
				if !flush() {
					return
				}
			}
		}
		// The input holds buffer_bytes: no record arrives until a batch is written (full). A
		// wake with no records is the input telling the partition so.
		if len(raw) > 0 && p.in.atBuffer.Load() && !flush() {
			return
		}
	}
}

// send tracks a batch and hands it to ReadBatch; false means the partition
// was stopped meanwhile. origin is the record of each message, or nil.
func (p *partitionConsumer) send(batch service.MessageBatch, origin recordBatch, last *kgo.Record, records int, size int64) bool {
	cp := p.cp.track(kgo.EpochOffset{Epoch: last.LeaderEpoch, Offset: last.Offset + 1}, records, size)
	ack := func(_ context.Context, err error) error {
		if err != nil {
			p.in.log.Warnf("kafka_franz: batch of topic %q partition %d ending at offset %d was rejected downstream and auto_replay_nacks is off, so it counts as done: %v", p.topic, p.partition, last.Offset, err)
		}
		p.release(cp)
		return nil
	}
	select {
	case p.in.batches <- readyBatch{batch: batch, records: origin, ack: ack}:
		return true
	case <-p.stop:
		// Never handed on: not in flight, so a revoke must not wait for it.
		p.cp.abandon(cp)
		return false
	}
}

func (p *partitionConsumer) release(cp *checkpoint) {
	freed, freedBytes := p.cp.release(cp)
	if freed == 0 {
		return
	}
	wasFull := p.full()
	p.held.Add(-int64(freed))
	p.heldBytes.Add(-freedBytes)
	if (wasFull && !p.full()) || p.in.atBuffer.Load() {
		p.in.signalRoom()
	}
	p.resumeIfFreed()
}
