package kafka

import (
	"strings"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/preservarium/iot-ingestor/internal/meta"
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
				var in *franzInput
				if in, err = newFranzInput(conf, service.MockResources()); err == nil {
					in.stop()
				}
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

// The nack replayer traces a rejected message to its record by the partition and offset in its
// metadata; anything that does not name one record of the batch is not traced.
func TestRecordBatchIndexOf(t *testing.T) {
	recs := recordBatch{
		{Topic: "t", Partition: 3, Offset: 10, Value: []byte("a")},
		{Topic: "t", Partition: 3, Offset: 11, Value: []byte("b")},
		{Topic: "t", Partition: 3, Offset: 14, Value: []byte("c")}, // a gap, as after compaction
	}
	for i := range recs {
		m := recs.Message(i)
		m.SetBytes([]byte("processed")) // what the pipeline does to it does not matter
		if got, ok := recs.IndexOf(m.Copy()); !ok || got != i {
			t.Errorf("message of record %d: IndexOf = %d, %v", i, got, ok)
		}
	}
	untraceable := map[string]func(m *service.Message){
		"offset in the gap":        func(m *service.Message) { m.MetaSetMut(meta.KafkaOffset, 12) },
		"offset past the batch":    func(m *service.Message) { m.MetaSetMut(meta.KafkaOffset, 15) },
		"another partition":        func(m *service.Message) { m.MetaSetMut(meta.KafkaPartition, 4) },
		"another topic":            func(m *service.Message) { m.MetaSetMut(meta.KafkaTopic, "u") },
		"offset rewritten as text": func(m *service.Message) { m.MetaSetMut(meta.KafkaOffset, "11") },
		"offset removed":           func(m *service.Message) { m.MetaDelete(meta.KafkaOffset) },
	}
	for name, change := range untraceable {
		m := recs.Message(1)
		change(m)
		if got, ok := recs.IndexOf(m); ok {
			t.Errorf("%s: traced to record %d", name, got)
		}
	}
}
