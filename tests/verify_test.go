package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/preservarium/iot-ingestor/internal/dev/readinggen"
)

// outcome is what a scenario ended with, for its report line and its assertions.
type outcome struct {
	sent           int
	valuesExpected int
	valuesStored   int
	pointsExpected int
	errorsExpected int
	errorRecords   int // distinct sources on the error topic
	duplicates     int // error records beyond one per source
	filtered       int
}

func (o outcome) String() string {
	return fmt.Sprintf("sent=%d values_expected=%d values_stored=%d points=%d error_records=%d/%d duplicates_collapsed=%d filtered=%d",
		o.sent, o.valuesExpected, o.valuesStored, o.pointsExpected, o.errorRecords, o.errorsExpected, o.duplicates, o.filtered)
}

// report logs the scenario's line in a fixed format the issue notes are built from.
func report(t *testing.T, scenario string, o outcome, took time.Duration) {
	t.Logf("SCENARIO %s | %s | took=%s", scenario, o, took.Round(100*time.Millisecond))
}

// verify checks InfluxDB value by value and the error topic record by record against what the
// readings must have become. extraErrors are sources allowed on the error topic beyond the
// readings' own expectations (write errors a test provoked on purpose), with the kind expected.
func (s *stack) verify(readings []readinggen.Reading, extraErrors map[string]string) outcome {
	s.t.Helper()
	var o outcome
	o.sent = len(readings)
	byMeasurement := map[string][]readinggen.Expectation{}
	errorsBySource := map[string]readinggen.Reading{}
	for _, r := range readings {
		e := r.Expect
		switch e.Outcome {
		case readinggen.OutcomeStored:
			byMeasurement[e.Measurement] = append(byMeasurement[e.Measurement], e)
			o.valuesExpected += len(e.Fields)
			o.pointsExpected++
		case readinggen.OutcomeError:
			if e.Source == nil {
				s.t.Fatalf("reading %d has no source: produce() fills it", e.Seq)
			}
			errorsBySource[sourceKey(e.Source)] = r
			o.errorsExpected++
		case readinggen.OutcomeFiltered:
			o.filtered++
		}
	}
	o.valuesStored = s.verifyStored(byMeasurement, true)
	o.errorRecords, o.duplicates = s.verifyErrorTopic(errorsBySource, extraErrors)
	if o.valuesStored != o.valuesExpected {
		s.t.Errorf("values stored: %d, expected %d", o.valuesStored, o.valuesExpected)
	}
	return o
}

func sourceKey(src *readinggen.Source) string {
	return fmt.Sprintf("%s/%d/%d", src.Topic, src.Partition, src.Offset)
}

// verifyStored queries every expected measurement and compares each point field by field,
// with the field's stored type. It returns how many expected values were found exactly. With
// exact, a measurement must hold no point beyond the expected ones.
func (s *stack) verifyStored(byMeasurement map[string][]readinggen.Expectation, exact bool) int {
	s.t.Helper()
	stored := 0
	names := make([]string, 0, len(byMeasurement))
	for m := range byMeasurement {
		names = append(names, m)
	}
	sort.Strings(names)
	for _, m := range names {
		exps := byMeasurement[m]
		types := s.influx.FieldTypes(database, m)
		series := s.influx.Query(database, fmt.Sprintf("SELECT * FROM %s", quoteIdent(m)))
		rows := map[int64]map[string]any{}
		for _, ser := range series {
			for _, row := range ser.Rows() {
				ts, err := row["time"].(json.Number).Int64()
				if err != nil {
					s.t.Fatalf("measurement %q: time %v: %v", m, row["time"], err)
				}
				rows[ts] = row
			}
		}
		if exact && len(rows) != len(exps) {
			s.t.Errorf("measurement %q: %d points stored, %d expected", m, len(rows), len(exps))
		}
		for _, e := range exps {
			row, ok := rows[e.TimestampNS]
			if !ok {
				s.t.Errorf("measurement %q: no point at %d (reading %d, source %v)", m, e.TimestampNS, e.Seq, e.Source)
				continue
			}
			want := map[string]bool{}
			for _, f := range e.Fields {
				want[f.Name] = true
				if got := types[f.Name]; got != string(f.Type) {
					s.t.Errorf("measurement %q field %q: stored type %q, expected %q", m, f.Name, got, f.Type)
					continue
				}
				if err := sameValue(f, row[f.Name]); err != nil {
					s.t.Errorf("measurement %q at %d (reading %d) field %q: %v", m, e.TimestampNS, e.Seq, f.Name, err)
					continue
				}
				stored++
			}
			for col, v := range row {
				if col != "time" && v != nil && !want[col] {
					s.t.Errorf("measurement %q at %d (reading %d): unexpected field %q = %v", m, e.TimestampNS, e.Seq, col, v)
				}
			}
		}
	}
	return stored
}

func quoteIdent(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// sameValue compares an expected field with the value InfluxDB's JSON answer holds.
func sameValue(f readinggen.Field, got any) error {
	if got == nil {
		return fmt.Errorf("not stored (expected %v)", f.Value)
	}
	switch f.Type {
	case readinggen.FieldFloat:
		n, ok := got.(json.Number)
		if !ok {
			return fmt.Errorf("got %T %v, expected float %v", got, got, f.Value)
		}
		v, err := strconv.ParseFloat(string(n), 64)
		if err != nil || v != f.Value.(float64) {
			return fmt.Errorf("got %v, expected float %v", n, f.Value)
		}
	case readinggen.FieldInteger:
		n, ok := got.(json.Number)
		if !ok {
			return fmt.Errorf("got %T %v, expected integer %v", got, got, f.Value)
		}
		v, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil || v != f.Value.(int64) {
			return fmt.Errorf("got %v, expected integer %v", n, f.Value)
		}
	case readinggen.FieldBoolean:
		if got != f.Value {
			return fmt.Errorf("got %v, expected boolean %v", got, f.Value)
		}
	case readinggen.FieldString:
		g, ok := got.(string)
		if !ok {
			return fmt.Errorf("got %T %v, expected string", got, got)
		}
		if f.JSONText {
			if !jsonTextEqual(g, f.Value.(string)) {
				return fmt.Errorf("JSON text %s, expected %s", g, f.Value)
			}
		} else if g != f.Value.(string) {
			return fmt.Errorf("got %q, expected %q", g, f.Value)
		}
	default:
		return fmt.Errorf("unknown expected type %q", f.Type)
	}
	return nil
}

var isoUTC = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$`)

// verifyErrorTopic checks every record of the error topic: each expected error has a record
// with the contract's format, and no record is unexplained. Records for the same source count
// once (redelivery may repeat them). It returns distinct sources and duplicates.
func (s *stack) verifyErrorTopic(expected map[string]readinggen.Reading, extra map[string]string) (int, int) {
	s.t.Helper()
	records := s.errorRecords()
	seen := map[string]bool{}
	duplicates := 0
	for _, rec := range records {
		key := rec.sourceKey()
		if seen[key] {
			duplicates++
			continue
		}
		seen[key] = true
		checkRecordShape(s.t, rec)
		if kind, ok := extra[key]; ok {
			if rec.Kind != kind {
				s.t.Errorf("error record for %s: kind %q, expected %q (%s)", key, rec.Kind, kind, rec.Error)
			}
			continue
		}
		r, ok := expected[key]
		if !ok {
			s.t.Errorf("unexpected error record for %s: %s", key, rec.Raw)
			continue
		}
		checkRecordFor(s.t, rec, r)
	}
	for key, r := range expected {
		if !seen[key] {
			s.t.Errorf("no error record for reading %d at %s (%s: %s)", r.Expect.Seq, key, r.Expect.BadKind, truncate(r.Value, 200))
		}
	}
	for key := range extra {
		if !seen[key] {
			s.t.Errorf("no error record for %s", key)
		}
	}
	return len(seen), duplicates
}

// checkRecordShape checks what every error record of this service must have.
func checkRecordShape(t *testing.T, rec errorRecord) {
	t.Helper()
	if rec.Service != "ingestor" {
		t.Errorf("error record %s: service %q", rec.sourceKey(), rec.Service)
	}
	if !isoUTC.MatchString(rec.Timestamp) {
		t.Errorf("error record %s: timestamp %q is not ISO-8601 UTC ending +00:00", rec.sourceKey(), rec.Timestamp)
	}
	if !strings.HasPrefix(rec.Error, rec.Kind+": ") || strings.Contains(rec.Error, "\n") {
		t.Errorf("error record %s: error %q does not start with its kind %q or spans lines", rec.sourceKey(), rec.Error, rec.Kind)
	}
	if rec.Key != rec.RequestID {
		t.Errorf("error record %s: Kafka key %q, request_id %q", rec.sourceKey(), rec.Key, rec.RequestID)
	}
	if rec.Source == nil || rec.Source.TimestampMS == nil || *rec.Source.TimestampMS <= 0 {
		t.Errorf("error record %s: source without a record time: %s", rec.sourceKey(), rec.Raw)
	}
	if len(rec.OriginalMessage) == 0 || rec.OriginalMessage[0] != '{' {
		t.Errorf("error record %s: original_message is not an object: %s", rec.sourceKey(), rec.OriginalMessage)
	}
}

// checkRecordFor checks a record against the reading it reports.
func checkRecordFor(t *testing.T, rec errorRecord, r readinggen.Reading) {
	t.Helper()
	e := r.Expect
	if rec.Kind != e.ErrorKind {
		t.Errorf("error record for reading %d (%s): kind %q, expected %q (%s)", e.Seq, e.BadKind, rec.Kind, e.ErrorKind, rec.Error)
	}
	if rec.RequestID != e.RequestID {
		t.Errorf("error record for reading %d: request_id %q, expected %q", e.Seq, rec.RequestID, e.RequestID)
	}
	want, err := expectedOriginal(r.Value)
	if err != nil {
		t.Fatalf("reading %d: %v", e.Seq, err)
	}
	got, err := decodeNumbers(rec.OriginalMessage)
	if err != nil {
		t.Errorf("error record for reading %d: original_message: %v", e.Seq, err)
		return
	}
	if m, ok := got.(map[string]any); ok && len(m) == 1 {
		if raw, ok := m["raw"].(string); ok {
			m["raw"] = oneReplacementPerRun(raw)
		}
	}
	if !jsonEqual(got, want) {
		t.Errorf("error record for reading %d: original_message %s, expected %s", e.Seq, rec.OriginalMessage, truncate(r.Value, 400))
	}
}

// expectedOriginal is what original_message must hold for an input: the object itself (with
// Python's non-finite tokens as null), or {"raw": text} when it is not a JSON object.
func expectedOriginal(value []byte) (any, error) {
	if v, err := decodeNumbers(nonFiniteToNull(value)); err == nil {
		if _, isObject := v.(map[string]any); isObject {
			return v, nil
		}
	}
	return map[string]any{"raw": oneReplacementPerRun(string(value))}, nil
}

// oneReplacementPerRun replaces invalid UTF-8 and runs of U+FFFD by a single U+FFFD, so that
// the contract's "invalid UTF-8 replaced by U+FFFD, by any of the usual schemes" (one per byte,
// one per maximal subpart, one per run) compares equal.
func oneReplacementPerRun(s string) string {
	s = strings.ToValidUTF8(s, string(utf8.RuneError))
	var b strings.Builder
	prev := false
	for _, r := range s {
		if r == utf8.RuneError {
			if prev {
				continue
			}
			prev = true
		} else {
			prev = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// nonFiniteToNull replaces Python's bare NaN, Infinity and -Infinity tokens outside strings.
func nonFiniteToNull(b []byte) []byte {
	var out bytes.Buffer
	inString := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inString {
			out.WriteByte(c)
			if c == '\\' && i+1 < len(b) {
				i++
				out.WriteByte(b[i])
			} else if c == '"' {
				inString = false
			}
			continue
		}
		switch {
		case c == '"':
			inString = true
			out.WriteByte(c)
		case bytes.HasPrefix(b[i:], []byte("-Infinity")):
			out.WriteString("null")
			i += len("-Infinity") - 1
		case bytes.HasPrefix(b[i:], []byte("Infinity")):
			out.WriteString("null")
			i += len("Infinity") - 1
		case bytes.HasPrefix(b[i:], []byte("NaN")):
			out.WriteString("null")
			i += len("NaN") - 1
		default:
			out.WriteByte(c)
		}
	}
	return out.Bytes()
}

func decodeNumbers(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data after the JSON value")
	}
	return v, nil
}

// jsonEqual compares decoded JSON, numbers as numbers (1.0 equals 1).
func jsonEqual(a, b any) bool {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for k, v := range av {
			if w, ok := bv[k]; !ok || !jsonEqual(v, w) {
				return false
			}
		}
		return true
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for i := range av {
			if !jsonEqual(av[i], bv[i]) {
				return false
			}
		}
		return true
	case json.Number:
		bv, ok := b.(json.Number)
		if !ok {
			return false
		}
		x, err1 := strconv.ParseFloat(string(av), 64)
		y, err2 := strconv.ParseFloat(string(bv), 64)
		return err1 == nil && err2 == nil && (x == y || math.Abs(x-y) <= 1e-12*math.Max(math.Abs(x), math.Abs(y)))
	default:
		return a == b
	}
}

func jsonTextEqual(a, b string) bool {
	x, err1 := decodeNumbers([]byte(a))
	y, err2 := decodeNumbers([]byte(b))
	return err1 == nil && err2 == nil && jsonEqual(x, y)
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// generate returns n readings of the realistic stream with the given share of bad messages.
func generate(t *testing.T, seed int64, n int, badShare float64) []readinggen.Reading {
	t.Helper()
	opts := readinggen.DefaultOptions()
	opts.BadShare = badShare
	g, err := readinggen.New(seed, opts)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]readinggen.Reading, n)
	for i := range out {
		out[i] = g.Next()
	}
	return out
}
