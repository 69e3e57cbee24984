package processors

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	lpv2 "github.com/influxdata/line-protocol/v2/lineprotocol"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/preservarium/iot-ingestor/internal/meta"
	"github.com/preservarium/iot-ingestor/internal/pyjson"
)

// assertDecodesAsLineProtocol fails unless line is exactly one line-protocol
// point with at least one field and a timestamp, per the reference decoder.
func assertDecodesAsLineProtocol(t testing.TB, line string) {
	t.Helper()
	if strings.ContainsAny(line, "\n") {
		t.Fatalf("line protocol output holds a raw newline: %q", line)
	}
	dec := lpv2.NewDecoderWithBytes([]byte(line))
	points := 0
	for dec.Next() {
		points++
		if _, err := dec.Measurement(); err != nil {
			t.Fatalf("measurement of %q: %v", line, err)
		}
		for {
			k, _, err := dec.NextTag()
			if err != nil {
				t.Fatalf("tag of %q: %v", line, err)
			}
			if k == nil {
				break
			}
		}
		fields := 0
		for {
			k, _, err := dec.NextField()
			if err != nil {
				t.Fatalf("field of %q: %v", line, err)
			}
			if k == nil {
				break
			}
			fields++
		}
		if fields == 0 {
			t.Fatalf("no field in %q", line)
		}
		ts, err := dec.Time(lpv2.Nanosecond, time.Time{})
		if err != nil {
			t.Fatalf("time of %q: %v", line, err)
		}
		if ts.IsZero() {
			t.Fatalf("no timestamp in %q", line)
		}
	}
	if err := dec.Err(); err != nil {
		t.Fatalf("decode %q: %v", line, err)
	}
	if points != 1 {
		t.Fatalf("want exactly one point in %q, got %d", line, points)
	}
}

// FuzzReadingToPoint: whatever the input, the processor does not panic, a
// mapped message is one valid line-protocol point, an error starts with its
// kind and stays on one line, and iot_original is always valid JSON.
func FuzzReadingToPoint(f *testing.F) {
	for _, s := range benchCorpus() {
		f.Add(s, uint8(0))
	}
	seeds := []string{
		`{"device_id":"a b,c=d","values":["x\"y\\z\nw", 1, 2.5, true, null, [NaN], {"k":Infinity}],"labels":["l 1","l,2","l=3",null,"","time","_x"],"timestamp":"2025-06-08T18:27:17"}`,
		`{"device_id": "d", "values": [NaN, -Infinity, Infinity], "timestamp": "2025-06-24T21:37:35.033561+00:00"}`,
		`{"device_id":"d\\","values":[1]}`,
		`{"device_id":"d","values":[1],"metadata":{"persist":[false,true],"datatype_type":["integer","boolean"]}}`,
		`{"device_id":"d","values":["\ud800\u00e9"]}`,
		"{\"device_id\":\"\xff\",\"values\":[1]}",
		`[NaN]`, `NaN`, `"Infinity"`, `{"a":-Infinity}`, ``,
	}
	for _, s := range seeds {
		f.Add(s, uint8(0))
		f.Add(s, uint8(1))
	}
	// The input is what is fuzzed; conf picks one of these configurations.
	confs := []string{
		"",
		"tags: {index: index, unit: metadata.datatype_unit, first: labels.0}\nreserved_keys: rename\nnumbers: float\nprecision: s\nnested_values: drop",
		"time_source: kafka\nprecision: ns",
		// The guard that empties oversized arrays before decoding, on small inputs.
		"max_fields: 2\nmax_line_bytes: 64",
		"static_tags: {site: paris}\nfield_tags: [a, value_1]\nfield_rename: {b: bb, value_0: v0}\nfield_exclude: ['c*']\nmeasurement: '${!json(\"device_id\")}'",
	}
	procs := make([]*readingToPoint, len(confs))
	f.Fuzz(func(t *testing.T, input string, conf uint8) {
		i := int(conf) % len(confs)
		if procs[i] == nil {
			procs[i] = newTestReadingToPoint(t, confs[i])
		}
		p := procs[i]
		msg := service.NewMessage([]byte(input))
		msg.MetaSetMut("kafka_key", "k\xff")
		msg.MetaSetMut("kafka_timestamp_ms", "1749996800123")
		out, err := p.ProcessBatch(context.Background(), service.MessageBatch{msg})
		if err != nil {
			t.Fatalf("batch error: %v", err)
		}
		orig, _ := msg.MetaGet(meta.Original)
		if !json.Valid([]byte(orig)) {
			t.Fatalf("iot_original is not valid JSON: %q (input %q)", orig, input)
		}
		id, ok := msg.MetaGetMut(meta.RequestID)
		if !ok {
			t.Fatalf("iot_request_id missing")
		}
		if s, _ := id.(string); !utf8.ValidString(s) {
			t.Fatalf("iot_request_id is not valid UTF-8: %q", s)
		}
		// Differential check against encoding/json: a JSON object (strict,
		// UTF-8, not absurdly deep) is never a decode error, and anything else
		// without Python tokens is one.
		var asMap map[string]any
		strictObject := utf8.ValidString(input) && json.Unmarshal([]byte(input), &asMap) == nil &&
			asMap != nil && strings.Count(input, "[")+strings.Count(input, "{") < 250
		decodeErr := len(out) > 0 && out[0][0].GetError() != nil &&
			strings.HasPrefix(out[0][0].GetError().Error(), "decode: ")
		if strictObject && decodeErr {
			t.Fatalf("a valid JSON object was rejected: %v (input %q)", out[0][0].GetError(), input)
		}
		if !strictObject && !decodeErr && !pyjson.HasPythonTokens([]byte(input)) {
			t.Fatalf("input that encoding/json rejects was accepted (input %q)", input)
		}
		if strictObject && orig != input {
			t.Fatalf("iot_original of a valid object is not the input unchanged: %q", orig)
		}
		if len(out) == 0 {
			return // filtered
		}
		m := out[0][0]
		if e := m.GetError(); e != nil {
			text := e.Error()
			if !strings.HasPrefix(text, "decode: ") && !strings.HasPrefix(text, "validation: ") {
				t.Fatalf("error without its kind: %q", text)
			}
			if strings.ContainsAny(text, "\r\n") {
				t.Fatalf("error spans lines: %q", text)
			}
			return
		}
		b, _ := m.AsBytes()
		assertDecodesAsLineProtocol(t, string(b))
		// The measurement is device_id as encoding/json decodes it.
		if strictObject {
			dec := lpv2.NewDecoderWithBytes(b)
			dec.Next()
			name, _ := dec.Measurement()
			if want, _ := asMap["device_id"].(string); string(name) != want {
				t.Fatalf("measurement %q, encoding/json reads device_id as %q (input %q)", name, want, input)
			}
		}
	})
}
