package kafka

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/dustin/go-humanize"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/preservarium/iot-ingestor/internal/backoff"
	"github.com/preservarium/iot-ingestor/internal/batchpolicy"
	"github.com/preservarium/iot-ingestor/internal/kafkaclient"
	"github.com/preservarium/iot-ingestor/internal/meta"
	"github.com/preservarium/iot-ingestor/internal/nackreplay"
	"github.com/preservarium/iot-ingestor/internal/speclint"
)

// Field names of the kafka_franz input; they follow Redpanda Connect's
// kafka_franz / redpanda inputs so a pipeline moves between them unedited.
const (
	fieldTopics              = "topics"
	fieldRegexpTopicsInclude = "regexp_topics_include"
	fieldRegexpTopicsExclude = "regexp_topics_exclude"
	fieldConsumerGroup       = "consumer_group"
	fieldRackID              = "rack_id"
	fieldInstanceID          = "instance_id"
	fieldStartOffset         = "start_offset"
	fieldFetchMaxBytes       = "fetch_max_bytes"
	fieldFetchMaxPartBytes   = "fetch_max_partition_bytes"
	fieldFetchMaxWait        = "fetch_max_wait"
	fieldSessionTimeout      = "session_timeout"
	fieldRebalanceTimeout    = "rebalance_timeout"
	fieldHeartbeatInterval   = "heartbeat_interval"
	fieldCheckpointLimit     = "checkpoint_limit"
	fieldPartitionBuffer     = "partition_buffer_bytes"
	fieldCommitPeriod        = "commit_period"
	fieldLagRefreshPeriod    = "topic_lag_refresh_period"
	fieldFetchMinBytes       = "fetch_min_bytes"
	fieldIsolationLevel      = "transaction_isolation_level"
	fieldBatching            = "batching"

	// Additions over Redpanda Connect's field set, for backfills.
	fieldStartTimestamp = "start_timestamp"
	fieldEndTimestamp   = "end_timestamp"
	fieldStartOffsets   = "start_offsets"
)

// Values of transaction_isolation_level.
const (
	readUncommitted = "read_uncommitted"
	readCommitted   = "read_committed"
)

// Values of start_offset.
const (
	startEarliest  = "earliest"
	startLatest    = "latest"
	startCommitted = "committed"
)

// reservedHeaderPrefix is put before the name of a record header that has the name of one
// of the pipeline's own metadata keys (meta.Reserved), which keep their values.
const reservedHeaderPrefix = "header_"

// How often the input checks that a broker is reachable while no records
// arrive, and how long it waits for an answer.
const (
	healthInterval = time.Second
	pingTimeout    = 3 * time.Second
)

// reconnectBackoff spaces the engine's reconnect attempts while no broker answers (the engine
// logs each failed one; its cap is also the longest the input takes to notice a broker is
// back), and pollRetryBackoff the polls that fail at once (no committed offset with
// start_offset: committed, an authorization error), so neither spins nor floods the log.
var (
	reconnectBackoff = backoff.Policy{Initial: time.Second, Max: 10 * time.Second, Jitter: backoff.DefaultJitter}
	pollRetryBackoff = backoff.Policy{Initial: time.Second, Max: 5 * time.Second, Jitter: backoff.DefaultJitter}
)

func kafkaFranzInputSpec() *service.ConfigSpec {
	spec := service.NewConfigSpec().
		Stable().
		Categories("Services").
		Summary("Consumes records from Kafka topics as a member of a consumer group, committing an offset only once every record up to it has been delivered.").
		Description(`
Built on the franz-go client. The partitions of the subscribed topics are shared among the
members of `+"`consumer_group`"+`; each partition is consumed by one member, in offset order,
and partitions are consumed in parallel.

### Delivery guarantee

At-least-once. Records are handed on in batches, one per partition fetch (or cut by the
`+"`batching`"+` policy, which is applied per partition). An offset is committed only when
the batch ending at it **and every earlier batch of the same partition** has been acknowledged
by the output: a later batch acknowledged first does not move the commit past an earlier one
still in flight. Commits are sent every `+"`commit_period`"+`, when partitions are revoked
in a rebalance and on shutdown. After a crash, a rebalance or a restart, consumption resumes at
the last commit, so records that were in flight are delivered again; nothing is skipped.
Without `+"`consumer_group`"+` (or with explicit partitions) nothing is committed: a restart starts
again from `+"`start_offset`"+`.

When `+"`auto_replay_nacks`"+` is true (the default) a batch rejected downstream (nacked) is
delivered again until it is accepted: only the messages the rejection names when it names
them, else the whole batch; the first two retries are immediate, then the pause grows to 5s
(jittered). A batch waiting out its pause delays no other batch. Its offsets are not committed
meanwhile. With it false a rejected batch counts as done and its offsets are committed.

### Back pressure and connectivity

At most `+"`checkpoint_limit`"+` records per partition are held between fetch and commit
(plus one fetch); while any partition is at the limit the input stops taking fetches until
acknowledgements come back, so memory stays bounded when the output is slow. A partition at the
limit whose commit is held by a batch that was rejected and is being retried, or that has waited
downstream for 10 s (a message whose error record the error topic keeps refusing, say), is
instead paused on its own until that batch is done, and the other partitions go on; a warning
names it. When no broker
can be reached the input reports itself disconnected (the `+"`/ready`"+` endpoint answers 503)
and reconnects by itself, resuming where it was.

### Metadata

Each message carries `+"`"+meta.KafkaKey+"`, `"+meta.KafkaTopic+"`, `"+meta.KafkaPartition+"`, `"+meta.KafkaOffset+"`, `"+meta.KafkaTimestampUnix+"`"+` (seconds) and
`+"`"+meta.KafkaTimestampMs+"`"+` (milliseconds) of the record, plus every record header as a metadata key of
the same name, except where that name is one of the pipeline's own keys (`+"`kafka_*`, `iot_*`, `fallback_error`, `path`"+`):
such a header is kept as `+"`"+reservedHeaderPrefix+"<name>`"+` (a header `+"`kafka_topic`"+` is readable as
`+"`"+reservedHeaderPrefix+"kafka_topic`"+`), and the input's own value stays. Those keys tell where a message came from
(the error record's `+"`source`"+`, the redelivery of a rejected message), which a producer must not be able to
forge. This departs from Redpanda Connect, whose input sets headers after its own keys, so that a header
replaces them.

### Metrics

Every partition this member owns is reported, idle ones included, refreshed every
`+"`"+fieldLagRefreshPeriod+"`"+` whether or not the input is fetching (it lists end, start and committed
offsets); a partition the member gives up is set to 0, since another member reports it from then on.
Without a consumer group nothing is reported.

- `+"`"+metricLag+"`"+` (gauge, labels `+"`topic`, `partition`"+`): the partition's end offset minus the group's
  committed offset: the records not yet stored or placed, whether fetched and waiting in the pipeline
  or not fetched yet. 0 only when everything is committed. Before the first commit it counts from
  the first record fetched (from the log start with `+"`start_offset: earliest`"+`).
- `+"`"+metricStalled+"`"+` (gauge, same labels): seconds the committed offset has not moved while the
  partition has lag; 0 otherwise. A message that keeps failing holds its partition's commit: this
  rises while the others flow.
- `+"`"+metricResets+"`"+` (counter, same labels): positions reset because the offset to consume next was
  deleted by retention (the committed offset fell below the log start, during a long outage): the
  client resumes at the log start, and the records in between are lost to the pipeline. Each one is
  also logged at ERROR with the skipped range.
`).
		Fields(kafkaclient.SeedBrokersField()).
		Fields(
			service.NewStringListField(fieldTopics).
				Description("Topics to consume. An entry may hold several topics separated by commas. An entry `topic:3` consumes one partition, `topic:0-5` a range of them (both ends included), as in Redpanda Connect: explicit partitions are consumed without a consumer group (`consumer_group` must be empty), every entry must then name its partitions, and a topic or partition that does not exist is an error at start. Where they start: `start_offsets`, else `start_timestamp`, else `start_offset`.").
				Example([]string{"iot_validated_data:0-5"}).
				Default([]any{}).
				Example([]string{"iot_validated_data"}).
				Example([]string{"${KAFKA_VALIDATED_DATA_TOPIC:iot_validated_data}"}),
			service.NewStringListField(fieldRegexpTopicsInclude).
				Description("Regular expressions; every topic matching one is consumed, in addition to `topics`. New matching topics are picked up at the next metadata refresh (`metadata_max_age`).").
				Default([]any{}).
				Example([]string{"^iot_.*_data$"}).
				Advanced(),
			service.NewStringListField(fieldRegexpTopicsExclude).
				Description("Regular expressions; a topic matching one is never consumed, even if `topics` or `regexp_topics_include` selects it.").
				Default([]any{}).
				Example([]string{"^iot_.*_test$"}).
				Advanced(),
			service.NewStringField(fieldConsumerGroup).
				Description("Consumer group this input joins; its committed offsets are where consumption resumes. Optional, as in Redpanda Connect: without one the input consumes every partition of `topics` (or the explicit partitions listed) by itself and commits nothing, so a restart starts again from `start_offset` and records are delivered again; the lag metrics are not reported. Must be empty with explicit partitions.").
				Optional().
				Example("ingestor_group").
				Example("${KAFKA_CONSUMER_GROUP_ID:ingestor_group}"),
		).
		Fields(kafkaclient.ClientIDField("ingestor")).
		Fields(
			service.NewStringField(fieldRackID).
				Description("Rack of this consumer, so that brokers supporting follower fetching (KIP-392) serve it from a replica in the same rack. Empty: no preference.").
				Default("").
				Example("eu-west-1a").
				Advanced(),
			service.NewStringField(fieldInstanceID).
				Description("Static group membership id (KIP-345): a restarted member with the same id takes its partitions back without a rebalance, if it returns within `session_timeout`. Must be unique within the group. Empty: dynamic membership.").
				Default("").
				Example("ingestor-0").
				Advanced(),
			service.NewStringAnnotatedEnumField(fieldStartOffset, map[string]string{
				startEarliest:  "Partitions without a committed offset start at their oldest record.",
				startLatest:    "Partitions without a committed offset start at the next record produced.",
				startCommitted: "Only partitions with a committed offset are consumed; a partition without one is reported as an error and not consumed.",
			}).
				Description("Where to start in a partition that has no committed offset for the group.").
				Default(startEarliest).
				Example(startLatest),
			service.NewStringField(fieldFetchMaxBytes).
				Description("Maximum bytes a fetch response may hold (all partitions together). A single record larger than this is still fetched.").
				Default("50MiB").
				Example("10MiB").
				Advanced(),
			service.NewStringField(fieldFetchMaxPartBytes).
				Description("Maximum bytes a fetch response may hold for one partition. The default is below Redpanda Connect's 1MiB, measured: 256KiB is about 650 readings, below `checkpoint_limit`, and draining a backlog of 1,000,000 readings peaked at 131 MB of memory against 282 MB with 1MiB, at the same rate.").
				Default("256KiB").
				Example("4MiB").
				Advanced(),
			service.NewStringField(fieldFetchMinBytes).
				Description("Least bytes a broker gathers before answering a fetch (or `fetch_max_wait` passes).").
				Default("1B").
				Example("64KiB").
				Advanced(),
			service.NewStringAnnotatedEnumField(fieldIsolationLevel, map[string]string{
				readUncommitted: "Every record, those of open and aborted transactions included.",
				readCommitted:   "Only records of committed transactions (and those written outside transactions).",
			}).
				Description("Which transactional records are consumed.").
				Default(readUncommitted).
				Advanced(),
			service.NewDurationField(fieldFetchMaxWait).
				Description("How long a broker may hold a fetch while waiting for new records; this is the consumer's poll timeout.").
				Default("5s").
				Example("1s").
				Advanced(),
			service.NewDurationField(fieldSessionTimeout).
				Description("How long the group coordinator waits for a heartbeat before evicting this member and reassigning its partitions: the failover time after a crash. The default is below Redpanda Connect's 1m so that the partitions of a crashed instance move to the others within 20s.").
				Default("20s").
				Example("45s").
				Advanced(),
			service.NewDurationField(fieldRebalanceTimeout).
				Description("How long members have to finish a rebalance (commit and release revoked partitions) before they are evicted. A revoke waits at most a third of this for in-flight batches to be acknowledged before committing. The default is below Redpanda Connect's 45s to bound the failover after repeated crashes: a member that died while joining holds a rebalance up to this long.").
				Default("20s").
				Example("1m").
				Advanced(),
			service.NewDurationField(fieldHeartbeatInterval).
				Description("How often this member heartbeats to the group coordinator; keep it well below `session_timeout`.").
				Default("3s").
				Example("1s").
				Advanced(),
			service.NewIntField(fieldCheckpointLimit).
				Description("Maximum records per partition held between fetch and commit. While any partition is at the limit, the input takes no further fetch until acknowledgements free room: this bounds memory and is the input's back pressure. A partition at the limit behind a batch that is being retried, or that has waited downstream for 10 s, is paused alone instead, so it does not stop the others.").
				Default(1024).
				Example(10000).
				Advanced(),
			service.NewStringField(fieldPartitionBuffer).
				Description("Maximum bytes of records (values, keys and headers) per partition held between fetch and commit, beside `"+fieldCheckpointLimit+"`: a partition over it holds back the input exactly as one at `"+fieldCheckpointLimit+"` does, and a batch is cut when it reaches it. A partition with nothing held always takes the next fetch, so a single record larger than this still passes, alone. As with the record limit, one fetch (`"+fieldFetchMaxPartBytes+"`) may cross it. The default bounds the memory of huge readings (6 partitions hold at most about 6 x 4MiB) and no realistic reading reaches it: `"+fieldCheckpointLimit+"` 1024 of the ~300-byte readings is 300KB, so the record limit binds first unless readings average over 4KB.").
				Default("4MiB").
				Example("16MiB").
				Advanced(),
			service.NewDurationField(fieldCommitPeriod).
				Description("How often acknowledged offsets are committed. Offsets are also committed when partitions are revoked and at shutdown.").
				Default("5s").
				Example("1s").
				Advanced(),
			service.NewDurationField(fieldLagRefreshPeriod).
				Description("How often the lag metrics of the owned partitions are refreshed (`"+metricLag+"`, `"+metricStalled+"`, `"+metricResets+"`): each refresh lists the end and start offsets of the topics and the group's commits.").
				Default("5s").
				Example("1s").
				Advanced(),
		).
		Fields(kafkaclient.TLSField(), kafkaclient.SASLField()).
		Fields(kafkaclient.TuningFields()...).
		Fields(
			service.NewBatchPolicyField(fieldBatching).
				Description("Cuts the records of each partition into batches (count, byte size, period); applied per partition, so a batch never mixes partitions. A batch is also cut when it holds `"+fieldCheckpointLimit+"` records, since its partition takes no more until acknowledgements come back: a `count` above the limit yields batches of `"+fieldCheckpointLimit+"` records, never a wait for the `period`. Without it, each partition fetch is one batch."),
			service.NewAutoRetryNacksToggleField(),
			service.NewStringField(fieldStartTimestamp).
				Description("Backfill: partitions without a committed offset start at their first record stamped at or after this time (RFC 3339), instead of at `start_offset`. Partitions with a commit resume from it, so a restarted backfill continues where it stopped. Empty: not used.").
				Default("").
				Example("2025-06-01T00:00:00Z").
				Advanced(),
			service.NewStringField(fieldEndTimestamp).
				Description("Backfill: records stamped at or after this time (RFC 3339) are not consumed, and the input ends by itself once the group has committed every partition of `topics` up to it (every record before it delivered and acknowledged). The cut-off offset of each partition is looked up when the input starts: the first record at or after this time, or the partition's end when there is none yet. Needs `topics` (not regular expressions). Empty: consume forever.").
				Default("").
				Example("2025-06-08T00:00:00Z").
				Advanced(),
			service.NewStringListField(fieldStartOffsets).
				Description("Backfill: explicit start offsets as `topic:partition:offset`, for partitions that have no committed offset in the group yet (a commit always wins, so a restart resumes). Overrides `start_offset` and `start_timestamp` for the partitions listed.").
				Default([]any{}).
				Example([]string{"iot_validated_data:0:18211", "iot_validated_data:3:0"}).
				Advanced(),
		).
		// The list defaults are []any, not []string: the lint rule sees
		// defaults as they are, and Bloblang only measures []any.
		LintRule(speclint.Rule(append(append(append([]string{
			`if (this.topics == null || this.topics.length() == 0) && (this.regexp_topics_include == null || this.regexp_topics_include.length() == 0) { "at least one of topics or regexp_topics_include must be set" } else if (this.end_timestamp | "") != "" && (this.regexp_topics_include | []).length() > 0 { "end_timestamp needs topics listed in topics, not regexp_topics_include" }`},
			speclint.Durations(fieldFetchMaxWait, fieldSessionTimeout, fieldRebalanceTimeout, fieldHeartbeatInterval,
				fieldCommitPeriod, fieldLagRefreshPeriod)...),
			append(append(speclint.Batching(fieldBatching), speclint.Positive(fieldCheckpointLimit)...), speclint.PositiveBytes(fieldPartitionBuffer)...)...),
			kafkaclient.TuningLint()...)...)).
		Example("Consume the validated readings", "Joins the ingestor's group and hands on batches of up to 100 records per partition, or what arrived within 5 seconds.", `
input:
  kafka_franz:
    seed_brokers: [ "${KAFKA_BOOTSTRAP_SERVERS:kafka:9092}" ]
    topics: [ "${KAFKA_VALIDATED_DATA_TOPIC:iot_validated_data}" ]
    consumer_group: "${KAFKA_CONSUMER_GROUP_ID:ingestor_group}"
    start_offset: earliest
    fetch_max_wait: 1s
    checkpoint_limit: 1024
    commit_period: 5s
    batching:
      count: 100
      period: 5s
`)
	return spec
}

func init() {
	service.MustRegisterBatchInput("kafka_franz", kafkaFranzInputSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchInput, error) {
			in, err := newFranzInput(conf, mgr)
			if err != nil {
				return nil, err
			}
			if !in.replayNacks {
				return in, nil
			}
			// Not the engine's AutoRetryNacksBatched: after a partial
			// rejection it can map a later rejection onto the wrong
			// messages and acknowledge some never delivered (see
			// internal/nackreplay).
			return nackreplay.Wrap(in), nil
		})
}

// franzInput is a consumer-group member. A poll loop hands each partition's
// records to that partition's partitionConsumer, which cuts batches and
// sends them to ReadBatch; acknowledgements flow back into the partition's
// checkpointer, and a committer commits what the checkpointers allow.
type franzInput struct {
	conn         *kafkaclient.Connection
	clientOpts   []kgo.Opt
	group        string
	batchPolicy  service.BatchPolicy
	batchProcs   bool // the batching policy has processors: a batch is no longer one message per record
	limit        int
	limitBytes   int64 // partition_buffer_bytes
	commitPeriod time.Duration
	explicit     map[string][]int32 // topic:partition entries of topics; consumed without a group
	lagPeriod    time.Duration
	drainWait    time.Duration
	replayNacks  bool

	res      *service.Resources
	log      *service.Logger
	progress *lagTracker
	ctx      context.Context // lives until Close
	stop     context.CancelFunc

	batches     chan readyBatch
	unreachable chan struct{} // signalled when the health check fails

	connMu    sync.Mutex
	client    *kgo.Client
	connFails int       // consecutive failed Connect calls; guarded by connMu
	failSince time.Time // when they began

	// Space the lines of a cause that repeats during an outage.
	fetchRepeats, commitRepeats kafkaclient.Repeats

	mu    sync.Mutex
	parts map[topicPartition]*partitionConsumer
	room  chan struct{} // signalled when a partition drops below checkpoint_limit or is dropped

	commitMu     sync.Mutex
	reachable    atomic.Bool
	lastProgress atomic.Int64 // unix nanos of the last fetch with records

	bg        sync.WaitGroup
	closeOnce sync.Once
	closed    chan struct{} // closed once Close's helper has left the group
	started   bool          // guarded by connMu

	// Backfill bounds; see start_offsets and end_timestamp.
	topics       []string
	startOffsets map[topicPartition]int64
	hasCommit    map[topicPartition]bool // from the last offset fetch of the group
	startMs      int64                   // start_timestamp; 0: none
	endMs        int64                   // 0: no end
	ends         map[topicPartition]endBound
	ended        chan struct{}
	endOnce      sync.Once
}

// endBound is where a partition's backfill range stops: records from off on
// are not consumed; logStart tells an empty range.
type endBound struct {
	off      int64
	logStart int64
}

type topicPartition struct {
	topic     string
	partition int32
}

type readyBatch struct {
	batch   service.MessageBatch
	records recordBatch // the record of each message; nil when batching processors ran
	ack     service.AckFunc
}

func newFranzInput(conf *service.ParsedConfig, res *service.Resources) (*franzInput, error) {
	conn, err := kafkaclient.ParseConnection(conf)
	if err != nil {
		return nil, err
	}
	in := &franzInput{
		conn:        conn,
		res:         res,
		log:         res.Logger(),
		batches:     make(chan readyBatch),
		unreachable: make(chan struct{}, 1),
		parts:       map[topicPartition]*partitionConsumer{},
		room:        make(chan struct{}, 1),
		ended:       make(chan struct{}),
		closed:      make(chan struct{}),
	}
	in.ctx, in.stop = context.WithCancel(context.Background())

	topicsRaw, err := conf.FieldStringList(fieldTopics)
	if err != nil {
		return nil, err
	}
	topics := kafkaclient.SplitList(topicsRaw)
	include, err := conf.FieldStringList(fieldRegexpTopicsInclude)
	if err != nil {
		return nil, err
	}
	exclude, err := conf.FieldStringList(fieldRegexpTopicsExclude)
	if err != nil {
		return nil, err
	}
	for _, lst := range [][]string{include, exclude} {
		for _, re := range lst {
			if _, err := regexp.Compile(re); err != nil {
				return nil, fmt.Errorf("topic regular expression %q does not compile: %w", re, err)
			}
		}
	}
	if len(topics) == 0 && len(include) == 0 {
		return nil, fmt.Errorf("field %s or %s: at least one topic is required", fieldTopics, fieldRegexpTopicsInclude)
	}
	if conf.Contains(fieldConsumerGroup) {
		if in.group, err = conf.FieldString(fieldConsumerGroup); err != nil {
			return nil, err
		}
	}
	if topics, in.explicit, err = parseExplicitPartitions(topics); err != nil {
		return nil, err
	}
	if len(in.explicit) > 0 {
		switch {
		case in.group != "":
			return nil, fmt.Errorf("field %s: explicit partitions (topic:partition) are consumed without a consumer group, so %s must be empty, as in Redpanda Connect", fieldTopics, fieldConsumerGroup)
		case len(topics) > 0:
			return nil, fmt.Errorf("field %s: topics %v are listed without partitions beside explicit ones: list the partitions of every topic (topic:0-11) or of none", fieldTopics, topics)
		case len(include) > 0 || len(exclude) > 0:
			return nil, fmt.Errorf("field %s: explicit partitions cannot be combined with %s or %s", fieldTopics, fieldRegexpTopicsInclude, fieldRegexpTopicsExclude)
		}
		for t := range in.explicit {
			topics = append(topics, t)
		}
		slices.Sort(topics)
	}
	if s, _ := conf.FieldString(fieldInstanceID); s != "" && in.group == "" {
		return nil, fmt.Errorf("field %s needs a %s", fieldInstanceID, fieldConsumerGroup)
	}

	opts := append(conn.Opts(), kgo.WithLogger(kafkaclient.Logger(in.log)))
	if in.group != "" {
		opts = append(opts, in.groupOpts()...)
	}
	switch {
	case len(in.explicit) > 0:
		// Added below, once the start offsets are known.
	case len(include) > 0 || len(exclude) > 0:
		// In regex mode every subscription is a regular expression, so
		// plain topic names are anchored and quoted.
		subs := append([]string{}, include...)
		for _, t := range topics {
			subs = append(subs, "^"+regexp.QuoteMeta(t)+"$")
		}
		opts = append(opts, kgo.ConsumeRegex(), kgo.ConsumeTopics(subs...))
		if len(exclude) > 0 {
			opts = append(opts, kgo.ConsumeExcludeTopics(exclude...))
		}
	default:
		opts = append(opts, kgo.ConsumeTopics(topics...))
	}

	if s, _ := conf.FieldString(fieldRackID); s != "" {
		opts = append(opts, kgo.Rack(s))
	}
	if s, _ := conf.FieldString(fieldInstanceID); s != "" {
		opts = append(opts, kgo.InstanceID(s))
	}

	start, err := conf.FieldString(fieldStartOffset)
	if err != nil {
		return nil, err
	}
	var startAt kgo.Offset
	switch start {
	case startEarliest:
		startAt = kgo.NewOffset().AtStart()
	case startLatest:
		startAt = kgo.NewOffset().AtEnd()
	case startCommitted:
		if in.group == "" {
			return nil, fmt.Errorf("field %s: %s needs a %s: without one nothing is committed", fieldStartOffset, startCommitted, fieldConsumerGroup)
		}
		startAt = kgo.NewOffset().AtCommitted()
	default:
		return nil, fmt.Errorf("field %s: %q is not one of earliest, latest, committed", fieldStartOffset, start)
	}
	opts = append(opts, kgo.ConsumeResetOffset(startAt))
	in.progress = newLagTracker(res, in.group, start == startEarliest)

	in.topics = topics
	if opts, err = in.parseBackfill(conf, opts, len(include) > 0); err != nil {
		return nil, err
	}
	if len(in.explicit) > 0 {
		opts = append(opts, kgo.ConsumePartitions(in.explicitStarts(startAt)))
	}

	for _, f := range []struct {
		name string
		opt  func(int32) kgo.Opt
	}{
		{fieldFetchMaxBytes, func(n int32) kgo.Opt { return kgo.FetchMaxBytes(n) }},
		{fieldFetchMaxPartBytes, func(n int32) kgo.Opt { return kgo.FetchMaxPartitionBytes(n) }},
	} {
		s, err := conf.FieldString(f.name)
		if err != nil {
			return nil, err
		}
		n, err := humanize.ParseBytes(s)
		if err != nil || n == 0 || n > 1<<31-1 {
			return nil, fmt.Errorf("field %s: %q is not a byte size between 1B and 2GiB (e.g. 50MiB)", f.name, s)
		}
		opts = append(opts, f.opt(int32(n)))
	}

	minBytes, err := conf.FieldString(fieldFetchMinBytes)
	if err != nil {
		return nil, err
	}
	if n, err := humanize.ParseBytes(minBytes); err != nil || n == 0 || n > 1<<31-1 {
		return nil, fmt.Errorf("field %s: %q is not a byte size between 1B and 2GiB (e.g. 1B)", fieldFetchMinBytes, minBytes)
	} else {
		opts = append(opts, kgo.FetchMinBytes(int32(n)))
	}
	isolation, err := conf.FieldString(fieldIsolationLevel)
	if err != nil {
		return nil, err
	}
	switch isolation {
	case readUncommitted:
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadUncommitted()))
	case readCommitted:
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	default:
		return nil, fmt.Errorf("field %s: %q is not one of %s, %s", fieldIsolationLevel, isolation, readUncommitted, readCommitted)
	}

	durations := map[string]*time.Duration{}
	var fetchWait, session, rebalance, heartbeat time.Duration
	durations[fieldFetchMaxWait] = &fetchWait
	durations[fieldSessionTimeout] = &session
	durations[fieldRebalanceTimeout] = &rebalance
	durations[fieldHeartbeatInterval] = &heartbeat
	durations[fieldCommitPeriod] = &in.commitPeriod
	durations[fieldLagRefreshPeriod] = &in.lagPeriod
	for name, dst := range durations {
		if *dst, err = conf.FieldDuration(name); err != nil {
			return nil, err
		}
		if *dst <= 0 {
			return nil, fmt.Errorf("field %s: must be a positive duration, got %v", name, *dst)
		}
	}
	if heartbeat >= session {
		return nil, fmt.Errorf("field %s (%v) must be shorter than %s (%v)", fieldHeartbeatInterval, heartbeat, fieldSessionTimeout, session)
	}
	in.drainWait = rebalance / 3
	opts = append(opts,
		kgo.FetchMaxWait(fetchWait),
		kgo.SessionTimeout(session),
		kgo.RebalanceTimeout(rebalance),
		kgo.HeartbeatInterval(heartbeat),
	)

	if in.limit, err = conf.FieldInt(fieldCheckpointLimit); err != nil {
		return nil, err
	}
	if in.limit < 1 {
		return nil, fmt.Errorf("field %s: must be at least 1, got %d", fieldCheckpointLimit, in.limit)
	}
	bufferBytes, err := conf.FieldString(fieldPartitionBuffer)
	if err != nil {
		return nil, err
	}
	if n, err := humanize.ParseBytes(bufferBytes); err != nil || n == 0 || n > 1<<40 {
		return nil, fmt.Errorf("field %s: %q is not a byte size between 1B and 1TiB (e.g. 4MiB)", fieldPartitionBuffer, bufferBytes)
	} else {
		in.limitBytes = int64(n)
	}
	if in.batchPolicy, err = batchpolicy.Field(conf, fieldBatching); err != nil {
		return nil, err
	}
	procs, err := conf.FieldAnyList(fieldBatching, "processors")
	if err != nil {
		return nil, err
	}
	in.batchProcs = len(procs) > 0
	if in.replayNacks, err = conf.FieldBool(service.AutoRetryNacksToggleFieldName); err != nil {
		return nil, err
	}
	in.clientOpts = opts
	in.reachable.Store(true)
	return in, nil
}

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
	}
}

// Connect creates the client once and from then on only checks that a
// broker answers: the client, its group membership and its positions
// survive an outage, so reconnecting never loses the input's place.
func (in *franzInput) Connect(ctx context.Context) error {
	in.connMu.Lock()
	defer in.connMu.Unlock()
	if in.ctx.Err() != nil {
		return service.ErrEndOfInput
	}
	if in.client == nil {
		cl, err := kgo.NewClient(in.clientOpts...)
		if err != nil {
			return fmt.Errorf("kafka_franz: creating the Kafka client: %w", err)
		}
		in.client = cl
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := kafkaclient.PingError(pctx, in.client, in.conn.SeedBrokers); err != nil {
		in.reachable.Store(false)
		return in.connectFailed(err)
	}
	in.connFails = 0
	if !in.started {
		if err := in.checkExplicit(pctx, in.client); err != nil {
			return err
		}
		// The cut-off offsets must be known before the first record is
		// handed on, so consuming starts only once they are resolved.
		if in.endMs > 0 && in.ends == nil {
			ends, err := in.resolveEnds(pctx, in.client)
			if err != nil {
				return err
			}
			in.ends = ends
		}
		in.started = true
		in.lastProgress.Store(time.Now().UnixNano())
		in.bg.Add(4)
		go in.pollLoop(in.client)
		go in.commitLoop(in.client)
		go in.healthLoop(in.client)
		go in.lagLoop(in.client)
		if in.ends != nil {
			in.bg.Add(1)
			go in.endLoop(in.client)
		}
	}
	in.reachable.Store(true)
	return nil
}

// connectFailed spaces the engine's next attempt by reconnectBackoff (the engine logs every failed
// one) and, for a repeat, says how long the cause has lasted. in.connMu is held.
func (in *franzInput) connectFailed(err error) error {
	now := time.Now()
	if in.connFails == 0 {
		in.failSince = now
	}
	wait := reconnectBackoff.Delay(in.connFails)
	in.connFails++
	if in.connFails > 1 {
		err = fmt.Errorf("%w (failing since %s, attempt %d, next in %v)", err, in.failSince.UTC().Format(time.RFC3339), in.connFails, wait.Round(100*time.Millisecond))
	}
	return service.NewErrBackOff(err, wait)
}

// ReadBatch hands on the next batch from any partition.
func (in *franzInput) ReadBatch(ctx context.Context) (service.MessageBatch, service.AckFunc, error) {
	b, err := in.next(ctx)
	return b.batch, b.ack, err
}

// ReadRebuildable is ReadBatch with the batch's records, from which the nack replayer builds
// again what it must redeliver instead of copying every batch (see internal/nackreplay).
func (in *franzInput) ReadRebuildable(ctx context.Context) (service.MessageBatch, nackreplay.Originals, service.AckFunc, error) {
	b, err := in.next(ctx)
	if b.records == nil {
		return b.batch, nil, b.ack, err
	}
	return b.batch, b.records, b.ack, err
}

// next returns the next ready batch. Ready batches are returned even while the brokers are
// unreachable; only when there is none does an outage surface as ErrNotConnected.
func (in *franzInput) next(ctx context.Context) (readyBatch, error) {
	select {
	case b := <-in.batches:
		return b, nil
	default:
	}
	for {
		if !in.reachable.Load() {
			return readyBatch{}, service.ErrNotConnected
		}
		select {
		case b := <-in.batches:
			return b, nil
		case <-in.unreachable:
		case <-in.ended:
			return readyBatch{}, service.ErrEndOfInput
		case <-ctx.Done():
			return readyBatch{}, ctx.Err()
		case <-in.ctx.Done():
			return readyBatch{}, service.ErrEndOfInput
		}
	}
}

// Close stops fetching, commits what has been acknowledged (the engine waits
// for pending acknowledgements before closing an input) and leaves the group.
func (in *franzInput) Close(ctx context.Context) error {
	var err error
	in.closeOnce.Do(func() {
		in.stop()
		in.connMu.Lock()
		cl := in.client
		in.connMu.Unlock()
		if cl == nil {
			close(in.closed)
			return
		}
		// The helper reports on a channel, never in a variable: it may still be running when
		// Close has returned on the context's deadline.
		done := make(chan error, 1)
		go func() {
			defer close(in.closed)
			in.bg.Wait()
			cerr := in.commit(ctx, cl, in.owned())
			// Leaving the group revokes every partition, which runs
			// dropPartitions and its final commit once more (a no-op
			// when nothing moved since).
			cl.CloseAllowingRebalance()
			done <- cerr
		}()
		select {
		case err = <-done:
		case <-ctx.Done():
			err = fmt.Errorf("kafka_franz: closing the consumer: %w", ctx.Err())
		}
	})
	return err
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

func (in *franzInput) full() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, p := range in.parts {
		if p.full() && !p.holdBack() {
			return true
		}
	}
	return false
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

// every runs fn every d, on the caller's goroutine, until the input closes or fn returns
// false: the ticker of each background loop. The caller was counted in in.bg.
func (in *franzInput) every(d time.Duration, fn func() bool) {
	defer in.bg.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-in.ctx.Done():
			return
		case <-t.C:
		}
		if !fn() {
			return
		}
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

// healthLoop checks, while no records arrive, that some broker answers, so
// an outage shows as disconnected rather than as an idle topic.
func (in *franzInput) healthLoop(cl *kgo.Client) {
	in.every(healthInterval, func() bool {
		if time.Since(time.Unix(0, in.lastProgress.Load())) < 2*healthInterval {
			return true
		}
		pctx, cancel := context.WithTimeout(in.ctx, pingTimeout)
		err := cl.Ping(pctx)
		cancel()
		if in.ctx.Err() != nil {
			return false
		}
		if err != nil {
			if in.reachable.Swap(false) {
				in.log.Warnf("kafka_franz: no Kafka broker reachable at %v, input disconnected until one answers: %v", in.conn.SeedBrokers, err)
				select {
				case in.unreachable <- struct{}{}:
				default:
				}
			}
			return true
		}
		in.reachable.Store(true)
		return true
	})
}

// commit commits the committable offsets of parts that moved since their
// last commit.
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
	for topic, ps := range tps {
		for _, partition := range ps {
			tp := topicPartition{topic, partition}
			if p := in.parts[tp]; p != nil {
				parts = append(parts, p)
				delete(in.parts, tp)
			}
		}
	}
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
	select {
	case p.wake <- struct{}{}:
	default:
	}
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

// holdBack pauses a full partition whose commit is held by a batch that keeps failing or waits
// downstream (checkpointer.stuck), and tells whether it is held back. Such a partition frees
// no room until that batch is accepted, however long that takes (an error topic that refuses it), so it must not stop the others at
// the gate; paused, it takes no more records meanwhile, which keeps its memory bounded. Only
// this case pauses: for ordinary back pressure pausing halves the rate (see pollLoop).
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
	p.in.log.Warnf("kafka_franz: topic %q partition %d holds checkpoint_limit (%d) records behind a batch that is being retried or has waited downstream for %v; fetching of the partition is paused until that batch is done, the other partitions go on", p.topic, p.partition, p.in.limit, stuckAfter)
	return true
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
		if len(recs) == 0 {
			continue
		}
		if p.batcher == nil {
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
	if wasFull && !p.full() {
		p.in.signalRoom()
	}
	p.resumeIfFreed()
}

// recordBatch is the records of a batch of one partition, in offset order, one per message.
// As nackreplay.Originals it builds their messages again, and recognises a message by the
// partition and offset in its metadata, which every message derived from it keeps (the
// error record is a copy): a message whose processors removed them is not recognised, and the
// replayer then delivers the whole batch again.
type recordBatch []*kgo.Record

// The replayer finds this by assertion: a signature that drifted would make it copy every
// batch again, without a word.
var _ nackreplay.Rebuildable = (*franzInput)(nil)

func (b recordBatch) Message(i int) *service.Message { return recordToMessage(b[i], b[i].Topic) }

func (b recordBatch) IndexOf(m *service.Message) (int, bool) {
	topic, _ := m.MetaGetMut(meta.KafkaTopic)
	partition, _ := m.MetaGetMut(meta.KafkaPartition)
	offset, _ := m.MetaGetMut(meta.KafkaOffset)
	t, okT := topic.(string)
	p, okP := partition.(int)
	o, okO := offset.(int)
	if !okT || !okP || !okO || len(b) == 0 || t != b[0].Topic || p != int(b[0].Partition) {
		return 0, false
	}
	i, found := slices.BinarySearchFunc(b, int64(o), func(r *kgo.Record, off int64) int { return cmp.Compare(r.Offset, off) })
	return i, found
}

// recordToMessage builds the message of r. topic is r.Topic as metadata: a partition's consumer
// boxes it once, since metadata values are held as `any` and boxing a string allocates. The key
// is not copied: like the value, which is the message's content, it is a view of the fetched
// batch, which the client allocates afresh for each fetch and never writes again.
func recordToMessage(r *kgo.Record, topic any) *service.Message {
	msg := service.NewMessage(r.Value)
	msg.MetaSetMut(meta.KafkaKey, unsafe.String(unsafe.SliceData(r.Key), len(r.Key)))
	msg.MetaSetMut(meta.KafkaTopic, topic)
	msg.MetaSetMut(meta.KafkaPartition, int(r.Partition))
	msg.MetaSetMut(meta.KafkaOffset, int(r.Offset))
	msg.MetaSetMut(meta.KafkaTimestampUnix, r.Timestamp.Unix())
	msg.MetaSetMut(meta.KafkaTimestampMs, r.Timestamp.UnixMilli())
	for _, h := range r.Headers {
		key := h.Key
		if meta.Reserved(key) {
			// The pipeline's own keys say where a message came from (the error record's
			// source, the nack replayer's trace): a producer must not be able to forge them.
			key = reservedHeaderPrefix + key
		}
		msg.MetaSetMut(key, string(h.Value))
	}
	return msg
}
