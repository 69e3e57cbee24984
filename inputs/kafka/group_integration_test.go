package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/preservarium/iot-ingestor/internal/dev/devbroker"
)

// startInput builds the input from inputYAML's fields plus extra and connects it, without a
// pipeline: the test reads (or does not read) its batches itself.
func startInput(t *testing.T, seeds []string, topic, group, extra string) *franzInput {
	t.Helper()
	conf, err := kafkaFranzInputSpec().ParseYAML(inputYAML(seeds, topic, group, extra)[len("\nkafka_franz:\n"):], nil)
	if err != nil {
		t.Fatalf("parsing the config: %v", err)
	}
	in, err := newFranzInput(conf, service.MockResources())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = in.Close(ctx)
	})
	if err := in.Connect(context.Background()); err != nil {
		t.Fatalf("connecting: %v", err)
	}
	return in
}

// TestKafkaFranzInputRevokeWithNothingInFlight revokes a partition whose consumer has a batch
// ready that nobody has read (the output is busy: the engine is not calling ReadBatch). That
// batch was never handed on, so nothing is in flight: the revoke must not wait for it, and the
// partition's checkpointer must be empty once the revoke returns. rebalance_timeout is a
// minute, so a revoke that waited for the batch would wait 20 s and leave it tracked.
func TestKafkaFranzInputRevokeWithNothingInFlight(t *testing.T) {
	const (
		topic = "revoke"
		group = "g-revoke"
	)
	b := startBroker(t, devbroker.Options{Topics: []string{topic}, Partitions: 1})
	produceN(t, manualProducer(t, b.SeedBrokers()), topic, 1, 0, 50)
	in := startInput(t, b.SeedBrokers(), topic, group, "  rebalance_timeout: 60s\n  batching:\n    count: 10\n")

	var p *partitionConsumer
	eventually(t, "a batch tracked and waiting to be read", func() bool {
		in.mu.Lock()
		p = in.parts[topicPartition{topic, 0}]
		in.mu.Unlock()
		return p != nil && p.cp.inFlight() > 0
	})

	revoked := make(chan struct{})
	go func() {
		defer close(revoked)
		in.dropPartitions(context.Background(), in.client, map[string][]int32{topic: {0}}, true)
	}()
	// A failure deadline well below the 20 s a revoke would wait for the batch; the assertion
	// that matters is on the checkpointer below.
	select {
	case <-revoked:
	case <-time.After(15 * time.Second):
		t.Fatalf("revoke still waiting after 15 s with nothing handed on (%d records tracked)", p.cp.inFlight())
	}
	if n := p.cp.inFlight(); n != 0 {
		t.Errorf("after the revoke the partition's checkpointer still tracks %d records that were never handed on", n)
	}
}

// TestKafkaFranzInputRevokeWaitsForInFlight checks the other side: a batch really handed on
// is waited for, and its acknowledgement ends the wait (the revoke then commits it).
func TestKafkaFranzInputRevokeWaitsForInFlight(t *testing.T) {
	const (
		topic = "revoke-inflight"
		group = "g-revoke-inflight"
	)
	b := startBroker(t, devbroker.Options{Topics: []string{topic}, Partitions: 1})
	produceN(t, manualProducer(t, b.SeedBrokers()), topic, 1, 0, 10)
	in := startInput(t, b.SeedBrokers(), topic, group, "  rebalance_timeout: 60s\n  batching:\n    count: 10\n")

	rctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	batch, ack, err := in.ReadBatch(rctx)
	if err != nil || len(batch) != 10 {
		t.Fatalf("reading the batch: %d messages, %v", len(batch), err)
	}
	revoked := make(chan struct{})
	go func() {
		defer close(revoked)
		in.dropPartitions(context.Background(), in.client, map[string][]int32{topic: {0}}, true)
	}()
	select {
	case <-revoked:
		t.Fatal("the revoke returned while a batch it handed on was still unacknowledged")
	case <-time.After(300 * time.Millisecond):
	}
	if err := ack(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-revoked:
	case <-time.After(15 * time.Second):
		t.Fatal("the revoke kept waiting after the batch was acknowledged")
	}
	admin := newClient(t, b.SeedBrokers())
	if got := committedOffsets(t, admin, group, topic)[0]; got != 10 {
		t.Errorf("committed %d after the revoke, want 10: the acknowledged batch is committed on revoke", got)
	}
}

// TestKafkaFranzInputCloseOnDeadline closes with the broker gone and a short deadline: Close
// returns on the deadline with its error, and its helper, whose final commit ends on the same
// deadline and which then goes on leaving the group, must not write anything Close returns
// (run with -race).
func TestKafkaFranzInputCloseOnDeadline(t *testing.T) {
	const (
		topic = "close-deadline"
		group = "g-close-deadline"
	)
	b := startBroker(t, devbroker.Options{Topics: []string{topic}, Partitions: 2})
	produceN(t, manualProducer(t, b.SeedBrokers()), topic, 2, 0, 20)
	in := startInput(t, b.SeedBrokers(), topic, group, "")
	rctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	batch, ack, err := in.ReadBatch(rctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = ack(context.Background(), nil)
	_ = batch

	// With the broker gone the helper's final commit runs into the same deadline as Close.
	b.Close()
	ctx, cancelClose := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancelClose()
	err = in.Close(ctx)
	if err == nil {
		t.Errorf("Close past its deadline with the broker gone returned no error")
	}
	got := fmt.Sprint(err) // read what Close returned while its helper may still be running
	select {
	case <-in.closed:
	case <-time.After(waitFor):
		t.Fatal("Close's helper never finished")
	}
	t.Logf("Close returned %s", got)
}

// TestKafkaFranzInputConnectBacksOff connects to an address where no broker listens: every
// failure asks the engine to wait longer before the next attempt (the engine logs each one),
// and a repeat says since when the cause lasts.
func TestKafkaFranzInputConnectBacksOff(t *testing.T) {
	b := startBroker(t, devbroker.Options{Topics: []string{"t"}, Partitions: 1})
	addr := b.Addr()
	b.Close() // the address is now free: nothing answers there
	conf, err := kafkaFranzInputSpec().ParseYAML(inputYAML([]string{addr}, "t", "g", "")[len("\nkafka_franz:\n"):], nil)
	if err != nil {
		t.Fatal(err)
	}
	in, err := newFranzInput(conf, service.MockResources())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = in.Close(context.Background()) }()
	var waits []time.Duration
	for i := 0; i < 4; i++ {
		err := in.Connect(context.Background())
		var bo *service.ErrBackOff
		if !errors.As(err, &bo) {
			t.Fatalf("attempt %d: got %v, want a service.ErrBackOff", i+1, err)
		}
		waits = append(waits, bo.Wait)
		if repeat := strings.Contains(err.Error(), "failing since"); repeat != (i > 0) {
			t.Errorf("attempt %d: %q: a repeat must say since when it fails, the first not", i+1, err)
		}
	}
	// With jitter a delay d is drawn in [d/2, d]: the third (4 s) is always above the first (1 s).
	if !(waits[2] > waits[0] && waits[3] > waits[1]) {
		t.Errorf("back-off waits %v, want them growing", waits)
	}
}
