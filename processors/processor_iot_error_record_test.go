package processors

import (
	"context"
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
)

func newTestErrorRecordBuilder(t *testing.T, yaml string) *errorRecordBuilder {
	t.Helper()
	conf, err := iotErrorRecordSpec().ParseYAML(yaml, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newErrorRecordBuilder(conf, service.MockResources())
	if err != nil {
		t.Fatal(err)
	}
	b.now = func() time.Time { return time.Date(2026, 11, 27, 10, 15, 2, 118000000, time.FixedZone("CET", 3600)) }
	return b
}

func TestErrorRecord(t *testing.T) {
	cases := []struct {
		name    string
		content string
		meta    map[string]any
		err     error
		want    string
		kind    string
	}{
		{
			name:    "mapping failure from Kafka, literals kept as written",
			content: `{"device_id": "2261001", "values": [1.0, 2.0, 3.0], "labels": ["a", "b"]}`,
			meta: map[string]any{
				"iot_original":   `{"request_id": "4bcf", "device_id": "2261001", "values": [1.0, 2.0, 3.0], "labels": ["a", "b"]}`,
				"iot_request_id": "4bcf", "kafka_key": "2261001", "kafka_topic": "iot_validated_data",
				"kafka_partition": 3, "kafka_offset": int64(18211), "kafka_timestamp_ms": int64(1764238502118),
			},
			err:  errors.New("validation: labels has 2 entries, values has 3"),
			want: `{"request_id":"4bcf","timestamp":"2026-11-27T09:15:02.118000+00:00","service":"ingestor","error":"validation: labels has 2 entries, values has 3","original_message":{"request_id": "4bcf", "device_id": "2261001", "values": [1.0, 2.0, 3.0], "labels": ["a", "b"]},"kind":"validation","source":{"offset":18211,"partition":3,"timestamp_ms":1764238502118,"topic":"iot_validated_data"}}`,
			kind: "validation",
		},
		{
			name:    "not JSON: raw text, invalid UTF-8 replaced, key as request_id",
			content: "\xff\xfeoops",
			meta: map[string]any{
				"iot_original": `{"raw":"\ufffd\ufffdoops"}`, "kafka_key": "dev\xff1",
				"kafka_topic": "t", "kafka_partition": "0", "kafka_offset": "7", "kafka_timestamp_ms": "5",
			},
			err:  errors.New("decode: not JSON: invalid character"),
			want: `{"request_id":"dev` + "\ufffd" + `1","timestamp":"2026-11-27T09:15:02.118000+00:00","service":"ingestor","error":"decode: not JSON: invalid character","original_message":{"raw":"\ufffd\ufffdoops"},"kind":"decode","source":{"offset":7,"partition":0,"timestamp_ms":5,"topic":"t"}}`,
			kind: "decode",
		},
		{
			name:    "InfluxDB rejection passed on by a fallback, from a file",
			content: "m v=1i 1",
			meta: map[string]any{
				"iot_original": `{"device_id":"m","values":[1]}`, "iot_request_id": "", "path": "/dumps/a.jsonl",
				"fallback_error": "write: rejected by InfluxDB (400): field type conflict:\ninput field \"v\"",
			},
			want: `{"request_id":"","timestamp":"2026-11-27T09:15:02.118000+00:00","service":"ingestor","error":"write: rejected by InfluxDB (400): field type conflict: input field \"v\"","original_message":{"device_id":"m","values":[1]},"kind":"write","source":{"path":"/dumps/a.jsonl"}}`,
			kind: "write",
		},
		{
			name:    "an error without a known kind, no original kept, no source",
			content: `[1, 2]`,
			err:     errors.New("something else broke"),
			want:    `{"request_id":"","timestamp":"2026-11-27T09:15:02.118000+00:00","service":"ingestor","error":"validation: something else broke","original_message":{"raw":"[1, 2]"},"kind":"validation"}`,
			kind:    "validation",
		},
		{
			name:    "an output failure without a known kind",
			content: `x`,
			meta:    map[string]any{"fallback_error": "connection refused"},
			want:    `{"request_id":"","timestamp":"2026-11-27T09:15:02.118000+00:00","service":"ingestor","error":"write: connection refused","original_message":{"raw":"x"},"kind":"write"}`,
			kind:    "write",
		},
	}
	b := newTestErrorRecordBuilder(t, `{}`)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg := service.NewMessage([]byte(c.content))
			for k, v := range c.meta {
				msg.MetaSetMut(k, v)
			}
			if c.err != nil {
				msg.SetError(c.err)
			}
			out, err := b.Process(context.Background(), msg)
			if err != nil || len(out) != 1 {
				t.Fatalf("Process: %v, %d messages", err, len(out))
			}
			got, _ := out[0].AsBytes()
			if string(got) != c.want {
				t.Fatalf("record\n got %s\nwant %s", got, c.want)
			}
			if out[0].GetError() != nil {
				t.Errorf("the record still carries the processing error")
			}
			if k, _ := out[0].MetaGet("iot_error_kind"); k != c.kind {
				t.Errorf("iot_error_kind %q, want %q", k, c.kind)
			}
		})
	}
}

func TestErrorRecordExtraKeys(t *testing.T) {
	b := newTestErrorRecordBuilder(t, `extra_keys: {redrive_count: rc, redriven_from: rf, missing: nope, broken: bad}`)
	msg := service.NewMessage([]byte("x"))
	msg.SetError(errors.New("validation: bad labels"))
	msg.MetaSetMut("rc", "2")
	msg.MetaSetMut("rf", `{"topic":"iot_errors","partition":0,"offset":9}`)
	msg.MetaSetMut("bad", `{not json`)
	out, err := b.Process(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := out[0].AsBytes()
	want := `{"request_id":"","timestamp":"2026-11-27T09:15:02.118000+00:00","service":"ingestor","error":"validation: bad labels","original_message":{"raw":"x"},"kind":"validation","redrive_count":2,"redriven_from":{"topic":"iot_errors","partition":0,"offset":9}}`
	if string(got) != want {
		t.Fatalf("record\n got %s\nwant %s", got, want)
	}
}

func TestErrorRecordConfigErrors(t *testing.T) {
	for _, yaml := range []string{`service: ""`, `extra_keys: {kind: k}`, `extra_keys: {original_bytes: k}`, `max_record_bytes: 1KiB`, `max_record_bytes: lots`} {
		conf, err := iotErrorRecordSpec().ParseYAML(yaml, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := newErrorRecordBuilder(conf, service.MockResources()); err == nil {
			t.Errorf("%s: accepted", yaml)
		}
	}
}

// The redrive pipeline copies source fields from a JSON document into metadata, so they
// arrive as json.Number or float64.
func TestErrorRecordSourceFromCopiedNumbers(t *testing.T) {
	b := newTestErrorRecordBuilder(t, `{}`)
	msg := service.NewMessage([]byte("x"))
	msg.SetError(errors.New("validation: bad"))
	msg.MetaSetMut("kafka_topic", "iot_validated_data")
	msg.MetaSetMut("kafka_partition", json.Number("3"))
	msg.MetaSetMut("kafka_offset", float64(76))
	msg.MetaSetMut("kafka_timestamp_ms", json.Number("1749376802000"))
	out, err := b.Process(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := out[0].AsBytes()
	want := `"source":{"offset":76,"partition":3,"timestamp_ms":1749376802000,"topic":"iot_validated_data"}}`
	if !strings.HasSuffix(string(got), want) {
		t.Fatalf("record %s, want it to end %s", got, want)
	}
}

// A redrive keeps the consumed record's kafka_* metadata and names the reading's origin with
// iot_source_*: the record reports the origin.
func TestErrorRecordSourcePrefersTheReadingsOrigin(t *testing.T) {
	b := newTestErrorRecordBuilder(t, `{}`)
	build := func(meta map[string]any) string {
		t.Helper()
		msg := service.NewMessage([]byte("x"))
		msg.SetError(errors.New("validation: bad"))
		for k, v := range meta {
			msg.MetaSetMut(k, v)
		}
		out, err := b.Process(context.Background(), msg)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := out[0].AsBytes()
		return string(got)
	}
	// The consumed record is the error record, written later than the reading's own record.
	consumed := map[string]any{"kafka_topic": "iot_errors", "kafka_partition": 0, "kafka_offset": 42, "kafka_timestamp_ms": int64(1764238502118)}
	fromKafka := map[string]any{"iot_source_topic": "iot_validated_data", "iot_source_partition": int64(3), "iot_source_offset": int64(18211), "iot_source_timestamp_ms": int64(1749376802000)}
	fromFile := map[string]any{"iot_source_path": "/dumps/day1.jsonl"}
	for k, v := range consumed {
		fromKafka[k] = v
		fromFile[k] = v
	}
	if got, want := build(fromKafka), `"source":{"offset":18211,"partition":3,"timestamp_ms":1749376802000,"topic":"iot_validated_data"}}`; !strings.HasSuffix(got, want) {
		t.Errorf("record %s, want it to end %s", got, want)
	}
	if got, want := build(fromFile), `"source":{"path":"/dumps/day1.jsonl"}}`; !strings.HasSuffix(got, want) {
		t.Errorf("record %s, want it to end %s", got, want)
	}
}

// A reading full of < is written as it is: HTML escaping made each one six bytes.
func TestErrorRecordNoHTMLEscaping(t *testing.T) {
	b := newTestErrorRecordBuilder(t, `{}`)
	for _, c := range []struct{ name, content, original, want string }{
		{"object", `{"v": "<a & b>"}`, `{"v": "<a & b>"}`, `"original_message":{"v": "<a & b>"}`},
		{"raw", `<not json> & more`, "", `"original_message":{"raw":"<not json> & more"}`},
	} {
		msg := service.NewMessage([]byte(c.content))
		if c.original != "" {
			msg.MetaSetMut("iot_original", c.original)
		}
		msg.SetError(errors.New("validation: <bad>"))
		out, err := b.Process(context.Background(), msg)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := out[0].AsBytes()
		if !strings.Contains(string(got), c.want) || !strings.Contains(string(got), `"error":"validation: <bad>"`) {
			t.Errorf("%s: %s, want it to hold %s", c.name, got, c.want)
		}
	}
}

// A record that would not fit max_record_bytes keeps the original's leading bytes, as text, and
// says so; with its key and the producer's framing it takes at most max_record_bytes.
func TestErrorRecordTruncatesToFit(t *testing.T) {
	const limit = 64 << 10
	b := newTestErrorRecordBuilder(t, `max_record_bytes: 64KiB`)
	big := `{"request_id": "r-1", "device_id": "d", "values": ["` + strings.Repeat("<é>", 30000) + `"], "labels": ["a", "b"]}`
	for _, c := range []struct {
		name     string
		original string // iot_original; empty for input that is not an object
		content  string
	}{
		{"object", big, big},
		{"binary", "", strings.Repeat("\x00\xff<", 40000)},
	} {
		t.Run(c.name, func(t *testing.T) {
			msg := service.NewMessage([]byte(c.content))
			if c.original != "" {
				msg.MetaSetMut("iot_original", c.original)
				msg.MetaSetMut("iot_request_id", "r-1")
			}
			msg.MetaSetMut("kafka_topic", "iot_validated_data")
			msg.MetaSetMut("kafka_partition", 2)
			msg.MetaSetMut("kafka_offset", 7)
			msg.SetError(errors.New("validation: labels has 2 entries, values has 1"))
			out, err := b.Process(context.Background(), msg)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := out[0].AsBytes()
			key, _ := out[0].MetaGet("iot_request_id")
			if n := len(got) + len(key) + 100; n > limit || n < limit-8 {
				t.Fatalf("record, key and framing take %d bytes, want at most %d and close to it", n, limit)
			}
			var rec struct {
				Original struct {
					Raw *string `json:"raw"`
				} `json:"original_message"`
				Truncated bool           `json:"original_truncated"`
				Bytes     int            `json:"original_bytes"`
				Kind      string         `json:"kind"`
				Source    map[string]any `json:"source"`
			}
			if err := json.Unmarshal(got, &rec); err != nil {
				t.Fatalf("not JSON: %v", err)
			}
			if rec.Original.Raw == nil || !rec.Truncated || rec.Bytes != len(c.content) || rec.Kind != "validation" || rec.Source["offset"] != float64(7) {
				t.Fatalf("record %.300s...", got)
			}
			want := strings.ToValidUTF8(c.content, "\ufffd")
			if c.name == "binary" {
				want = strings.ReplaceAll(c.content, "\xff", "\ufffd")
			}
			if !strings.HasPrefix(want, *rec.Original.Raw) || len(*rec.Original.Raw) < limit/3 {
				t.Fatalf("raw is not a long prefix of the input: %.100q", *rec.Original.Raw)
			}
		})
	}
}

func TestErrorRecordCutsHugeRequestIDAndError(t *testing.T) {
	b := newTestErrorRecordBuilder(t, `max_record_bytes: 8KiB`)
	msg := service.NewMessage([]byte("x"))
	msg.MetaSetMut("iot_request_id", strings.Repeat("é", 100000))
	msg.SetError(errors.New("validation: " + strings.Repeat("z", 100000)))
	out, err := b.Process(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := out[0].AsBytes()
	key, _ := out[0].MetaGet("iot_request_id")
	if len(key) > 256 || len(got)+len(key)+100 > 8<<10 || !json.Valid(got) {
		t.Fatalf("key %d bytes, record %d bytes", len(key), len(got))
	}
}

// TestErrorRecordHugeOriginalAllocates checks that a record of a reading of about 1 MB costs
// about one copy of it (the record itself): the original is read from the iot_original
// metadata in place, not copied for the validity check, the record and the cut.
func TestErrorRecordHugeOriginalAllocates(t *testing.T) {
	b := newTestErrorRecordBuilder(t, `max_record_bytes: 2MiB`)
	original := `{"request_id": "r-1", "device_id": "d", "values": [0.0` + strings.Repeat(", 0.0", 200000) + `]}`
	msg := service.NewMessage([]byte(original))
	msg.MetaSetMut("iot_original", original)
	msg.MetaSetMut("iot_request_id", "r-1")
	msg.MetaSetMut("kafka_topic", "iot_validated_data")
	msg.MetaSetMut("kafka_partition", 2)
	msg.MetaSetMut("kafka_offset", 7)
	msg.SetError(errors.New("validation: values has 200001 entries, more than the 1000 fields a point may have (max_fields)"))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	out, err := b.Process(context.Background(), msg)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := out[0].AsBytes()
	if !strings.Contains(string(got), `"original_message":`+original+`,`) {
		t.Fatalf("the record does not hold the original whole: %.200s", got)
	}
	limit := uint64(len(original)) + 64<<10
	if n := after.TotalAlloc - before.TotalAlloc; n > limit {
		t.Errorf("the record of a %d-byte original allocated %d bytes, want at most %d (one copy)", len(original), n, limit)
	} else {
		t.Logf("the record of a %d-byte original allocated %d bytes", len(original), n)
	}
}
