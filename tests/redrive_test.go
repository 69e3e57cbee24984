package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/preservarium/iot-ingestor/internal/dev/readinggen"
)

const parkingTopic = "iot_errors_parked"

// parkedRecord is an error record on the parking topic: the shared shape plus what a redrive
// adds.
type parkedRecord struct {
	Key             string
	RequestID       string          `json:"request_id"`
	Timestamp       string          `json:"timestamp"`
	Service         string          `json:"service"`
	Kind            string          `json:"kind"`
	Error           string          `json:"error"`
	OriginalMessage json.RawMessage `json:"original_message"`
	Source          map[string]any  `json:"source"`
	RedriveCount    int             `json:"redrive_count"`
	RedrivenFrom    struct {
		Topic string `json:"topic"`
	} `json:"redriven_from"`
}

func (s *stack) parkedRecords() []parkedRecord {
	s.t.Helper()
	var out []parkedRecord
	for _, r := range s.topicRecords(parkingTopic) {
		var p parkedRecord
		if err := json.Unmarshal(r.Value, &p); err != nil {
			s.t.Fatalf("parked record at %d/%d is not JSON: %v: %s", r.Partition, r.Offset, err, r.Value)
		}
		p.Key = string(r.Key)
		out = append(out, p)
	}
	return out
}

// produceErrorRecord writes an error record straight to the error topic, as another stage or
// an earlier run would have.
func (s *stack) produceErrorRecord(rec map[string]any) {
	s.t.Helper()
	b, err := json.Marshal(rec)
	if err != nil {
		s.t.Fatal(err)
	}
	cl := s.client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: errorTopic, Key: []byte(fmt.Sprint(rec["request_id"])), Value: b}).FirstErr(); err != nil {
		s.t.Fatalf("producing an error record: %v", err)
	}
}

// handmade is a message with a fixed record time, for scenarios the generator does not make.
func handmade(key, value string, recordTime time.Time) readinggen.Reading {
	return readinggen.Reading{Key: []byte(key), Value: []byte(value), Timestamp: recordTime}
}

// TestRedriveAfterFixedMapping: the live pipeline rejects readings with a field named `time`
// (reserved) and one whose integer conflicts with a float field; the operator "fixes the
// mapping" (reserved_keys: rename, numbers: float) and redrives. The rejected readings are
// stored at their own time (or their original record time when they have none); what still
// fails is parked with redrive_count, never written back to iot_errors; records of other
// services, other kinds or outside the time range are left alone; redriving the parked topic
// parks again with redrive_count 2 and ends by itself; nothing loops.
func TestRedriveAfterFixedMapping(t *testing.T) {
	start := time.Now()
	s := newStack(t, stackOptions{partitions: 4})
	s.createTopic(parkingTopic)

	good := generate(t, 31, 300, 0)
	at := time.Date(2025, 6, 8, 10, 0, 0, 0, time.UTC)
	if code, body := s.influx.WriteLP(database, fmt.Sprintf("rd_conflict value_0=1.5 %d", at.UnixNano())); code != 204 {
		t.Fatalf("seeding the conflicting field: %d %s", code, body)
	}
	noTimeRecord := at.Add(5*time.Second + 123*time.Millisecond)
	bad := []readinggen.Reading{
		handmade("rd_time", `{"request_id": "rd-1", "timestamp": "2025-06-08T10:00:00.000001", "device_id": "rd_time", "values": [1.5, 2.5], "labels": ["time", "humidity"], "index": "T"}`, at),
		handmade("rd_time", `{"request_id": "rd-2", "device_id": "rd_time", "values": [3.5], "labels": ["time"], "index": "T"}`, noTimeRecord),
		handmade("rd_conflict", `{"request_id": "rd-3", "timestamp": "2025-06-08T10:00:01+00:00", "device_id": "rd_conflict", "values": [7], "index": "T"}`, at.Add(time.Second)),
		handmade("rd_bad", `{"request_id": "rd-4", "timestamp": "2025-06-08T10:00:02", "device_id": "rd_bad", "values": [1.0, 2.0], "labels": ["a"]}`, at.Add(2*time.Second)),
		handmade("rd_dec", `{"request_id": "rd-5", "device_id": "rd_dec", "values": [1.0`, at.Add(3*time.Second)),
	}
	live := s.startIngestor(nil)
	live.waitStatus("/ready", 200, 30*time.Second)
	all := append(append([]readinggen.Reading{}, good...), bad...)
	s.produce(all)
	s.waitDrained(90 * time.Second)
	bad = all[len(good):]

	now := time.Now().UTC()
	fixable := map[string]any{"device_id": "rd_old", "timestamp": "2025-06-08T10:00:00", "values": []any{1.5}, "labels": []any{"time"}}
	// Recorded long ago: outside REDRIVE_FROM.
	s.produceErrorRecord(map[string]any{"request_id": "rd-6", "timestamp": "2020-01-01T00:00:00.000000+00:00", "service": "ingestor", "kind": "validation",
		"error": "validation: field key \"time\" is reserved", "original_message": fixable, "source": map[string]any{"topic": inputTopic, "partition": 0, "offset": 999999, "timestamp_ms": 1749376800000}})
	// Another stage's record.
	other := map[string]any{"device_id": "rd_other", "timestamp": "2025-06-08T10:00:00", "values": []any{1.5}, "labels": []any{"time"}}
	s.produceErrorRecord(map[string]any{"request_id": "rd-7", "timestamp": now.Format("2006-01-02T15:04:05.000000+00:00"), "service": "normalizer", "kind": "validation",
		"error": "validation: something", "original_message": other})
	// A file backfill's record for a reading without a timestamp: no record time to restore.
	s.produceErrorRecord(map[string]any{"request_id": "rd-8", "timestamp": now.Format("2006-01-02T15:04:05.000000+00:00"), "service": "ingestor", "kind": "validation",
		"error":            "validation: timestamp is missing or empty and the record has no kafka_timestamp_ms to fall back on",
		"original_message": map[string]any{"request_id": "rd-8", "device_id": "rd_nots", "values": []any{1.5}, "labels": []any{"a"}}, "source": map[string]any{"path": "/dumps/day1.jsonl"}})

	errorsBefore := s.errorRecords()
	kinds := map[string]string{}
	for _, rec := range errorsBefore {
		kinds[rec.RequestID] = rec.Kind
	}
	for id, kind := range map[string]string{"rd-1": "validation", "rd-2": "validation", "rd-3": "write", "rd-4": "validation", "rd_dec": "decode"} {
		if kinds[id] != kind {
			t.Fatalf("the live pipeline's error record for %s: kind %q, expected %q (records: %d)", id, kinds[id], kind, len(errorsBefore))
		}
	}
	if len(errorsBefore) != 8 {
		t.Fatalf("%d records on the error topic before the redrive, expected 8", len(errorsBefore))
	}

	// A wrong setting refuses every record (nothing parked, nothing committed) and says why.
	wrong := s.startIngestorConfig(configFile(t, "redrive.yaml"), map[string]string{"REDRIVE_FROM": "2026-11-27", "REDRIVE_CONSUMER_GROUP": "redrive_wrong"})
	wrong.waitLog(`redrive settings: REDRIVE_FROM \"2026-11-27\" is not an RFC 3339 time`, 60*time.Second)
	wrong.kill()
	if n := len(s.topicRecords(parkingTopic)); n != 0 {
		t.Errorf("a redrive with a wrong REDRIVE_FROM parked %d records", n)
	}
	if c := s.groupCommitted("redrive_wrong"); len(c) != 0 {
		t.Errorf("a redrive with a wrong REDRIVE_FROM committed %v", c)
	}

	env := map[string]string{
		"MAPPING_RESERVED_KEYS":  "rename",
		"MAPPING_NUMBERS":        "float",
		"REDRIVE_FROM":           now.Add(-time.Hour).Format(time.RFC3339),
		"REDRIVE_CONSUMER_GROUP": "redrive_1",
	}
	p := s.startIngestorConfig(configFile(t, "redrive.yaml"), env)
	p.waitExit(120 * time.Second)

	// The fixed readings are stored at their own time, or at their original record time.
	rows := map[int64]map[string]any{}
	for _, ser := range s.influx.Query(database, `SELECT * FROM "rd_time"`) {
		for _, row := range ser.Rows() {
			ts, _ := row["time"].(json.Number).Int64()
			rows[ts] = row
		}
	}
	want := map[int64]map[string]string{
		time.Date(2025, 6, 8, 10, 0, 0, 1000, time.UTC).UnixNano(): {"x_time": "1.5", "humidity": "2.5"},
		noTimeRecord.UnixNano(): {"x_time": "3.5"},
	}
	if len(rows) != len(want) {
		t.Errorf("rd_time: %d points stored, expected %d: %v", len(rows), len(want), rows)
	}
	for ts, fields := range want {
		for f, v := range fields {
			if got := fmt.Sprint(rows[ts][f]); got != v {
				t.Errorf("rd_time at %d: %s = %s, expected %s", ts, f, got, v)
			}
		}
	}
	conflict := s.influx.Query(database, fmt.Sprintf(`SELECT value_0 FROM "rd_conflict" WHERE time = %d`, at.Add(time.Second).UnixNano()))
	if len(conflict) != 1 || len(conflict[0].Values) != 1 || fmt.Sprint(conflict[0].Values[0][1]) != "7" {
		t.Errorf("rd_conflict: the redriven reading is not stored as 7: %v", conflict)
	}
	if ty := s.influx.FieldTypes(database, "rd_conflict")["value_0"]; ty != "float" {
		t.Errorf("rd_conflict value_0 is %q", ty)
	}
	for _, m := range s.measurements() {
		switch m {
		case "rd_bad", "rd_dec", "rd_old", "rd_other", "rd_nots":
			t.Errorf("measurement %s stored: that record must not be redriven or must fail", m)
		}
	}
	goodByMeasurement, goodValues := storedExpectations(good)
	if got := s.verifyStored(goodByMeasurement, true); got != goodValues {
		t.Errorf("the live pipeline's readings: %d values, expected %d", got, goodValues)
	}

	// Nothing written back to the error topic; what failed again is parked.
	if n := len(s.errorRecords()); n != len(errorsBefore) {
		t.Errorf("the redrive wrote to the error topic: %d records, %d before", n, len(errorsBefore))
	}
	parked := s.parkedRecords()
	sourceOf := map[string]*readinggen.Source{}
	for _, r := range bad {
		var m map[string]any
		if json.Unmarshal(r.Value, &m) == nil {
			sourceOf[fmt.Sprint(m["request_id"])] = r.Expect.Source
		}
	}
	checkParked := func(parked []parkedRecord, count int) {
		t.Helper()
		byID := map[string]parkedRecord{}
		for _, pr := range parked {
			if pr.RedriveCount != count {
				continue
			}
			byID[pr.RequestID] = pr
			if pr.Service != "ingestor" || pr.Key != pr.RequestID || !isoUTC.MatchString(pr.Timestamp) || !strings.HasPrefix(pr.Error, pr.Kind+": ") {
				t.Errorf("parked record %s: shape: %+v", pr.RequestID, pr)
			}
			from := errorTopic
			if count > 1 {
				from = parkingTopic
			}
			if pr.RedrivenFrom.Topic != from {
				t.Errorf("parked record %s: redriven_from %q, expected %q", pr.RequestID, pr.RedrivenFrom.Topic, from)
			}
		}
		if len(byID) != 2 {
			t.Errorf("%d records parked with redrive_count %d, expected rd-4 and rd-8: %+v", len(byID), count, parked)
		}
		if pr, ok := byID["rd-4"]; !ok || pr.Kind != "validation" || !strings.Contains(pr.Error, "labels") {
			t.Errorf("parked rd-4: %+v", pr)
		} else {
			src := sourceOf["rd-4"]
			if pr.Source["topic"] != inputTopic || fmt.Sprint(pr.Source["partition"]) != fmt.Sprint(src.Partition) ||
				fmt.Sprint(pr.Source["offset"]) != fmt.Sprint(src.Offset) || pr.Source["timestamp_ms"] == nil {
				t.Errorf("parked rd-4: source %v, expected the original record %+v", pr.Source, src)
			}
			if !jsonTextEqual(string(pr.OriginalMessage), string(bad[3].Value)) {
				t.Errorf("parked rd-4: original_message %s", pr.OriginalMessage)
			}
		}
		if pr, ok := byID["rd-8"]; !ok || !strings.Contains(pr.Error, "timestamp") || pr.Source["path"] != "/dumps/day1.jsonl" {
			t.Errorf("parked rd-8: %+v", pr)
		}
	}
	if len(parked) != 2 {
		t.Errorf("%d parked records after the first redrive, expected 2", len(parked))
	}
	checkParked(parked, 1)

	// The parked records redriven without a fix: parked again, counted, and the run ends.
	env["REDRIVE_TOPIC"] = parkingTopic
	env["REDRIVE_CONSUMER_GROUP"] = "redrive_2"
	p2 := s.startIngestorConfig(configFile(t, "redrive.yaml"), env)
	p2.waitExit(120 * time.Second)
	parked = s.parkedRecords()
	if len(parked) != 4 {
		t.Errorf("%d parked records after redriving the parking topic, expected 4", len(parked))
	}
	checkParked(parked, 2)

	// The first group again: it has committed the end of the error topic, nothing moves.
	env["REDRIVE_TOPIC"], env["REDRIVE_CONSUMER_GROUP"] = errorTopic, "redrive_1"
	s.startIngestorConfig(configFile(t, "redrive.yaml"), env).waitExit(60 * time.Second)
	if n := len(s.parkedRecords()); n != 4 {
		t.Errorf("a finished redrive of the error topic parked again: %d parked records, expected 4", n)
	}
	// The parking topic's group again: the records its last run parked (redrive_count 2) are
	// new to it; REDRIVE_MAX_COUNT=2 leaves them parked, so repeated runs converge.
	env["REDRIVE_TOPIC"], env["REDRIVE_CONSUMER_GROUP"], env["REDRIVE_MAX_COUNT"] = parkingTopic, "redrive_2", "2"
	s.startIngestorConfig(configFile(t, "redrive.yaml"), env).waitExit(60 * time.Second)
	if n := len(s.parkedRecords()); n != 4 {
		t.Errorf("records at REDRIVE_MAX_COUNT were redriven: %d parked records, expected 4", n)
	}
	if n := len(s.errorRecords()); n != len(errorsBefore) {
		t.Errorf("the error topic grew to %d records, %d before the redrives", n, len(errorsBefore))
	}
	if !live.running() {
		t.Errorf("the live ingestor exited during the redrives: %v", live.proc.ExitErr())
	}
	points := 3 // rd-1, rd-2, rd-3
	for _, es := range goodByMeasurement {
		points += len(es)
	}
	report(t, "redrive-after-fix", outcome{sent: len(all), errorsExpected: 8, errorRecords: len(errorsBefore), pointsExpected: points,
		valuesExpected: goodValues + 4, valuesStored: goodValues + 4}, time.Since(start))
}

// waitLog waits until the pipeline's log has a line containing text.
func (p *ingestor) waitLog(text string, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if p.logContains(text) {
			return
		}
		if !p.running() {
			p.dumpLog(20)
			p.t.Fatalf("the pipeline exited (%v) before logging %q", p.proc.ExitErr(), text)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.dumpLog(20)
	p.t.Fatalf("no log line containing %q within %v", text, timeout)
}
