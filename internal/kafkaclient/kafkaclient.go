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
	"strings"
	"sync"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Field names shared by every Kafka component.
const (
	FieldSeedBrokers = "seed_brokers"
	FieldClientID    = "client_id"
	FieldTLS         = "tls"
	FieldSASL        = "sasl"

	saslFieldMechanism  = "mechanism"
	saslFieldUsername   = "username"
	saslFieldPassword   = "password"
	saslFieldToken      = "token"
	saslFieldExtensions = "extensions"
	saslFieldAWS        = "aws"
	awsFieldRegion      = "region"
	awsFieldEndpoint    = "endpoint"
	awsFieldCredentials = "credentials"
	awsFieldID          = "id"
	awsFieldSecret      = "secret"
	awsFieldToken       = "token"
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
// is used. PLAIN should only be used over TLS.
func SASLField() *service.ConfigField {
	return service.NewObjectListField(FieldSASL,
		service.NewStringAnnotatedEnumField(saslFieldMechanism, map[string]string{
			MechanismNone:        "No authentication.",
			MechanismPlain:       "Plain text user name and password; use only together with TLS.",
			MechanismScramSHA256: "SCRAM with SHA-256.",
			MechanismScramSHA512: "SCRAM with SHA-512.",
			MechanismOAuthBearer: "OAuth bearer token (`token`, with optional `extensions`); the token is static, so a restart is needed when it expires.",
			MechanismAWSMSKIAM:   "Amazon MSK IAM, signed with the static keys of `aws.credentials`.",
		}).Description("SASL mechanism."),
		service.NewStringField(saslFieldUsername).
			Description("User name to authenticate as.").
			Default("").
			Example("ingestor"),
		service.NewStringField(saslFieldPassword).
			Description("Password of the user.").
			Default("").
			Example("${KAFKA_SASL_PASSWORD}").
			Secret(),
		service.NewStringField(saslFieldToken).
			Description("OAUTHBEARER: the bearer token.").
			Default("").
			Example("${KAFKA_OAUTH_TOKEN}").
			Secret(),
		service.NewStringMapField(saslFieldExtensions).
			Description("OAUTHBEARER: key/value pairs sent with the token (KIP-342).").
			Optional().
			Example(map[string]any{"logicalCluster": "lkc-123"}),
		service.NewObjectField(saslFieldAWS,
			service.NewStringField(awsFieldRegion).
				Description("Accepted as in Redpanda Connect; the request is signed for the region named in the broker's host name (`b-1.<cluster>.kafka.<region>.amazonaws.com`), which franz-go reads from it.").
				Default(""),
			service.NewStringField(awsFieldEndpoint).
				Description("Accepted as in Redpanda Connect; not used: the brokers are `seed_brokers`.").
				Default(""),
			service.NewObjectField(awsFieldCredentials,
				service.NewStringField(awsFieldID).Description("AWS access key id.").Default(""),
				service.NewStringField(awsFieldSecret).Description("AWS secret access key.").Default("").Secret(),
				service.NewStringField(awsFieldToken).Description("AWS session token, for temporary credentials.").Default("").Secret(),
			).Description("Static AWS keys. Profiles, EC2 roles and assumed roles are not supported: franz-go signs with the keys given."),
		).
			Description("AWS_MSK_IAM: where the keys come from.").
			Optional(),
	).
		Description("SASL authentication. Several entries may be listed; they are offered to the broker in order. Supported: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER (static token) and AWS_MSK_IAM (static keys).").
		Optional().
		Advanced().
		Example([]any{map[string]any{
			saslFieldMechanism: MechanismScramSHA512,
			saslFieldUsername:  "ingestor",
			saslFieldPassword:  "${KAFKA_SASL_PASSWORD}",
		}})
}

// ConnectionFields returns the connection fields in the order the specs
// show them.
func ConnectionFields(defaultClientID string) []*service.ConfigField {
	return []*service.ConfigField{
		SeedBrokersField(),
		ClientIDField(defaultClientID),
		TLSField(),
		SASLField(),
	}
}

// Connection is the parsed connection block of a Kafka component.
type Connection struct {
	SeedBrokers []string
	ClientID    string
	TLS         *tls.Config // nil when TLS is off
	SASL        []sasl.Mechanism
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

func parseSASL(conf *service.ParsedConfig) (sasl.Mechanism, error) {
	mech, err := conf.FieldString(saslFieldMechanism)
	if err != nil {
		return nil, err
	}
	user, err := conf.FieldString(saslFieldUsername)
	if err != nil {
		return nil, err
	}
	pass, err := conf.FieldString(saslFieldPassword)
	if err != nil {
		return nil, err
	}
	switch mech {
	case MechanismOAuthBearer:
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
	case MechanismAWSMSKIAM:
		if !conf.Contains(saslFieldAWS, awsFieldCredentials) {
			return nil, errors.New("mechanism AWS_MSK_IAM needs aws.credentials.id and aws.credentials.secret")
		}
		creds := conf.Namespace(saslFieldAWS, awsFieldCredentials)
		id, err := creds.FieldString(awsFieldID)
		if err != nil {
			return nil, err
		}
		secret, err := creds.FieldString(awsFieldSecret)
		if err != nil {
			return nil, err
		}
		session, err := creds.FieldString(awsFieldToken)
		if err != nil {
			return nil, err
		}
		if id == "" || secret == "" {
			return nil, errors.New("mechanism AWS_MSK_IAM needs aws.credentials.id and aws.credentials.secret (static keys: profiles and roles are not supported)")
		}
		return aws.Auth{AccessKey: id, SecretKey: secret, SessionToken: session}.AsManagedStreamingIAMMechanism(), nil
	}
	return Mechanism(mech, user, pass)
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
	opts := []kgo.Opt{kgo.SeedBrokers(c.SeedBrokers...)}
	if c.ClientID != "" {
		opts = append(opts, kgo.ClientID(c.ClientID))
	}
	if c.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(c.TLS.Clone()))
	}
	if len(c.SASL) > 0 {
		opts = append(opts, kgo.SASL(c.SASL...))
	}
	return opts
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

// Field names of the connection timeouts, as in Redpanda Connect.
const (
	FieldRequestTimeoutOverhead = "request_timeout_overhead"
	FieldConnIdleTimeout        = "conn_idle_timeout"
)

// TimeoutFields are the connection timeouts Redpanda Connect documents, with its defaults.
func TimeoutFields() []*service.ConfigField {
	return []*service.ConfigField{
		service.NewDurationField(FieldRequestTimeoutOverhead).
			Description("Time added to a request's own timeout (a fetch's `fetch_max_wait`, a join's `rebalance_timeout`) before the client gives up on the broker's answer.").
			Default("10s").
			Example("5s").
			Advanced(),
		service.NewDurationField(FieldConnIdleTimeout).
			Description("How long an idle connection to a broker is kept open.").
			Default("20s").
			Example("1m").
			Advanced(),
	}
}

// TimeoutOpts converts the fields of TimeoutFields into client options.
func TimeoutOpts(conf *service.ParsedConfig) ([]kgo.Opt, error) {
	overhead, err := conf.FieldDuration(FieldRequestTimeoutOverhead)
	if err != nil {
		return nil, err
	}
	idle, err := conf.FieldDuration(FieldConnIdleTimeout)
	if err != nil {
		return nil, err
	}
	if overhead <= 0 || idle <= 0 {
		return nil, fmt.Errorf("fields %s and %s must be positive durations, got %v and %v", FieldRequestTimeoutOverhead, FieldConnIdleTimeout, overhead, idle)
	}
	return []kgo.Opt{kgo.RequestTimeoutOverhead(overhead), kgo.ConnIdleTimeout(idle)}, nil
}
