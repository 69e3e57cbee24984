package devbroker

import (
	"crypto/tls"
	"fmt"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
)

// Command is the `kafka-broker` subcommand of the ingestor binary.
func Command() *cli.Command {
	return &cli.Command{
		Name:  "kafka-broker",
		Usage: "Run an embedded Kafka-protocol broker (franz-go kfake) on loopback for local runs and tests",
		Description: `Starts a single in-process broker with the pipeline's topics created and
serves until SIGINT or SIGTERM. Not for production: one node, no replication.
State is kept in memory unless --data-dir is given, in which case topics,
records and committed offsets survive a restart.

  ingestor kafka-broker --addr 127.0.0.1:9092 --data-dir /tmp/kafka-data`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "addr", Value: DefaultAddr, Usage: "host:port to listen on"},
			&cli.IntFlag{Name: "partitions", Value: DefaultPartitions, Usage: "partitions of each created topic"},
			&cli.StringFlag{Name: "topics", Value: strings.Join(DefaultTopics, ","), Usage: "comma separated topics to create at start"},
			&cli.StringFlag{Name: "data-dir", Usage: "directory persisting the broker's state across restarts (default: memory only)"},
			&cli.StringFlag{Name: "sasl-user", Usage: "require SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) with this user"},
			&cli.StringFlag{Name: "sasl-pass", Usage: "password of --sasl-user"},
			&cli.StringFlag{Name: "tls-cert", Usage: "PEM certificate file: serve TLS only"},
			&cli.StringFlag{Name: "tls-key", Usage: "PEM key file of --tls-cert"},
		},
		Action: func(c *cli.Context) error {
			o := Options{
				Addr:       c.String("addr"),
				Partitions: int32(c.Int("partitions")),
				Topics:     ParseTopics(c.String("topics")),
				DataDir:    c.String("data-dir"),
				SASLUser:   c.String("sasl-user"),
				SASLPass:   c.String("sasl-pass"),
			}
			if o.Partitions < 1 {
				return fmt.Errorf("kafka-broker: --partitions must be at least 1, got %d", o.Partitions)
			}
			cert, key := c.String("tls-cert"), c.String("tls-key")
			if (cert == "") != (key == "") {
				return fmt.Errorf("kafka-broker: --tls-cert and --tls-key go together")
			}
			if cert != "" {
				pair, err := tls.LoadX509KeyPair(cert, key)
				if err != nil {
					return fmt.Errorf("kafka-broker: loading TLS certificate %s and key %s: %w", cert, key, err)
				}
				o.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
			}
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			b, err := Start(o)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "broker ready on %s (topics %s, %d partitions each)\n", b.Addr(), strings.Join(o.Topics, ","), o.Partitions)
			<-ctx.Done()
			b.Close()
			fmt.Fprintf(c.App.Writer, "broker on %s stopped\n", b.Addr())
			return nil
		},
	}
}
