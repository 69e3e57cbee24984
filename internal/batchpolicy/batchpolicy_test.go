package batchpolicy

import (
	"strings"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"
)

func TestField(t *testing.T) {
	spec := service.NewConfigSpec().Field(service.NewBatchPolicyField("batching"))
	cases := []struct {
		yaml, wantErr string
	}{
		{"batching: {count: 100, period: 5000ms}", ""},
		{"batching: {count: 0}", ""},
		{"batching: {count: -5}", "batching.count: must be 0"},
		{"batching: {byte_size: -1}", "batching.byte_size: must be 0"},
		{"batching: {count: 10, period: soon}", `batching.period: "soon" is not a duration`},
		{"batching: {count: 10, period: -1s}", "batching.period: must not be negative"},
	}
	for _, c := range cases {
		conf, err := spec.ParseYAML(c.yaml, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.yaml, err)
		}
		_, err = Field(conf, "batching")
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%s: unexpected error %v", c.yaml, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%s: error %v, want %q", c.yaml, err, c.wantErr)
		}
	}
}
