package kafka

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/preservarium/iot-ingestor/internal/batchpolicy"
	"github.com/preservarium/iot-ingestor/internal/kafkaclient"
)

// inputConfig is the kafka_franz input's config, parsed and checked: everything the input
// needs that does not need a broker. The field names are those the input uses.
type inputConfig struct {
	conn *kafkaclient.Connection

	topics       []string           // plain names; with explicit partitions, their topics
	explicit     map[string][]int32 // topic:partition entries of topics; consumed without a group
	regexInclude []string
	regexExclude []string
	group        string // "": no consumer group, no commits
	rackID       string
	instanceID   string
	startOffset  string // startEarliest, startLatest or startCommitted

	fetchMaxBytes, fetchMaxPartitionBytes, fetchMinBytes int32
	readCommitted                                        bool // transaction_isolation_level

	fetchMaxWait, sessionTimeout, rebalanceTimeout, heartbeatInterval time.Duration

	limit        int   // checkpoint_limit
	limitBytes   int64 // partition_buffer_bytes
	bufferBytes  int64 // buffer_bytes
	commitPeriod time.Duration
	lagPeriod    time.Duration
	drainWait    time.Duration // how long a revoke waits for in-flight batches: rebalance_timeout / 3
	batchPolicy  service.BatchPolicy
	batchProcs   bool // the batching policy has processors: a batch is no longer one message per record
	replayNacks  bool
	multiHeader  bool          // headers as lists of values
	timelyNacks  time.Duration // timely_nacks_maximum_wait; 0: none

	// Backfill bounds; see start_timestamp, end_timestamp and start_offsets.
	startMs      int64 // 0: none
	endMs        int64 // 0: no end
	startOffsets map[topicPartition]int64
}

// parseConfig reads and checks the input's fields; every error names the field to correct.
func parseConfig(conf *service.ParsedConfig) (inputConfig, error) {
	var c inputConfig
	var err error
	if c.conn, err = kafkaclient.ParseConnection(conf); err != nil {
		return c, err
	}
	if err := c.parseTopics(conf); err != nil {
		return c, err
	}
	if c.rackID, err = conf.FieldString(fieldRackID); err != nil {
		return c, err
	}
	if c.instanceID, err = conf.FieldString(fieldInstanceID); err != nil {
		return c, err
	}
	if c.instanceID != "" && c.group == "" {
		return c, fmt.Errorf("field %s needs a %s", fieldInstanceID, fieldConsumerGroup)
	}
	if c.startOffset, err = conf.FieldString(fieldStartOffset); err != nil {
		return c, err
	}
	switch c.startOffset {
	case startEarliest, startLatest:
	case startCommitted:
		if c.group == "" {
			return c, fmt.Errorf("field %s: %s needs a %s: without one nothing is committed", fieldStartOffset, startCommitted, fieldConsumerGroup)
		}
	default:
		return c, fmt.Errorf("field %s: %q is not one of earliest, latest, committed", fieldStartOffset, c.startOffset)
	}
	if err := c.parseBackfill(conf); err != nil {
		return c, err
	}
	if err := c.parseFetch(conf); err != nil {
		return c, err
	}
	if err := c.parseTimings(conf); err != nil {
		return c, err
	}

	if c.limit, err = conf.FieldInt(fieldCheckpointLimit); err != nil {
		return c, err
	}
	if c.limit < 1 {
		return c, fmt.Errorf("field %s: must be at least 1, got %d", fieldCheckpointLimit, c.limit)
	}
	if c.limitBytes, err = byteSize(conf, fieldPartitionBuffer, 1<<40, "4MiB"); err != nil {
		return c, err
	}
	if c.bufferBytes, err = byteSize(conf, fieldBufferBytes, 1<<40, "64MiB"); err != nil {
		return c, err
	}
	if c.batchPolicy, err = batchpolicy.Field(conf, fieldBatching); err != nil {
		return c, err
	}
	procs, err := conf.FieldAnyList(fieldBatching, "processors")
	if err != nil {
		return c, err
	}
	c.batchProcs = len(procs) > 0
	if c.replayNacks, err = conf.FieldBool(service.AutoRetryNacksToggleFieldName); err != nil {
		return c, err
	}
	if c.multiHeader, err = conf.FieldBool(fieldMultiHeader); err != nil {
		return c, err
	}
	wait, err := conf.FieldString(fieldTimelyNacks)
	if err != nil {
		return c, err
	}
	if wait != "" {
		if c.timelyNacks, err = time.ParseDuration(wait); err != nil || c.timelyNacks <= 0 {
			return c, fmt.Errorf("field %s: %q is not a positive duration with a unit, such as 1m (empty: no limit)", fieldTimelyNacks, wait)
		}
	}
	return c, nil
}

// parseTopics reads topics (plain names and explicit partitions), the topic regular
// expressions and consumer_group, which explicit partitions exclude.
func (c *inputConfig) parseTopics(conf *service.ParsedConfig) error {
	raw, err := conf.FieldStringList(fieldTopics)
	if err != nil {
		return err
	}
	if c.regexInclude, err = conf.FieldStringList(fieldRegexpTopicsInclude); err != nil {
		return err
	}
	if c.regexExclude, err = conf.FieldStringList(fieldRegexpTopicsExclude); err != nil {
		return err
	}
	topics := kafkaclient.SplitList(raw)
	regexpTopics, err := conf.FieldBool(fieldRegexpTopics)
	if err != nil {
		return err
	}
	if regexpTopics {
		// Connect's older spelling of regexp_topics_include: one way underneath.
		c.regexInclude = append(c.regexInclude, topics...)
		topics = nil
	}
	for _, re := range slices.Concat(c.regexInclude, c.regexExclude) {
		if _, err := regexp.Compile(re); err != nil {
			return fmt.Errorf("topic regular expression %q does not compile: %w", re, err)
		}
	}
	if len(topics) == 0 && len(c.regexInclude) == 0 {
		return fmt.Errorf("field %s or %s: at least one topic is required", fieldTopics, fieldRegexpTopicsInclude)
	}
	if conf.Contains(fieldConsumerGroup) {
		if c.group, err = conf.FieldString(fieldConsumerGroup); err != nil {
			return err
		}
	}
	if topics, c.explicit, err = parseExplicitPartitions(topics); err != nil {
		return err
	}
	if len(c.explicit) > 0 {
		switch {
		case c.group != "":
			return fmt.Errorf("field %s: explicit partitions (topic:partition) are consumed without a consumer group, so %s must be empty, as in Redpanda Connect", fieldTopics, fieldConsumerGroup)
		case len(topics) > 0:
			return fmt.Errorf("field %s: topics %v are listed without partitions beside explicit ones: list the partitions of every topic (topic:0-11) or of none", fieldTopics, topics)
		case c.regexps():
			return fmt.Errorf("field %s: explicit partitions cannot be combined with %s or %s", fieldTopics, fieldRegexpTopicsInclude, fieldRegexpTopicsExclude)
		}
		for t := range c.explicit {
			topics = append(topics, t)
		}
		slices.Sort(topics)
	}
	c.topics = topics
	return nil
}

// regexps tells whether topics are selected by regular expressions.
func (c *inputConfig) regexps() bool { return len(c.regexInclude) > 0 || len(c.regexExclude) > 0 }

// parseBackfill reads start_timestamp, end_timestamp and start_offsets.
func (c *inputConfig) parseBackfill(conf *service.ParsedConfig) error {
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
	var err error
	if c.startMs, err = parseTime(fieldStartTimestamp); err != nil {
		return err
	}
	if c.endMs, err = parseTime(fieldEndTimestamp); err != nil {
		return err
	}
	if c.endMs != 0 && c.startMs != 0 && c.endMs <= c.startMs {
		return fmt.Errorf("field %s must be after %s", fieldEndTimestamp, fieldStartTimestamp)
	}
	if c.endMs != 0 && c.group == "" {
		return fmt.Errorf("field %s needs a %s: the input ends once the group has committed every partition up to it", fieldEndTimestamp, fieldConsumerGroup)
	}
	if c.endMs != 0 && (len(c.regexInclude) > 0 || len(c.topics) == 0) {
		return fmt.Errorf("field %s needs the topics listed in %s, not matched by regular expressions", fieldEndTimestamp, fieldTopics)
	}

	raw, err := conf.FieldStringList(fieldStartOffsets)
	if err != nil {
		return err
	}
	for _, e := range raw {
		parts := strings.Split(strings.TrimSpace(e), ":")
		if len(parts) != 3 {
			return fmt.Errorf("field %s: %q is not topic:partition:offset", fieldStartOffsets, e)
		}
		partition, perr := strconv.ParseInt(parts[1], 10, 32)
		offset, oerr := strconv.ParseInt(parts[2], 10, 64)
		if perr != nil || oerr != nil || partition < 0 || offset < 0 {
			return fmt.Errorf("field %s: %q needs a partition and an offset that are non-negative integers", fieldStartOffsets, e)
		}
		if len(c.regexInclude) == 0 && !slices.Contains(c.topics, parts[0]) {
			return fmt.Errorf("field %s: topic %q of %q is not in %s", fieldStartOffsets, parts[0], e, fieldTopics)
		}
		if c.startOffsets == nil {
			c.startOffsets = map[topicPartition]int64{}
		}
		c.startOffsets[topicPartition{parts[0], int32(partition)}] = offset
	}
	if len(c.startOffsets) > 0 && c.group == "" && len(c.explicit) == 0 {
		return fmt.Errorf("field %s needs a %s, or explicit partitions in %s (where it sets their start)", fieldStartOffsets, fieldConsumerGroup, fieldTopics)
	}
	return nil
}

// parseFetch reads the sizes and the isolation level of fetches.
func (c *inputConfig) parseFetch(conf *service.ParsedConfig) error {
	for _, f := range []struct {
		name    string
		dst     *int32
		example string
	}{
		{fieldFetchMaxBytes, &c.fetchMaxBytes, "50MiB"},
		{fieldFetchMaxPartBytes, &c.fetchMaxPartitionBytes, "256KiB"},
		{fieldFetchMinBytes, &c.fetchMinBytes, "1B"},
	} {
		n, err := byteSize(conf, f.name, 1<<31-1, f.example)
		if err != nil {
			return err
		}
		*f.dst = int32(n)
	}
	isolation, err := conf.FieldString(fieldIsolationLevel)
	if err != nil {
		return err
	}
	switch isolation {
	case readUncommitted:
	case readCommitted:
		c.readCommitted = true
	default:
		return fmt.Errorf("field %s: %q is not one of %s, %s", fieldIsolationLevel, isolation, readUncommitted, readCommitted)
	}
	return nil
}

// byteSize reads a byte-size field ("4MiB") of at least one byte and at most most.
func byteSize(conf *service.ParsedConfig, field string, most uint64, example string) (int64, error) {
	s, err := conf.FieldString(field)
	if err != nil {
		return 0, err
	}
	n, err := humanize.ParseBytes(s)
	if err != nil || n == 0 || n > most {
		return 0, fmt.Errorf("field %s: %q is not a byte size between 1B and %s (e.g. %s)", field, s, humanize.IBytes(most+1), example)
	}
	return int64(n), nil
}

// parseTimings reads the group's and the commits' durations.
func (c *inputConfig) parseTimings(conf *service.ParsedConfig) error {
	for name, dst := range map[string]*time.Duration{
		fieldFetchMaxWait:      &c.fetchMaxWait,
		fieldSessionTimeout:    &c.sessionTimeout,
		fieldRebalanceTimeout:  &c.rebalanceTimeout,
		fieldHeartbeatInterval: &c.heartbeatInterval,
		fieldCommitPeriod:      &c.commitPeriod,
		fieldLagRefreshPeriod:  &c.lagPeriod,
	} {
		var err error
		if *dst, err = conf.FieldDuration(name); err != nil {
			return err
		}
		if *dst <= 0 {
			return fmt.Errorf("field %s: must be a positive duration, got %v", name, *dst)
		}
	}
	if c.heartbeatInterval >= c.sessionTimeout {
		return fmt.Errorf("field %s (%v) must be shorter than %s (%v)", fieldHeartbeatInterval, c.heartbeatInterval, fieldSessionTimeout, c.sessionTimeout)
	}
	c.drainWait = c.rebalanceTimeout / 3
	return nil
}

// resetOffset is where a partition without a commit starts: start_timestamp, else
// start_offset.
func (c *inputConfig) resetOffset() kgo.Offset {
	switch {
	case c.startMs != 0:
		return kgo.NewOffset().AfterMilli(c.startMs)
	case c.startOffset == startLatest:
		return kgo.NewOffset().AtEnd()
	case c.startOffset == startCommitted:
		return kgo.NewOffset().AtCommitted()
	default:
		return kgo.NewOffset().AtStart()
	}
}

// consumeOpts are the client options of what the input consumes and how it fetches; the
// group's callbacks are the input's (groupOpts).
func (c *inputConfig) consumeOpts() []kgo.Opt {
	var opts []kgo.Opt
	switch {
	case len(c.explicit) > 0:
		opts = append(opts, kgo.ConsumePartitions(c.explicitStarts()))
	case c.regexps():
		// In regex mode every subscription is a regular expression, so plain topic names are
		// anchored and quoted.
		subs := append([]string{}, c.regexInclude...)
		for _, t := range c.topics {
			subs = append(subs, "^"+regexp.QuoteMeta(t)+"$")
		}
		opts = append(opts, kgo.ConsumeRegex(), kgo.ConsumeTopics(subs...))
		if len(c.regexExclude) > 0 {
			opts = append(opts, kgo.ConsumeExcludeTopics(c.regexExclude...))
		}
	default:
		opts = append(opts, kgo.ConsumeTopics(c.topics...))
	}
	if c.rackID != "" {
		opts = append(opts, kgo.Rack(c.rackID))
	}
	if c.instanceID != "" {
		opts = append(opts, kgo.InstanceID(c.instanceID))
	}
	isolation := kgo.ReadUncommitted()
	if c.readCommitted {
		isolation = kgo.ReadCommitted()
	}
	return append(opts,
		kgo.ConsumeResetOffset(c.resetOffset()),
		kgo.FetchMaxBytes(c.fetchMaxBytes),
		kgo.FetchMaxPartitionBytes(c.fetchMaxPartitionBytes),
		kgo.FetchMinBytes(c.fetchMinBytes),
		kgo.FetchIsolationLevel(isolation),
		kgo.FetchMaxWait(c.fetchMaxWait),
		kgo.SessionTimeout(c.sessionTimeout),
		kgo.RebalanceTimeout(c.rebalanceTimeout),
		kgo.HeartbeatInterval(c.heartbeatInterval),
	)
}
