package tests

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/preservarium/iot-ingestor/internal/dev/readinggen"
)

// Scenario: one message fails forever. An undecodable record sits at the start of partition
// 0 and the error topic refuses every write (TOPIC_AUTHORIZATION_FAILED), so its error record
// can never be written: the message is rejected and delivered again with back-off for as long
// as the refusal lasts, and partition 0 cannot commit past it. The other five partitions must
// be consumed, stored and committed to their end meanwhile; partition 0 is held back on its own
// at checkpoint_limit (50 here, with 4 KiB fetches, so that it is reached early). Once the error topic accepts writes
// again, the record is reported and partition 0 completes.
//
// Before, the replayer slept each back-off inside ReadBatch, which the engine calls from one
// goroutine, and once partition 0 held checkpoint_limit records the input stopped fetching
// every partition: nothing moved until the error topic came back.
func TestFaultStuckMessage(t *testing.T) {
	start := time.Now()
	const partitions = 6
	s := newStack(t, stackOptions{partitions: partitions})
	readings := generate(t, 20, 3000, 0)

	ctx := context.Background()
	poison := &kgo.Record{Topic: inputTopic, Partition: 0, Key: []byte("poison"), Value: []byte("not a reading"), Timestamp: time.Now()}
	if err := s.client(kgo.RecordPartitioner(kgo.ManualPartitioner())).ProduceSync(ctx, poison).FirstErr(); err != nil {
		t.Fatalf("producing the undecodable record: %v", err)
	}
	// Small produce calls make small record batches, and small fetches bring a few at a time,
	// so that partition 0 reaches checkpoint_limit long before the other partitions are read.
	for i := 0; i < len(readings); i += 30 {
		s.produce(readings[i:min(i+30, len(readings))])
	}

	refusal, err := s.broker.RefuseProduce(ctx, kadm.NewClient(s.client()), errorTopic)
	if err != nil {
		t.Fatal(err)
	}

	p := s.startIngestor(map[string]string{"KAFKA_CHECKPOINT_LIMIT": "50", "KAFKA_FETCH_MAX_PARTITION_BYTES": "4KiB"})
	p.waitStatus("/ready", 200, 30*time.Second)

	adm := kadm.NewClient(s.client())
	others := func() (bool, int64) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ends, err := adm.ListEndOffsets(cctx, inputTopic)
		if err != nil {
			return false, 0
		}
		committed, err := adm.FetchOffsets(cctx, group)
		if err != nil {
			return false, 0
		}
		done := true
		var held int64
		ends.Each(func(e kadm.ListedOffset) {
			c, _ := committed.Lookup(e.Topic, e.Partition)
			if e.Partition == 0 {
				held = c.At
			} else if c.At < e.Offset {
				done = false
			}
		})
		return done, held
	}
	deadline := time.Now().Add(120 * time.Second)
	for {
		done, held := others()
		if held > poison.Offset {
			t.Fatalf("partition 0 committed to %d, past offset %d whose error record was never written", held, poison.Offset)
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("partitions 1-5 were not committed to their end within 120 s while partition 0 was stuck (%d writes to the error topic refused)", refusal.Refused())
		}
		time.Sleep(250 * time.Millisecond)
	}
	if n := refusal.Refused(); n < 3 {
		t.Errorf("the error topic refused %d writes: the stuck message was not retried", n)
	}
	var beside []readinggen.Reading
	for _, r := range readings {
		if r.Expect.Source.Partition != 0 {
			beside = append(beside, r)
		}
	}
	stored := s.verifyStored(storedOnly(beside), false)
	t.Logf("while partition 0 was stuck: partitions 1-5 committed to their end, %d values of theirs stored, %d writes to the error topic refused", stored, refusal.Refused())

	refusal.Lift()
	s.waitDrained(120 * time.Second)
	extra := map[string]string{sourceKey(&readinggen.Source{Topic: inputTopic, Partition: 0, Offset: poison.Offset}): "decode"}
	report(t, "stuck-message", s.verify(readings, extra), time.Since(start))
}
