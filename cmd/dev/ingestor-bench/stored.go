package main

// What a run stored, read back from InfluxDB: the field-value count that times the whole-run
// drains, and the check that Telegraf, with bench/telegraf/mapping.star, stores the same values
// as the ingestor.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"reflect"
	"slices"
	"strings"
)

// series is one series of an InfluxQL answer.
type series struct {
	Name    string            `json:"name"`
	Tags    map[string]string `json:"tags"`
	Columns []string          `json:"columns"`
	Values  [][]any           `json:"values"`
}

// querySeries runs one InfluxQL statement on db and returns every series of the answer, numbers
// as json.Number so that integers and floats keep their exact text.
func querySeries(s *influxServer, db, q string) ([]series, error) {
	resp, err := s.http.PostForm(s.url+"/query", url.Values{"q": {q}, "db": {db}})
	if err != nil {
		return nil, fmt.Errorf("InfluxDB query %q: %w", q, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("InfluxDB query %q answered %d: %s", q, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	var out struct {
		Results []struct {
			Error  string   `json:"error"`
			Series []series `json:"series"`
		} `json:"results"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("InfluxDB query %q: answer is not JSON: %w", q, err)
	}
	var all []series
	for _, r := range out.Results {
		if r.Error != "" {
			return nil, fmt.Errorf("InfluxDB query %q: %s", q, r.Error)
		}
		all = append(all, r.Series...)
	}
	return all, nil
}

// hasMeasurement tells whether anything is stored in db yet.
func hasMeasurement(s *influxServer, db string) (bool, error) {
	ss, err := querySeries(s, db, "SHOW MEASUREMENTS LIMIT 1")
	if err != nil {
		return false, err
	}
	for _, se := range ss {
		if len(se.Values) > 0 {
			return true, nil
		}
	}
	return false, nil
}

// fieldCounts is every measurement's count of stored values per field.
func fieldCounts(s *influxServer, db string) (map[string]map[string]int64, error) {
	return perMeasurement(s, db, "SELECT COUNT(*) FROM /.*/", func(se series) (map[string]int64, error) {
		m := map[string]int64{}
		for _, row := range se.Values {
			for i, v := range row {
				if i >= len(se.Columns) || se.Columns[i] == "time" {
					continue
				}
				n, ok := v.(json.Number)
				if !ok {
					continue // null: the field has no value in this measurement
				}
				c, err := n.Int64()
				if err != nil {
					return nil, fmt.Errorf("count %q of %s is not an integer", n, se.Name)
				}
				if c > 0 {
					m[strings.TrimPrefix(se.Columns[i], "count_")] += c
				}
			}
		}
		return m, nil
	})
}

// fieldTypes is every measurement's type per field.
func fieldTypes(s *influxServer, db string) (map[string]map[string]string, error) {
	return perMeasurement(s, db, "SHOW FIELD KEYS", func(se series) (map[string]string, error) {
		m := map[string]string{}
		for _, row := range se.Values {
			if len(row) >= 2 {
				m[fmt.Sprint(row[0])] = fmt.Sprint(row[1])
			}
		}
		return m, nil
	})
}

// perMeasurement runs q on db and makes one value per measurement of the answer with of.
func perMeasurement[T any](s *influxServer, db, q string, of func(series) (T, error)) (map[string]T, error) {
	ss, err := querySeries(s, db, q)
	if err != nil {
		return nil, err
	}
	out := make(map[string]T, len(ss))
	for _, se := range ss {
		v, err := of(se)
		if err != nil {
			return nil, err
		}
		out[se.Name] = v
	}
	return out, nil
}

// fieldValueCount is how many field values db holds: the whole-run drains' progress.
func fieldValueCount(s *influxServer, db string) (int64, error) {
	counts, err := fieldCounts(s, db)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, m := range counts {
		for _, c := range m {
			n += c
		}
	}
	return n, nil
}

// pointsWritten is how many points InfluxDB's shards of db have accepted since the server
// started, from its own statistics (SHOW STATS FOR 'shard', each shard's writePointsOk). It costs
// InfluxDB nothing whatever db holds, where counting the values (fieldValueCount) reads every
// series: with 5,000 measurements a count a second took more of the shared CPU than the run
// being timed. A point written twice counts twice.
func pointsWritten(s *influxServer, db string) (int64, error) {
	ss, err := querySeries(s, "", "SHOW STATS FOR 'shard'")
	if err != nil {
		return 0, err
	}
	var n int64
	for _, se := range ss {
		if se.Tags["database"] != db {
			continue
		}
		col := slices.Index(se.Columns, "writePointsOk")
		if col < 0 {
			return 0, fmt.Errorf("InfluxDB's shard statistics have no writePointsOk column: %v", se.Columns)
		}
		for _, row := range se.Values {
			if col >= len(row) {
				continue
			}
			num, ok := row[col].(json.Number)
			if !ok {
				return 0, fmt.Errorf("writePointsOk of a shard of %s is %v, not a number", db, row[col])
			}
			c, err := num.Int64()
			if err != nil {
				return 0, fmt.Errorf("writePointsOk of a shard of %s: %w", db, err)
			}
			n += c
		}
	}
	return n, nil
}

// compareSample is how many points of each sampled measurement are compared value by value.
const (
	compareMeasurements = 8
	comparePoints       = 500
)

// compareStored checks that db holds what ref holds: the same count per field for every
// measurement, and, for a sample of measurements, the same points value by value (a string
// that holds JSON is compared as JSON: the key order of nested values is each mapper's own).
func compareStored(s *influxServer, ref, db string) error {
	want, err := fieldCounts(s, ref)
	if err != nil {
		return err
	}
	got, err := fieldCounts(s, db)
	if err != nil {
		return err
	}
	var diffs []string
	names := make([]string, 0, len(want))
	for m := range want {
		names = append(names, m)
	}
	slices.Sort(names)
	for _, m := range names {
		if !reflect.DeepEqual(want[m], got[m]) {
			diffs = append(diffs, fmt.Sprintf("measurement %q: counts per field %v, expected %v", m, got[m], want[m]))
		}
	}
	for m := range got {
		if _, ok := want[m]; !ok {
			diffs = append(diffs, fmt.Sprintf("measurement %q is not expected", m))
		}
	}
	// A query's answer does not tell an integer 5 from a float 5: the field types are compared
	// apart.
	wantTypes, err := fieldTypes(s, ref)
	if err != nil {
		return err
	}
	gotTypes, err := fieldTypes(s, db)
	if err != nil {
		return err
	}
	for _, m := range names {
		if !reflect.DeepEqual(wantTypes[m], gotTypes[m]) {
			diffs = append(diffs, fmt.Sprintf("measurement %q: field types %v, expected %v", m, gotTypes[m], wantTypes[m]))
		}
	}
	// Spread the sample over the sorted names, so the escaped ones at the front are in it.
	step := max(1, len(names)/compareMeasurements)
	for i := 0; i < len(names) && len(diffs) < 20; i += step {
		q := fmt.Sprintf("SELECT * FROM %s ORDER BY time ASC LIMIT %d", quoteIdent(names[i]), comparePoints)
		a, err := querySeries(s, ref, q)
		if err != nil {
			return err
		}
		b, err := querySeries(s, db, q)
		if err != nil {
			return err
		}
		diffs = append(diffs, diffPoints(names[i], a, b)...)
	}
	if len(diffs) > 0 {
		if len(diffs) > 10 {
			diffs = append(diffs[:10], fmt.Sprintf("and %d more", len(diffs)-10))
		}
		return fmt.Errorf("%s", strings.Join(diffs, "; "))
	}
	return nil
}

func quoteIdent(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// diffPoints compares the rows of one measurement, column by column by name.
func diffPoints(m string, want, got []series) []string {
	if len(want) != 1 || len(got) != 1 {
		return []string{fmt.Sprintf("measurement %q: %d series, expected %d", m, len(got), len(want))}
	}
	w, g := want[0], got[0]
	if len(w.Values) != len(g.Values) {
		return []string{fmt.Sprintf("measurement %q: %d points in the sample, expected %d", m, len(g.Values), len(w.Values))}
	}
	col := map[string]int{}
	for i, c := range g.Columns {
		col[c] = i
	}
	var diffs []string
	for r := range w.Values {
		for i, c := range w.Columns {
			wv := w.Values[r][i]
			var gv any
			if j, ok := col[c]; ok {
				gv = g.Values[r][j]
			}
			if !sameValue(wv, gv) {
				diffs = append(diffs, fmt.Sprintf("measurement %q, point %d (%v), %s: %#v, expected %#v", m, r, w.Values[r][0], c, gv, wv))
				if len(diffs) >= 5 {
					return diffs
				}
			}
		}
	}
	return diffs
}

// sameValue: equal text, or equal numbers, or equal JSON documents.
func sameValue(a, b any) bool {
	if reflect.DeepEqual(a, b) {
		return true
	}
	an, aok := a.(json.Number)
	bn, bok := b.(json.Number)
	if aok && bok {
		x, err1 := an.Float64()
		y, err2 := bn.Float64()
		return err1 == nil && err2 == nil && x == y
	}
	as, aok := a.(string)
	bs, bok := b.(string)
	if !aok || !bok {
		return false
	}
	var x, y any
	if json.Unmarshal([]byte(as), &x) != nil || json.Unmarshal([]byte(bs), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
