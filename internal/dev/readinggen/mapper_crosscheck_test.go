package readinggen_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
	"github.com/redpanda-data/benthos/v4/public/service"

	_ "github.com/redpanda-data/benthos/v4/public/components/pure"

	"github.com/preservarium/iot-ingestor/internal/dev/readinggen"
	_ "github.com/preservarium/iot-ingestor/processors"
)

// TestMapperAgreesWithExpectations runs the generated stream through the
// project's reading_to_point processor in a real stream and checks that both,
// written independently from the contract, agree on every message: the point
// (measurement, time, every field's type and value, in order), the filtered
// messages, and the error kind of every bad one.
func TestMapperAgreesWithExpectations(t *testing.T) {
	opts := readinggen.DefaultOptions()
	opts.BadShare = 0.15
	gen, err := readinggen.New(21, opts)
	if err != nil {
		t.Fatal(err)
	}
	const n = 4000
	readings := make([]readinggen.Reading, n)
	for i := range readings {
		readings[i] = gen.Next()
	}

	results := runMapper(t, readings)

	disagreements := 0
	report := func(format string, args ...any) {
		disagreements++
		if disagreements <= 25 {
			t.Errorf(format, args...)
		}
	}
	for i, r := range readings {
		e := r.Expect
		m, ok := results[i]
		switch e.Outcome {
		case readinggen.OutcomeFiltered:
			if ok {
				b, _ := m.AsBytes()
				report("seq %d: expected filtered, mapper gave %q (err %v)\nmessage %s", i, b, m.GetError(), r.Value)
			}
			continue
		case readinggen.OutcomeError:
			if !ok {
				report("seq %d: expected %s error (%s), mapper dropped the message\nmessage %s", i, e.ErrorKind, e.BadKind, r.Value)
				continue
			}
			merr := m.GetError()
			if merr == nil || !strings.HasPrefix(merr.Error(), e.ErrorKind+": ") {
				report("seq %d: expected %s error (%s), mapper error %v\nmessage %s", i, e.ErrorKind, e.BadKind, merr, r.Value)
			}
			if rid, _ := m.MetaGet("iot_request_id"); rid != e.RequestID {
				report("seq %d: error request_id %q, expected %q", i, rid, e.RequestID)
			}
			if err := checkOriginal(m, r); err != nil {
				report("seq %d (%s): %v", i, e.BadKind, err)
			}
			continue
		}
		if !ok {
			report("seq %d: expected a point, mapper filtered the message\nmessage %s", i, r.Value)
			continue
		}
		if merr := m.GetError(); merr != nil {
			report("seq %d: expected a point, mapper error %v\nmessage %s", i, merr, r.Value)
			continue
		}
		line, _ := m.AsBytes()
		if err := comparePoint(line, e); err != nil {
			report("seq %d: %v\nline    %s\nmessage %s", i, err, line, r.Value)
		}
	}
	if disagreements > 0 {
		t.Errorf("%d of %d messages disagree", disagreements, n)
	}
}

func comparePoint(line []byte, e readinggen.Expectation) error {
	dec := lineprotocol.NewDecoderWithBytes(line)
	if !dec.Next() {
		return fmt.Errorf("no line")
	}
	meas, err := dec.Measurement()
	if err != nil {
		return fmt.Errorf("measurement: %w", err)
	}
	if string(meas) != e.Measurement {
		return fmt.Errorf("measurement %q, expected %q", meas, e.Measurement)
	}
	if k, _, err := dec.NextTag(); err != nil || k != nil {
		return fmt.Errorf("unexpected tag %q (%v)", k, err)
	}
	var got []readinggen.Field
	for {
		k, v, err := dec.NextField()
		if err != nil {
			return fmt.Errorf("field: %w", err)
		}
		if k == nil {
			break
		}
		f := readinggen.Field{Name: string(k)}
		switch v.Kind() {
		case lineprotocol.Float:
			f.Type, f.Value = readinggen.FieldFloat, v.FloatV()
		case lineprotocol.Int:
			f.Type, f.Value = readinggen.FieldInteger, v.IntV()
		case lineprotocol.Bool:
			f.Type, f.Value = readinggen.FieldBoolean, v.BoolV()
		case lineprotocol.String:
			// The decoder turns the \n InfluxDB keeps as two characters back
			// into a newline; the generator never writes a literal "\n" pair.
			f.Type, f.Value = readinggen.FieldString, strings.ReplaceAll(v.StringV(), "\n", `\n`)
		default:
			return fmt.Errorf("field %q of kind %v", k, v.Kind())
		}
		got = append(got, f)
	}
	ts, err := dec.Time(lineprotocol.Nanosecond, time.Time{})
	if err != nil {
		return fmt.Errorf("time: %w", err)
	}
	if ts.UnixNano() != e.TimestampNS {
		return fmt.Errorf("time %d, expected %d", ts.UnixNano(), e.TimestampNS)
	}
	if len(got) != len(e.Fields) {
		return fmt.Errorf("%d fields %v, expected %d %v", len(got), got, len(e.Fields), e.Fields)
	}
	for i, want := range e.Fields {
		g := got[i]
		if g.Name != want.Name || g.Type != want.Type {
			return fmt.Errorf("field %d is %q %s, expected %q %s", i, g.Name, g.Type, want.Name, want.Type)
		}
		if want.JSONText {
			var a, b any
			if json.Unmarshal([]byte(g.Value.(string)), &a) != nil || json.Unmarshal([]byte(want.Value.(string)), &b) != nil || !reflect.DeepEqual(a, b) {
				return fmt.Errorf("field %q JSON %s, expected %s", g.Name, g.Value, want.Value)
			}
			continue
		}
		if x, ok := want.Value.(float64); ok {
			if y := g.Value.(float64); x != y && !(math.IsNaN(x) && math.IsNaN(y)) {
				return fmt.Errorf("field %q = %v, expected %v", g.Name, y, x)
			}
			continue
		}
		if g.Value != want.Value {
			return fmt.Errorf("field %q = %#v, expected %#v", g.Name, g.Value, want.Value)
		}
	}
	return nil
}

// runMapper passes every reading through a stream with the reading_to_point
// processor in its default configuration, with the metadata the kafka input
// would add, and returns the output messages by index (filtered ones absent).
func runMapper(t *testing.T, readings []readinggen.Reading) map[int]*service.Message {
	t.Helper()
	n := len(readings)
	sb := service.NewStreamBuilder()
	if err := sb.SetLoggerYAML(`level: none`); err != nil {
		t.Fatal(err)
	}
	produce, err := sb.AddBatchProducerFunc()
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.AddProcessorYAML(`reading_to_point: {}`); err != nil {
		t.Fatalf("reading_to_point config: %v", err)
	}
	var mu sync.Mutex
	results := map[int]*service.Message{}
	if err := sb.AddConsumerFunc(func(_ context.Context, m *service.Message) error {
		seq, _ := m.MetaGet("seq")
		i, err := strconv.Atoi(seq)
		if err != nil {
			return fmt.Errorf("output message without seq metadata: %w", err)
		}
		mu.Lock()
		results[i] = m
		mu.Unlock()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	stream, err := sb.Build()
	if err != nil {
		t.Fatalf("building stream: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- stream.Run(ctx) }()
	for start := 0; start < n; start += 100 {
		var batch service.MessageBatch
		for i := start; i < min(start+100, n); i++ {
			m := service.NewMessage(readings[i].Value)
			m.MetaSetMut("seq", strconv.Itoa(i))
			m.MetaSetMut("kafka_key", string(readings[i].Key))
			m.MetaSetMut("kafka_timestamp_ms", strconv.FormatInt(readings[i].Timestamp.UnixMilli(), 10))
			batch = append(batch, m)
		}
		if err := produce(ctx, batch); err != nil {
			t.Fatalf("producing batch at %d: %v", start, err)
		}
	}
	if err := stream.Stop(ctx); err != nil {
		t.Fatalf("stopping stream: %v", err)
	}
	<-runErr
	return results

}

// checkOriginal: the original message kept for the error record is valid
// JSON: the input object itself (Python's non-finite tokens as null), or
// {"raw": text} for input that is not a JSON object.
func checkOriginal(m *service.Message, r readinggen.Reading) error {
	orig, ok := m.MetaGet("iot_original")
	if !ok {
		return fmt.Errorf("no iot_original metadata")
	}
	var got any
	if err := json.Unmarshal([]byte(orig), &got); err != nil {
		return fmt.Errorf("iot_original is not JSON (%v): %s", err, orig)
	}
	var want any
	switch r.Expect.BadKind {
	case readinggen.BadNotJSON, readinggen.BadNotObject:
		if !utf8.Valid(r.Value) {
			// Replacement of invalid bytes may follow any usual scheme.
			if obj, ok := got.(map[string]any); !ok || len(obj) != 1 || obj["raw"] == nil {
				return fmt.Errorf("iot_original %s is not {\"raw\": text}", orig)
			}
			return nil
		}
		want = map[string]any{"raw": string(r.Value)}
	default:
		if err := json.Unmarshal(readinggen.PyTokensToNull(r.Value), &want); err != nil {
			return fmt.Errorf("test cannot decode the input: %v", err)
		}
	}
	if !reflect.DeepEqual(got, want) {
		return fmt.Errorf("iot_original %s, expected %v", orig, want)
	}
	return nil
}
