package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/preservarium/iot-ingestor/internal/dev/readinggen"
	"github.com/preservarium/iot-ingestor/internal/meta"
)

// stream is one pre-loaded topic and what the ingestor must make of it.
type stream struct {
	topic    string
	messages int
	stored   int // messages that become a point
	values   int // field values of those points: what InfluxDB counts once all are stored
	filtered int // valid messages with nothing to store
	errors   int // messages that become an error record
	// lines is the line protocol of the stored messages, mapped in-process by reading_to_point
	// exactly as the ingestor maps them; kept only when asked (the raw write limit needs it).
	lines [][]byte
	bytes int64 // total size of the record values
}

// preload produces count generated readings to topic, keyed by device, with the reading's
// time as the record time (as cmd/dev/readings-gen does). With mapper set it also keeps each
// stored message's line protocol. devices is the number of distinct device ids (series).
func preload(ctx context.Context, brokers string, topic string, count int, badShare float64, seed int64, devices int, mapper *service.OwnedProcessor) (*stream, error) {
	opts := readinggen.DefaultOptions()
	opts.BadShare = badShare
	opts.Devices = devices
	gen, err := readinggen.New(seed, opts)
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(50000))
	if err != nil {
		return nil, fmt.Errorf("producer for %s: %w", topic, err)
	}
	defer cl.Close()

	s := &stream{topic: topic, messages: count}
	var (
		mu      sync.Mutex
		failure error
		wg      sync.WaitGroup
	)
	const mapChunk = 1000
	var chunk service.MessageBatch
	flushMap := func() error {
		if len(chunk) == 0 {
			return nil
		}
		out, err := mapper.ProcessBatch(ctx, chunk)
		if err != nil {
			return fmt.Errorf("mapping with reading_to_point: %w", err)
		}
		for _, b := range out {
			for _, m := range b {
				if m.GetError() != nil {
					continue
				}
				lp, err := m.AsBytes()
				if err != nil {
					return err
				}
				s.lines = append(s.lines, append([]byte(nil), lp...))
			}
		}
		chunk = chunk[:0]
		return nil
	}
	for i := 0; i < count; i++ {
		r := gen.Next()
		switch r.Expect.Outcome {
		case readinggen.OutcomeStored:
			s.stored++
			s.values += len(r.Expect.Fields)
		case readinggen.OutcomeFiltered:
			s.filtered++
		case readinggen.OutcomeError:
			s.errors++
		}
		s.bytes += int64(len(r.Value))
		if mapper != nil && r.Expect.Outcome == readinggen.OutcomeStored {
			m := service.NewMessage(r.Value)
			m.MetaSetMut(meta.KafkaKey, string(r.Key))
			m.MetaSetMut(meta.KafkaTimestampMs, r.Timestamp.UnixMilli())
			m.MetaSetMut(meta.KafkaTopic, topic)
			chunk = append(chunk, m)
			if len(chunk) == mapChunk {
				if err := flushMap(); err != nil {
					return nil, err
				}
			}
		}
		wg.Add(1)
		cl.Produce(ctx, &kgo.Record{Key: r.Key, Value: r.Value, Timestamp: r.Timestamp}, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				failure = err
				mu.Unlock()
			}
		})
	}
	if mapper != nil {
		if err := flushMap(); err != nil {
			return nil, err
		}
		if len(s.lines) != s.stored {
			return nil, fmt.Errorf("reading_to_point mapped %d of the %d messages the generator expects stored", len(s.lines), s.stored)
		}
	}
	wg.Wait()
	if failure != nil {
		return nil, fmt.Errorf("producing to %s: %w", topic, failure)
	}
	return s, nil
}

// newMapper builds the reading_to_point processor with the shipped pipeline's settings.
func newMapper() (*service.OwnedProcessor, error) {
	spec := service.NewConfigSpec().Field(service.NewProcessorField("p"))
	conf, err := spec.ParseYAML("p:\n  reading_to_point:\n    precision: us\n", nil)
	if err != nil {
		return nil, fmt.Errorf("reading_to_point config: %w", err)
	}
	return conf.FieldProcessor("p")
}

// behind is how many records of topic the group has not committed yet, in every partition but
// skip (none when negative).
func behind(ctx context.Context, adm *kadm.Client, topic, group string, skip int32) (int64, error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, err
	}
	if err := ends.Error(); err != nil {
		return 0, err
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return 0, err
	}
	var n int64
	ends.Each(func(e kadm.ListedOffset) {
		if e.Partition == skip {
			return
		}
		at := int64(0)
		if c, ok := committed.Lookup(e.Topic, e.Partition); ok && c.At > 0 {
			at = c.At
		}
		if at < e.Offset {
			n += e.Offset - at
		}
	})
	return n, nil
}

// bareConsume reads the whole topic with a plain franz-go consumer (no group, default
// options) and returns the records/s it reached.
func bareConsume(ctx context.Context, brokers, topic string, want int) (float64, time.Duration, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return 0, 0, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	start := time.Now()
	got := 0
	var sink int
	for got < want {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return 0, 0, fmt.Errorf("bare consumer: %d of %d records: %w", got, want, err)
		}
		fs.EachError(func(t string, p int32, err error) {
			fmt.Printf("  bare consumer: %s/%d: %v\n", t, p, err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			got++
			sink += len(r.Value)
		})
	}
	d := time.Since(start)
	_ = sink
	return float64(got) / d.Seconds(), d, nil
}
