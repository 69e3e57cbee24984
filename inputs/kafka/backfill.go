package kafka

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// onOffsetsFetched records which assigned partitions have a commit (for start_offsets) and
// where each resumes (for the offset reset check); it runs after an assignment, just before
// adjustStartOffsets, on the same goroutine.
func (in *franzInput) onOffsetsFetched(_ context.Context, _ *kgo.Client, resp *kmsg.OffsetFetchResponse) error {
	has := map[topicPartition]bool{}
	commits := map[topicPartition]int64{}
	note := func(topic string, p kmsg.OffsetFetchResponseTopicPartition) {
		if p.ErrorCode == 0 && p.Offset >= 0 {
			tp := topicPartition{topic, p.Partition}
			has[tp] = true
			commits[tp] = p.Offset
		}
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			note(t.Topic, p)
		}
	}
	for _, g := range resp.Groups {
		for _, t := range g.Topics {
			for _, p := range t.Partitions {
				note(t.Topic, kmsg.OffsetFetchResponseTopicPartition{Partition: p.Partition, Offset: p.Offset, ErrorCode: p.ErrorCode})
			}
		}
	}
	in.hasCommit = has
	in.progress.startsAt(commits)
	return nil
}

// adjustStartOffsets applies start_offsets to assigned partitions the group
// has not committed yet.
func (in *franzInput) adjustStartOffsets(_ context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	for tp, off := range in.startOffsets {
		ps, ok := offsets[tp.topic]
		if !ok {
			continue
		}
		if _, assigned := ps[tp.partition]; !assigned || in.hasCommit[tp] {
			continue
		}
		ps[tp.partition] = kgo.NewOffset().At(off)
	}
	return offsets, nil
}

// resolveEnds looks up, for every partition of the topics, the first offset
// stamped at or after end_timestamp (or the partition's end when there is
// none) and where the log starts.
func (in *franzInput) resolveEnds(ctx context.Context, cl *kgo.Client) (map[topicPartition]endBound, error) {
	adm := kadm.NewClient(cl) // a view of the client; never closed, which would close cl
	list := func(what string, lookup func(context.Context, ...string) (kadm.ListedOffsets, error)) (kadm.ListedOffsets, error) {
		offsets, err := lookup(ctx, in.topics...)
		if err == nil {
			err = offsets.Error()
		}
		if err != nil {
			return nil, fmt.Errorf("kafka_franz: looking up %s of topics %v for end_timestamp: %w", what, in.topics, err)
		}
		return offsets, nil
	}
	// kadm answers a partition with no record at or after the time with its end offset.
	atEnd, err := list("the offsets at end_timestamp", func(ctx context.Context, topics ...string) (kadm.ListedOffsets, error) {
		return adm.ListOffsetsAfterMilli(ctx, in.endMs, topics...)
	})
	if err != nil {
		return nil, err
	}
	earliest, err := list("the start offsets", adm.ListStartOffsets)
	if err != nil {
		return nil, err
	}
	ends := map[topicPartition]endBound{}
	atEnd.Each(func(o kadm.ListedOffset) {
		start, _ := earliest.Lookup(o.Topic, o.Partition)
		ends[topicPartition{o.Topic, o.Partition}] = endBound{off: o.Offset, logStart: start.Offset}
	})
	in.log.Infof("kafka_franz: consuming up to end_timestamp %s: %s", time.UnixMilli(in.endMs).UTC().Format(time.RFC3339), describeEnds(ends))
	return ends, nil
}

func describeEnds(ends map[topicPartition]endBound) string {
	var b strings.Builder
	for tp, e := range ends {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s/%d before offset %d", tp.topic, tp.partition, e.off)
	}
	return b.String()
}

// withinEnd keeps the records before the partition's cut-off and reports
// whether the partition has been fetched up to it.
func (in *franzInput) withinEnd(topic string, partition int32, recs []*kgo.Record) ([]*kgo.Record, bool) {
	if in.ends == nil {
		return recs, false
	}
	end, ok := in.ends[topicPartition{topic, partition}]
	if !ok {
		// A partition created after start-up holds only newer records.
		return nil, true
	}
	n := len(recs)
	cut := n
	for i, r := range recs {
		if r.Offset >= end.off {
			cut = i
			break
		}
	}
	kept := recs[:cut]
	finished := cut < n || (cut > 0 && kept[cut-1].Offset+1 >= end.off)
	return kept, finished
}

// endLoop ends the input once the group has committed every partition up to
// its cut-off: every record in range was delivered and acknowledged.
func (in *franzInput) endLoop(cl *kgo.Client) {
	interval := min(max(in.commitPeriod/2, 50*time.Millisecond), time.Second)
	in.every(interval, func() bool {
		committed, err := groupCommits(in.ctx, cl, in.group, in.ends)
		if err != nil {
			return true
		}
		for tp, e := range in.ends {
			if e.off > e.logStart && committed[tp] < e.off {
				return true
			}
		}
		in.log.Infof("kafka_franz: group %q has committed every partition up to end_timestamp, input done", in.group)
		in.endOnce.Do(func() { close(in.ended) })
		return false
	})
}

// groupCommits fetches the group's committed offsets of the given
// partitions; a partition without a commit is -1.
func groupCommits(ctx context.Context, cl *kgo.Client, group string, tps map[topicPartition]endBound) (map[topicPartition]int64, error) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	commits, err := kadm.NewClient(cl).FetchOffsets(rctx, group)
	if err != nil {
		return nil, err
	}
	out := map[topicPartition]int64{}
	for tp := range tps {
		out[tp] = -1
		if c, ok := commits.Lookup(tp.topic, tp.partition); ok && c.Err == nil {
			out[tp] = c.At
		}
	}
	return out, nil
}
