package main

import (
	"path/filepath"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/preservarium/iot-ingestor/internal/dev/devbroker"
)

// benchStack is what every scenario runs against, started afresh for each: InfluxDB 1.8 with
// its data under the work directory, the embedded broker with the scenario's topics, and an
// admin client of the broker.
type benchStack struct {
	influx  *influxServer
	broker  *devbroker.Broker
	brokers string
	admCl   *kgo.Client
	adm     *kadm.Client
}

// startStack starts the stack; on an error nothing started is left running.
func startStack(o options, partitions int32, topics []string) (*benchStack, error) {
	influx, err := startInflux(o.influxd, filepath.Join(o.workDir, "influxdb"))
	if err != nil {
		return nil, err
	}
	broker, err := devbroker.Start(devbroker.Options{Partitions: partitions, Topics: topics})
	if err != nil {
		influx.stop()
		return nil, err
	}
	admCl, err := kgo.NewClient(kgo.SeedBrokers(broker.Addr()))
	if err != nil {
		broker.Close()
		influx.stop()
		return nil, err
	}
	return &benchStack{influx: influx, broker: broker, brokers: broker.Addr(), admCl: admCl, adm: kadm.NewClient(admCl)}, nil
}

// close stops what startStack started, in reverse order.
func (s *benchStack) close() {
	s.admCl.Close()
	s.broker.Close()
	s.influx.stop()
}
