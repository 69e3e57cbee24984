package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/preservarium/iot-ingestor/internal/dev/readinggen"
)

// Schema evolution against the real server: a field keeps the type of its first write (per
// shard), so what a change upstream does to InfluxDB depends on the mapper's number policy.
// Every timestamp is in the week of 2025-06-08, one InfluxDB 1.8 shard, so conflicts are real.

var schemaBase = time.Date(2025, 6, 8, 10, 0, 0, 0, time.UTC)

// schemaMsg is a stage-2 message at base+offset, written by hand so that number literals stay
// exactly as Python writes them (21 is an integer, 21.5 a float). body holds the keys after
// device_id, as raw JSON.
func schemaMsg(id, device string, offset time.Duration, body string) readinggen.Reading {
	ts := schemaBase.Add(offset)
	v := fmt.Sprintf(`{"request_id": %q, "timestamp": %q, "device_id": %q, %s}`, id, ts.Format("2006-01-02T15:04:05.000000"), device, body)
	return readinggen.Reading{Key: []byte(device), Value: []byte(v), Timestamp: ts}
}

// fieldAt returns a field's value at base+offset as text, "" when absent.
func (s *stack) fieldAt(measurement, field string, offset time.Duration) string {
	s.t.Helper()
	series := s.influx.Query(database, fmt.Sprintf(`SELECT %s FROM %s WHERE time = %d`, quoteIdent(field), quoteIdent(measurement), schemaBase.Add(offset).UnixNano()))
	if len(series) == 0 || len(series[0].Values) == 0 || series[0].Values[0][1] == nil {
		return ""
	}
	return fmt.Sprint(series[0].Values[0][1])
}

// errorFor returns the error record of a request id.
func (s *stack) errorFor(requestID string) (errorRecord, bool) {
	s.t.Helper()
	for _, rec := range s.errorRecords() {
		if rec.RequestID == requestID {
			return rec, true
		}
	}
	return errorRecord{}, false
}

// floatConfig is config/ingestor.yaml with `numbers: float` added to reading_to_point: the
// one-line change a deployment makes to take the every-number-a-float policy.
func floatConfig(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(shippedConfig)
	if err != nil {
		t.Fatal(err)
	}
	const line = "        precision: ${INFLUXDB_TIMESTAMP_PRECISION:us}\n"
	if strings.Count(string(b), line) != 1 {
		t.Fatalf("config/ingestor.yaml: reading_to_point's precision line %q not found once", line)
	}
	p := filepath.Join(t.TempDir(), "ingestor-float.yaml")
	if err := os.WriteFile(p, []byte(strings.Replace(string(b), line, line+"        numbers: float\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// runPhases runs an ingestor with config over the stack and produces each phase only once the
// previous one is committed, so the first write of a field is known.
func (s *stack) runPhases(config string, phases ...[]readinggen.Reading) {
	s.t.Helper()
	p := s.startIngestorConfig(config, nil)
	p.waitStatus("/ready", 200, 30*time.Second)
	for _, ph := range phases {
		s.produce(ph)
		s.waitDrained(60 * time.Second)
	}
}

// TestSchemaDefaultRejectsConflict: with the default number policy (preserve), a field first
// written as an integer rejects a later float: the reading goes to the error topic with the
// server's reason, the stored point is untouched.
func TestSchemaDefaultRejectsConflict(t *testing.T) {
	s := newStack(t, stackOptions{partitions: 2})
	s.runPhases(shippedConfig,
		[]readinggen.Reading{schemaMsg("sc-1", "sc_flip", 0, `"values": [21], "labels": ["temperature"]`)},
		[]readinggen.Reading{schemaMsg("sc-2", "sc_flip", time.Second, `"values": [21.5], "labels": ["temperature"]`)},
	)
	if ty := s.influx.FieldTypes(database, "sc_flip")["temperature"]; ty != "integer" {
		t.Errorf("sc_flip temperature is %q, expected integer (first write 21)", ty)
	}
	if got := s.fieldAt("sc_flip", "temperature", 0); got != "21" {
		t.Errorf("sc_flip temperature at t0 = %q, expected 21", got)
	}
	if got := s.fieldAt("sc_flip", "temperature", time.Second); got != "" {
		t.Errorf("the conflicting 21.5 was stored as %q", got)
	}
	rec, ok := s.errorFor("sc-2")
	if !ok {
		t.Fatalf("no error record for the conflicting reading")
	}
	if rec.Kind != "write" || !strings.Contains(rec.Error, "conflict") || !strings.Contains(rec.Error, "temperature") {
		t.Errorf("error record for the conflict: kind %q error %q: expected a write error naming the field and the conflict", rec.Kind, rec.Error)
	}
	if !jsonTextEqual(string(rec.OriginalMessage), string(schemaMsg("sc-2", "sc_flip", time.Second, `"values": [21.5], "labels": ["temperature"]`).Value)) {
		t.Errorf("original_message %s", rec.OriginalMessage)
	}
	t.Logf("conflict reason: %s", rec.Error)
}

// TestSchemaFloatPolicy: with numbers: float the same integer/float flip-flop stores both
// readings as floats, a declared integer is a float too; a field that already holds integers
// (written before the switch) now conflicts, which is why an existing field must be migrated.
func TestSchemaFloatPolicy(t *testing.T) {
	s := newStack(t, stackOptions{partitions: 2})
	if code, body := s.influx.WriteLP(database, fmt.Sprintf("sc_legacy temperature=20i %d", schemaBase.Add(-time.Hour).UnixNano())); code != 204 {
		t.Fatalf("seeding the legacy integer field: %d %s", code, body)
	}
	s.runPhases(floatConfig(t),
		[]readinggen.Reading{
			schemaMsg("sf-1", "sc_flip", 0, `"values": [21], "labels": ["temperature"]`),
			schemaMsg("sf-3", "sc_declared", 0, `"values": [3], "labels": ["count"], "metadata": {"datatype_type": ["integer"]}`),
			schemaMsg("sf-4", "sc_legacy", 0, `"values": [22], "labels": ["temperature"]`),
		},
		[]readinggen.Reading{schemaMsg("sf-2", "sc_flip", time.Second, `"values": [21.5], "labels": ["temperature"]`)},
	)
	if ty := s.influx.FieldTypes(database, "sc_flip")["temperature"]; ty != "float" {
		t.Errorf("sc_flip temperature is %q, expected float", ty)
	}
	if a, b := s.fieldAt("sc_flip", "temperature", 0), s.fieldAt("sc_flip", "temperature", time.Second); a != "21" || b != "21.5" {
		t.Errorf("sc_flip temperature = %q then %q, expected 21 then 21.5", a, b)
	}
	if ty := s.influx.FieldTypes(database, "sc_declared")["count"]; ty != "float" {
		t.Errorf("a declared integer under numbers: float is %q", ty)
	}
	if _, ok := s.errorFor("sf-2"); ok {
		t.Errorf("the float reading was rejected under numbers: float")
	}
	rec, ok := s.errorFor("sf-4")
	if !ok || rec.Kind != "write" || !strings.Contains(rec.Error, "conflict") {
		t.Errorf("a float written to the legacy integer field: error record %+v, expected a write conflict", rec)
	}
	if got := s.influx.Count(database, "sc_legacy", "temperature"); got != 1 {
		t.Errorf("sc_legacy temperature has %d values, expected the seeded one only", got)
	}
}

// TestSchemaChangesReachInfluxDB: how the upstream changes a deployment sees arrive in
// InfluxDB with the default mapping: a new field appears beside the old ones; the old key
// `label` and the new `labels` name the same fields; a renamed label is a new field (the old
// one keeps its history); a new datatype brings its declared types; a datatype that changes
// the type of an existing field is rejected with the reason.
func TestSchemaChangesReachInfluxDB(t *testing.T) {
	s := newStack(t, stackOptions{partitions: 2})
	s.runPhases(shippedConfig,
		[]readinggen.Reading{
			schemaMsg("sn-1", "sc_new", 0, `"values": [20.5], "labels": ["temperature"]`),
			schemaMsg("sr-1", "sc_label_key", 0, `"values": [19.5], "label": ["temperature"]`),
			schemaMsg("sl-1", "sc_renamed", 0, `"values": [18.5], "labels": ["temp"]`),
			schemaMsg("sd-1", "sc_dtype", 0, `"values": [20.5], "labels": ["level"], "metadata": {"datatype_type": ["number"]}`),
		},
		[]readinggen.Reading{
			schemaMsg("sn-2", "sc_new", time.Second, `"values": [20.7, 1013.2], "labels": ["temperature", "pressure"]`),
			schemaMsg("sr-2", "sc_label_key", time.Second, `"values": [19.7], "labels": ["temperature"], "display_names": ["Temperature"]`),
			schemaMsg("sl-2", "sc_renamed", time.Second, `"values": [18.7], "labels": ["temperature"]`),
			schemaMsg("sd-2", "sc_dtype", time.Second, `"values": ["3", "TRUE", 42], "labels": ["count", "alarm", "state"], "metadata": {"datatype_type": ["integer", "boolean", "string"]}`),
			schemaMsg("sd-3", "sc_dtype", 2*time.Second, `"values": ["high"], "labels": ["level"], "metadata": {"datatype_type": ["string"]}`),
		},
	)
	checks := []struct {
		measurement, field string
		at                 time.Duration
		want               string
	}{
		{"sc_new", "temperature", 0, "20.5"},
		{"sc_new", "pressure", 0, ""}, // the old point has no new field
		{"sc_new", "temperature", time.Second, "20.7"},
		{"sc_new", "pressure", time.Second, "1013.2"},
		{"sc_label_key", "temperature", 0, "19.5"},
		{"sc_label_key", "temperature", time.Second, "19.7"},
		{"sc_renamed", "temp", 0, "18.5"},
		{"sc_renamed", "temperature", 0, ""},
		{"sc_renamed", "temp", time.Second, ""},
		{"sc_renamed", "temperature", time.Second, "18.7"},
		{"sc_dtype", "level", 0, "20.5"},
		{"sc_dtype", "count", time.Second, "3"},
		{"sc_dtype", "alarm", time.Second, "true"},
		{"sc_dtype", "state", time.Second, "42"},
		{"sc_dtype", "level", 2 * time.Second, ""},
	}
	for _, c := range checks {
		if got := s.fieldAt(c.measurement, c.field, c.at); got != c.want {
			t.Errorf("%s.%s at +%v = %q, expected %q", c.measurement, c.field, c.at, got, c.want)
		}
	}
	types := map[string]map[string]string{
		"sc_new":   {"temperature": "float", "pressure": "float"},
		"sc_dtype": {"level": "float", "count": "integer", "alarm": "boolean", "state": "string"},
	}
	for m, fields := range types {
		got := s.influx.FieldTypes(database, m)
		for f, want := range fields {
			if got[f] != want {
				t.Errorf("%s.%s is %q, expected %q", m, f, got[f], want)
			}
		}
	}
	rec, ok := s.errorFor("sd-3")
	if !ok || rec.Kind != "write" || !strings.Contains(rec.Error, "conflict") || !strings.Contains(rec.Error, "level") {
		t.Errorf("a datatype changing level to string: error record %+v, expected a write conflict naming the field", rec)
	}
	for _, id := range []string{"sn-1", "sn-2", "sr-1", "sr-2", "sl-1", "sl-2", "sd-1", "sd-2"} {
		if rec, ok := s.errorFor(id); ok {
			raw, _ := json.Marshal(rec.Error)
			t.Errorf("reading %s was rejected: %s", id, raw)
		}
	}
}
