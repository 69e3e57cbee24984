package kafka

import (
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/preservarium/iot-ingestor/internal/kafkaclient"
	"github.com/preservarium/iot-ingestor/internal/meta"
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
	fieldBufferBytes         = "buffer_bytes"
	fieldCommitPeriod        = "commit_period"
	fieldLagRefreshPeriod    = "topic_lag_refresh_period"
	fieldFetchMinBytes       = "fetch_min_bytes"
	fieldIsolationLevel      = "transaction_isolation_level"
	fieldBatching            = "batching"
	fieldRegexpTopics        = "regexp_topics"
	fieldMultiHeader         = "multi_header"
	fieldTimelyNacks         = "timely_nacks_maximum_wait"

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
`+"`"+meta.KafkaTimestampMs+"`"+` (milliseconds) of the record, `+"`"+meta.KafkaLag+"`"+` (the partition's high watermark at the
fetch minus the record's offset minus 1), `+"`"+meta.KafkaTombstoneMessage+"`"+` (true when the record's value is null), plus every record header as a metadata key of
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
			service.NewStringField(fieldBufferBytes).
				Description("Maximum bytes of records (values, keys and headers) held between fetch and commit across all the input's partitions, so that what the input holds does not grow with the partition count: `"+fieldCheckpointLimit+"` and `"+fieldPartitionBuffer+"` bound each partition, and 48 partitions at `"+fieldCheckpointLimit+"` 1024 would hold 49,152 readings. At the bound the input takes no fetch and cuts the batches its partitions are filling, whatever the batching policy asks, so that they are written and make room. What one poll brings (up to `"+fieldFetchMaxBytes+"` per broker, and franz-go buffers as much again meanwhile) may cross it, and a partition held back behind a batch that keeps failing does not count (it is paused, within its own bound, so that it cannot stop the others). The default holds the 1024 readings of ~400 bytes of up to 20 partitions.").
				Default("8MiB").
				Example("64MiB").
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
			service.NewBoolField(fieldRegexpTopics).
				Description("Whether the entries of `topics` are regular expressions: every topic matching one is consumed, as in Redpanda Connect. The same as listing them in `"+fieldRegexpTopicsInclude+"`; explicit partitions cannot be combined with it.").
				Default(false).
				Advanced(),
			service.NewBoolField(fieldMultiHeader).
				Description("Decode record headers into lists, so that a key repeated in a record keeps all its values: each header key's metadata is then a list of strings, in the record's order, instead of the string of its last value. As in Redpanda Connect.").
				Default(false).
				Advanced(),
			service.NewStringField(fieldTimelyNacks).
				Description("A batch neither acknowledged nor rejected within this time (a hung output, say) is rejected, and so delivered again when `auto_replay_nacks` is true (counted as done when it is false); its late answer is then ignored. As in Redpanda Connect. Empty: no limit.").
				Default("").
				Example("1m").
				Advanced(),
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
				fieldCommitPeriod, fieldLagRefreshPeriod, fieldTimelyNacks)...),
			append(append(speclint.Batching(fieldBatching), speclint.Positive(fieldCheckpointLimit)...), speclint.PositiveBytes(fieldPartitionBuffer, fieldBufferBytes)...)...),
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
