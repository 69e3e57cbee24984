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
	"unsafe"

	"github.com/dustin/go-humanize"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/preservarium/iot-ingestor/internal/errrecord"
	"github.com/preservarium/iot-ingestor/internal/meta"
)

const (
	ierFieldService        = "service"
	ierFieldExtra          = "extra_keys"
	ierFieldMaxRecordBytes = "max_record_bytes"

	// A record's request_id (also its Kafka key) and error text are cut to these sizes so that
	// whatever a poison reading carries, the record's own keys leave room under the size limit.
	ierMaxRequestIDBytes = 256
	ierMaxErrorBytes     = 2048
	// The smallest size limit accepted: the record's own keys at their caps, its key and framing.
	ierMinRecordBytes = 8 << 10
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
- `+"`request_id`"+` is the `+"`iot_request_id`"+` metadata, else the `+"`kafka_key`"+`, else empty; cut to
  256 bytes (a request id is a 36-character UUID) and `+"`error`"+` to 2,048, so that a poison reading
  cannot make the record's own keys outgrow the size limit.

### Size

A record always fits the error topic: with its key (the request id) and the producer's framing
(100 bytes) it takes at most `+"`max_record_bytes`"+`, which is set from the same variable as the error
output's `+"`max_message_bytes`"+`. Text is written without HTML escaping (`+"`<`"+` stays one byte). When
the original does not fit, `+"`original_message`"+` is `+"`{\"raw\": \"<as many of the original's leading bytes as fit, as text>\"}`"+`
(valid UTF-8, cut on a character boundary) and the record gains `+"`\"original_truncated\": true`"+` and
`+"`\"original_bytes\": <the original's size>`"+`. The `+"`kafka_franz`"+` output cuts a record further when the
topic's own `+"`max.message.bytes`"+`, which it reads when it connects, is smaller, or when it writes
headers.
- `+"`source`"+` comes from the `+"`kafka_*`"+` metadata of the Kafka input, or the `+"`path`"+` of a file input;
  `+"`iot_source_topic`, `iot_source_partition`, `iot_source_offset` or `iot_source_path`"+` come first when set
  (the redrive names the reading's own origin with them).

The metadata `+"`iot_request_id`"+` (the record's Kafka key) and `+"`iot_error_kind`"+` are set on the result, the
processing error is cleared. The `+"`kafka_franz`"+` output counts the records the broker acknowledged in
`+"`iot_error_records`"+` (label `+"`kind`"+`), from `+"`iot_error_kind`"+`.`).
		Field(service.NewStringField(ierFieldService).
			Description("The `service` key of the record: which stage reports the error.").
			Default("ingestor").Example("ingestor")).
		Field(service.NewStringMapField(ierFieldExtra).
			Description("Extra record keys, each set to the JSON value held in the named metadata key (skipped when the metadata is absent or not JSON). The redrive pipeline adds `redrive_count` this way.").
			Default(map[string]any{}).
			Example(map[string]any{"redrive_count": "redrive_count", "redriven_from": "redriven_from"}).
			Advanced()).
		Field(service.NewStringField(ierFieldMaxRecordBytes).
			Description("Largest produced record (value, key and the producer's 100 bytes of framing): the error output's `max_message_bytes`, from the same variable. A bigger record's original is cut (see Size). At least 8KiB.").
			Default("1MiB").Example("${KAFKA_ERROR_MAX_MESSAGE_BYTES:1MiB}").Example("4MiB")).
		Example("The ingestor's error branch", "Build the record before producing it to the error topic.", `
output_resources:
  - label: error_topic
    kafka_franz:
      seed_brokers: [ localhost:9092 ]
      topic: iot_errors
      key: '${! meta("iot_request_id") }'
      max_message_bytes: ${KAFKA_ERROR_MAX_MESSAGE_BYTES:1MiB}
    processors:
      - iot_error_record:
          max_record_bytes: ${KAFKA_ERROR_MAX_MESSAGE_BYTES:1MiB}
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
	service  string
	extra    []extraKey
	maxBytes int
	now      func() time.Time
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
	sizeText, err := conf.FieldString(ierFieldMaxRecordBytes)
	if err != nil {
		return nil, err
	}
	size, err := humanize.ParseBytes(sizeText)
	if err != nil || size < ierMinRecordBytes || size > 1<<30 {
		return nil, fmt.Errorf("field %s: %q is not a byte size between 8KiB and 1GiB (e.g. 1MiB, the error output's max_message_bytes)", ierFieldMaxRecordBytes, sizeText)
	}
	b := &errorRecordBuilder{service: svc, maxBytes: int(size), now: time.Now}
	for k, m := range extra {
		switch k {
		case "request_id", "timestamp", "service", "error", "original_message", "kind", "source",
			errrecord.KeyOriginalTruncated, errrecord.KeyOriginalBytes:
			return nil, fmt.Errorf("field %s: %q is a key of the shared record and cannot be replaced", ierFieldExtra, k)
		}
		b.extra = append(b.extra, extraKey{k, m})
	}
	sort.Slice(b.extra, func(i, j int) bool { return b.extra[i].key < b.extra[j].key })
	return b, nil
}

// errorRecord is the shared format, keys in the contract's order: the keys before
// original_message, which is written as it is, and those after it.
type errorRecord struct {
	RequestID string `json:"request_id"`
	Timestamp string `json:"timestamp"`
	Service   string `json:"service"`
	Error     string `json:"error"`
}

type errorRecordTail struct {
	Kind   meta.Kind      `json:"kind"`
	Source map[string]any `json:"source,omitempty"`
}

func (b *errorRecordBuilder) Process(_ context.Context, msg *service.Message) (service.MessageBatch, error) {
	reason, fromProcessing := failureOf(msg)
	kind, reason := kindOf(reason, fromProcessing)
	original, input := originalOf(msg)
	rec := errorRecord{
		RequestID: cutText(requestIDOf(msg), ierMaxRequestIDBytes),
		Timestamp: b.now().UTC().Format("2006-01-02T15:04:05.000000+00:00"),
		Service:   b.service,
		Error:     cutText(reason, ierMaxErrorBytes),
	}
	var buf bytes.Buffer
	buf.Grow(len(original) + 512)
	enc := json.NewEncoder(&buf)
	// HTML escaping would write each <, > and & as six bytes.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(rec); err != nil {
		return nil, fmt.Errorf("iot_error_record: encoding the record: %w", err)
	}
	// The original goes in as it is (valid JSON, checked): re-encoding would compact it, and a
	// cut record's leading bytes would no longer be the input's.
	buf.Truncate(bytes.LastIndexByte(buf.Bytes(), '}'))
	buf.WriteString(`,"original_message":`)
	buf.Write(original)
	head := buf.Len()
	if err := enc.Encode(errorRecordTail{Kind: kind, Source: sourceOf(msg)}); err != nil {
		return nil, fmt.Errorf("iot_error_record: encoding the record: %w", err)
	}
	out := buf.Bytes()
	out[head] = ',' // the tail's opening brace
	out = bytes.TrimSuffix(out, []byte("\n"))
	if len(b.extra) > 0 {
		out = appendExtra(out, msg, b.extra)
	}
	// The record's Kafka key is its request id; the error output writes no headers.
	if budget := errrecord.Budget(b.maxBytes, len(rec.RequestID), 0, 0); len(out) > budget {
		fitted, err := errrecord.Fit(out, budget, input)
		if err != nil {
			return nil, fmt.Errorf("iot_error_record: the record does not fit %s %d: %w", ierFieldMaxRecordBytes, b.maxBytes, err)
		}
		out = fitted
	}
	res := msg.Copy()
	res.SetError(nil)
	res.SetBytes(out)
	res.MetaSetMut(meta.RequestID, rec.RequestID)
	res.MetaSetMut(meta.ErrorKind, string(kind))
	return service.MessageBatch{res}, nil
}

// cutText is s cut to at most max bytes on a rune boundary.
func cutText(s string, max int) string {
	if len(s) <= max {
		return s
	}
	for max > 0 && !utf8.RuneStart(s[max]) {
		max--
	}
	return s[:max]
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

// originalOf is the record's original_message, iot_original when it holds a JSON object, else
// {"raw": content}, and the input as received whose leading bytes a cut record keeps.
func originalOf(msg *service.Message) (json.RawMessage, []byte) {
	if v, ok := msg.MetaGet(meta.Original); ok {
		// Read in place: the metadata string is never written to, and the original of a
		// 1 MB reading copied for the check and for the cut cost two more megabytes per record.
		t := s2b(strings.TrimSpace(v))
		if len(t) > 0 && t[0] == '{' && json.Valid(t) {
			return t, t
		}
	}
	content, _ := msg.AsBytes()
	raw := append([]byte(`{"raw":"`), nil...)
	raw, _ = errrecord.AppendText(raw, content, -1)
	return append(raw, '"', '}'), content
}

// s2b views s as bytes without copying; the result must never be written to.
func s2b(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

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
		buf.WriteByte(',')
		buf.Write(errrecord.AppendString(nil, e.key))
		buf.WriteByte(':')
		buf.WriteString(strings.TrimSpace(v))
	}
	buf.WriteByte('}')
	return buf.Bytes()
}

func (b *errorRecordBuilder) Close(context.Context) error { return nil }
