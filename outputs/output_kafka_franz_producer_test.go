package outputs

import (
	"strings"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// The producer combinations the client refuses (or that would silently do nothing) fail the
// config with the field to change, both at lint and when the output is built.
func TestKafkaFranzOutputProducerConfigErrors(t *testing.T) {
	base := "seed_brokers: [ a:9092 ]\ntopic: t\n"
	for _, tc := range []struct{ name, extra, want string }{
		{"acks leader with the idempotent default", "acks: leader\n", "field acks: leader needs idempotent_write: false"},
		{"acks none with idempotent_write", "acks: none\nidempotent_write: true\n", "field acks: none needs idempotent_write: false"},
		{"manual without partition", "partitioner: manual\n", "field partitioner: manual needs the field partition"},
		{"partition without manual", "partition: '${! @p }'\n", "field partition: applies only with partitioner: manual"},
		{"partition with round_robin", "partitioner: round_robin\npartition: '1'\n", "field partition: applies only with partitioner: manual"},
		{"write max below message max", "broker_write_max_bytes: 64KiB\n", "field broker_write_max_bytes: 65536 bytes is less than max_message_bytes"},
		{"write max not a size", "broker_write_max_bytes: lots\n", `field broker_write_max_bytes: "lots" is not a byte size`},
		{"buffered bytes not a size", "max_buffered_bytes: lots\n", `field max_buffered_bytes: "lots" is not a byte size`},
		{"no buffered records", "max_buffered_records: 0\n", "field max_buffered_records: must be at least 1"},
		{"no requests in flight", "max_in_flight_requests: 0\nidempotent_write: false\n", "field max_in_flight_requests: must be at least 1"},
		{"negative retries", "record_retries: -1\n", "field record_retries: must not be negative"},
	} {
		conf, err := kafkaFranzOutputSpec().ParseYAML(base+tc.extra, nil)
		if err == nil {
			_, err = newFranzOutput(conf, service.MockResources())
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

// Connect's accepted combinations build: acks below all without idempotence, more requests in
// flight with the idempotent producer (which ignores the setting, as in Connect), every
// partitioner, a timestamp.
func TestKafkaFranzOutputProducerConfigAccepted(t *testing.T) {
	base := "seed_brokers: [ a:9092 ]\ntopic: t\n"
	for _, extra := range []string{
		"",
		"acks: leader\nidempotent_write: false\nmax_in_flight_requests: 5\n",
		"acks: none\nidempotent_write: false\n",
		"max_in_flight_requests: 5\n",
		"partitioner: manual\npartition: '${! @p }'\n",
		"partitioner: round_robin\n",
		"partitioner: least_backup\n",
		"partitioner: murmur2_hash\n",
		"timestamp_ms: '${! timestamp_unix_milli() }'\n",
		"record_retries: 3\nrecord_delivery_timeout: 30s\nmax_buffered_bytes: 256MB\nallow_auto_topic_creation: false\n",
		"compression: zstd\n",
	} {
		conf, err := kafkaFranzOutputSpec().ParseYAML(base+extra, nil)
		if err != nil {
			t.Errorf("%q: %v", extra, err)
			continue
		}
		if _, err := newFranzOutput(conf, service.MockResources()); err != nil {
			t.Errorf("%q: %v", extra, err)
		}
	}
}

// `ingestor lint` (SetYAML lints) names the combinations the client refuses.
func TestKafkaFranzOutputProducerLint(t *testing.T) {
	pipeline := func(extra string) string {
		return "input:\n  generate: { mapping: 'root = {}' }\noutput:\n  kafka_franz:\n    seed_brokers: [ a:9092 ]\n    topic: t\n" + extra
	}
	for _, tc := range []struct{ name, extra, want string }{
		{"clean", "", ""},
		{"acks leader, idempotent", "    acks: leader\n", "field acks: leader needs idempotent_write: false"},
		{"acks leader, not idempotent", "    acks: leader\n    idempotent_write: false\n", ""},
		{"manual without partition", "    partitioner: manual\n", "field partitioner: manual needs the field partition"},
		{"delivery timeout without unit", "    record_delivery_timeout: 30\n", `field record_delivery_timeout: "30" is not a duration`},
		{"negative retries", "    record_retries: -2\n", "field record_retries: must not be negative"},
	} {
		err := service.NewStreamBuilder().SetYAML(pipeline(tc.extra))
		got := ""
		if err != nil {
			got = err.Error()
		}
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: lint %q, want %q", tc.name, got, tc.want)
		}
	}
}
