package processors

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/preservarium/iot-ingestor/internal/testkit/influxtest"
)

// TestReadingToPointEscapingInInfluxDB writes the processor's lines for
// readings full of characters line protocol must escape to a real InfluxDB
// (1.8, built by scripts/install-influxdb.sh) and reads every name and value
// back: what the reference decoder accepts must also be what the server
// stores, byte for byte.
func TestReadingToPointEscapingInInfluxDB(t *testing.T) {
	srv := influxtest.Start(t, influxtest.Options{})
	const db = "rtp_escaping"
	srv.CreateDatabase(db)

	p := newTestReadingToPoint(t, "tags: {index: index, datatype: metadata.datatype_name}")
	inputs := []string{
		`{"device_id":"dev a,b=c","values":[21.5,7,true,"he said \"hi\" \\ C:\\temp",48.0],"labels":["x y,z=w","température °C","flag","q\"uote","=eq"],"index":"P","metadata":{"datatype_name":"Paramètres Texte, v=2"},"timestamp":"2025-06-08T18:27:17.476623"}`,
		`{"device_id":"C:\\dev","values":["line1\nline2","tab\there","日本",[1,{"a":NaN}],"cr\rend"],"labels":["a\\b","t","jp","nested","cr"],"index":"","timestamp":"2025-06-08T18:27:17"}`,
	}
	var lines []string
	for _, in := range inputs {
		r := runRTP(t, p, in, nil)
		if r.err != "" || r.dropped {
			t.Fatalf("mapping %s: error %q, dropped %v", in, r.err, r.dropped)
		}
		lines = append(lines, r.line)
	}
	if code, body := srv.WriteLP(db, strings.Join(lines, "\n")); code != 204 {
		t.Fatalf("InfluxDB refused the lines (%d %s):\n%s", code, body, strings.Join(lines, "\n"))
	}

	type point struct {
		tags   map[string]string
		fields map[string]any
	}
	want := map[string]point{
		"dev a,b=c": {
			tags: map[string]string{"index": "P", "datatype": "Paramètres Texte, v=2"},
			fields: map[string]any{
				"time": json.Number("1749407237476623000"), "x y,z=w": json.Number("21.5"),
				"température °C": json.Number("7"), "flag": true,
				`q"uote`: `he said "hi" \ C:\temp`, "=eq": json.Number("48"),
			},
		},
		`C:\dev`: {
			tags: map[string]string{"datatype": "", "index": ""},
			fields: map[string]any{
				"time":   json.Number("1749407237000000000"),
				`a\b`:    `line1\nline2`, // the documented loss: a newline is stored as backslash n
				"t":      "tab\there",
				"jp":     "日本",
				"nested": `[1,{"a":null}]`,
				"cr":     `cr\rend`,
			},
		},
	}
	got := map[string]point{}
	for _, s := range srv.Query(db, `SELECT * FROM /.*/ GROUP BY *`) {
		rows := s.Rows()
		if len(rows) != 1 {
			t.Fatalf("series %q: want one point, got %d", s.Name, len(rows))
		}
		fields := map[string]any{}
		for k, v := range rows[0] {
			if v != nil {
				fields[k] = v
			}
		}
		got[s.Name] = point{tags: s.Tags, fields: fields}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("stored points differ\n got: %#v\nwant: %#v", got, want)
	}

	// Types as stored: the integer literal stayed an integer, 48.0 a float.
	types := srv.FieldTypes(db, "dev a,b=c")
	wantTypes := map[string]string{"x y,z=w": "float", "température °C": "integer", "flag": "boolean", `q"uote`: "string", "=eq": "float"}
	if !reflect.DeepEqual(types, wantTypes) {
		t.Errorf("field types: got %v, want %v", types, wantTypes)
	}
}

// TestReadingToPointLimitsInInfluxDB writes the largest points the default
// limits let through to a real InfluxDB: a reading of max_fields values, and
// one whose line is just under max_line_bytes. Both are stored whole, so the
// defaults refuse nothing InfluxDB would take from a reading of that size; the
// readings one over are validation errors and never reach it.
func TestReadingToPointLimitsInInfluxDB(t *testing.T) {
	srv := influxtest.Start(t, influxtest.Options{})
	const db = "rtp_limits"
	srv.CreateDatabase(db)
	p := newTestReadingToPoint(t, "")

	const ts = `"timestamp":"2025-06-08T18:27:17"`
	long := `"` + strings.Repeat("x", 65000) + `"`
	wide := runRTP(t, p, `{"device_id":"wide","values":[`+zeros(rtpDefaultMaxFields)+`],`+ts+`}`, nil)
	tall := runRTP(t, p, `{"device_id":"tall","values":[`+strings.Repeat(long+",", 15)+long+`],`+ts+`}`, nil)
	for name, r := range map[string]rtpResult{"wide": wide, "tall": tall} {
		if r.err != "" || r.dropped {
			t.Fatalf("%s: error %q, dropped %v", name, r.err, r.dropped)
		}
	}
	if n := len(tall.line); n > rtpDefaultMaxLineBytes || n < rtpDefaultMaxLineBytes-16*1024 {
		t.Fatalf("the tall line is %d bytes, want just under %d", n, rtpDefaultMaxLineBytes)
	}
	if code, body := srv.WriteLP(db, wide.line+"\n"+tall.line); code != 204 {
		t.Fatalf("InfluxDB refused the lines (%d %s)", code, body)
	}
	for measurement, fields := range map[string]int{"wide": rtpDefaultMaxFields, "tall": 16} {
		series := srv.Query(db, `SELECT * FROM "`+measurement+`"`)
		if len(series) != 1 || len(series[0].Rows()) != 1 {
			t.Fatalf("%s: want one point, got %v", measurement, series)
		}
		row := series[0].Rows()[0]
		if len(row) != fields+1 { // time and the fields
			t.Errorf("%s: stored %d columns, want %d fields and time", measurement, len(row), fields)
		}
		if measurement == "tall" && row["value_15"] != strings.Repeat("x", 65000) {
			t.Errorf("tall: value_15 not stored whole")
		}
	}

	over := runRTP(t, p, `{"device_id":"wide","values":[`+zeros(rtpDefaultMaxFields+1)+`],`+ts+`}`, nil)
	if !strings.Contains(over.err, "(max_fields)") {
		t.Errorf("one value more: error %q, want the max_fields error", over.err)
	}
}
