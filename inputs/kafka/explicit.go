package kafka

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// parseExplicitPartitions splits the entries of topics into plain topic names and explicit
// partitions, written as Redpanda Connect does: `topic:3` one partition, `topic:0-5` a range
// (both ends included).
func parseExplicitPartitions(entries []string) (plain []string, explicit map[string][]int32, err error) {
	for _, e := range entries {
		topic, spec, ok := strings.Cut(e, ":")
		if !ok {
			plain = append(plain, e)
			continue
		}
		first, last, isRange := strings.Cut(spec, "-")
		lo, errLo := strconv.ParseInt(first, 10, 32)
		hi, errHi := lo, error(nil)
		if isRange {
			hi, errHi = strconv.ParseInt(last, 10, 32)
		}
		if topic == "" || errLo != nil || errHi != nil || lo < 0 || hi < lo {
			return nil, nil, fmt.Errorf("field %s: %q is not topic, topic:partition or topic:first-last (e.g. iot_validated_data:0-5)", fieldTopics, e)
		}
		if explicit == nil {
			explicit = map[string][]int32{}
		}
		for p := lo; p <= hi; p++ {
			if !slices.Contains(explicit[topic], int32(p)) {
				explicit[topic] = append(explicit[topic], int32(p))
			}
		}
	}
	return plain, explicit, nil
}

// explicitStarts is where each explicit partition starts: its start_offsets entry, else
// start_timestamp, else start_offset.
func (c *inputConfig) explicitStarts() map[string]map[int32]kgo.Offset {
	startAt := c.resetOffset()
	out := map[string]map[int32]kgo.Offset{}
	for topic, ps := range c.explicit {
		out[topic] = map[int32]kgo.Offset{}
		for _, p := range ps {
			at := startAt
			if off, ok := c.startOffsets[topicPartition{topic, p}]; ok {
				at = kgo.NewOffset().At(off)
			}
			out[topic][p] = at
		}
	}
	return out
}

// checkExplicit fails when an explicit partition does not exist: the client would wait for it
// without a word.
func (in *franzInput) checkExplicit(ctx context.Context, cl *kgo.Client) error {
	if len(in.explicit) == 0 {
		return nil
	}
	topics := make([]string, 0, len(in.explicit))
	for t := range in.explicit {
		topics = append(topics, t)
	}
	details, err := kadm.NewClient(cl).ListTopics(ctx, topics...)
	if err != nil {
		return fmt.Errorf("kafka_franz: listing the topics of the explicit partitions: %w", err)
	}
	for _, t := range topics {
		d, ok := details[t]
		if !ok || d.Err != nil {
			return fmt.Errorf("kafka_franz: topic %q of field %s does not exist (create it, or correct the name)", t, fieldTopics)
		}
		for _, p := range in.explicit[t] {
			if int(p) >= len(d.Partitions) {
				return fmt.Errorf("kafka_franz: topic %q has %d partitions, so partition %d of field %s does not exist", t, len(d.Partitions), p, fieldTopics)
			}
		}
	}
	return nil
}
