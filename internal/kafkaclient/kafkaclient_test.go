package kafkaclient

import (
	"context"
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
		{
			name:    "oauthbearer and aws msk iam",
			yaml:    "seed_brokers: [ a:1 ]\nsasl:\n  - { mechanism: OAUTHBEARER, token: t0k, extensions: { logicalCluster: lkc-1 } }\n  - mechanism: AWS_MSK_IAM\n    aws: { region: eu-west-1, credentials: { id: AKIDEXAMPLE, secret: s3cr3t } }\n",
			brokers: []string{"a:1"}, clientID: "ingestor",
			mechs: []string{"OAUTHBEARER", "AWS_MSK_IAM"},
		},
		{name: "oauthbearer without token", yaml: "seed_brokers: [ a:1 ]\nsasl: [ { mechanism: OAUTHBEARER } ]", wantErr: "sasl[0]: mechanism OAUTHBEARER needs a token"},
		{name: "aws without credentials", yaml: "seed_brokers: [ a:1 ]\nsasl: [ { mechanism: AWS_MSK_IAM, aws: { region: eu-west-1 } } ]", wantErr: "needs aws.credentials.id and aws.credentials.secret"},
		{name: "aws without secret", yaml: "seed_brokers: [ a:1 ]\nsasl: [ { mechanism: AWS_MSK_IAM, aws: { credentials: { id: x } } } ]", wantErr: "needs aws.credentials.id and aws.credentials.secret"},
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

// The embedded broker speaks only PLAIN and SCRAM, so the OAUTHBEARER and AWS_MSK_IAM client
// configurations are checked by the first message each sends: the token and extensions, and a
// request signed with the configured key for the region of the broker's host.
func TestSASLOAuthAndAWSFirstMessage(t *testing.T) {
	conf, err := spec().ParseYAML("seed_brokers: [ a:1 ]\nsasl:\n  - { mechanism: OAUTHBEARER, token: t0k, extensions: { logicalCluster: lkc-1 } }\n  - mechanism: AWS_MSK_IAM\n    aws: { credentials: { id: AKIDEXAMPLE, secret: s3cr3t, token: sess } }\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConnection(conf)
	if err != nil {
		t.Fatal(err)
	}
	_, first, err := c.SASL[0].Authenticate(context.Background(), "broker:9092")
	if err != nil {
		t.Fatal(err)
	}
	if msg := string(first); !strings.Contains(msg, "auth=Bearer t0k") || !strings.Contains(msg, "logicalCluster=lkc-1") {
		t.Errorf("OAUTHBEARER first message %q, want the token and the extension", msg)
	}
	_, first, err = c.SASL[1].Authenticate(context.Background(), "b-1.demo.abc123.c2.kafka.eu-west-1.amazonaws.com:9098")
	if err != nil {
		t.Fatal(err)
	}
	msg := string(first)
	for _, want := range []string{"AKIDEXAMPLE/", "/eu-west-1/kafka-cluster/aws4_request", `"x-amz-security-token":"sess"`, `"action":"kafka-cluster:Connect"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("AWS_MSK_IAM first message %s: missing %s", msg, want)
		}
	}
}
