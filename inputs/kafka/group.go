package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/preservarium/iot-ingestor/internal/nackreplay"
)

// groupOpts are the client options of a consumer-group member.
func (in *franzInput) groupOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.ConsumerGroup(in.group),
		kgo.DisableAutoCommit(),
		// Rebalances wait until a poll's records are handed to their
		// partitions, so a revoke never races a record being queued.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, tps map[string][]int32) {
			in.progress.assigned(tps)
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, tps map[string][]int32) {
			in.progress.unassigned(tps)
			in.dropPartitions(ctx, cl, tps, true)
		}),
		kgo.OnPartitionsLost(func(ctx context.Context, cl *kgo.Client, tps map[string][]int32) {
			in.progress.unassigned(tps)
			in.dropPartitions(ctx, cl, tps, false)
		}),
		kgo.OnOffsetsFetched(in.onOffsetsFetched),
		kgo.AdjustFetchOffsetsFn(in.adjustStartOffsets),
	}
}

// pollLoop fetches records and queues them on their partitions. Between a
// poll and AllowRebalance no rebalance runs, so every record polled reaches
// a partition that is still owned.
//
// Back pressure is applied here, by not polling while a partition is at
// checkpoint_limit, rather than by pausing that partition: a resumed
// partition joins only the next fetch request, after the one in flight
// returns, and a fetch of partitions with no new data is held by the broker
// for fetch_max_wait. Measured with the shipped 1 s wait, pausing stalled a
// backlog on every resume (about 45k against 105k messages/s); not polling
// leaves franz-go's one buffered fetch waiting, and nothing is fetched twice.
// The cost: while one partition is at its limit the others wait too, which
// changes little as they share the pipeline and its output. The exception is
// a partition full behind a batch that keeps being rejected: it frees no room
// however long the others wait, so it is paused alone (holdBack).
func (in *franzInput) pollLoop(cl *kgo.Client) {
	defer in.bg.Done()
	failures := 0 // consecutive polls that failed and returned nothing
	for {
		if !in.waitForRoom() {
			return
		}
		fetches := cl.PollFetches(in.ctx)
		if in.ctx.Err() != nil || fetches.IsClientClosed() {
			cl.AllowRebalance()
			return
		}
		failed := false
		fetches.EachError(func(topic string, partition int32, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			failed = true
			in.fetchRepeats.Log(in.log.Warn, fmt.Sprintf("kafka_franz: fetching topic %q partition %d failed: %v", topic, partition, err))
		})
		got := false
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if len(fp.Records) == 0 {
				return
			}
			got = true
			in.progress.fetched(fp.Topic, fp.Partition, fp.Records[0].Offset, fp.Records[len(fp.Records)-1].Offset)
			p := in.partitionFor(cl, fp.Topic, fp.Partition)
			withFetchInfo(fp.Records, &fetchInfo{highWatermark: fp.HighWatermark, multiHeader: in.multiHeader})
			recs, finished := in.withinEnd(fp.Topic, fp.Partition, fp.Records)
			if len(recs) > 0 {
				p.enqueue(recs)
			}
			if finished {
				p.finish()
			}
		})
		cl.AllowRebalance()
		if got {
			in.lastProgress.Store(time.Now().UnixNano())
			in.reachable.Store(true)
			in.fetchRepeats.Reset()
			failures = 0
		}
		if failed && !got {
			// A persistent error (no committed offset with
			// start_offset: committed, authorization) returns at once;
			// pace the loop so it does not spin.
			select {
			case <-time.After(pollRetryBackoff.Delay(failures)):
			case <-in.ctx.Done():
			}
			failures++
		}
	}
}

// waitForRoom blocks while an owned partition holds checkpoint_limit records
// or more; false means the input is closing.
func (in *franzInput) waitForRoom() bool {
	var recheck *time.Ticker
	for in.full() {
		if recheck == nil {
			// A full partition becomes held back once its oldest batch has been in flight for
			// stuckAfter, which nothing signals: look again now and then.
			recheck = time.NewTicker(time.Second)
			defer recheck.Stop()
		}
		select {
		case <-in.room:
		case <-recheck.C:
		case <-in.ctx.Done():
			return false
		}
	}
	return true
}

// full tells whether the poll loop must wait: a partition at its own limits (and not held
// back), or all of them together at buffer_bytes. At buffer_bytes no record arrives until a
// batch is written, so every partition is woken to cut the batch it is filling: a batch waiting
// for its count or period would hold the room that lets it fill, until the period or for ever.
func (in *franzInput) full() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	full := false
	for _, p := range in.parts {
		if p.full() && !p.holdBack() {
			full = true
		}
	}
	held := in.bufferHeld()
	if held >= in.bufferBytes {
		// A partition behind a batch that keeps failing would fill the bound alone and stop
		// the others for as long as it fails: at the input's bound as at its own, it is held
		// back (paused) and no longer counts.
		for _, p := range in.parts {
			p.holdBack()
		}
		held = in.bufferHeld()
	}
	if held < in.bufferBytes {
		in.atBuffer.Store(false)
		return full
	}
	if !in.atBuffer.Swap(true) {
		for _, p := range in.parts {
			p.nudge()
		}
	}
	return true
}

// bufferHeld is what counts against buffer_bytes: the bytes held by the partitions not held
// back. Called with in.mu held.
func (in *franzInput) bufferHeld() int64 {
	var held int64
	for _, p := range in.parts {
		if !p.isHeldBack() {
			held += p.heldBytes.Load()
		}
	}
	return held
}

// Rejected is told by the nack replayer that a batch was rejected and is to be delivered
// again (nackreplay.RejectionObserver). A partition whose commit is held by such a batch is
// held back on its own once it is full (see holdBack), so the gate does not stop the others.
func (in *franzInput) Rejected(o nackreplay.Originals) {
	b, ok := o.(recordBatch)
	if !ok || len(b) == 0 {
		return
	}
	in.mu.Lock()
	p := in.parts[topicPartition{b[0].Topic, b[0].Partition}]
	in.mu.Unlock()
	if p != nil && p.cp.markRejected(b[0].Offset) {
		in.signalRoom()
	}
}

// signalRoom wakes a pollLoop waiting for room; the channel holds one
// signal, so one sent between its check and its wait is not lost.
func (in *franzInput) signalRoom() {
	select {
	case in.room <- struct{}{}:
	default:
	}
}

// owned is a snapshot of the consumers of the partitions this member owns.
func (in *franzInput) owned() []*partitionConsumer {
	in.mu.Lock()
	defer in.mu.Unlock()
	parts := make([]*partitionConsumer, 0, len(in.parts))
	for _, p := range in.parts {
		parts = append(parts, p)
	}
	return parts
}

// commitLoop commits acknowledged offsets every commit_period.
func (in *franzInput) commitLoop(cl *kgo.Client) {
	in.every(in.commitPeriod, func() bool {
		if err := in.commit(in.ctx, cl, in.owned()); err != nil && in.ctx.Err() == nil {
			in.commitRepeats.Log(in.log.Warn, fmt.Sprintf("kafka_franz: committing offsets of group %q failed, retrying every %v: %v", in.group, in.commitPeriod, err))
		} else if err == nil {
			in.commitRepeats.Reset()
		}
		return true
	})
}

// commit commits the committable offsets of parts that moved since their
// last commit.
//
// Not kgo's mark-and-commit API (MarkCommitOffsets, CommitMarkedOffsets, AutoCommitMarks):
// the marks would be fed from the same checkpointers, so it would keep "commit only after
// stored", but it commits every mark at once and answers with one error. A revoke must commit
// the revoked partitions alone, once their in-flight batches were waited for, and the answer
// per partition is what records the committed offset (p.committed) and names a partition
// whose commit failed. With AutoCommitMarks the client would also commit on its own schedule
// during the revoke, racing that wait.
func (in *franzInput) commit(ctx context.Context, cl *kgo.Client, parts []*partitionConsumer) error {
	if in.group == "" {
		return nil // nothing to commit to: a restart starts again from start_offset
	}
	in.commitMu.Lock()
	defer in.commitMu.Unlock()
	offsets := map[string]map[int32]kgo.EpochOffset{}
	byTP := map[topicPartition]*partitionConsumer{}
	for _, p := range parts {
		off, ok := p.cp.offset()
		if !ok || (p.hasCommitted && off.Offset <= p.committed.Offset) {
			continue
		}
		if offsets[p.topic] == nil {
			offsets[p.topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[p.topic][p.partition] = off
		byTP[topicPartition{p.topic, p.partition}] = p
	}
	if len(offsets) == 0 {
		return nil
	}
	var firstErr error
	cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			firstErr = err
			return
		}
		for _, t := range resp.Topics {
			for _, rp := range t.Partitions {
				tp := topicPartition{t.Topic, rp.Partition}
				if cerr := kerr.ErrorForCode(rp.ErrorCode); cerr != nil {
					if firstErr == nil {
						firstErr = fmt.Errorf("topic %q partition %d: %w", t.Topic, rp.Partition, cerr)
					}
					continue
				}
				if p := byTP[tp]; p != nil {
					p.committed = offsets[t.Topic][rp.Partition]
					p.hasCommitted = true
				}
			}
		}
	})
	return firstErr
}

// partitionFor returns the consumer of a partition, starting it on first
// sight after an assignment.
func (in *franzInput) partitionFor(cl *kgo.Client, topic string, partition int32) *partitionConsumer {
	tp := topicPartition{topic, partition}
	in.mu.Lock()
	defer in.mu.Unlock()
	if p := in.parts[tp]; p != nil {
		return p
	}
	p := &partitionConsumer{
		in:        in,
		client:    cl,
		topic:     topic,
		topicMeta: topic,
		partition: partition,
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	if !in.batchPolicy.IsNoop() {
		b, err := in.batchPolicy.NewBatcher(in.res)
		if err != nil {
			// The policy was checked when the config was parsed, so this
			// is unexpected; falling back to per-fetch batches keeps
			// every record flowing.
			in.log.Errorf("kafka_franz: batching policy for topic %q partition %d failed, handing on one batch per fetch: %v", topic, partition, err)
		} else {
			p.batcher = b
		}
	}
	in.parts[tp] = p
	go p.run()
	return p
}

// dropPartitions stops the consumers of revoked or lost partitions. For a
// revoke it first gives in-flight batches a bounded time to be acknowledged
// and commits what they allow, so the next owner redelivers as little as
// possible; acknowledgements arriving later are ignored because the
// partition may already belong to another member.
func (in *franzInput) dropPartitions(ctx context.Context, cl *kgo.Client, tps map[string][]int32, commit bool) {
	in.mu.Lock()
	var parts []*partitionConsumer
	eachPartition(tps, func(tp topicPartition) {
		if p := in.parts[tp]; p != nil {
			parts = append(parts, p)
			delete(in.parts, tp)
		}
	})
	in.mu.Unlock()
	if len(parts) == 0 {
		return
	}
	in.signalRoom()
	for _, p := range parts {
		close(p.stop)
		<-p.done
	}
	if commit {
		deadline := time.NewTimer(in.drainWait)
	wait:
		for _, p := range parts {
			select {
			case <-p.cp.idle():
			case <-deadline.C:
				break wait
			case <-ctx.Done():
				break wait
			}
		}
		deadline.Stop()
		if err := in.commit(ctx, cl, parts); err != nil {
			in.log.Warnf("kafka_franz: committing offsets of revoked partitions failed, their next owner resumes from the previous commit: %v", err)
		}
	}
	resume := map[string][]int32{}
	for _, p := range parts {
		p.mu.Lock()
		p.gone = true
		if p.finished || p.heldBack {
			// A later owner of the partition starts unpaused.
			resume[p.topic] = append(resume[p.topic], p.partition)
		}
		p.mu.Unlock()
	}
	if len(resume) > 0 {
		cl.ResumeFetchPartitions(resume)
	}
}
