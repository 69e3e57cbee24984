package kafka

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// parseBackfill reads start_timestamp, end_timestamp and start_offsets and
// adds the client options they need.
func (in *franzInput) parseBackfill(conf *service.ParsedConfig, opts []kgo.Opt, regex bool) ([]kgo.Opt, error) {
	parseTime := func(field string) (int64, error) {
		s, err := conf.FieldString(field)
		if err != nil || s == "" {
			return 0, err
		}
		ts, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return 0, fmt.Errorf("field %s: %q is not an RFC 3339 time such as 2025-06-01T00:00:00Z", field, s)
		}
		return ts.UnixMilli(), nil
	}
	startMs, err := parseTime(fieldStartTimestamp)
	if err != nil {
		return nil, err
	}
	if in.endMs, err = parseTime(fieldEndTimestamp); err != nil {
		return nil, err
	}
	if in.endMs != 0 && startMs != 0 && in.endMs <= startMs {
		return nil, fmt.Errorf("field %s must be after %s", fieldEndTimestamp, fieldStartTimestamp)
	}
	in.startMs = startMs
	if in.endMs != 0 && in.group == "" {
		return nil, fmt.Errorf("field %s needs a %s: the input ends once the group has committed every partition up to it", fieldEndTimestamp, fieldConsumerGroup)
	}
	if in.endMs != 0 && (regex || len(in.topics) == 0) {
		return nil, fmt.Errorf("field %s needs the topics listed in %s, not matched by regular expressions", fieldEndTimestamp, fieldTopics)
	}
	if startMs != 0 {
		// Appended after start_offset's reset option, so it wins.
		opts = append(opts, kgo.ConsumeResetOffset(kgo.NewOffset().AfterMilli(startMs)))
	}

	raw, err := conf.FieldStringList(fieldStartOffsets)
	if err != nil {
		return nil, err
	}
	for _, e := range raw {
		parts := strings.Split(strings.TrimSpace(e), ":")
		if len(parts) != 3 {
			return nil, fmt.Errorf("field %s: %q is not topic:partition:offset", fieldStartOffsets, e)
		}
		partition, perr := strconv.ParseInt(parts[1], 10, 32)
		offset, oerr := strconv.ParseInt(parts[2], 10, 64)
		if perr != nil || oerr != nil || partition < 0 || offset < 0 {
			return nil, fmt.Errorf("field %s: %q needs a partition and an offset that are non-negative integers", fieldStartOffsets, e)
		}
		if !regex && !contains(in.topics, parts[0]) {
			return nil, fmt.Errorf("field %s: topic %q of %q is not in %s", fieldStartOffsets, parts[0], e, fieldTopics)
		}
		if in.startOffsets == nil {
			in.startOffsets = map[topicPartition]int64{}
		}
		in.startOffsets[topicPartition{parts[0], int32(partition)}] = offset
	}
	switch {
	case len(in.startOffsets) == 0:
	case in.group != "":
		opts = append(opts, kgo.AdjustFetchOffsetsFn(in.adjustStartOffsets))
	case len(in.explicit) == 0:
		return nil, fmt.Errorf("field %s needs a %s, or explicit partitions in %s (where it sets their start)", fieldStartOffsets, fieldConsumerGroup, fieldTopics)
	}
	return opts, nil
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

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
	meta := kmsg.NewPtrMetadataRequest()
	for _, t := range in.topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		meta.Topics = append(meta.Topics, rt)
	}
	mresp, err := meta.RequestWith(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("kafka_franz: listing partitions for end_timestamp: %w", err)
	}
	partitions := map[string][]int32{}
	for _, t := range mresp.Topics {
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return nil, fmt.Errorf("kafka_franz: listing partitions of topic %q for end_timestamp: %w", *t.Topic, err)
		}
		for _, p := range t.Partitions {
			partitions[*t.Topic] = append(partitions[*t.Topic], p.Partition)
		}
	}
	list := func(ts int64) (map[topicPartition]int64, error) {
		req := kmsg.NewPtrListOffsetsRequest()
		for t, ps := range partitions {
			rt := kmsg.NewListOffsetsRequestTopic()
			rt.Topic = t
			for _, p := range ps {
				rp := kmsg.NewListOffsetsRequestTopicPartition()
				rp.Partition = p
				rp.Timestamp = ts
				rt.Partitions = append(rt.Partitions, rp)
			}
			req.Topics = append(req.Topics, rt)
		}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return nil, err
		}
		out := map[topicPartition]int64{}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					return nil, fmt.Errorf("topic %q partition %d: %w", t.Topic, p.Partition, err)
				}
				out[topicPartition{t.Topic, p.Partition}] = p.Offset
			}
		}
		return out, nil
	}
	atEnd, err := list(in.endMs)
	if err != nil {
		return nil, fmt.Errorf("kafka_franz: looking up offsets at end_timestamp: %w", err)
	}
	latest, err := list(-1)
	if err != nil {
		return nil, fmt.Errorf("kafka_franz: looking up end offsets for end_timestamp: %w", err)
	}
	earliest, err := list(-2)
	if err != nil {
		return nil, fmt.Errorf("kafka_franz: looking up start offsets for end_timestamp: %w", err)
	}
	ends := map[topicPartition]endBound{}
	for tp, hw := range latest {
		off := hw
		if o, ok := atEnd[tp]; ok && o >= 0 {
			off = o
		}
		ends[tp] = endBound{off: off, logStart: earliest[tp]}
	}
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
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group
	byTopic := map[string][]int32{}
	for tp := range tps {
		byTopic[tp.topic] = append(byTopic[tp.topic], tp.partition)
	}
	for t, ps := range byTopic {
		rt := kmsg.NewOffsetFetchRequestTopic()
		rt.Topic = t
		rt.Partitions = ps
		req.Topics = append(req.Topics, rt)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := req.RequestWith(rctx, cl)
	if err != nil {
		return nil, err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, err
	}
	out := map[topicPartition]int64{}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			out[topicPartition{t.Topic, p.Partition}] = p.Offset
		}
	}
	for tp := range tps {
		if _, ok := out[tp]; !ok {
			out[tp] = -1
		}
	}
	return out, nil
}
