package kafka

import (
	"context"
	"sync"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/preservarium/iot-ingestor/internal/dev/devbroker"
	"github.com/preservarium/iot-ingestor/internal/testkit/streamtest"
)

// TestKafkaFranzInputBatchCutAtCheckpointLimit asks for batches of 5000 with checkpoint_limit
// 1024 and a flush period of an hour: a partition holds no more than the limit, so a batch of
// 5000 can never fill. The backlog must drain in batches cut at the limit, not wait for the
// period (which the test's deadline is far below).
func TestKafkaFranzInputBatchCutAtCheckpointLimit(t *testing.T) {
	const (
		topic = "cut-at-limit"
		group = "g-cut-at-limit"
		limit = 1024
		n     = 3 * limit
	)
	b := startBroker(t, devbroker.Options{Topics: []string{topic}, Partitions: 1})
	prod := manualProducer(t, b.SeedBrokers())
	for i := 0; i < n; i += 512 {
		produceN(t, prod, topic, 1, i, 512)
	}
	var (
		mu    sync.Mutex
		sizes []int
		total int
	)
	sb := service.NewStreamBuilder()
	if err := sb.SetLoggerYAML("level: warn"); err != nil {
		t.Fatal(err)
	}
	if err := sb.AddInputYAML(inputYAML(b.SeedBrokers(), topic, group, `
  checkpoint_limit: 1024
  batching:
    count: 5000
    period: 1h
`)); err != nil {
		t.Fatal(err)
	}
	if err := sb.AddBatchConsumerFunc(func(_ context.Context, batch service.MessageBatch) error {
		mu.Lock()
		defer mu.Unlock()
		sizes = append(sizes, len(batch))
		total += len(batch)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	streamtest.Run(t, sb, waitFor)
	eventually(t, "the backlog drained without waiting for the hour's period", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return total >= n
	})
	mu.Lock()
	defer mu.Unlock()
	for i, size := range sizes {
		if size != limit {
			t.Errorf("batch %d holds %d records, want %d: batches are cut at checkpoint_limit (all sizes %v)", i, size, limit, sizes)
			break
		}
	}
}
