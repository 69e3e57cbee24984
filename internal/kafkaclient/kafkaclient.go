// Package kafkaclient holds what the Kafka input and output share: the
// connection fields of their config specs (seed_brokers, client_id, tls,
// sasl) and their conversion into franz-go client options, so both
// components accept the same connection block and behave the same way.
package kafkaclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/preservarium/iot-ingestor/internal/speclint"
)

// Field names shared by every Kafka component.
const (
	FieldSeedBrokers = "seed_brokers"
	FieldClientID    = "client_id"
	FieldTLS         = "tls"
	FieldSASL        = "sasl"

	FieldMetadataMaxAge         = "metadata_max_age"
	FieldRequestTimeoutOverhead = "request_timeout_overhead"
	FieldConnIdleTimeout        = "conn_idle_timeout"
	FieldTCP                    = "tcp"
	tcpFieldConnectTimeout      = "connect_timeout"
	tcpFieldKeepAlive           = "keep_alive"
	tcpFieldKeepAliveIdle       = "idle"
	tcpFieldKeepAliveInterval   = "interval"
	tcpFieldKeepAliveCount      = "count"
	tcpFieldUserTimeout         = "tcp_user_timeout"

	saslFieldMechanism   = "mechanism"
	saslFieldUsername    = "username"
	saslFieldPassword    = "password"
	saslFieldToken       = "token"
	saslFieldExtensions  = "extensions"
	saslFieldAWS         = "aws"
	awsFieldRegion       = "region"
	awsFieldEndpoint     = "endpoint"
	awsFieldCredentials  = "credentials"
	awsCredFieldProfile  = "profile"
	awsCredFieldID       = "id"
	awsCredFieldSecret   = "secret"
	awsCredFieldToken    = "token"
	awsCredFieldEC2Role  = "from_ec2_role"
	awsCredFieldRole     = "role"
	awsCredFieldRoleExID = "role_external_id"
)

// SASL mechanism names as the config accepts them (the names Kafka uses).
const (
	MechanismNone        = "none"
	MechanismPlain       = "PLAIN"
	MechanismScramSHA256 = "SCRAM-SHA-256"
	MechanismScramSHA512 = "SCRAM-SHA-512"
	MechanismOAuthBearer = "OAUTHBEARER"
	MechanismAWSMSKIAM   = "AWS_MSK_IAM"
)

// SeedBrokersField is the list of bootstrap brokers. Entries may hold
// several comma separated addresses so that one environment variable such
// as KAFKA_BOOTSTRAP_SERVERS can carry the whole list.
func SeedBrokersField() *service.ConfigField {
	return service.NewStringListField(FieldSeedBrokers).
		Description("Addresses (`host:port`) of Kafka brokers to bootstrap from. An entry may hold several addresses separated by commas, so one environment variable can carry the whole list.").
		Example([]string{"localhost:9092"}).
		Example([]string{"kafka-1:9092,kafka-2:9092"}).
		Example([]string{"${KAFKA_BOOTSTRAP_SERVERS:kafka:9092}"})
}

// ClientIDField is the client id sent to the brokers, visible in their logs
// and quotas.
func ClientIDField(def string) *service.ConfigField {
	return service.NewStringField(FieldClientID).
		Description("Client id the brokers see for this connection (logs, quotas, monitoring).").
		Default(def).
		Example("ingestor-eu-1").
		Advanced()
}

// TLSField is the engine's standard toggled TLS block.
func TLSField() *service.ConfigField {
	return service.NewTLSToggledField(FieldTLS).
		Description("TLS for the broker connections. Off by default; when enabled the system root CAs are trusted unless `root_cas`/`root_cas_file` is set.")
}

// SASLField is a list of SASL mechanisms; the first one the broker accepts
// is used. PLAIN should only be used over TLS. The fields are Redpanda
// Connect's, so a pasted block parses; what this build cannot do (AWS
// credentials other than static keys) is refused with the reason.
func SASLField() *service.ConfigField {
	return service.NewObjectListField(FieldSASL,
		service.NewStringAnnotatedEnumField(saslFieldMechanism, map[string]string{
			MechanismNone:        "No authentication.",
			MechanismPlain:       "Plain text user name and password; use only together with TLS.",
			MechanismScramSHA256: "SCRAM with SHA-256.",
			MechanismScramSHA512: "SCRAM with SHA-512.",
			MechanismOAuthBearer: "OAuth bearer token (`token`, with optional `extensions`).",
			MechanismAWSMSKIAM:   "AWS IAM authentication of Amazon MSK, signed with the static keys of `aws.credentials`.",
		}).Description("SASL mechanism."),
		service.NewStringField(saslFieldUsername).
			Description("User name to authenticate as (PLAIN, SCRAM).").
			Default("").
			Example("ingestor"),
		service.NewStringField(saslFieldPassword).
			Description("Password of the user (PLAIN, SCRAM).").
			Default("").
			Example("${KAFKA_SASL_PASSWORD}").
			Secret(),
		service.NewStringField(saslFieldToken).
			Description("The bearer token of OAUTHBEARER. It is sent as it is for every connection: a token that expires must be renewed by restarting with a new one.").
			Default("").
			Example("${KAFKA_OAUTH_TOKEN}").
			Secret(),
		service.NewStringMapField(saslFieldExtensions).
			Description("Key/value pairs sent with an OAUTHBEARER authentication (KIP-342), e.g. `logicalCluster` for Confluent Cloud.").
			Optional().
			Example(map[string]any{"logicalCluster": "lkc-abc123"}),
		service.NewObjectField(saslFieldAWS,
			service.NewStringField(awsFieldRegion).
				Description("The region of the MSK cluster. Accepted for compatibility with Redpanda Connect: the signer takes the region from the broker's host name, which MSK's names carry.").
				Default("").
				Example("eu-west-1"),
			service.NewStringField(awsFieldEndpoint).
				Description("Accepted for compatibility with Redpanda Connect; not used (no AWS API is called).").
				Default(""),
			service.NewObjectField(awsFieldCredentials,
				service.NewStringField(awsCredFieldProfile).Description("Not supported by this build (it signs with static keys only): must stay empty.").Default(""),
				service.NewStringField(awsCredFieldID).Description("Access key id.").Default("").Example("${AWS_ACCESS_KEY_ID}"),
				service.NewStringField(awsCredFieldSecret).Description("Secret access key.").Default("").Example("${AWS_SECRET_ACCESS_KEY}").Secret(),
				service.NewStringField(awsCredFieldToken).Description("Session token of temporary credentials.").Default("").Secret(),
				service.NewBoolField(awsCredFieldEC2Role).Description("Not supported by this build (it signs with static keys only): must stay false.").Default(false),
				service.NewStringField(awsCredFieldRole).Description("Not supported by this build (it signs with static keys only): must stay empty.").Default(""),
				service.NewStringField(awsCredFieldRoleExID).Description("Not supported by this build (it signs with static keys only): must stay empty.").Default(""),
			).Description("The credentials AWS_MSK_IAM signs with: static keys only (franz-go's signer; no AWS SDK in this build)."),
			TCPField().Description("Accepted for compatibility with Redpanda Connect, where it sets the TCP settings of the calls to AWS; not used (no AWS API is called). The connections to the brokers take the component's own `tcp`."),
		).Description("AWS_MSK_IAM settings.").Optional(),
	).
		Description("SASL authentication. Several entries may be listed; they are offered to the broker in order. Supported: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER (a static token) and AWS_MSK_IAM (static keys).").
		Optional().
		Advanced().
		Example([]any{map[string]any{
			saslFieldMechanism: MechanismScramSHA512,
			saslFieldUsername:  "ingestor",
			saslFieldPassword:  "${KAFKA_SASL_PASSWORD}",
		}})
}

// TCPField is the TCP settings of the broker connections, with Redpanda
// Connect's names and defaults.
func TCPField() *service.ConfigField {
	return service.NewObjectField(FieldTCP,
		service.NewDurationField(tcpFieldConnectTimeout).
			Description("Longest a connection attempt may take; `0s` leaves the client's own limit (10 s).").
			Default("0s").Example("5s"),
		service.NewObjectField(tcpFieldKeepAlive,
			service.NewDurationField(tcpFieldKeepAliveIdle).
				Description("Idle time before the first keep-alive probe; `0s` or less turns keep-alives off.").
				Default("15s"),
			service.NewDurationField(tcpFieldKeepAliveInterval).
				Description("Time between keep-alive probes.").
				Default("15s"),
			service.NewIntField(tcpFieldKeepAliveCount).
				Description("Unanswered probes before the connection is dropped.").
				Default(9),
		).Description("TCP keep-alive probes, which find a peer that vanished without closing the connection."),
		service.NewDurationField(tcpFieldUserTimeout).
			Description("Linux `TCP_USER_TIMEOUT`: longest that sent data may stay unacknowledged before the connection is dropped; `0s` keeps the system's. Finds a dead broker faster than keep-alives while writes are pending.").
			Default("0s").Example("30s"),
	).Description("TCP settings of the connections to the brokers.").Advanced()
}

// ConnectionFields returns the connection fields in the order the specs
// show them.
func ConnectionFields(defaultClientID string) []*service.ConfigField {
	return append([]*service.ConfigField{
		SeedBrokersField(),
		ClientIDField(defaultClientID),
		TLSField(),
		SASLField(),
	}, TuningFields()...)
}

// TuningFields are the connection's advanced settings, with Redpanda Connect's names and
// defaults: metadata refresh, request and idle timeouts, TCP.
func TuningFields() []*service.ConfigField {
	return []*service.ConfigField{
		service.NewDurationField(FieldMetadataMaxAge).
			Description("How often the client refreshes the cluster's metadata (brokers, partitions, leaders) when nothing forces it sooner.").
			Default("1m").Example("30s").Advanced(),
		service.NewDurationField(FieldRequestTimeoutOverhead).
			Description("Time added to a request's own timeout before the client gives up on the broker's answer.").
			Default("10s").Advanced(),
		service.NewDurationField(FieldConnIdleTimeout).
			Description("How long an unused connection stays open.").
			Default("20s").Advanced(),
		TCPField(),
	}
}

// Connection is the parsed connection block of a Kafka component.
type Connection struct {
	SeedBrokers []string
	ClientID    string
	TLS         *tls.Config // nil when TLS is off
	SASL        []sasl.Mechanism

	MetadataMaxAge         time.Duration
	RequestTimeoutOverhead time.Duration
	ConnIdleTimeout        time.Duration
	TCP                    TCP
}

// TuningLint is the lint checks of TuningFields, for the speclint rule of a component that
// has them.
func TuningLint() []string {
	return speclint.Durations(FieldMetadataMaxAge, FieldRequestTimeoutOverhead, FieldConnIdleTimeout,
		FieldTCP+"."+tcpFieldConnectTimeout, FieldTCP+"."+tcpFieldKeepAlive+"."+tcpFieldKeepAliveIdle,
		FieldTCP+"."+tcpFieldKeepAlive+"."+tcpFieldKeepAliveInterval, FieldTCP+"."+tcpFieldUserTimeout)
}

// TCP is the parsed tcp block.
type TCP struct {
	ConnectTimeout    time.Duration
	KeepAliveIdle     time.Duration // <= 0: keep-alives off
	KeepAliveInterval time.Duration
	KeepAliveCount    int
	UserTimeout       time.Duration // 0: the system's
}

// ParseConnection reads the connection fields of a parsed config and checks
// them, so a bad connection block fails at lint or start-up.
func ParseConnection(conf *service.ParsedConfig) (*Connection, error) {
	raw, err := conf.FieldStringList(FieldSeedBrokers)
	if err != nil {
		return nil, err
	}
	brokers := SplitList(raw)
	if len(brokers) == 0 {
		return nil, fmt.Errorf("field %s: at least one broker address is required", FieldSeedBrokers)
	}
	c := &Connection{SeedBrokers: brokers}
	if c.ClientID, err = conf.FieldString(FieldClientID); err != nil {
		return nil, err
	}
	tlsConf, tlsOn, err := conf.FieldTLSToggled(FieldTLS)
	if err != nil {
		return nil, fmt.Errorf("field %s: %w", FieldTLS, err)
	}
	if tlsOn {
		c.TLS = tlsConf
	}
	for _, d := range []struct {
		field string
		into  *time.Duration
	}{
		{FieldMetadataMaxAge, &c.MetadataMaxAge},
		{FieldRequestTimeoutOverhead, &c.RequestTimeoutOverhead},
		{FieldConnIdleTimeout, &c.ConnIdleTimeout},
	} {
		if *d.into, err = conf.FieldDuration(d.field); err != nil {
			return nil, err
		}
		if *d.into <= 0 {
			return nil, fmt.Errorf("field %s: must be positive, got %v", d.field, *d.into)
		}
	}
	if c.TCP, err = parseTCP(conf.Namespace(FieldTCP)); err != nil {
		return nil, fmt.Errorf("field %s: %w", FieldTCP, err)
	}
	if conf.Contains(FieldSASL) {
		list, err := conf.FieldObjectList(FieldSASL)
		if err != nil {
			return nil, err
		}
		for i, sc := range list {
			mech, err := parseSASL(sc)
			if err != nil {
				return nil, fmt.Errorf("field %s[%d]: %w", FieldSASL, i, err)
			}
			if mech != nil {
				c.SASL = append(c.SASL, mech)
			}
		}
	}
	return c, nil
}

func parseTCP(conf *service.ParsedConfig) (TCP, error) {
	var t TCP
	var err error
	if t.ConnectTimeout, err = conf.FieldDuration(tcpFieldConnectTimeout); err != nil {
		return t, err
	}
	if t.UserTimeout, err = conf.FieldDuration(tcpFieldUserTimeout); err != nil {
		return t, err
	}
	ka := conf.Namespace(tcpFieldKeepAlive)
	if t.KeepAliveIdle, err = ka.FieldDuration(tcpFieldKeepAliveIdle); err != nil {
		return t, err
	}
	if t.KeepAliveInterval, err = ka.FieldDuration(tcpFieldKeepAliveInterval); err != nil {
		return t, err
	}
	if t.KeepAliveCount, err = ka.FieldInt(tcpFieldKeepAliveCount); err != nil {
		return t, err
	}
	switch {
	case t.ConnectTimeout < 0:
		return t, fmt.Errorf("%s must not be negative, got %v", tcpFieldConnectTimeout, t.ConnectTimeout)
	case t.UserTimeout < 0:
		return t, fmt.Errorf("%s must not be negative, got %v", tcpFieldUserTimeout, t.UserTimeout)
	case t.KeepAliveIdle > 0 && (t.KeepAliveInterval <= 0 || t.KeepAliveCount <= 0):
		return t, fmt.Errorf("%s needs a positive interval and count while idle is positive (got %v, %d)", tcpFieldKeepAlive, t.KeepAliveInterval, t.KeepAliveCount)
	}
	return t, nil
}

func parseSASL(conf *service.ParsedConfig) (sasl.Mechanism, error) {
	mech, err := conf.FieldString(saslFieldMechanism)
	if err != nil {
		return nil, err
	}
	switch mech {
	case MechanismOAuthBearer:
		return parseOAuthBearer(conf)
	case MechanismAWSMSKIAM:
		return parseAWSMSKIAM(conf)
	}
	user, err := conf.FieldString(saslFieldUsername)
	if err != nil {
		return nil, err
	}
	pass, err := conf.FieldString(saslFieldPassword)
	if err != nil {
		return nil, err
	}
	return Mechanism(mech, user, pass)
}

func parseOAuthBearer(conf *service.ParsedConfig) (sasl.Mechanism, error) {
	token, err := conf.FieldString(saslFieldToken)
	if err != nil {
		return nil, err
	}
	if token == "" {
		return nil, errors.New("mechanism OAUTHBEARER needs a token")
	}
	var ext map[string]string
	if conf.Contains(saslFieldExtensions) {
		if ext, err = conf.FieldStringMap(saslFieldExtensions); err != nil {
			return nil, err
		}
	}
	return oauth.Auth{Token: token, Extensions: ext}.AsMechanism(), nil
}

func parseAWSMSKIAM(conf *service.ParsedConfig) (sasl.Mechanism, error) {
	if !conf.Contains(saslFieldAWS) {
		return nil, errors.New("mechanism AWS_MSK_IAM needs aws.credentials.id and aws.credentials.secret")
	}
	cred := conf.Namespace(saslFieldAWS, awsFieldCredentials)
	str := func(field string) string { v, _ := cred.FieldString(field); return v }
	if fromEC2, _ := cred.FieldBool(awsCredFieldEC2Role); fromEC2 || str(awsCredFieldProfile) != "" || str(awsCredFieldRole) != "" || str(awsCredFieldRoleExID) != "" {
		return nil, errors.New("mechanism AWS_MSK_IAM: this build signs with static keys only (aws.credentials.id, secret and token); profile, from_ec2_role, role and role_external_id are not supported")
	}
	auth := aws.Auth{AccessKey: str(awsCredFieldID), SecretKey: str(awsCredFieldSecret), SessionToken: str(awsCredFieldToken)}
	if auth.AccessKey == "" || auth.SecretKey == "" {
		return nil, errors.New("mechanism AWS_MSK_IAM needs aws.credentials.id and aws.credentials.secret")
	}
	return auth.AsManagedStreamingIAMMechanism(), nil
}

// Mechanism builds a franz-go SASL mechanism from its config name; "none"
// yields nil.
func Mechanism(name, user, pass string) (sasl.Mechanism, error) {
	switch name {
	case MechanismNone:
		return nil, nil
	case MechanismPlain:
		if user == "" {
			return nil, errors.New("mechanism PLAIN needs a username")
		}
		return plain.Auth{User: user, Pass: pass}.AsMechanism(), nil
	case MechanismScramSHA256:
		if user == "" {
			return nil, errors.New("mechanism SCRAM-SHA-256 needs a username")
		}
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism(), nil
	case MechanismScramSHA512:
		if user == "" {
			return nil, errors.New("mechanism SCRAM-SHA-512 needs a username")
		}
		return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism(), nil
	default:
		return nil, fmt.Errorf("unknown SASL mechanism %q, want one of none, PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER, AWS_MSK_IAM", name)
	}
}

// Opts converts the connection into franz-go client options.
func (c *Connection) Opts() []kgo.Opt {
	opts := []kgo.Opt{kgo.SeedBrokers(c.SeedBrokers...), kgo.Dialer(c.Dial)}
	if c.ClientID != "" {
		opts = append(opts, kgo.ClientID(c.ClientID))
	}
	if c.MetadataMaxAge > 0 {
		opts = append(opts, kgo.MetadataMaxAge(c.MetadataMaxAge))
	}
	if c.RequestTimeoutOverhead > 0 {
		opts = append(opts, kgo.RequestTimeoutOverhead(c.RequestTimeoutOverhead))
	}
	if c.ConnIdleTimeout > 0 {
		opts = append(opts, kgo.ConnIdleTimeout(c.ConnIdleTimeout))
	}
	if len(c.SASL) > 0 {
		opts = append(opts, kgo.SASL(c.SASL...))
	}
	return opts
}

// Dial opens a connection to a broker with the tcp settings, and TLS when it is on. The
// client takes either its own TLS dial or a dialer of ours, not both, so TLS lives here.
func (c *Connection) Dial(ctx context.Context, network, host string) (net.Conn, error) {
	d := &net.Dialer{
		Timeout: c.TCP.ConnectTimeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable:   c.TCP.KeepAliveIdle > 0,
			Idle:     c.TCP.KeepAliveIdle,
			Interval: c.TCP.KeepAliveInterval,
			Count:    c.TCP.KeepAliveCount,
		},
	}
	if c.TCP.KeepAliveIdle <= 0 {
		d.KeepAlive = -1
	}
	if c.TCP.UserTimeout > 0 {
		d.Control = userTimeoutControl(c.TCP.UserTimeout)
	}
	if c.TLS == nil {
		return d.DialContext(ctx, network, host)
	}
	// Without ServerName, tls.Dialer verifies the certificate against the host dialled.
	return (&tls.Dialer{NetDialer: d, Config: c.TLS.Clone()}).DialContext(ctx, network, host)
}

// SplitList flattens a list whose entries may themselves be comma separated
// lists, trimming blanks and dropping empty entries.
func SplitList(in []string) []string {
	var out []string
	for _, e := range in {
		for _, part := range strings.Split(e, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
	}
	return out
}

// Logger adapts the engine's logger for franz-go. The client's info lines
// (group joins, assignments) are logged at debug so they do not drown the
// pipeline's own log at the default level; its warnings and errors that
// repeat one cause (an unreachable broker fails every heartbeat) are spaced
// by RepeatPolicy and summarised.
func Logger(l *service.Logger) kgo.Logger {
	return &kgoLogger{l: l, repeats: map[string]*Repeats{}}
}

type kgoLogger struct {
	l *service.Logger

	mu      sync.Mutex
	repeats map[string]*Repeats // by message
}

func (k *kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelInfo }

func (k *kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	if k.l == nil {
		return
	}
	var b strings.Builder
	b.WriteString("kafka client: ")
	b.WriteString(msg)
	var cause string // the line without the keys that change on every repeat
	for i := 0; i+1 < len(keyvals); i += 2 {
		fmt.Fprintf(&b, " %v=%v", keyvals[i], keyvals[i+1])
		switch keyvals[i] {
		case "consecutive_errors", "backoff":
		default:
			cause += fmt.Sprintf(" %v=%v", keyvals[i], keyvals[i+1])
		}
	}
	switch {
	case level == kgo.LogLevelError:
		k.repeatsOf(msg).logCause(k.l.Error, msg+cause, b.String())
	case level == kgo.LogLevelWarn && strings.HasPrefix(msg, "unable to open connection"):
		// Repeated on every dial retry during an outage, which the
		// components already report once per reconnect attempt.
		k.l.Debug(b.String())
	case level == kgo.LogLevelWarn:
		k.repeatsOf(msg).logCause(k.l.Warn, msg+cause, b.String())
	default:
		k.l.Debug(b.String())
	}
}

func (k *kgoLogger) repeatsOf(msg string) *Repeats {
	k.mu.Lock()
	defer k.mu.Unlock()
	r := k.repeats[msg]
	if r == nil {
		r = &Repeats{}
		k.repeats[msg] = r
	}
	return r
}

// PingError explains a failed reachability check in one line.
func PingError(ctx context.Context, cl *kgo.Client, brokers []string) error {
	if err := cl.Ping(ctx); err != nil {
		return fmt.Errorf("no Kafka broker reachable at %s: %w", strings.Join(brokers, ","), err)
	}
	return nil
}
