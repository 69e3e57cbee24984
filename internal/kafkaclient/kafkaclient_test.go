package kafkaclient

import (
	"reflect"
	"strings"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"
)

func spec() *service.ConfigSpec {
	return service.NewConfigSpec().Fields(ConnectionFields("ingestor")...)
}

func TestParseConnection(t *testing.T) {
	tests := []struct {
		name     string
		yaml     string
		brokers  []string
		clientID string
		tls      bool
		mechs    []string
		wantErr  string
	}{
		{
			name:     "brokers split on commas",
			yaml:     "seed_brokers: [ \"a:9092, b:9092\", \"c:9092\" ]",
			brokers:  []string{"a:9092", "b:9092", "c:9092"},
			clientID: "ingestor",
		},
		{
			name:     "tls and every mechanism",
			yaml:     "seed_brokers: [ a:1 ]\nclient_id: x\ntls: { enabled: true }\nsasl:\n  - { mechanism: none }\n  - { mechanism: PLAIN, username: u, password: p }\n  - { mechanism: SCRAM-SHA-256, username: u, password: p }\n  - { mechanism: SCRAM-SHA-512, username: u, password: p }\n",
			brokers:  []string{"a:1"},
			clientID: "x",
			tls:      true,
			mechs:    []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"},
		},
		{name: "no brokers", yaml: "seed_brokers: [ \"\" ]", wantErr: "at least one broker"},
		{name: "plain without user", yaml: "seed_brokers: [ a:1 ]\nsasl: [ { mechanism: PLAIN } ]", wantErr: "sasl[0]: mechanism PLAIN needs a username"},
		{name: "unknown mechanism", yaml: "seed_brokers: [ a:1 ]\nsasl: [ { mechanism: KERBEROS, username: u } ]", wantErr: "unknown SASL mechanism"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conf, err := spec().ParseYAML(tc.yaml, nil)
			var c *Connection
			if err == nil {
				c, err = ParseConnection(conf)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.SeedBrokers, tc.brokers) || c.ClientID != tc.clientID || (c.TLS != nil) != tc.tls {
				t.Fatalf("got brokers %v client %q tls %v", c.SeedBrokers, c.ClientID, c.TLS != nil)
			}
			var names []string
			for _, m := range c.SASL {
				names = append(names, m.Name())
			}
			if !reflect.DeepEqual(names, tc.mechs) {
				t.Fatalf("mechanisms %v, want %v", names, tc.mechs)
			}
			if got := len(c.Opts()); got < 2 {
				t.Fatalf("only %d client options", got)
			}
		})
	}
}
