package kafka

import (
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/preservarium/iot-ingestor/internal/meta"
)

// The nack replayer traces a rejected message to its record by the partition and offset in its
// metadata; anything that does not name one record of the batch is not traced.
func TestRecordBatchIndexOf(t *testing.T) {
	recs := recordBatch{
		{Topic: "t", Partition: 3, Offset: 10, Value: []byte("a")},
		{Topic: "t", Partition: 3, Offset: 11, Value: []byte("b")},
		{Topic: "t", Partition: 3, Offset: 14, Value: []byte("c")}, // a gap, as after compaction
	}
	for i := range recs {
		m := recs.Message(i)
		m.SetBytes([]byte("processed")) // what the pipeline does to it does not matter
		if got, ok := recs.IndexOf(m.Copy()); !ok || got != i {
			t.Errorf("message of record %d: IndexOf = %d, %v", i, got, ok)
		}
	}
	untraceable := map[string]func(m *service.Message){
		"offset in the gap":        func(m *service.Message) { m.MetaSetMut(meta.KafkaOffset, 12) },
		"offset past the batch":    func(m *service.Message) { m.MetaSetMut(meta.KafkaOffset, 15) },
		"another partition":        func(m *service.Message) { m.MetaSetMut(meta.KafkaPartition, 4) },
		"another topic":            func(m *service.Message) { m.MetaSetMut(meta.KafkaTopic, "u") },
		"offset rewritten as text": func(m *service.Message) { m.MetaSetMut(meta.KafkaOffset, "11") },
		"offset removed":           func(m *service.Message) { m.MetaDelete(meta.KafkaOffset) },
	}
	for name, change := range untraceable {
		m := recs.Message(1)
		change(m)
		if got, ok := recs.IndexOf(m); ok {
			t.Errorf("%s: traced to record %d", name, got)
		}
	}
}
