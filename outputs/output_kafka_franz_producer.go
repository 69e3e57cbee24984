package outputs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/preservarium/iot-ingestor/internal/kafkaclient"
	"github.com/preservarium/iot-ingestor/internal/speclint"
)

// The producer settings of the kafka_franz output, with Redpanda Connect 4.93's names, meanings
// and defaults: where a record goes (partitioner, partition), its timestamp, how the broker
// acknowledges it, and the client's buffers and retries.
const (
	kfoFieldPartition          = "partition"
	kfoFieldPartitioner        = "partitioner"
	kfoFieldTimestampMs        = "timestamp_ms"
	kfoFieldAcks               = "acks"
	kfoFieldAutoTopicCreation  = "allow_auto_topic_creation"
	kfoFieldBrokerWriteMax     = "broker_write_max_bytes"
	kfoFieldMaxBufferedRecords = "max_buffered_records"
	kfoFieldMaxBufferedBytes   = "max_buffered_bytes"
	kfoFieldMaxInFlightReqs    = "max_in_flight_requests"
	kfoFieldDeliveryTimeout    = "record_delivery_timeout"
	kfoFieldRecordRetries      = "record_retries"

	kfoPartitionerManual = "manual"
	kfoAcksAll           = "all"
)

var kfoPartitioners = map[string]string{
	"murmur2_hash":       "Kafka's default: the murmur2 hash of the key picks the partition; records without a key stick to one partition per batch.",
	"round_robin":        "Each record to the next partition in turn: an even spread, at the cost of smaller batches per partition.",
	"least_backup":       "The partition with the fewest records buffered in the client, chosen per batch.",
	kfoPartitionerManual: "The partition `partition` gives for each message.",
}

var kfoAcks = map[string]kgo.Acks{
	kfoAcksAll: kgo.AllISRAcks(),
	"leader":   kgo.LeaderAck(),
	"none":     kgo.NoAck(),
}

// kfoProducerFields are the spec fields of the producer settings, in the order the spec shows
// them after the output's own.
func kfoProducerFields() []*service.ConfigField {
	return []*service.ConfigField{
		service.NewInterpolatedStringField(kfoFieldPartition).
			Description("The partition of each message's record, an integer; only with `partitioner: manual`, which needs it. A message whose value is not a partition of the topic fails alone.").
			Optional().
			Example(`${! meta("kafka_partition") }`),
		service.NewStringAnnotatedEnumField(kfoFieldPartitioner, kfoPartitioners).
			Description("How the partition of a record is chosen. Unset: `murmur2_hash`.").
			Optional().
			Advanced(),
		service.NewInterpolatedStringField(kfoFieldTimestampMs).
			Description("The record's timestamp, in milliseconds since the Unix epoch. Unset: the time the record is produced. A message whose value is not an integer fails alone.").
			Optional().
			Example(`${! timestamp_unix_milli() }`).
			Example(`${! meta("kafka_timestamp_ms") }`).
			Advanced(),
		service.NewStringAnnotatedEnumField(kfoFieldAcks, map[string]string{
			kfoAcksAll: "Every in-sync replica has the record (acks=-1). Required by `idempotent_write`.",
			"leader":   "The partition's leader has it (acks=1): a record is lost if the leader fails before the replicas copy it.",
			"none":     "No acknowledgement (acks=0): a message is acknowledged once sent, whether the broker stored it or not.",
		}).
			Description("What the broker confirms before a record counts as written, and so before its message is acknowledged. Anything but `all` needs `idempotent_write: false` and weakens the output's guarantee (see Delivery guarantee).").
			Default(kfoAcksAll).
			Advanced(),
		service.NewBoolField(kfoFieldAutoTopicCreation).
			Description("Whether the broker may create a topic that does not exist when the output asks for its metadata (if the broker allows it too). With `false`, a static topic that does not exist fails `Connect` with its name, and a record for a missing interpolated topic fails its message.").
			Default(true).
			Advanced(),
		service.NewStringField(kfoFieldBrokerWriteMax).
			Description("Largest write to one broker connection (Kafka's `socket.request.max.bytes`); at least `max_message_bytes`.").
			Default("100MiB").
			Example("128MB").
			Advanced(),
		service.NewIntField(kfoFieldMaxBufferedRecords).
			Description("Records the client holds before a produce waits for room.").
			Default(10000).
			Advanced(),
		service.NewStringField(kfoFieldMaxBufferedBytes).
			Description("Bytes of records the client holds before a produce waits for room; `0` for no byte limit (only `max_buffered_records`).").
			Default("0").
			Example("256MB").
			Advanced(),
		service.NewIntField(kfoFieldMaxInFlightReqs).
			Description("Produce requests in flight per broker. Applies only with `idempotent_write: false` (more than 1 may then reorder records); the idempotent producer keeps the protocol's own limit and ignores it.").
			Default(1).
			Advanced(),
		service.NewDurationField(kfoFieldDeliveryTimeout).
			Description("Longest a record may wait in the client, retries included, before it fails (Kafka's `delivery.timeout.ms`); `0s` for none, leaving `timeout` to bound the wait. With `idempotent_write` it is enforced only where failing the record cannot break the sequence.").
			Default("0s").
			Advanced(),
		service.NewIntField(kfoFieldRecordRetries).
			Description("Times a record is retried before it fails; `0` for no limit (`timeout` still bounds the wait). With `idempotent_write` it is enforced only where failing the record cannot break the sequence.").
			Default(0).
			Advanced(),
	}
}

// kfoProducer is the parsed producer settings.
type kfoProducer struct {
	partition   *service.InterpolatedString // nil unless partitioner is manual
	timestampMs *service.InterpolatedString // nil: the produce time
	autoCreate  bool
	opts        []kgo.Opt
}

// parseKfoProducer reads the producer settings and checks the combinations the client would
// refuse at start (or silently ignore), so that they fail with the field to change.
func parseKfoProducer(conf *service.ParsedConfig, idempotent bool, maxMessageBytes int) (*kfoProducer, error) {
	p := &kfoProducer{}
	var err error
	partitioner := ""
	if conf.Contains(kfoFieldPartitioner) {
		if partitioner, err = conf.FieldString(kfoFieldPartitioner); err != nil {
			return nil, err
		}
	}
	hasPartition := conf.Contains(kfoFieldPartition)
	switch {
	case partitioner == kfoPartitionerManual && !hasPartition:
		return nil, fmt.Errorf("field %s: manual needs the field %s, the partition of each message", kfoFieldPartitioner, kfoFieldPartition)
	case partitioner != kfoPartitionerManual && hasPartition:
		return nil, fmt.Errorf("field %s: applies only with %s: manual (the partitioner chooses the partition otherwise)", kfoFieldPartition, kfoFieldPartitioner)
	}
	if hasPartition {
		if p.partition, err = conf.FieldInterpolatedString(kfoFieldPartition); err != nil {
			return nil, err
		}
	}
	switch partitioner {
	case "", "murmur2_hash":
		// The client's default partitioner is this one.
	case "round_robin":
		p.opts = append(p.opts, kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	case "least_backup":
		p.opts = append(p.opts, kgo.RecordPartitioner(kgo.LeastBackupPartitioner()))
	case kfoPartitionerManual:
		p.opts = append(p.opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	default:
		return nil, fmt.Errorf("field %s: %q is not one of murmur2_hash, round_robin, least_backup, manual", kfoFieldPartitioner, partitioner)
	}
	if conf.Contains(kfoFieldTimestampMs) {
		if p.timestampMs, err = conf.FieldInterpolatedString(kfoFieldTimestampMs); err != nil {
			return nil, err
		}
	}

	acksName, err := conf.FieldString(kfoFieldAcks)
	if err != nil {
		return nil, err
	}
	acks, ok := kfoAcks[acksName]
	if !ok {
		return nil, fmt.Errorf("field %s: %q is not one of all, leader, none", kfoFieldAcks, acksName)
	}
	if idempotent && acksName != kfoAcksAll {
		return nil, fmt.Errorf("field %s: %s needs %s: false (the idempotent producer needs acks from all in-sync replicas)", kfoFieldAcks, acksName, kfoFieldIdempotentWrite)
	}
	p.opts = append(p.opts, kgo.RequiredAcks(acks))

	if p.autoCreate, err = conf.FieldBool(kfoFieldAutoTopicCreation); err != nil {
		return nil, err
	}
	if p.autoCreate {
		p.opts = append(p.opts, kgo.AllowAutoTopicCreation())
	}

	writeMax, err := kfoByteSize(conf, kfoFieldBrokerWriteMax, 1<<10, 1<<30)
	if err != nil {
		return nil, err
	}
	if writeMax < maxMessageBytes {
		return nil, fmt.Errorf("field %s: %d bytes is less than %s (%d bytes): a record batch must fit one write", kfoFieldBrokerWriteMax, writeMax, kfoFieldMaxMessageBytes, maxMessageBytes)
	}
	p.opts = append(p.opts, kgo.BrokerMaxWriteBytes(int32(writeMax)))

	records, err := conf.FieldInt(kfoFieldMaxBufferedRecords)
	if err != nil {
		return nil, err
	}
	if records < 1 {
		return nil, fmt.Errorf("field %s: must be at least 1, got %d", kfoFieldMaxBufferedRecords, records)
	}
	p.opts = append(p.opts, kgo.MaxBufferedRecords(records))
	bufBytes, err := kfoByteSize(conf, kfoFieldMaxBufferedBytes, 0, 1<<40)
	if err != nil {
		return nil, err
	}
	if bufBytes > 0 {
		p.opts = append(p.opts, kgo.MaxBufferedBytes(bufBytes))
	}

	inflight, err := conf.FieldInt(kfoFieldMaxInFlightReqs)
	if err != nil {
		return nil, err
	}
	if inflight < 1 {
		return nil, fmt.Errorf("field %s: must be at least 1, got %d", kfoFieldMaxInFlightReqs, inflight)
	}
	// The client refuses the option with the idempotent producer, which has its own limit.
	if !idempotent {
		p.opts = append(p.opts, kgo.MaxProduceRequestsInflightPerBroker(inflight))
	}

	delivery, err := conf.FieldDuration(kfoFieldDeliveryTimeout)
	if err != nil {
		return nil, err
	}
	if delivery < 0 {
		return nil, fmt.Errorf("field %s: must not be negative, got %v", kfoFieldDeliveryTimeout, delivery)
	}
	if delivery > 0 {
		p.opts = append(p.opts, kgo.RecordDeliveryTimeout(delivery))
	}
	retries, err := conf.FieldInt(kfoFieldRecordRetries)
	if err != nil {
		return nil, err
	}
	if retries < 0 {
		return nil, fmt.Errorf("field %s: must not be negative (0 for no limit), got %d", kfoFieldRecordRetries, retries)
	}
	if retries > 0 {
		p.opts = append(p.opts, kgo.RecordRetries(retries))
	}
	return p, nil
}

// kfoByteSize reads a byte size such as "1MiB" or "0" within [lo, hi].
func kfoByteSize(conf *service.ParsedConfig, field string, lo, hi uint64) (int, error) {
	s, err := conf.FieldString(field)
	if err != nil {
		return 0, err
	}
	n, err := humanize.ParseBytes(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("field %s: %q is not a byte size between %s and %s (e.g. 1MiB)", field, s, humanize.IBytes(lo), humanize.IBytes(hi))
	}
	return int(n), nil
}

// route sets the record's partition and timestamp from the message i of the batch.
func (p *kfoProducer) route(rec *kgo.Record, partitions, timestamps *service.MessageBatchInterpolationExecutor, i int) error {
	if partitions != nil {
		s, err := partitions.TryString(i)
		if err != nil {
			return fmt.Errorf("kafka_franz: %s interpolation failed: %w", kfoFieldPartition, err)
		}
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil || n < 0 {
			return fmt.Errorf("kafka_franz: %s %q is not a partition number (an integer from 0)", kfoFieldPartition, s)
		}
		rec.Partition = int32(n)
	}
	if timestamps != nil {
		s, err := timestamps.TryString(i)
		if err != nil {
			return fmt.Errorf("kafka_franz: %s interpolation failed: %w", kfoFieldTimestampMs, err)
		}
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("kafka_franz: %s %q is not a time in milliseconds since the epoch", kfoFieldTimestampMs, s)
		}
		rec.Timestamp = time.UnixMilli(ms)
	}
	return nil
}

// checkTopicExists fails Connect when the static topic does not exist and the output may not
// have it created, naming the topic, instead of failing every record. Called with o.mu held.
func (o *franzOutput) checkTopicExists(ctx context.Context) error {
	if o.producer.autoCreate || o.staticTopic == "" {
		return nil
	}
	topics, err := kadm.NewClient(o.client).ListTopics(ctx, o.staticTopic)
	if err != nil {
		return fmt.Errorf("kafka_franz: reading the metadata of topic %q: %w", o.staticTopic, err)
	}
	if td, ok := topics[o.staticTopic]; !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
		return fmt.Errorf("kafka_franz: topic %q does not exist and %s is false: create the topic, or let the output create it", o.staticTopic, kfoFieldAutoTopicCreation)
	}
	return nil
}

// produceError explains a record the broker did not take, with what to do where it is known.
func (o *franzOutput) produceError(r kgo.ProduceResult) error {
	err := fmt.Errorf("kafka_franz: producing to topic %q failed: %w", r.Record.Topic, r.Err)
	if errors.Is(r.Err, kerr.UnknownTopicOrPartition) && !o.producer.autoCreate {
		err = fmt.Errorf("%w (the topic does not exist and %s is false: create it)", err, kfoFieldAutoTopicCreation)
	}
	return err
}

// kfoLintRule is the output's lint rule: the value checks of speclint, and the combinations
// of producer settings the client refuses, so that `ingestor lint` names them.
func kfoLintRule() string {
	checks := append(speclint.Durations(kfoFieldTimeout, kfoFieldDeliveryTimeout), speclint.Batching(kfoFieldBatching)...)
	checks = append(checks, speclint.NonNegative(kfoFieldRecordRetries)...)
	checks = append(checks, speclint.Positive(kfoFieldMaxBufferedRecords, kfoFieldMaxInFlightReqs)...)
	checks = append(checks,
		`if this.`+kfoFieldIdempotentWrite+`.or(true) == true && this.`+kfoFieldAcks+`.or("all") != "all" { "field `+kfoFieldAcks+`: %v needs `+kfoFieldIdempotentWrite+`: false (the idempotent producer needs acks from all in-sync replicas)".format(this.`+kfoFieldAcks+`) }`,
		`if this.`+kfoFieldPartitioner+`.or("") == "manual" && this.`+kfoFieldPartition+`.or("") == "" { "field `+kfoFieldPartitioner+`: manual needs the field `+kfoFieldPartition+`" }`,
	)
	return speclint.Rule(append(checks, kafkaclient.TuningLint()...)...)
}
