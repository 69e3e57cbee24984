package kafka

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestKafkaFranzInputConfig(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string // substring; empty means the config is accepted
	}{
		{
			name: "minimal",
			yaml: `
seed_brokers: [ "localhost:9092" ]
topics: [ iot_validated_data ]
consumer_group: g
`,
		},
		{
			name: "comma separated brokers and topics, regex, all knobs",
			yaml: `
seed_brokers: [ "a:9092,b:9092", "c:9092" ]
topics: [ "t1,t2" ]
regexp_topics_include: [ "^iot_.*" ]
regexp_topics_exclude: [ "_test$" ]
consumer_group: g
client_id: me
rack_id: r1
instance_id: i1
start_offset: latest
fetch_max_bytes: 10MiB
fetch_max_partition_bytes: 2MiB
fetch_max_wait: 1s
session_timeout: 30s
rebalance_timeout: 30s
heartbeat_interval: 1s
checkpoint_limit: 10
commit_period: 1s
metadata_max_age: 1m
request_timeout_overhead: 5s
conn_idle_timeout: 1m
fetch_min_bytes: 1KiB
transaction_isolation_level: read_committed
topic_lag_refresh_period: 1s
auto_replay_nacks: false
sasl:
  - mechanism: SCRAM-SHA-256
    username: u
    password: p
batching:
  count: 100
  period: 5s
`,
		},
		{
			name:    "no brokers",
			yaml:    "seed_brokers: [ \" , \" ]\ntopics: [ t ]\nconsumer_group: g\n",
			wantErr: "at least one broker address",
		},
		{
			name:    "no topics",
			yaml:    "seed_brokers: [ \"localhost:9092\" ]\nconsumer_group: g\n",
			wantErr: "at least one topic",
		},
		{
			name: "no group",
			yaml: "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ t ]\n",
		},
		{
			name: "empty group",
			yaml: "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ t ]\nconsumer_group: \"\"\n",
		},
		{
			name: "explicit partitions",
			yaml: "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ \"t:0\", \"t:2-5\", \"u:1\" ]\nstart_offsets: [ \"t:3:10\" ]\n",
		},
		{
			name:    "explicit partitions with a group",
			yaml:    "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ \"t:0-5\" ]\nconsumer_group: g\n",
			wantErr: "explicit partitions (topic:partition) are consumed without a consumer group",
		},
		{
			name:    "explicit partitions beside a plain topic",
			yaml:    "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ \"t:0\", u ]\n",
			wantErr: "listed without partitions beside explicit ones",
		},
		{
			name:    "explicit partitions with a regexp",
			yaml:    "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ \"t:0\" ]\nregexp_topics_include: [ \"^x\" ]\n",
			wantErr: "cannot be combined with regexp_topics_include",
		},
		{
			name:    "bad partition range",
			yaml:    "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ \"t:5-2\" ]\n",
			wantErr: "is not topic, topic:partition or topic:first-last",
		},
		{
			name:    "committed without a group",
			yaml:    "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ t ]\nstart_offset: committed\n",
			wantErr: "committed needs a consumer_group",
		},
		{
			name:    "end timestamp without a group",
			yaml:    "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ \"t:0\" ]\nend_timestamp: 2025-06-01T00:00:00Z\n",
			wantErr: "end_timestamp needs a consumer_group",
		},
		{
			name:    "start offsets of plain topics without a group",
			yaml:    "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ t ]\nstart_offsets: [ \"t:0:1\" ]\n",
			wantErr: "start_offsets needs a consumer_group, or explicit partitions",
		},
		{
			name:    "bad regexp",
			yaml:    "seed_brokers: [ \"localhost:9092\" ]\nregexp_topics_include: [ \"(\" ]\nconsumer_group: g\n",
			wantErr: "does not compile",
		},
		{
			name:    "bad start offset",
			yaml:    "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ t ]\nconsumer_group: g\nstart_offset: oldest\n",
			wantErr: "oldest",
		},
		{
			name:    "bad byte size",
			yaml:    "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ t ]\nconsumer_group: g\nfetch_max_bytes: lots\n",
			wantErr: "fetch_max_bytes",
		},
		{
			name:    "heartbeat not below session timeout",
			yaml:    "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ t ]\nconsumer_group: g\nheartbeat_interval: 1m\nsession_timeout: 10s\n",
			wantErr: "must be shorter than session_timeout",
		},
		{
			name:    "bad fetch_min_bytes",
			yaml:    "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ t ]\nfetch_min_bytes: 0B\n",
			wantErr: "fetch_min_bytes",
		},
		{
			name:    "bad isolation level",
			yaml:    "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ t ]\ntransaction_isolation_level: serializable\n",
			wantErr: "serializable",
		},
		{
			name:    "zero checkpoint limit",
			yaml:    "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ t ]\nconsumer_group: g\ncheckpoint_limit: 0\n",
			wantErr: "checkpoint_limit",
		},
		{
			name:    "timely nacks without a unit",
			yaml:    "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ t ]\ntimely_nacks_maximum_wait: \"30\"\n",
			wantErr: "timely_nacks_maximum_wait",
		},
		{
			name:    "regexp_topics that do not compile",
			yaml:    "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ \"(\" ]\nregexp_topics: true\n",
			wantErr: "does not compile",
		},
		{
			name:    "zero partition buffer",
			yaml:    "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ t ]\npartition_buffer_bytes: 0B\n",
			wantErr: "partition_buffer_bytes",
		},
		{
			name:    "partition buffer without a size",
			yaml:    "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ t ]\npartition_buffer_bytes: lots\n",
			wantErr: "partition_buffer_bytes",
		},
		{
			// Cut at checkpoint_limit: such a batch is never left waiting.
			name: "batch bigger than the checkpoint limit, no period",
			yaml: "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ t ]\nconsumer_group: g\ncheckpoint_limit: 100\nbatching:\n  count: 500\n",
		},
		{
			name: "batch by size only, no period",
			yaml: "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ t ]\nconsumer_group: g\nbatching:\n  byte_size: 100000\n",
		},
		{
			name: "batch bigger than the checkpoint limit, with a period",
			yaml: "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ t ]\nconsumer_group: g\ncheckpoint_limit: 100\nbatching:\n  count: 500\n  period: 1s\n",
		},
		{
			name:    "unknown sasl mechanism",
			yaml:    "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ t ]\nconsumer_group: g\nsasl:\n  - mechanism: GSSAPI\n    username: u\n",
			wantErr: "GSSAPI",
		},
		{
			name: "backfill fields",
			yaml: "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ t ]\nconsumer_group: g\nstart_timestamp: 2025-06-01T00:00:00Z\nend_timestamp: 2025-06-02T00:00:00.5+02:00\nstart_offsets: [ \"t:0:5\" ]\n",
		},
		{
			name:    "bad timestamp",
			yaml:    "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ t ]\nconsumer_group: g\nend_timestamp: yesterday\n",
			wantErr: "not an RFC 3339 time",
		},
		{
			name:    "end before start",
			yaml:    "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ t ]\nconsumer_group: g\nstart_timestamp: 2025-06-02T00:00:00Z\nend_timestamp: 2025-06-01T00:00:00Z\n",
			wantErr: "end_timestamp must be after start_timestamp",
		},
		{
			name:    "end with regexp topics",
			yaml:    "seed_brokers: [ \"localhost:9092\" ]\nregexp_topics_include: [ \"^t\" ]\nconsumer_group: g\nend_timestamp: 2025-06-01T00:00:00Z\n",
			wantErr: "end_timestamp needs the topics",
		},
		{
			name:    "start offset malformed",
			yaml:    "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ t ]\nconsumer_group: g\nstart_offsets: [ \"t:0\" ]\n",
			wantErr: "is not topic:partition:offset",
		},
		{
			name:    "start offset negative",
			yaml:    "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ t ]\nconsumer_group: g\nstart_offsets: [ \"t:0:-1\" ]\n",
			wantErr: "non-negative",
		},
		{
			name:    "start offset of another topic",
			yaml:    "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ t ]\nconsumer_group: g\nstart_offsets: [ \"u:0:1\" ]\n",
			wantErr: "is not in topics",
		},
		{
			name:    "scram without user",
			yaml:    "seed_brokers: [ \"localhost:9092\" ]\ntopics: [ t ]\nconsumer_group: g\nsasl:\n  - mechanism: SCRAM-SHA-512\n",
			wantErr: "needs a username",
		},
	}
	spec := kafkaFranzInputSpec()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			conf, perr := spec.ParseYAML(tc.yaml, nil)
			if perr != nil {
				err = perr
			} else {
				_, err = parseConfig(conf)
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("config rejected: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestKafkaFranzInputLint runs the configs through the engine's linter, as
// `ingestor lint` does.
func TestKafkaFranzInputLint(t *testing.T) {
	tests := []struct {
		name     string
		yaml     string
		wantLint string
	}{
		{name: "valid", yaml: "kafka_franz:\n  seed_brokers: [ x:9092 ]\n  topics: [ t ]\n  consumer_group: g\n"},
		{name: "no topics", yaml: "kafka_franz:\n  seed_brokers: [ x:9092 ]\n  consumer_group: g\n", wantLint: "at least one of topics or regexp_topics_include"},
		{name: "unknown field", yaml: "kafka_franz:\n  seed_brokers: [ x:9092 ]\n  topics: [ t ]\n  consumer_group: g\n  topic: t\n", wantLint: "topic"},
		{name: "end with regexp", yaml: "kafka_franz:\n  seed_brokers: [ x:9092 ]\n  regexp_topics_include: [ t ]\n  consumer_group: g\n  end_timestamp: 2025-06-01T00:00:00Z\n", wantLint: "end_timestamp needs topics"},
		{name: "bad enum", yaml: "kafka_franz:\n  seed_brokers: [ x:9092 ]\n  topics: [ t ]\n  consumer_group: g\n  start_offset: oldest\n", wantLint: "oldest"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := service.NewStreamBuilder().AddInputYAML(tc.yaml)
			if tc.wantLint == "" {
				if err != nil {
					t.Fatalf("lint rejected a valid config: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantLint) {
				t.Fatalf("got %v, want a lint error containing %q", err, tc.wantLint)
			}
		})
	}
}

// The config is parsed into the values the input runs with: the defaults where nothing is
// set, a topic:first-last entry as its partitions, sizes and durations in their units.
func TestParseConfigValues(t *testing.T) {
	parse := func(yaml string) inputConfig {
		t.Helper()
		conf, err := kafkaFranzInputSpec().ParseYAML(yaml, nil)
		if err != nil {
			t.Fatal(err)
		}
		c, err := parseConfig(conf)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := parse("seed_brokers: [ \"localhost:9092\" ]\ntopics: [ \"a,b\" ]\nconsumer_group: g\n")
	if !slices.Equal(c.topics, []string{"a", "b"}) || c.group != "g" || len(c.explicit) != 0 {
		t.Errorf("topics %v, group %q, explicit %v", c.topics, c.group, c.explicit)
	}
	if c.limit != 1024 || c.limitBytes != 4<<20 || c.fetchMaxPartitionBytes != 256<<10 || c.fetchMaxBytes != 50<<20 || c.fetchMinBytes != 1 {
		t.Errorf("defaults: limit %d, limitBytes %d, fetch %d/%d/%d", c.limit, c.limitBytes, c.fetchMaxBytes, c.fetchMaxPartitionBytes, c.fetchMinBytes)
	}
	if c.sessionTimeout != 20*time.Second || c.rebalanceTimeout != 20*time.Second || c.drainWait != 20*time.Second/3 || c.commitPeriod != 5*time.Second {
		t.Errorf("timings: session %v, rebalance %v, drain %v, commit %v", c.sessionTimeout, c.rebalanceTimeout, c.drainWait, c.commitPeriod)
	}
	if !c.replayNacks || c.readCommitted || c.startOffset != startEarliest {
		t.Errorf("replayNacks %v, readCommitted %v, start %q", c.replayNacks, c.readCommitted, c.startOffset)
	}

	c = parse("seed_brokers: [ \"localhost:9092\" ]\ntopics: [ \"t:1-3\", \"u:0\" ]\nstart_offsets: [ \"t:2:7\" ]\npartition_buffer_bytes: 16MiB\ntransaction_isolation_level: read_committed\nauto_replay_nacks: false\n")
	if !slices.Equal(c.topics, []string{"t", "u"}) || !slices.Equal(c.explicit["t"], []int32{1, 2, 3}) || !slices.Equal(c.explicit["u"], []int32{0}) {
		t.Errorf("explicit partitions: topics %v, explicit %v", c.topics, c.explicit)
	}
	if c.startOffsets[topicPartition{"t", 2}] != 7 || c.limitBytes != 16<<20 || !c.readCommitted || c.replayNacks {
		t.Errorf("start offsets %v, limitBytes %d, readCommitted %v, replayNacks %v", c.startOffsets, c.limitBytes, c.readCommitted, c.replayNacks)
	}
	if c.timelyNacks != 0 || c.multiHeader {
		t.Errorf("timely nacks %v, multi header %v: want Connect's defaults, off", c.timelyNacks, c.multiHeader)
	}
	starts := c.explicitStarts()
	if got := starts["t"][2]; got != kgo.NewOffset().At(7) {
		t.Errorf("explicit start of t/2: %v, want its start_offsets entry 7", got)
	}
	if got := starts["t"][1]; got != kgo.NewOffset().AtStart() {
		t.Errorf("explicit start of t/1: %v, want the log start (start_offset earliest)", got)
	}

	c = parse("seed_brokers: [ \"localhost:9092\" ]\ntopics: [ \"^iot_\" ]\nregexp_topics: true\nmulti_header: true\ntimely_nacks_maximum_wait: 1m\n")
	if len(c.topics) != 0 || !slices.Equal(c.regexInclude, []string{"^iot_"}) || !c.multiHeader || c.timelyNacks != time.Minute {
		t.Errorf("regexp_topics: topics %v, include %v; multi header %v; timely nacks %v", c.topics, c.regexInclude, c.multiHeader, c.timelyNacks)
	}
}
