package speclint_test

import (
	"strings"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"

	_ "github.com/preservarium/iot-ingestor/inputs"
	_ "github.com/preservarium/iot-ingestor/outputs"
)

// The project's components carry the checks: a pipeline with each bad value fails lint
// (SetYAML lints) with the field named, instead of failing at start.
func TestComponentsLintValuesTheSchemaLetsThrough(t *testing.T) {
	input := func(extra string) string {
		return "input:\n  kafka_franz:\n    seed_brokers: [ a:9092 ]\n    topics: [ t ]\n    consumer_group: g\n" + extra +
			"output:\n  drop: {}\n"
	}
	influx := func(extra string) string {
		return "input:\n  generate: { mapping: 'root = {}' }\noutput:\n  influxdb_v2:\n    url: http://influxdb:8086\n    bucket: b\n" + extra
	}
	errTopic := func(extra string) string {
		return "input:\n  generate: { mapping: 'root = {}' }\noutput:\n  kafka_franz:\n    seed_brokers: [ a:9092 ]\n    topic: t\n" + extra
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"input clean", input(""), ""},
		{"input duration without unit", input("    fetch_max_wait: 1.0\n"), `field fetch_max_wait: "1.0" is not a duration`},
		{"input negative batch count", input("    batching: { count: -5 }\n"), "field batching.count: must not be negative"},
		{"input tcp duration", input("    tcp: { tcp_user_timeout: '30' }\n"), `field tcp.tcp_user_timeout: "30" is not a duration`},
		{"input zero checkpoint limit", input("    checkpoint_limit: 0\n"), "field checkpoint_limit: must be more than 0"},
		{"input zero partition buffer", input("    partition_buffer_bytes: 0B\n"), "field partition_buffer_bytes: 0B is not a byte size of more than 0"},
		{"input zero buffer bytes", input("    buffer_bytes: 0B\n"), "field buffer_bytes: 0B is not a byte size of more than 0"},
		{"influx clean", influx(""), ""},
		{"influx url without scheme", strings.Replace(influx(""), "http://influxdb:8086", "influxdb:8086", 1), "url must start with http:// or https://"},
		{"influx retry without unit", influx("    retry: { max_interval: 30 }\n"), `field retry.max_interval: "30" is not a duration`},
		{"error topic clean", errTopic(""), ""},
		{"error topic timeout without unit", errTopic("    timeout: 10\n"), `field timeout: "10" is not a duration`},
	} {
		err := service.NewStreamBuilder().SetYAML(tc.yaml)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if tc.want == "" && got != "" {
			t.Errorf("%s: unexpected lint: %s", tc.name, got)
		}
		if tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("%s: lint %q, want it to contain %q", tc.name, got, tc.want)
		}
	}
}
