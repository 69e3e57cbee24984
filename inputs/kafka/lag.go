package kafka

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Metrics of the partitions a member owns, refreshed every topic_lag_refresh_period.
const (
	// metricLag: the partition's end offset minus the group's committed offset.
	metricLag = "kafka_consumer_lag"
	// metricStalled: seconds the committed offset has not moved while the partition has lag.
	metricStalled = "kafka_partition_stalled_seconds"
	// metricResets: positions reset because the offset to consume was deleted by retention.
	metricResets = "kafka_offset_resets"
)

// partitionProgress is what the lag refresher knows of one partition the member owns.
type partitionProgress struct {
	next         int64 // offset after the last record fetched; -1 before the first fetch and commit
	firstTaken   int64 // offset of the first record fetched since the assignment; -1 before
	committed    int64 // the group's commit at the last refresh; -2 before the first
	stalledSince time.Time
	// A jump in the fetched offsets, [gapFrom, gapTo), not yet checked against the log start:
	// either a hole the log has anyway (compaction, transaction markers) or records deleted by
	// retention before they were consumed, where the client reset the position.
	gapFrom, gapTo int64
}

// lagTracker keeps the assignment and the per-partition gauges. Its methods are called by the
// group's callbacks, the poll loop and the refresher; one mutex guards the map, taken once per
// fetched partition, never per record.
type lagTracker struct {
	log       *service.Logger
	group     string
	fromStart bool // without a commit, consumption starts at the log start (start_offset earliest)

	lag     *service.MetricGauge
	stalled *service.MetricGauge
	resets  *service.MetricCounter

	mu    sync.Mutex
	owned map[topicPartition]*partitionProgress
}

func newLagTracker(res *service.Resources, group string, fromStart bool) *lagTracker {
	m := res.Metrics()
	return &lagTracker{
		log:       res.Logger(),
		group:     group,
		fromStart: fromStart,
		lag:       m.NewGauge(metricLag, "topic", "partition"),
		stalled:   m.NewGauge(metricStalled, "topic", "partition"),
		resets:    m.NewCounter(metricResets, "topic", "partition"),
		owned:     map[topicPartition]*partitionProgress{},
	}
}

// assigned starts tracking partitions given to this member, idle ones included.
func (t *lagTracker) assigned(tps map[string][]int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	eachPartition(tps, func(tp topicPartition) {
		if t.owned[tp] == nil {
			t.owned[tp] = &partitionProgress{next: -1, firstTaken: -1, committed: -2}
		}
	})
}

// unassigned stops tracking partitions this member gave up. Their series are set to 0 (the
// engine's metrics API cannot delete a series): another member reports them from now on, and
// a stale value would be counted twice in a sum over members.
func (t *lagTracker) unassigned(tps map[string][]int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	eachPartition(tps, func(tp topicPartition) {
		if t.owned[tp] == nil {
			return
		}
		delete(t.owned, tp)
		label := strconv.Itoa(int(tp.partition))
		t.lag.Set(0, tp.topic, label)
		t.stalled.Set(0, tp.topic, label)
	})
}

// startsAt records where consumption of an assigned partition resumes: the group's commit.
func (t *lagTracker) startsAt(commits map[topicPartition]int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for tp, off := range commits {
		if pp := t.owned[tp]; pp != nil && pp.next < 0 {
			pp.next = off
		}
	}
}

// fetched notes the offsets of a fetch of one partition: a jump from where the partition was
// expected to continue is checked against the log start at the next refresh.
func (t *lagTracker) fetched(topic string, partition int32, first, last int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pp := t.owned[topicPartition{topic, partition}]
	if pp == nil {
		return
	}
	if pp.firstTaken < 0 {
		pp.firstTaken = first
	}
	if pp.next >= 0 && first > pp.next && pp.gapTo == 0 {
		pp.gapFrom, pp.gapTo = pp.next, first
	}
	pp.next = last + 1
}

// owns lists the topics of the partitions owned, false when there is none.
func (t *lagTracker) topics() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for tp := range t.owned {
		if !seen[tp.topic] {
			seen[tp.topic] = true
			out = append(out, tp.topic)
		}
	}
	return out
}

// refresh lists the end and start offsets of the owned partitions and the group's commits,
// and sets the gauges. A failed listing (an outage, which the input reports itself) leaves the
// last values.
func (t *lagTracker) refresh(ctx context.Context, cl *kgo.Client) error {
	topics := t.topics()
	if len(topics) == 0 || t.group == "" {
		return nil
	}
	adm := kadm.NewClient(cl) // a view of the client; never closed, which would close cl
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return err
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return err
	}
	commits, err := adm.FetchOffsets(ctx, t.group)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return err
	}
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for tp, pp := range t.owned {
		end, ok := ends.Lookup(tp.topic, tp.partition)
		if !ok || end.Err != nil {
			continue
		}
		start, ok := starts.Lookup(tp.topic, tp.partition)
		if !ok || start.Err != nil {
			continue
		}
		committed := int64(-1)
		if c, ok := commits.Lookup(tp.topic, tp.partition); ok && c.Err == nil && c.At >= 0 {
			committed = c.At
		}
		label := strconv.Itoa(int(tp.partition))
		t.checkReset(tp, pp, start.Offset, label)

		var lag int64
		switch {
		case committed >= 0:
			lag = end.Offset - committed
		case pp.firstTaken >= 0:
			lag = end.Offset - pp.firstTaken
		case t.fromStart:
			lag = end.Offset - start.Offset
		}
		lag = max(lag, 0)
		t.lag.Set(lag, tp.topic, label)

		if lag == 0 || committed != pp.committed || pp.stalledSince.IsZero() {
			pp.stalledSince = now
		}
		pp.committed = committed
		stalled := int64(0)
		if lag > 0 {
			stalled = int64(now.Sub(pp.stalledSince) / time.Second)
		}
		t.stalled.Set(stalled, tp.topic, label)
	}
	return nil
}

// checkReset tells a jump in the fetched offsets that skipped records retention deleted (the
// log now starts past the jump's beginning) from a hole the log has anyway. t.mu is held.
func (t *lagTracker) checkReset(tp topicPartition, pp *partitionProgress, logStart int64, label string) {
	if pp.gapTo == 0 {
		return
	}
	from, to := pp.gapFrom, pp.gapTo
	pp.gapFrom, pp.gapTo = 0, 0
	if logStart <= from {
		return
	}
	to = min(to, logStart)
	t.resets.Incr(1, tp.topic, label)
	t.log.Errorf("kafka_franz: topic %q partition %d: offsets %d to %d (%d records) were deleted by retention before group %q consumed them; consumption resumed at offset %d, those records are lost to this pipeline",
		tp.topic, tp.partition, from, to-1, to-from, t.group, to)
}

// lagLoop refreshes the lag metrics every topic_lag_refresh_period, fetching or not.
func (in *franzInput) lagLoop(cl *kgo.Client) {
	in.every(in.lagPeriod, func() bool {
		ctx, cancel := context.WithTimeout(in.ctx, max(in.lagPeriod, pingTimeout))
		defer cancel()
		if err := in.progress.refresh(ctx, cl); err != nil && in.ctx.Err() == nil {
			// An outage is reported by the health check; the gauges keep their last values.
			in.log.Debugf("kafka_franz: refreshing the lag of group %q failed: %v", in.group, err)
		}
		return true
	})
}
