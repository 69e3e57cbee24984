package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/preservarium/iot-ingestor/internal/dev/devbroker"
	"github.com/preservarium/iot-ingestor/internal/meta"
	"github.com/preservarium/iot-ingestor/internal/testkit/streamtest"
	_ "github.com/preservarium/iot-ingestor/processors"
)

// TestKafkaFranzInputForgedHeaders produces a record whose headers carry the names of the
// pipeline's own keys: its error record must name the record's true source, the nack replayer
// must still trace the rejected message to its record (redelivering it alone, not its whole
// batch), and the headers stay readable under the prefixed names.
func TestKafkaFranzInputForgedHeaders(t *testing.T) {
	const (
		topic  = "forged"
		group  = "g-forged"
		n      = 10
		forged = 3
	)
	b := startBroker(t, devbroker.Options{Topics: []string{topic}, Partitions: 1})
	prod := manualProducer(t, b.SeedBrokers())
	produceN(t, prod, topic, 1, 0, forged)
	forgery := []kgo.RecordHeader{
		{Key: meta.KafkaTopic, Value: []byte("payments")},
		{Key: meta.KafkaPartition, Value: []byte("7")},
		{Key: meta.KafkaOffset, Value: []byte("42")},
		{Key: meta.KafkaTimestampMs, Value: []byte("1")},
		{Key: meta.SourceTopic, Value: []byte("payments")},
		{Key: meta.SourcePartition, Value: []byte("7")},
		{Key: meta.SourceOffset, Value: []byte("42")},
		{Key: meta.FallbackError, Value: []byte("write: forged")},
		{Key: meta.Path, Value: []byte("/etc/passwd")},
		{Key: "origin", Value: []byte("test")},
	}
	if err := prod.ProduceSync(context.Background(), &kgo.Record{
		Topic: topic, Partition: 0, Key: []byte("key-3"), Value: []byte(`{"n":3}`), Headers: forgery,
	}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	produceN(t, prod, topic, 1, forged+1, n-forged-1)

	var (
		mu          sync.Mutex
		deliveries  [][]int // offsets of each batch the output saw
		record      map[string]any
		headerTopic string
		origin      string
		accepted    = map[int]bool{}
	)
	sb := service.NewStreamBuilder()
	if err := sb.SetLoggerYAML("level: warn"); err != nil {
		t.Fatal(err)
	}
	if err := sb.AddInputYAML(inputYAML(b.SeedBrokers(), topic, group, "  batching:\n    count: 10\n    period: 1s\n")); err != nil {
		t.Fatal(err)
	}
	if err := sb.AddProcessorYAML(`
mapping: 'root = if this.n == 3 { throw("validation: rejected for the test") } else { this }'
`); err != nil {
		t.Fatal(err)
	}
	if err := sb.AddProcessorYAML(`
switch:
  - check: errored()
    processors:
      - iot_error_record:
          service: ingestor
`); err != nil {
		t.Fatal(err)
	}
	if err := sb.AddBatchConsumerFunc(func(_ context.Context, batch service.MessageBatch) error {
		mu.Lock()
		defer mu.Unlock()
		var offsets []int
		var bErr *service.BatchError
		for i, m := range batch {
			off, _ := meta.Int(m, meta.KafkaOffset)
			offsets = append(offsets, int(off))
			if off != forged {
				accepted[int(off)] = true
				continue
			}
			if len(deliveries) == 0 {
				// Rejected once: the replayer must find it again by its metadata.
				bErr = service.NewBatchError(batch, errors.New("rejected once")).Failed(i, errors.New("rejected once"))
				continue
			}
			body, _ := m.AsBytes()
			if err := json.Unmarshal(body, &record); err != nil {
				t.Errorf("error record is not JSON: %v: %s", err, body)
			}
			headerTopic, _ = m.MetaGet(reservedHeaderPrefix + meta.KafkaTopic)
			origin, _ = m.MetaGet("origin")
			accepted[int(off)] = true
		}
		deliveries = append(deliveries, offsets)
		if bErr != nil {
			return bErr
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	streamtest.Run(t, sb, 20*time.Second)
	admin := newClient(t, b.SeedBrokers())
	eventually(t, "every record accepted and committed", func() bool {
		mu.Lock()
		ok := len(accepted) == n
		mu.Unlock()
		return ok && committedOffsets(t, admin, group, topic)[0] == n
	})

	mu.Lock()
	defer mu.Unlock()
	if len(deliveries) < 2 || len(deliveries[1]) != 1 || deliveries[1][0] != forged {
		t.Errorf("batches delivered %v: after rejecting offset %d alone, want it redelivered alone (the replayer traces it by its metadata)", deliveries, forged)
	}
	src, _ := record["source"].(map[string]any)
	if src["topic"] != topic || src["partition"] != float64(0) || src["offset"] != float64(forged) {
		t.Errorf("error record source %v, want the record's true one: topic %q partition 0 offset %d", record["source"], topic, forged)
	}
	if ts, _ := src["timestamp_ms"].(float64); ts <= 1 {
		t.Errorf("error record source.timestamp_ms %v, want the record's time, not the forged header's", src["timestamp_ms"])
	}
	if errText, _ := record["error"].(string); !strings.Contains(errText, "rejected for the test") {
		t.Errorf("error record error %q, want the processing error, not the forged fallback_error", errText)
	}
	if headerTopic != "payments" || origin != "test" {
		t.Errorf("headers read back as %s=%q and origin=%q, want payments and test", reservedHeaderPrefix+meta.KafkaTopic, headerTopic, origin)
	}
}
