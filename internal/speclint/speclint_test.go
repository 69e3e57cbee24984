package speclint

import (
	"strings"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"
)

func lintOf(t *testing.T, rule, yaml string) []string {
	t.Helper()
	spec := service.NewConfigSpec().
		Field(service.NewStringField("url").Optional()).
		Field(service.NewDurationField("wait").Optional()).
		Field(service.NewObjectField("nested", service.NewDurationField("period").Optional())).
		Field(service.NewBatchPolicyField("batching")).
		Field(service.NewIntField("limit").Optional()).
		Field(service.NewStringField("size").Optional()).
		LintRule(rule)
	env := service.NewEnvironment()
	if err := env.RegisterBatchOutput("probe", spec, func(*service.ParsedConfig, *service.Resources) (service.BatchOutput, service.BatchPolicy, int, error) {
		return nil, service.BatchPolicy{}, 1, nil
	}); err != nil {
		t.Fatal(err)
	}
	b := env.NewStreamBuilder()
	err := b.SetYAML("input:\n  generate: { mapping: 'root = {}' }\noutput:\n  probe:\n" + indent(yaml, "    "))
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

func indent(s, by string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = by + lines[i]
	}
	return strings.Join(lines, "\n") + "\n"
}

func TestRulesCatchValuesTheSchemaLetsThrough(t *testing.T) {
	rule := Rule(append(append(Durations("wait", "nested.period"), Batching("batching")...), append(Positive("limit"), PositiveBytes("size")...)...)...)
	for _, tc := range []struct {
		yaml string
		want string // "" for clean
	}{
		{"url: http://influxdb:8086\nwait: 1s\nnested: { period: 500ms }\nbatching: { count: 100, period: 5000ms }\nlimit: 1", ""},
		{"wait: 1.0", `field wait: "1.0" is not a duration with a unit`},
		{"nested: { period: '30' }", `field nested.period: "30" is not a duration with a unit`},
		{"batching: { count: -5 }", "field batching.count: must not be negative, got -5"},
		{"batching: { period: 5000 }", `field batching.period: "5000" is not a duration`},
		{"limit: 0", "field limit: must be more than 0, got 0"},
		{"size: 4MiB", ""},
		{"size: 512 kb", ""},
		{"size: '100'", ""},
		{"size: 0B", "field size: 0B is not a byte size of more than 0"},
		{"size: 0", "field size: 0 is not a byte size of more than 0"},
		{"size: -1MiB", "field size: -1MiB is not a byte size of more than 0"},
		{"size: lots", "field size: lots is not a byte size of more than 0"},
	} {
		got := strings.Join(lintOf(t, rule, tc.yaml), "\n")
		if tc.want == "" && got != "" {
			t.Errorf("%q: unexpected lint %s", tc.yaml, got)
		}
		if tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("%q: lint %q, want it to contain %q", tc.yaml, got, tc.want)
		}
	}
}
