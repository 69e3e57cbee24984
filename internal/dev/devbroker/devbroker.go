// Package devbroker runs a Kafka-protocol broker in-process (franz-go's
// kfake) on loopback, with the pipeline's topics created, for local runs,
// demos and tests. It is not a production broker: one node, no
// replication, state in memory unless a data directory is given.
package devbroker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Defaults of the embedded broker.
const (
	DefaultAddr       = "127.0.0.1:9092"
	DefaultPartitions = 12
)

// DefaultTopics are the topics the pipeline uses.
var DefaultTopics = []string{"iot_validated_data", "iot_errors"}

// Options configure a broker. The zero value is a broker on a free loopback
// port with DefaultPartitions partitions per topic and no topics.
type Options struct {
	// Addr is the host:port to listen on; port 0 picks a free port.
	// Empty means 127.0.0.1:0.
	Addr string
	// Partitions of each topic in Topics; 0 means DefaultPartitions.
	Partitions int32
	// Topics created at start (if not already in DataDir).
	Topics []string
	// DataDir, when set, persists topics, records and committed offsets
	// there, and reloads them on the next start.
	DataDir string
	// SASLUser and SASLPass, when set, make SASL mandatory and accept
	// this user with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512.
	SASLUser string
	SASLPass string
	// TLS, when set, serves TLS only.
	TLS *tls.Config
}

// Broker is a running embedded broker.
type Broker struct {
	cluster *kfake.Cluster
	addr    string
}

// Start starts a broker and returns once it accepts connections.
func Start(o Options) (*Broker, error) {
	addr := o.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("devbroker: address %q is not host:port: %w", addr, err)
	}
	parts := o.Partitions
	if parts == 0 {
		parts = DefaultPartitions
	}
	if parts < 0 {
		return nil, fmt.Errorf("devbroker: partitions must be positive, got %d", parts)
	}
	if (o.SASLUser == "") != (o.SASLPass == "") {
		return nil, errors.New("devbroker: SASL needs both a user and a password")
	}

	var ln net.Listener
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.ClusterID("ingestor-dev"),
		kfake.DefaultNumPartitions(int(parts)),
		// kfake asks to listen on 127.0.0.1:<port>; listening on the
		// configured address instead lets the caller pick the interface.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			l, err := net.Listen(network, addr)
			ln = l
			return l, err
		}),
	}
	if len(o.Topics) > 0 {
		opts = append(opts, kfake.SeedTopics(parts, o.Topics...))
	}
	if o.DataDir != "" {
		opts = append(opts, kfake.DataDir(o.DataDir))
	}
	if o.SASLUser != "" {
		opts = append(opts,
			kfake.EnableSASL(),
			kfake.Superuser("PLAIN", o.SASLUser, o.SASLPass),
			kfake.Superuser("SCRAM-SHA-256", o.SASLUser, o.SASLPass),
			kfake.Superuser("SCRAM-SHA-512", o.SASLUser, o.SASLPass),
		)
	}
	if o.TLS != nil {
		opts = append(opts, kfake.TLS(o.TLS))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("devbroker: starting the broker on %s: %w", addr, err)
	}
	return &Broker{cluster: c, addr: ln.Addr().String()}, nil
}

// Addr is the address the broker listens on.
func (b *Broker) Addr() string { return b.addr }

// SeedBrokers is Addr as a client's seed list.
func (b *Broker) SeedBrokers() []string { return []string{b.addr} }

// Cluster gives tests access to the kfake cluster (fault injection).
func (b *Broker) Cluster() *kfake.Cluster { return b.cluster }

// Close stops the broker, saving its state first when it has a DataDir.
func (b *Broker) Close() { b.cluster.Close() }

// ParseTopics splits a comma separated topic list.
func ParseTopics(s string) []string {
	var out []string
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}
