package processors

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/preservarium/iot-ingestor/internal/meta"
)

const (
	ierFieldService = "service"
	ierFieldExtra   = "extra_keys"

	ierMetricRecords = "iot_error_records"
)

func iotErrorRecordSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Summary("Turns a failed message into the IoT pipeline's shared error record (the iot_errors format).").
		Description(`
Replaces the message with one JSON object in the format every stage of the pipeline publishes on
`+"`iot_errors`"+`:

`+"```json"+`
{"request_id": "...", "timestamp": "2026-11-27T10:15:02.118000+00:00", "service": "ingestor",
 "error": "validation: labels has 2 entries, values has 3", "original_message": {...},
 "kind": "validation", "source": {"topic": "iot_validated_data", "partition": 3, "offset": 18211, "timestamp_ms": 1764238502118}}
`+"```"+`

- `+"`error`"+` is the message's processing error (a mapping failure, e.g. from
  `+"`reading_to_point`"+`) or, for a message an output rejected and a `+"`fallback`"+`
  passed on, its `+"`fallback_error`"+` metadata. It is one line and starts with its kind.
- `+"`kind`"+` is the error's own prefix when it is `+"`decode`, `validation` or `write`"+`; otherwise
  `+"`validation`"+` for a processing error and `+"`write`"+` for an output's rejection.
- `+"`original_message`"+` is the `+"`iot_original`"+` metadata that `+"`reading_to_point`"+` keeps (the
  input as valid JSON, number literals exactly as written), or `+"`{\"raw\": <content as text>}`"+`.
- `+"`request_id`"+` is the `+"`iot_request_id`"+` metadata, else the `+"`kafka_key`"+`, else empty.
- `+"`source`"+` comes from the `+"`kafka_*`"+` metadata of the Kafka input, or the `+"`path`"+` of a file input;
  `+"`iot_source_topic`, `iot_source_partition`, `iot_source_offset` or `iot_source_path`"+` come first when set
  (the redrive names the reading's own origin with them).

The metadata `+"`iot_request_id`"+` (the record's Kafka key) and `+"`iot_error_kind`"+` are set on the result, the
processing error is cleared, and the counter `+"`iot_error_records`"+` (label `+"`kind`"+`) counts the records built.`).
		Field(service.NewStringField(ierFieldService).
			Description("The `service` key of the record: which stage reports the error.").
			Default("ingestor").Example("ingestor")).
		Field(service.NewStringMapField(ierFieldExtra).
			Description("Extra record keys, each set to the JSON value held in the named metadata key (skipped when the metadata is absent or not JSON). The redrive pipeline adds `redrive_count` this way.").
			Default(map[string]any{}).
			Example(map[string]any{"redrive_count": "redrive_count", "redriven_from": "redriven_from"}).
			Advanced()).
		Example("The ingestor's error branch", "Build the record before producing it to the error topic.", `
output_resources:
  - label: error_topic
    kafka_franz:
      seed_brokers: [ localhost:9092 ]
      topic: iot_errors
      key: '${! meta("iot_request_id") }'
    processors:
      - iot_error_record: {}
`)
}

func init() {
	service.MustRegisterProcessor("iot_error_record", iotErrorRecordSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.Processor, error) {
			return newErrorRecordBuilder(conf, mgr)
		})
}

// errorRecordBuilder builds the shared error record of a failed message.
type errorRecordBuilder struct {
	service string
	extra   []extraKey
	records *service.MetricCounter
	now     func() time.Time
}

type extraKey struct{ key, meta string }

func newErrorRecordBuilder(conf *service.ParsedConfig, mgr *service.Resources) (*errorRecordBuilder, error) {
	svc, err := conf.FieldString(ierFieldService)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(svc) == "" {
		return nil, fmt.Errorf("field %s: must name the reporting stage, e.g. ingestor", ierFieldService)
	}
	extra, err := conf.FieldStringMap(ierFieldExtra)
	if err != nil {
		return nil, err
	}
	b := &errorRecordBuilder{service: svc, records: mgr.Metrics().NewCounter(ierMetricRecords, "kind"), now: time.Now}
	for k, m := range extra {
		switch k {
		case "request_id", "timestamp", "service", "error", "original_message", "kind", "source":
			return nil, fmt.Errorf("field %s: %q is a key of the shared record and cannot be replaced", ierFieldExtra, k)
		}
		b.extra = append(b.extra, extraKey{k, m})
	}
	sort.Slice(b.extra, func(i, j int) bool { return b.extra[i].key < b.extra[j].key })
	return b, nil
}

// errorRecord is the shared format, keys in the contract's order.
type errorRecord struct {
	RequestID       string          `json:"request_id"`
	Timestamp       string          `json:"timestamp"`
	Service         string          `json:"service"`
	Error           string          `json:"error"`
	OriginalMessage json.RawMessage `json:"original_message"`
	Kind            meta.Kind       `json:"kind"`
	Source          map[string]any  `json:"source,omitempty"`
}

func (b *errorRecordBuilder) Process(_ context.Context, msg *service.Message) (service.MessageBatch, error) {
	reason, fromProcessing := failureOf(msg)
	kind, reason := kindOf(reason, fromProcessing)
	rec := errorRecord{
		RequestID:       requestIDOf(msg),
		Timestamp:       b.now().UTC().Format("2006-01-02T15:04:05.000000+00:00"),
		Service:         b.service,
		Error:           reason,
		OriginalMessage: originalOf(msg),
		Kind:            kind,
		Source:          sourceOf(msg),
	}
	out, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("iot_error_record: encoding the record: %w", err)
	}
	if len(b.extra) > 0 {
		out = appendExtra(out, msg, b.extra)
	}
	res := msg.Copy()
	res.SetError(nil)
	res.SetBytes(out)
	res.MetaSetMut(meta.RequestID, rec.RequestID)
	res.MetaSetMut(meta.ErrorKind, string(kind))
	b.records.Incr(1, string(kind))
	return service.MessageBatch{res}, nil
}

// failureOf is the message's failure and whether it came from processing (as opposed to an
// output's rejection passed on by a fallback).
func failureOf(msg *service.Message) (string, bool) {
	if err := msg.GetError(); err != nil {
		return err.Error(), true
	}
	if v, ok := msg.MetaGet(meta.FallbackError); ok && v != "" {
		return v, false
	}
	return "", false
}

// kindOf returns the record's kind and its one-line error text, starting "<kind>: ".
func kindOf(reason string, fromProcessing bool) (meta.Kind, string) {
	reason = strings.Join(strings.Fields(strings.ReplaceAll(reason, "\r", " ")), " ")
	if k, ok := meta.KindOfText(reason); ok {
		return k, reason
	}
	kind := meta.KindWrite
	if fromProcessing {
		kind = meta.KindValidation
	}
	if reason == "" {
		reason = "unknown failure"
	}
	return kind, string(kind) + ": " + reason
}

func requestIDOf(msg *service.Message) string {
	if v, ok := msg.MetaGet(meta.RequestID); ok {
		return v
	}
	if v, ok := meta.RecordKey(msg); ok {
		return strings.ToValidUTF8(v, string(utf8.RuneError))
	}
	return ""
}

// originalOf is iot_original when it holds a JSON object, else {"raw": content}.
func originalOf(msg *service.Message) json.RawMessage {
	if v, ok := msg.MetaGet(meta.Original); ok {
		t := strings.TrimSpace(v)
		if strings.HasPrefix(t, "{") && json.Valid([]byte(t)) {
			return json.RawMessage(t)
		}
	}
	content, _ := msg.AsBytes()
	raw, _ := json.Marshal(map[string]string{"raw": strings.ToValidUTF8(string(content), string(utf8.RuneError))})
	return raw
}

func sourceOf(msg *service.Message) map[string]any {
	// A redrive keeps the consumed record's kafka_* metadata and names the reading's own
	// origin with iot_source_*: that origin comes first.
	if src := kafkaSourceOf(msg, meta.SourceTopic, meta.SourcePartition, meta.SourceOffset, meta.SourceTimestampMs); src != nil {
		return src
	}
	if path, ok := msg.MetaGet(meta.SourcePath); ok {
		return map[string]any{"path": path}
	}
	if src := kafkaSourceOf(msg, meta.KafkaTopic, meta.KafkaPartition, meta.KafkaOffset, meta.KafkaTimestampMs); src != nil {
		return src
	}
	if path, ok := msg.MetaGet(meta.Path); ok {
		return map[string]any{"path": path}
	}
	return nil
}

// kafkaSourceOf is the source named by the topic, partition, offset and record-time keys; nil
// without a topic.
func kafkaSourceOf(msg *service.Message, topicKey, partitionKey, offsetKey, timeKey string) map[string]any {
	topic, ok := msg.MetaGet(topicKey)
	if !ok {
		return nil
	}
	src := map[string]any{"topic": topic}
	for _, k := range []struct{ meta, key string }{
		{partitionKey, "partition"}, {offsetKey, "offset"}, {timeKey, "timestamp_ms"},
	} {
		if n, ok := meta.Int(msg, k.meta); ok {
			src[k.key] = n
		}
	}
	return src
}

// appendExtra adds the extra keys before the record's closing brace.
func appendExtra(rec []byte, msg *service.Message, extra []extraKey) []byte {
	var buf bytes.Buffer
	buf.Write(rec[:len(rec)-1])
	for _, e := range extra {
		v, ok := msg.MetaGet(e.meta)
		if !ok || !json.Valid([]byte(v)) {
			continue
		}
		k, _ := json.Marshal(e.key)
		buf.WriteByte(',')
		buf.Write(k)
		buf.WriteByte(':')
		buf.WriteString(strings.TrimSpace(v))
	}
	buf.WriteByte('}')
	return buf.Bytes()
}

func (b *errorRecordBuilder) Close(context.Context) error { return nil }
