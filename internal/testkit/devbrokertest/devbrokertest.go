// Package devbrokertest starts the embedded Kafka-protocol broker (internal/dev/devbroker) for a
// test. It is apart from devbroker so that the product binary, which serves the broker as
// `ingestor kafka-broker`, does not link the testing package.
package devbrokertest

import (
	"testing"

	"github.com/preservarium/iot-ingestor/internal/dev/devbroker"
	"github.com/preservarium/iot-ingestor/internal/testkit/testtier"
)

// Start starts a broker with o and closes it when the test ends. A test that uses it is an
// integration test: under -short it is skipped (see internal/testkit/testtier); otherwise a broker that
// cannot start fails the test.
func Start(t testing.TB, o devbroker.Options) *devbroker.Broker {
	t.Helper()
	Gate(t)
	b, err := devbroker.Start(o)
	if err != nil {
		t.Fatalf("starting the embedded Kafka broker: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

// Gate is the -short gate of Start, for the tests that start (and restart) brokers
// themselves, and for kcat users, which need a broker to talk to.
func Gate(t testing.TB) {
	t.Helper()
	testtier.Integration(t, "the embedded Kafka broker")
}
