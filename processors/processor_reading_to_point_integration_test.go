package processors

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/preservarium/iot-ingestor/internal/influxtest"
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
