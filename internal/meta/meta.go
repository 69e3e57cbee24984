// Package meta is the metadata contract between the ingestor's components: the name of every
// message metadata key one component writes and another reads, the type it holds, and typed
// accessors for reading it back. A key is declared here once; components never spell one out.
//
// Who writes and who reads each key is in the README ("Message metadata"). Values are stored
// typed (MetaSetMut): integers as int or int64, text as string. The accessors also accept text,
// because a Bloblang mapping (the redrive, a test) may have written a number as a string.
package meta

import (
	"strconv"
	"strings"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// Keys written by the kafka_franz input for every record it consumes.
const (
	// KafkaKey is the record key (string; empty for a record without key).
	KafkaKey = "kafka_key"
	// KafkaTopic is the record's topic (string).
	KafkaTopic = "kafka_topic"
	// KafkaPartition is the record's partition (int).
	KafkaPartition = "kafka_partition"
	// KafkaOffset is the record's offset (int).
	KafkaOffset = "kafka_offset"
	// KafkaTimestampUnix is the record's time in seconds since the epoch (int64).
	KafkaTimestampUnix = "kafka_timestamp_unix"
	// KafkaTimestampMs is the record's time in milliseconds since the epoch (int64).
	KafkaTimestampMs = "kafka_timestamp_ms"
	// KafkaLag is the partition's high watermark at the fetch minus the record's offset minus 1:
	// the records after it not yet consumed (int64), as in Redpanda Connect.
	KafkaLag = "kafka_lag"
	// KafkaTombstoneMessage is true when the record's value is null (bool).
	KafkaTombstoneMessage = "kafka_tombstone_message"
)

// Keys that name where a reading came from when the consumed record is not the reading's own
// record: the redrive consumes error records and names each reading's original source here,
// so that kafka_* keep meaning the consumed record (the nack replayer traces messages by them).
const (
	// SourceTopic, SourcePartition and SourceOffset are the reading's original record (string,
	// int, int).
	SourceTopic     = "iot_source_topic"
	SourcePartition = "iot_source_partition"
	SourceOffset    = "iot_source_offset"
	// SourceTimestampMs is the original record's time in milliseconds (int64): it places a
	// reading without a timestamp, and is the error record's source.timestamp_ms.
	SourceTimestampMs = "iot_source_timestamp_ms"
	// SourceKey is the original record's key (string): the request id of last resort.
	SourceKey = "iot_source_key"
	// SourcePath is the file a reading was read from, for a source that was a file (string).
	SourcePath = "iot_source_path"
)

// Keys written by reading_to_point and read by the error branch.
const (
	// Original is the reading as received, as JSON object text with Python's non-finite
	// tokens replaced by null (string); absent when the input was not a JSON object.
	Original = "iot_original"
	// RequestID is the reading's request_id when it is a non-empty string (string).
	RequestID = "iot_request_id"
)

// Keys written by iot_error_record on the record it builds.
const (
	// ErrorKind is the record's Kind (string).
	ErrorKind = "iot_error_kind"
)

// Keys written by the engine or its own inputs.
const (
	// FallbackError is the engine's fallback output's text of the error with which an earlier
	// tier failed the message (string).
	FallbackError = "fallback_error"
	// Path is the engine's file input's path of the file read (string).
	Path = "path"
)

// Reserved reports whether key is one the pipeline sets itself: a Kafka record header of that
// name must not replace it, or a record could forge its own source.
func Reserved(key string) bool {
	return strings.HasPrefix(key, "kafka_") || strings.HasPrefix(key, "iot_") ||
		key == FallbackError || key == Path
}

// Int reads an integer value, stored typed or as text.
func Int(msg *service.Message, key string) (int64, bool) {
	v, ok := msg.MetaGetMut(key)
	if !ok {
		return 0, false
	}
	return intOf(v)
}

func intOf(v any) (int64, bool) {
	switch n := v.(type) {
	case int:
		return int64(n), true
	case int64:
		return n, true
	case int32:
		return int64(n), true
	case uint64:
		if n > 1<<62 {
			return 0, false
		}
		return int64(n), true
	case float64:
		if n != float64(int64(n)) {
			return 0, false
		}
		return int64(n), true
	case string:
		return intOfText(n)
	case []byte:
		return intOfText(string(n))
	case interface{ String() string }: // json.Number, from a mapping that copied a JSON value
		return intOfText(n.String())
	}
	return 0, false
}

func intOfText(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i, true
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f == float64(int64(f)) {
		return int64(f), true
	}
	return 0, false
}

// Text reads a text value (string or bytes); numbers and other types are not text.
func Text(msg *service.Message, key string) (string, bool) {
	v, ok := msg.MetaGetMut(key)
	if !ok {
		return "", false
	}
	switch t := v.(type) {
	case string:
		return t, true
	case []byte:
		return string(t), true
	}
	return "", false
}

// RecordTimeMs is the time of the reading's own Kafka record: SourceTimestampMs when a redrive
// set it, else KafkaTimestampMs.
func RecordTimeMs(msg *service.Message) (int64, bool) {
	if ms, ok := Int(msg, SourceTimestampMs); ok {
		return ms, true
	}
	return Int(msg, KafkaTimestampMs)
}

// RecordKey is the key of the reading's own Kafka record: SourceKey when a redrive set it, else
// KafkaKey; false when empty or absent.
func RecordKey(msg *service.Message) (string, bool) {
	if k, ok := Text(msg, SourceKey); ok && k != "" {
		return k, true
	}
	k, ok := Text(msg, KafkaKey)
	return k, ok && k != ""
}

// KafkaRecord is where a message came from in Kafka.
type KafkaRecord struct {
	Topic     string
	Partition int32
	Offset    int64
}

// ConsumedRecord is the Kafka record the message was consumed from (the kafka_* keys), and
// false when it did not come from Kafka.
func ConsumedRecord(msg *service.Message) (KafkaRecord, bool) {
	topic, ok := Text(msg, KafkaTopic)
	if !ok {
		return KafkaRecord{}, false
	}
	p, okP := Int(msg, KafkaPartition)
	o, okO := Int(msg, KafkaOffset)
	return KafkaRecord{Topic: topic, Partition: int32(p), Offset: o}, okP && okO
}
