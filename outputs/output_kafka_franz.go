package outputs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/preservarium/iot-ingestor/internal/batchpolicy"
	"github.com/preservarium/iot-ingestor/internal/kafkaclient"
)

// Field names of the kafka_franz output; they follow Redpanda Connect's
// kafka_franz / redpanda outputs.
const (
	kfoFieldTopic           = "topic"
	kfoFieldKey             = "key"
	kfoFieldMetadata        = "metadata"
	kfoFieldIdempotentWrite = "idempotent_write"
	kfoFieldCompression     = "compression"
	kfoFieldTimeout         = "timeout"
	kfoFieldMaxMessageBytes = "max_message_bytes"
	kfoFieldBatching        = "batching"
)

var kfoCompression = map[string]kgo.CompressionCodec{
	"none":   kgo.NoCompression(),
	"gzip":   kgo.GzipCompression(),
	"snappy": kgo.SnappyCompression(),
	"lz4":    kgo.Lz4Compression(),
	"zstd":   kgo.ZstdCompression(),
}

func kafkaFranzOutputSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Stable().
		Categories("Services").
		Summary("Writes messages to Kafka topics; a message is acknowledged only once every in-sync replica has stored it.").
		Description(`
Built on the franz-go client. Each message becomes one record whose topic and key are
interpolated from the message; the message's metadata, filtered by `+"`metadata`"+`, becomes the
record's headers.

### Delivery guarantee

A batch is produced synchronously and each message is acknowledged only when the broker has
confirmed its record with acks from all in-sync replicas. A record that cannot be produced
(interpolation failure, broker rejection, `+"`timeout`"+` elapsed) fails that message alone,
so the engine retries it or routes it elsewhere; it is never acknowledged. When no broker can be
reached at all the output reports itself disconnected and the batch is retried after
reconnecting. With `+"`idempotent_write`"+` (the default) the broker discards duplicates of
the producer's own retries, so internal retries never duplicate records.
`).
		Fields(kafkaclient.SeedBrokersField()).
		Fields(
			service.NewInterpolatedStringField(kfoFieldTopic).
				Description("Topic to write each message to.").
				Example("iot_errors").
				Example("${KAFKA_ERROR_TOPIC:iot_errors}").
				Example(`${! meta("target_topic") }`),
			service.NewInterpolatedStringField(kfoFieldKey).
				Description("Record key. An empty result writes a record without a key.").
				Default("").
				Example(`${! json("request_id") }`),
			service.NewMetadataFilterField(kfoFieldMetadata).
				Description("Which metadata keys become record headers. Without it no headers are written.").
				Optional().
				Example(map[string]any{"include_prefixes": []string{"ingestor_"}}),
		).
		Fields(kafkaclient.ClientIDField("ingestor")).
		Fields(
			service.NewOutputMaxInFlightField().
				Description("Batches produced in parallel. Ordering within a partition is only guaranteed with 1."),
			service.NewBoolField(kfoFieldIdempotentWrite).
				Description("Idempotent producer (KIP-98): broker-side de-duplication of the producer's retries. Needs the IDEMPOTENT_WRITE permission on clusters with ACLs.").
				Default(true).
				Example(false).
				Advanced(),
			service.NewStringEnumField(kfoFieldCompression, "none", "gzip", "snappy", "lz4", "zstd").
				Description("Compression codec of produced record batches.").
				Default("none").
				Example("zstd").
				Advanced(),
			service.NewDurationField(kfoFieldTimeout).
				Description("Longest time a record may take to be produced, retries included, before its message fails.").
				Default("10s").
				Example("30s").
				Advanced(),
			service.NewStringField(kfoFieldMaxMessageBytes).
				Description("Largest record batch sent to a broker; keep it at most the topic's `max.message.bytes`.").
				Default("1MiB").
				Example("4MiB").
				Advanced(),
		).
		Fields(kafkaclient.TLSField(), kafkaclient.SASLField()).
		Fields(kafkaclient.TuningFields()...).
		Fields(service.NewBatchPolicyField(kfoFieldBatching)).
		Example("Report errors", "Writes error records to the pipeline's shared error topic, keyed by request id, with the metadata keys starting with `ingestor_` as headers.", `
output:
  kafka_franz:
    seed_brokers: [ "${KAFKA_BOOTSTRAP_SERVERS:kafka:9092}" ]
    topic: "${KAFKA_ERROR_TOPIC:iot_errors}"
    key: '${! json("request_id").or("") }'
    metadata:
      include_prefixes: [ "ingestor_" ]
    max_in_flight: 4
    compression: snappy
    timeout: 10s
    batching:
      count: 100
      period: 1s
`)
}

func init() {
	service.MustRegisterBatchOutput("kafka_franz", kafkaFranzOutputSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchOutput, service.BatchPolicy, int, error) {
			maxInFlight, err := conf.FieldMaxInFlight()
			if err != nil {
				return nil, service.BatchPolicy{}, 0, err
			}
			policy, err := batchpolicy.Field(conf, kfoFieldBatching)
			if err != nil {
				return nil, service.BatchPolicy{}, 0, err
			}
			out, err := newFranzOutput(conf, mgr)
			return out, policy, maxInFlight, err
		})
}

type franzOutput struct {
	conn     *kafkaclient.Connection
	opts     []kgo.Opt
	topic    *service.InterpolatedString
	key      *service.InterpolatedString
	metadata *service.MetadataFilter // nil: no headers
	timeout  time.Duration
	log      *service.Logger

	mu     sync.Mutex
	client *kgo.Client
}

func newFranzOutput(conf *service.ParsedConfig, res *service.Resources) (*franzOutput, error) {
	conn, err := kafkaclient.ParseConnection(conf)
	if err != nil {
		return nil, err
	}
	o := &franzOutput{conn: conn, log: res.Logger()}
	if o.topic, err = conf.FieldInterpolatedString(kfoFieldTopic); err != nil {
		return nil, err
	}
	if o.key, err = conf.FieldInterpolatedString(kfoFieldKey); err != nil {
		return nil, err
	}
	if conf.Contains(kfoFieldMetadata) {
		if o.metadata, err = conf.FieldMetadataFilter(kfoFieldMetadata); err != nil {
			return nil, err
		}
	}
	if o.timeout, err = conf.FieldDuration(kfoFieldTimeout); err != nil {
		return nil, err
	}
	if o.timeout <= 0 {
		return nil, fmt.Errorf("field %s: must be a positive duration, got %v", kfoFieldTimeout, o.timeout)
	}
	codecName, err := conf.FieldString(kfoFieldCompression)
	if err != nil {
		return nil, err
	}
	codec, ok := kfoCompression[codecName]
	if !ok {
		return nil, fmt.Errorf("field %s: %q is not one of none, gzip, snappy, lz4, zstd", kfoFieldCompression, codecName)
	}
	maxBytesStr, err := conf.FieldString(kfoFieldMaxMessageBytes)
	if err != nil {
		return nil, err
	}
	maxBytes, err := humanize.ParseBytes(maxBytesStr)
	if err != nil || maxBytes == 0 || maxBytes > 1<<30 {
		return nil, fmt.Errorf("field %s: %q is not a byte size between 1B and 1GiB (e.g. 1MiB)", kfoFieldMaxMessageBytes, maxBytesStr)
	}
	idempotent, err := conf.FieldBool(kfoFieldIdempotentWrite)
	if err != nil {
		return nil, err
	}

	o.opts = append(conn.Opts(),
		kgo.WithLogger(kafkaclient.Logger(o.log)),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(codec),
		kgo.ProducerBatchMaxBytes(int32(maxBytes)),
		kgo.RecordDeliveryTimeout(o.timeout),
		// The engine's own batching decides what is sent together;
		// lingering would only add latency.
		kgo.ProducerLinger(0),
	)
	if !idempotent {
		o.opts = append(o.opts, kgo.DisableIdempotentWrite())
	}
	return o, nil
}

// Connect creates the client once and checks that a broker answers.
func (o *franzOutput) Connect(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.client == nil {
		cl, err := kgo.NewClient(o.opts...)
		if err != nil {
			return fmt.Errorf("kafka_franz: creating the Kafka client: %w", err)
		}
		o.client = cl
	}
	pctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	return kafkaclient.PingError(pctx, o.client, o.conn.SeedBrokers)
}

// WriteBatch produces the batch and waits for every record's outcome. Each
// failed record fails its own message; if all failed because no broker
// answers, the whole batch is reported as a lost connection instead.
func (o *franzOutput) WriteBatch(ctx context.Context, batch service.MessageBatch) error {
	o.mu.Lock()
	cl := o.client
	o.mu.Unlock()
	if cl == nil {
		return service.ErrNotConnected
	}

	var bErr *service.BatchError
	fail := func(i int, err error) {
		if bErr == nil {
			bErr = service.NewBatchError(batch, errors.New("kafka_franz: some messages were not produced"))
		}
		bErr = bErr.Failed(i, err)
	}

	recs := make([]*kgo.Record, 0, len(batch))
	index := make([]int, 0, len(batch)) // record -> message
	topics := batch.InterpolationExecutor(o.topic)
	keys := batch.InterpolationExecutor(o.key)
	for i, msg := range batch {
		topic, err := topics.TryString(i)
		if err != nil {
			fail(i, fmt.Errorf("kafka_franz: topic interpolation failed: %w", err))
			continue
		}
		if topic == "" {
			fail(i, errors.New("kafka_franz: topic interpolated to an empty string"))
			continue
		}
		key, err := keys.TryBytes(i)
		if err != nil {
			fail(i, fmt.Errorf("kafka_franz: key interpolation failed: %w", err))
			continue
		}
		value, err := msg.AsBytes()
		if err != nil {
			fail(i, fmt.Errorf("kafka_franz: reading message content: %w", err))
			continue
		}
		rec := &kgo.Record{Topic: topic, Value: value}
		if len(key) > 0 {
			rec.Key = key
		}
		if o.metadata != nil {
			_ = o.metadata.Walk(msg, func(k, v string) error {
				rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
				return nil
			})
		}
		recs = append(recs, rec)
		index = append(index, i)
	}

	if len(recs) > 0 {
		// ProduceSync lists results in completion order, not in the
		// order given, so results are matched to messages by record.
		msgIndex := make(map[*kgo.Record]int, len(recs))
		for j, r := range recs {
			msgIndex[r] = index[j]
		}
		failed := 0
		for _, r := range cl.ProduceSync(ctx, recs...) {
			if r.Err != nil {
				failed++
				fail(msgIndex[r.Record], fmt.Errorf("kafka_franz: producing to topic %q failed: %w", r.Record.Topic, r.Err))
			}
		}
		if failed == len(recs) {
			pctx, cancel := context.WithTimeout(ctx, o.timeout)
			perr := cl.Ping(pctx)
			cancel()
			if perr != nil {
				o.log.Warnf("kafka_franz: no Kafka broker reachable at %v, output disconnected: %v", o.conn.SeedBrokers, perr)
				return service.ErrNotConnected
			}
		}
	}
	if bErr != nil {
		return bErr
	}
	return nil
}

// Close flushes nothing (every write is synchronous) and releases the
// client, giving up when ctx ends.
func (o *franzOutput) Close(ctx context.Context) error {
	o.mu.Lock()
	cl := o.client
	o.client = nil
	o.mu.Unlock()
	if cl == nil {
		return nil
	}
	done := make(chan struct{})
	go func() {
		cl.Close()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kafka_franz: closing the producer: %w", ctx.Err())
	}
}
