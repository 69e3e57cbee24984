package readinggen_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/preservarium/iot-ingestor/internal/dev/readinggen"
	"github.com/preservarium/iot-ingestor/internal/testkit/influxtest"
)

// TestExpectationsHoldInInfluxDB stores a generated stream, mapped by
// reading_to_point, in a real InfluxDB 1.8 and reads every expected value
// back: the stream never provokes a field type conflict, and what the
// expectations say is stored (types, exact values, \n kept as two characters,
// JSON text, the record time for messages without a timestamp) is what the
// server holds.
func TestExpectationsHoldInInfluxDB(t *testing.T) {
	srv := influxtest.Start(t, influxtest.Options{})
	const db = "iot_data"
	srv.CreateDatabase(db)

	opts := readinggen.DefaultOptions()
	opts.Devices = 12
	opts.BadShare = 0.1
	gen, err := readinggen.New(8, opts)
	if err != nil {
		t.Fatal(err)
	}
	readings := make([]readinggen.Reading, 3000)
	for i := range readings {
		readings[i] = gen.Next()
	}
	results := runMapper(t, readings)

	// Write every mapped point, 500 lines a request.
	var lines [][]byte
	for i, r := range readings {
		m, ok := results[i]
		if !ok || m.GetError() != nil || r.Expect.Outcome != readinggen.OutcomeStored {
			continue
		}
		b, _ := m.AsBytes()
		lines = append(lines, b)
	}
	for start := 0; start < len(lines); start += 500 {
		body := bytes.Join(lines[start:min(start+500, len(lines))], []byte("\n"))
		writeLines(t, srv, db, body)
	}

	byDevice := map[string][]readinggen.Expectation{}
	for _, r := range readings {
		if r.Expect.Outcome == readinggen.OutcomeStored {
			byDevice[r.Expect.Measurement] = append(byDevice[r.Expect.Measurement], r.Expect)
		}
	}
	checked := 0
	for dev, exps := range byDevice {
		types := srv.FieldTypes(db, dev)
		series := srv.Query(db, fmt.Sprintf("SELECT * FROM %q", dev))
		if len(series) != 1 {
			t.Fatalf("measurement %q: %d series, want 1", dev, len(series))
		}
		rows := map[int64]map[string]any{}
		for _, row := range series[0].Rows() {
			ts, err := row["time"].(json.Number).Int64()
			if err != nil {
				t.Fatalf("measurement %q: time %v: %v", dev, row["time"], err)
			}
			rows[ts] = row
		}
		if len(rows) != len(exps) {
			t.Errorf("measurement %q: %d points stored, %d expected", dev, len(rows), len(exps))
		}
		for _, e := range exps {
			row, ok := rows[e.TimestampNS]
			if !ok {
				t.Errorf("seq %d: no point of %q at %d", e.Seq, dev, e.TimestampNS)
				continue
			}
			for _, f := range e.Fields {
				if got := types[f.Name]; got != string(f.Type) {
					t.Errorf("seq %d: field %q of %q is stored as %s, expected %s", e.Seq, f.Name, dev, got, f.Type)
				}
				if err := sameStored(row[f.Name], f); err != nil {
					t.Errorf("seq %d: %q field %q: %v", e.Seq, dev, f.Name, err)
				}
				checked++
			}
		}
	}
	if checked == 0 {
		t.Fatal("no value was checked")
	}
	t.Logf("%d points, %d values read back from InfluxDB and equal to the expectations", len(lines), checked)
}

func sameStored(got any, f readinggen.Field) error {
	switch f.Type {
	case readinggen.FieldFloat:
		n, ok := got.(json.Number)
		x, err := strconv.ParseFloat(string(n), 64)
		if !ok || err != nil || x != f.Value.(float64) {
			return fmt.Errorf("stored %v, expected float %v", got, f.Value)
		}
	case readinggen.FieldInteger:
		n, ok := got.(json.Number)
		x, err := strconv.ParseInt(string(n), 10, 64)
		if !ok || err != nil || x != f.Value.(int64) {
			return fmt.Errorf("stored %v, expected integer %v", got, f.Value)
		}
	case readinggen.FieldBoolean:
		if got != f.Value {
			return fmt.Errorf("stored %v, expected %v", got, f.Value)
		}
	case readinggen.FieldString:
		s, ok := got.(string)
		if !ok {
			return fmt.Errorf("stored %v, expected string %q", got, f.Value)
		}
		if f.JSONText {
			var a, b any
			if json.Unmarshal([]byte(s), &a) != nil || json.Unmarshal([]byte(f.Value.(string)), &b) != nil || !reflect.DeepEqual(a, b) {
				return fmt.Errorf("stored JSON %s, expected %s", s, f.Value)
			}
		} else if s != f.Value {
			return fmt.Errorf("stored %q, expected %q", s, f.Value)
		}
	}
	return nil
}

func writeLines(t *testing.T, srv *influxtest.Server, db string, body []byte) {
	t.Helper()
	q := url.Values{"bucket": {db}, "org": {"preservarium"}, "precision": {"ns"}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL()+"/api/v2/write?"+q.Encode(), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Token "+srv.Token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("writing to InfluxDB: %v", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("InfluxDB answered %d to a write of generated points: %s", resp.StatusCode, msg)
	}
}
