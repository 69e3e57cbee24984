package outputs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/preservarium/iot-ingestor/internal/backoff"
	"github.com/preservarium/iot-ingestor/internal/batchpolicy"
	"github.com/preservarium/iot-ingestor/internal/errrecord"
	"github.com/preservarium/iot-ingestor/internal/kafkaclient"
	"github.com/preservarium/iot-ingestor/internal/meta"
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

	kfoMetricErrorRecords = "iot_error_records"
	kfoMetricErrorTopicUp = "error_topic_up"

	// kfoTopicMaxBytes is the topic config a broker measures a record batch against.
	kfoTopicMaxBytes = "max.message.bytes"
)

// kfoRefusalBackoff spaces the reports of a topic that refuses records for good: each one is an
// ERROR line of the engine ("Failed to connect") and a retry of the waiting batch.
var kfoRefusalBackoff = backoff.Policy{Initial: time.Second, Max: 30 * time.Second, Jitter: backoff.DefaultJitter}

// kfoRefusals are the broker's answers that no retry of the same record can change: the topic
// refuses it (authorization, a size limit below the one read at connect, a policy). Waiting
// is the only way not to lose the message or spin on it.
var kfoRefusals = []error{
	kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.TopicAuthorizationFailed,
	kerr.ClusterAuthorizationFailed, kerr.TransactionalIDAuthorizationFailed, kerr.InvalidRecord,
	kerr.PolicyViolation, kerr.InvalidTopicException, kerr.InvalidRequiredAcks, kerr.CorruptMessage,
}

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
		Summary("Writes messages to Kafka topics; a message is acknowledged only once every in-sync replica has stored it (with the default `acks: all`).").
		Description(`
Built on the franz-go client. Each message becomes one record whose topic and key are
interpolated from the message; the message's metadata, filtered by `+"`metadata`"+`, becomes the
record's headers.

### Delivery guarantee

A batch is produced synchronously and each message is acknowledged only when the broker has
confirmed its record with acks from all in-sync replicas. `+"`acks: leader`"+` (the leader alone) or
`+"`none`"+` (no confirmation: a message is acknowledged once sent) weaken that and need
`+"`idempotent_write: false`"+`; lint refuses them otherwise. A record that cannot be produced
(interpolation failure, broker rejection, `+"`timeout`"+` elapsed) fails that message alone,
so the engine retries it or routes it elsewhere; it is never acknowledged. When no broker can be
reached at all the output reports itself disconnected and the batch is retried after
reconnecting. With `+"`idempotent_write`"+` (the default) the broker discards duplicates of
the producer's own retries, so internal retries never duplicate records. A failed batch's error
names the broker's first error (e.g. `+"`MESSAGE_TOO_LARGE`"+`).

### Partitions, timestamps, topics

The partition of a record is chosen by `+"`partitioner`"+` (by default the murmur2 hash of the key, as
Kafka's own clients do), or given per message by `+"`partition`"+` with `+"`partitioner: manual`"+`. Its
timestamp is the produce time unless `+"`timestamp_ms`"+` gives one. A value of either that is not an
integer, or a partition the topic does not have, fails that message alone. A topic that does
not exist is created by a broker that allows it; with `+"`allow_auto_topic_creation: false`"+` a
static topic that does not exist fails `+"`Connect`"+` with its name (the output waits, as for a
broker outage), and a record for a missing interpolated topic fails its message.

### A topic that refuses records

When the broker refuses a record for good (`+"`TOPIC_AUTHORIZATION_FAILED`, `MESSAGE_TOO_LARGE`"+`, a
policy violation, ...), retrying the message would only spin, and failing it would make its
source deliver it again for ever: the output treats it as an outage of the topic instead. The
whole batch waits in the output (records of it already written may be written again); the output
reports itself disconnected, so `+"`/ready`"+` answers 503 with the cause, the topic, and the
partition and offset of the waiting message's source (`+"`kafka_*`"+` metadata); `+"`Connect`"+` reports it
with a jittered back-off from 1 s to 30 s (one ERROR line each time) and lets the batch be tried
again after each. Batches that do not reach this output (the readings of other partitions) flow
meanwhile. A record the client itself finds too big fails its message instead.

### Size

A record takes its value, key, headers and about 100 bytes of framing. The limit is
`+"`max_message_bytes`"+`, or the topic's `+"`max.message.bytes`"+` when the broker's is smaller: the output
reads it when it connects (a `+"`DescribeConfigs`"+` of a static topic; without the permission it keeps
its own). An error record built by `+"`iot_error_record`"+` (one with `+"`iot_error_kind`"+` metadata) that
would not fit is cut to fit, its original shortened as that processor documents; any other
message over the limit fails.

### Metrics

`+"`iot_error_records`"+` (label `+"`kind`"+`, the `+"`iot_error_kind`"+` metadata) counts the error records
the broker acknowledged. `+"`error_topic_up`"+` is 0 while the topic refuses records or no broker can
be reached, and 1 once a record has been written again (at start, once connected). Every
`+"`kafka_franz`"+` output of a process reports `+"`error_topic_up`"+`: the pipelines here have one, the
error (or parking) topic's.
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
				Description("Batches produced in parallel. Ordering within a partition is only guaranteed with 1.").
				Default(10),
			service.NewBoolField(kfoFieldIdempotentWrite).
				Description("Idempotent producer (KIP-98): broker-side de-duplication of the producer's retries. Needs the IDEMPOTENT_WRITE permission on clusters with ACLs.").
				Default(true).
				Example(false).
				Advanced(),
			service.NewStringEnumField(kfoFieldCompression, "none", "gzip", "snappy", "lz4", "zstd").
				Description("Compression codec of produced record batches. `none` by default (Redpanda Connect's unset prefers `snappy`): a record is fitted to the topic's `max.message.bytes` by its uncompressed size (see Size), so without compression what is measured is what the broker checks, and a limit lowered after connect is found by the broker's refusal.").
				Default("none").
				Example("zstd").
				Advanced(),
			service.NewDurationField(kfoFieldTimeout).
				Description("Longest time a batch's records may take to be produced, retries included, before the messages not yet written fail (and are retried by the engine). `record_delivery_timeout` bounds each record inside the client too.").
				Default("10s").
				Example("30s").
				Advanced(),
			service.NewStringField(kfoFieldMaxMessageBytes).
				Description("Largest record batch sent to a broker, and so the largest record (see Size). The topic's `max.message.bytes`, read at connect, lowers it. The error topic's pipelines set it, and `iot_error_record`'s `max_record_bytes`, from `KAFKA_ERROR_MAX_MESSAGE_BYTES`.").
				Default("1MiB").
				Example("4MiB").
				Example("${KAFKA_ERROR_MAX_MESSAGE_BYTES:1MiB}").
				Advanced(),
		).
		Fields(kafkaclient.TLSField(), kafkaclient.SASLField()).
		Fields(kafkaclient.TuningFields()...).
		Fields(kfoProducerFields()...).
		Fields(service.NewBatchPolicyField(kfoFieldBatching)).
		LintRule(kfoLintRule()).
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
	conn        *kafkaclient.Connection
	opts        []kgo.Opt
	topic       *service.InterpolatedString
	key         *service.InterpolatedString
	metadata    *service.MetadataFilter // nil: no headers
	timeout     time.Duration
	maxBytes    int // max_message_bytes
	producer    *kfoProducer
	log         *service.Logger
	records     *service.MetricCounter
	errorTopUp  *service.MetricGauge
	backoff     backoff.Policy
	staticTopic string // "" when the topic is interpolated per message

	mu     sync.Mutex
	client *kgo.Client
	limit  int // the smaller of maxBytes and the topic's max.message.bytes
	// refusal is the topic's refusal of a record for good; the batch waits until it is written.
	refusal *kfoRefusal
	// waiting: a batch was sent back as not connected and has not been written since.
	waiting bool
}

// kfoRefusal is a record the topic refused for good and how often in a row.
type kfoRefusal struct {
	err      error
	attempts int
	reported bool // Connect has reported this attempt and waited its back-off
}

func newFranzOutput(conf *service.ParsedConfig, res *service.Resources) (*franzOutput, error) {
	conn, err := kafkaclient.ParseConnection(conf)
	if err != nil {
		return nil, err
	}
	o := &franzOutput{
		conn: conn, log: res.Logger(), backoff: kfoRefusalBackoff,
		records:    res.Metrics().NewCounter(kfoMetricErrorRecords, "kind"),
		errorTopUp: res.Metrics().NewGauge(kfoMetricErrorTopicUp),
	}
	if o.topic, err = conf.FieldInterpolatedString(kfoFieldTopic); err != nil {
		return nil, err
	}
	if t, ok := o.topic.Static(); ok {
		o.staticTopic = t
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
	maxBytesStr, err := conf.FieldString(kfoFieldMaxMessageBytes)
	if err != nil {
		return nil, err
	}
	maxBytes, err := humanize.ParseBytes(maxBytesStr)
	if err != nil || maxBytes == 0 || maxBytes > 1<<30 {
		return nil, fmt.Errorf("field %s: %q is not a byte size between 1B and 1GiB (e.g. 1MiB)", kfoFieldMaxMessageBytes, maxBytesStr)
	}
	o.maxBytes, o.limit = int(maxBytes), int(maxBytes)
	idempotent, err := conf.FieldBool(kfoFieldIdempotentWrite)
	if err != nil {
		return nil, err
	}
	if o.producer, err = parseKfoProducer(conf, idempotent, o.maxBytes); err != nil {
		return nil, err
	}

	o.opts = append(conn.Opts(),
		kgo.WithLogger(kafkaclient.Logger(o.log)),
		// The engine's own batching decides what is sent together;
		// lingering would only add latency.
		kgo.ProducerLinger(0),
	)
	o.opts = append(o.opts, o.producer.opts...)
	codecName, err := conf.FieldString(kfoFieldCompression)
	if err != nil {
		return nil, err
	}
	codec, ok := kfoCompression[codecName]
	if !ok {
		return nil, fmt.Errorf("field %s: %q is not one of none, gzip, snappy, lz4, zstd", kfoFieldCompression, codecName)
	}
	o.opts = append(o.opts, kgo.ProducerBatchCompression(codec))
	if !idempotent {
		o.opts = append(o.opts, kgo.DisableIdempotentWrite())
	}
	return o, nil
}

// Connect creates the client once, checks that a broker answers and reads the topic's size
// limit. While the topic refuses a record for good it reports that, once per back-off, and
// then lets the waiting batch be tried again.
func (o *franzOutput) Connect(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if r := o.refusal; r != nil && !r.reported {
		r.reported = true
		o.errorTopUp.Set(0)
		return service.NewErrBackOff(r.err, o.backoff.Delay(r.attempts-1))
	}
	if o.client == nil {
		cl, err := o.newClient(o.limit)
		if err != nil {
			return err
		}
		o.client = cl
	}
	pctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := kafkaclient.PingError(pctx, o.client, o.conn.SeedBrokers); err != nil {
		o.errorTopUp.Set(0)
		return err
	}
	if err := o.checkTopicExists(pctx); err != nil {
		o.errorTopUp.Set(0)
		return err
	}
	if err := o.readTopicLimit(pctx); err != nil {
		return err
	}
	if !o.waiting && o.refusal == nil {
		o.errorTopUp.Set(1)
	}
	return nil
}

func (o *franzOutput) newClient(limit int) (*kgo.Client, error) {
	cl, err := kgo.NewClient(append(o.opts, kgo.ProducerBatchMaxBytes(int32(limit)))...)
	if err != nil {
		return nil, fmt.Errorf("kafka_franz: creating the Kafka client: %w", err)
	}
	return cl, nil
}

// readTopicLimit lowers the limit to the topic's max.message.bytes when the broker's is smaller
// (or raises it back up to max_message_bytes), making a new client when it changes, since a
// client's batch size is fixed. Without the permission to describe configs, or for an
// interpolated topic, the limit stays max_message_bytes. Called with o.mu held.
func (o *franzOutput) readTopicLimit(ctx context.Context) error {
	if o.staticTopic == "" {
		return nil
	}
	limit := o.maxBytes
	rcs, err := kadm.NewClient(o.client).DescribeTopicConfigs(ctx, o.staticTopic)
	if err == nil {
		var rc kadm.ResourceConfig
		if rc, err = rcs.On(o.staticTopic, nil); err == nil {
			err = rc.Err
		}
		for _, c := range rc.Configs {
			if c.Key != kfoTopicMaxBytes || c.Value == nil {
				continue
			}
			if n, perr := strconv.Atoi(*c.Value); perr == nil && n > 0 && n < limit {
				limit = n
			}
		}
	}
	if err != nil {
		o.log.Debugf("kafka_franz: could not read %s of topic %q, keeping %s %d: %v", kfoTopicMaxBytes, o.staticTopic, kfoFieldMaxMessageBytes, o.maxBytes, err)
	}
	if limit == o.limit {
		return nil
	}
	o.log.Infof("kafka_franz: topic %q takes records of at most %d bytes (%s %d, the topic's %s): records are cut or refused above it", o.staticTopic, limit, kfoFieldMaxMessageBytes, o.maxBytes, kfoTopicMaxBytes)
	cl, err := o.newClient(limit)
	if err != nil {
		return err
	}
	o.client.Close()
	o.client, o.limit = cl, limit
	return nil
}

// WriteBatch produces the batch and waits for every record's outcome. Each failed record fails
// its own message; if all failed because no broker answers, the whole batch is reported as a
// lost connection instead, and a record the topic refuses for good holds the batch as an outage
// of the topic (see the spec).
func (o *franzOutput) WriteBatch(ctx context.Context, batch service.MessageBatch) error {
	o.mu.Lock()
	cl, limit := o.client, o.limit
	o.mu.Unlock()
	if cl == nil {
		return service.ErrNotConnected
	}

	type failure struct {
		i   int
		err error
	}
	var failures []failure
	fail := func(i int, err error) { failures = append(failures, failure{i, err}) }

	recs := make([]*kgo.Record, 0, len(batch))
	index := make([]int, 0, len(batch)) // record -> message
	topics := batch.InterpolationExecutor(o.topic)
	keys := batch.InterpolationExecutor(o.key)
	var partitions, timestamps *service.MessageBatchInterpolationExecutor
	if o.producer.partition != nil {
		partitions = batch.InterpolationExecutor(o.producer.partition)
	}
	if o.producer.timestampMs != nil {
		timestamps = batch.InterpolationExecutor(o.producer.timestampMs)
	}
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
		if err := o.producer.route(rec, partitions, timestamps, i); err != nil {
			fail(i, err)
			continue
		}
		headerBytes := 0
		if o.metadata != nil {
			_ = o.metadata.Walk(msg, func(k, v string) error {
				rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
				headerBytes += len(k) + len(v)
				return nil
			})
		}
		if budget := errrecord.Budget(limit, len(rec.Key), headerBytes, len(rec.Headers)); len(value) > budget {
			if _, isErrorRecord := msg.MetaGet(meta.ErrorKind); !isErrorRecord {
				fail(i, fmt.Errorf("kafka_franz: record of %d bytes (value, key, headers and framing) is over the limit of %d bytes for topic %q (%s or the topic's %s)",
					len(value)+len(rec.Key)+headerBytes+errrecord.Framing, limit, topic, kfoFieldMaxMessageBytes, kfoTopicMaxBytes))
				continue
			}
			if rec.Value, err = errrecord.Fit(value, budget, nil); err != nil {
				fail(i, fmt.Errorf("kafka_franz: error record does not fit the limit of %d bytes for topic %q: %w", limit, topic, err))
				continue
			}
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
		var refused *kgo.ProduceResult
		written := 0
		// timeout bounds the wait for the batch: a record not produced by then fails its message.
		pctx, cancel := context.WithTimeout(ctx, o.timeout)
		results := cl.ProduceSync(pctx, recs...)
		cancel()
		for _, r := range results {
			i := msgIndex[r.Record]
			if r.Err == nil {
				written++
				if kind, ok := batch[i].MetaGet(meta.ErrorKind); ok {
					o.records.Incr(1, kind)
				}
				continue
			}
			failed++
			if refused == nil && isRefusal(r.Err) {
				refused = &r
			}
			fail(i, o.produceError(r))
		}
		if refused != nil {
			return o.refuse(batch[msgIndex[refused.Record]], refused, failed)
		}
		if failed == len(recs) {
			pctx, cancel := context.WithTimeout(ctx, o.timeout)
			perr := cl.Ping(pctx)
			cancel()
			if perr != nil {
				o.log.Warnf("kafka_franz: no Kafka broker reachable at %v, output disconnected: %v", o.conn.SeedBrokers, perr)
				o.mu.Lock()
				o.waiting = true
				o.mu.Unlock()
				o.errorTopUp.Set(0)
				return service.ErrNotConnected
			}
		}
		if written > 0 {
			o.mu.Lock()
			o.refusal, o.waiting = nil, false
			o.mu.Unlock()
			o.errorTopUp.Set(1)
		}
	}
	if len(failures) == 0 {
		return nil
	}
	// The batch error's text is what the engine logs: it names the first cause.
	cause := failures[0].err
	if len(failures) > 1 {
		cause = fmt.Errorf("kafka_franz: %d of %d messages not produced, the first: %w", len(failures), len(batch), cause)
	}
	bErr := service.NewBatchError(batch, cause)
	for _, f := range failures {
		bErr = bErr.Failed(f.i, f.err)
	}
	return bErr
}

func isRefusal(err error) bool {
	for _, r := range kfoRefusals {
		if errors.Is(err, r) {
			return true
		}
	}
	return false
}

// refuse holds the batch after the topic refused one of its records for good: the output is
// disconnected until the record is written, and Connect reports why.
func (o *franzOutput) refuse(msg *service.Message, r *kgo.ProduceResult, refused int) error {
	where := "message without a Kafka source"
	if topic, ok := msg.MetaGet(meta.KafkaTopic); ok {
		p, _ := meta.Int(msg, meta.KafkaPartition)
		off, _ := meta.Int(msg, meta.KafkaOffset)
		where = fmt.Sprintf("message from topic %s partition %d offset %d", topic, p, off)
	}
	err := fmt.Errorf("kafka_franz: topic %q refuses the record of the %s (%d of the batch refused), waiting until it is accepted: %w",
		r.Record.Topic, where, refused, r.Err)
	if errors.Is(r.Err, kerr.MessageTooLarge) || errors.Is(r.Err, kerr.RecordListTooLarge) {
		err = fmt.Errorf("%w (%s of the topic below the %d bytes read at connect? it is read again before the retry)", err, kfoTopicMaxBytes, o.limitNow())
	}
	o.mu.Lock()
	attempts := 1
	if o.refusal != nil {
		attempts = o.refusal.attempts + 1
	}
	o.refusal = &kfoRefusal{err: err, attempts: attempts}
	o.waiting = true
	o.mu.Unlock()
	o.errorTopUp.Set(0)
	return service.ErrNotConnected
}

func (o *franzOutput) limitNow() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.limit
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
