package kafkaclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

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

func TestConnectFieldsAtConnectsDefaults(t *testing.T) {
	conf, err := spec().ParseYAML("seed_brokers: [ a:1 ]", nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConnection(conf)
	if err != nil {
		t.Fatal(err)
	}
	want := TCP{KeepAliveIdle: 15 * time.Second, KeepAliveInterval: 15 * time.Second, KeepAliveCount: 9}
	if c.MetadataMaxAge != time.Minute || c.RequestTimeoutOverhead != 10*time.Second || c.ConnIdleTimeout != 20*time.Second || c.TCP != want {
		t.Fatalf("defaults: metadata %v, overhead %v, idle %v, tcp %+v", c.MetadataMaxAge, c.RequestTimeoutOverhead, c.ConnIdleTimeout, c.TCP)
	}
	for _, bad := range []struct{ yaml, want string }{
		{"seed_brokers: [ a:1 ]\nmetadata_max_age: 0s", "metadata_max_age: must be positive"},
		{"seed_brokers: [ a:1 ]\ntcp: { connect_timeout: -1s }", "tcp: connect_timeout must not be negative"},
		{"seed_brokers: [ a:1 ]\ntcp: { keep_alive: { count: 0 } }", "tcp: keep_alive needs a positive interval and count"},
	} {
		conf, err := spec().ParseYAML(bad.yaml, nil)
		if err == nil {
			_, err = ParseConnection(conf)
		}
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: got %v, want %q", bad.yaml, err, bad.want)
		}
	}
}

// The embedded broker speaks PLAIN and SCRAM only, so OAUTHBEARER and AWS_MSK_IAM are checked
// by the first message each mechanism sends, which is what a real broker reads.
func TestOAuthBearerSendsTheTokenAndExtensions(t *testing.T) {
	conf, err := spec().ParseYAML("seed_brokers: [ a:1 ]\nsasl:\n  - mechanism: OAUTHBEARER\n    token: tok-123\n    extensions: { logicalCluster: lkc-1 }\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConnection(conf)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.SASL) != 1 || c.SASL[0].Name() != "OAUTHBEARER" {
		t.Fatalf("mechanisms %v", c.SASL)
	}
	_, first, err := c.SASL[0].Authenticate(context.Background(), "broker:9092")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(first), "n,,\x01auth=Bearer tok-123\x01logicalCluster=lkc-1\x01\x01"; got != want {
		t.Fatalf("first message %q, want %q", got, want)
	}
}

func TestAWSMSKIAMSignsWithTheStaticKeys(t *testing.T) {
	conf, err := spec().ParseYAML("seed_brokers: [ a:1 ]\nsasl:\n  - mechanism: AWS_MSK_IAM\n    aws:\n      region: eu-west-1\n      credentials: { id: AKIDEXAMPLE, secret: s3cr3t, token: sess }\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConnection(conf)
	if err != nil {
		t.Fatal(err)
	}
	_, first, err := c.SASL[0].Authenticate(context.Background(), "b-1.cluster.abc123.c2.kafka.eu-west-1.amazonaws.com:9098")
	if err != nil {
		t.Fatal(err)
	}
	var msg map[string]string
	if err := json.Unmarshal(first, &msg); err != nil {
		t.Fatalf("first message is not JSON: %v: %s", err, first)
	}
	if msg["action"] != "kafka-cluster:Connect" || !strings.HasPrefix(msg["x-amz-credential"], "AKIDEXAMPLE/") ||
		!strings.Contains(msg["x-amz-credential"], "/eu-west-1/kafka-cluster/") || msg["x-amz-security-token"] != "sess" || msg["x-amz-signature"] == "" {
		t.Fatalf("first message %v", msg)
	}
	for _, bad := range []struct{ yaml, want string }{
		{"seed_brokers: [ a:1 ]\nsasl: [ { mechanism: AWS_MSK_IAM } ]", "needs aws.credentials.id and aws.credentials.secret"},
		{"seed_brokers: [ a:1 ]\nsasl: [ { mechanism: AWS_MSK_IAM, aws: { credentials: { from_ec2_role: true } } } ]", "static keys only"},
		{"seed_brokers: [ a:1 ]\nsasl: [ { mechanism: AWS_MSK_IAM, aws: { credentials: { profile: prod, id: a, secret: b } } } ]", "static keys only"},
		{"seed_brokers: [ a:1 ]\nsasl: [ { mechanism: OAUTHBEARER } ]", "OAUTHBEARER needs a token"},
	} {
		conf, err := spec().ParseYAML(bad.yaml, nil)
		if err == nil {
			_, err = ParseConnection(conf)
		}
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: got %v, want %q", bad.yaml, err, bad.want)
		}
	}
}

// TLS moved inside our dialer (the client does not combine its TLS dial with a dialer): it
// must still verify the broker's name when the config names none.
func TestDialVerifiesTheBrokersNameOverTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below is expected
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	c := &Connection{TLS: &tls.Config{RootCAs: pool}, TCP: TCP{KeepAliveIdle: time.Second, KeepAliveInterval: time.Second, KeepAliveCount: 3, UserTimeout: 5 * time.Second}}
	// httptest's certificate is for 127.0.0.1 and example.com.
	conn, err := c.Dial(context.Background(), "tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		t.Fatalf("dial by the certificate's address: %v", err)
	}
	if cs := conn.(*tls.Conn).ConnectionState(); !cs.HandshakeComplete || len(cs.PeerCertificates) == 0 {
		t.Fatalf("handshake complete %v, %d peer certificates", cs.HandshakeComplete, len(cs.PeerCertificates))
	}
	conn.Close()
	_, err = c.Dial(context.Background(), "tcp", net.JoinHostPort("localhost", port))
	var unknownName x509.HostnameError
	if !errors.As(err, &unknownName) {
		t.Fatalf("dial by a name the certificate does not hold: %v, want a host name error", err)
	}
}
