package meta

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"
)

func TestIntReadsTypedAndTextValues(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want int64
		ok   bool
	}{
		{42, 42, true}, {int64(1764238502118), 1764238502118, true}, {int32(-3), -3, true},
		{uint64(7), 7, true}, {float64(9), 9, true}, {9.5, 0, false},
		{"1764238502118", 1764238502118, true}, {" 12 ", 12, true}, {"12.0", 12, true},
		{"x", 0, false}, {[]byte("5"), 5, true}, {json.Number("77"), 77, true}, {true, 0, false},
	} {
		msg := service.NewMessage(nil)
		msg.MetaSetMut(KafkaOffset, tc.v)
		got, ok := Int(msg, KafkaOffset)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Int(%#v) = %d, %v; want %d, %v", tc.v, got, ok, tc.want, tc.ok)
		}
	}
	if _, ok := Int(service.NewMessage(nil), KafkaOffset); ok {
		t.Error("Int of an absent key reported a value")
	}
}

func TestRecordTimeAndKeyPreferTheReadingsOwnSource(t *testing.T) {
	msg := service.NewMessage(nil)
	msg.MetaSetMut(KafkaTimestampMs, int64(2000))
	msg.MetaSetMut(KafkaKey, "consumed-key")
	if ms, _ := RecordTimeMs(msg); ms != 2000 {
		t.Errorf("RecordTimeMs = %d, want the consumed record's 2000", ms)
	}
	if k, _ := RecordKey(msg); k != "consumed-key" {
		t.Errorf("RecordKey = %q", k)
	}
	msg.MetaSetMut(SourceTimestampMs, "1000")
	msg.MetaSetMut(SourceKey, "original-key")
	if ms, _ := RecordTimeMs(msg); ms != 1000 {
		t.Errorf("RecordTimeMs = %d, want the source's 1000", ms)
	}
	if k, _ := RecordKey(msg); k != "original-key" {
		t.Errorf("RecordKey = %q, want the source's", k)
	}
	empty := service.NewMessage(nil)
	empty.MetaSetMut(KafkaKey, "")
	if _, ok := RecordKey(empty); ok {
		t.Error("an empty key counts as none")
	}
}

func TestReservedKeys(t *testing.T) {
	for key, want := range map[string]bool{
		KafkaTopic: true, KafkaOffset: true, "kafka_anything": true, SourceTopic: true, RequestID: true,
		FallbackError: true, Path: true, "trace_id": false, "Kafka_topic": false, "content-type": false,
	} {
		if got := Reserved(key); got != want {
			t.Errorf("Reserved(%q) = %v, want %v", key, got, want)
		}
	}
}

func TestKindOf(t *testing.T) {
	wrapped := fmt.Errorf("batch: %w", ValidationError("labels has 2 entries, values has 3"))
	if k, ok := KindOf(wrapped); !ok || k != KindValidation {
		t.Errorf("KindOf(wrapped) = %q, %v", k, ok)
	}
	if got := WriteError("rejected by InfluxDB (400): bad").Error(); got != "write: rejected by InfluxDB (400): bad" {
		t.Errorf("Error() = %q", got)
	}
	for text, want := range map[string]Kind{
		"decode: not JSON": KindDecode, "write: rejected": KindWrite, "validation: x": KindValidation,
		"decode:x": "", "writer: x": "", "something else": "", "write: ": KindWrite,
	} {
		k, ok := KindOf(errors.New(text))
		if k != want || ok != (want != "") {
			t.Errorf("KindOf(%q) = %q, %v; want %q", text, k, ok, want)
		}
	}
	if _, ok := KindOf(nil); ok {
		t.Error("KindOf(nil) has a kind")
	}
}
