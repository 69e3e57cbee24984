package readinggen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// The golden bytes below were produced by CPython 3's json.dumps on the same
// object, with the defaults and with separators=(",", ":"), ensure_ascii=False.
const (
	goldenPython  = `{"request_id": "4bcf0f94-9a3e-4d0f-a0a3-62c1d1b0c7de", "timestamp": "2025-06-25T08:57:34.618082+00:00", "device_id": "capteur-\u00e92", "values": [21.0, 0.0001, 1e-05, 1.5e+16, 123456789012345.6, -0.0, 120, -7, 18446744073709551616, NaN, Infinity, -Infinity, null, true, false, "Param\u00e8tres \u00b0C \ud83d\ude00\t\n\"\\/\u0001\u007f\b\f\r", [{"channel_mask": 1, "parameters": [300, 20, 1]}], {}, []], "labels": ["temp\u00e9rature", "a,b", null, ""], "metadata": {"persist": [true, false], "datatype_min": -40.0}}`
	goldenCompact = "{\"request_id\":\"4bcf0f94-9a3e-4d0f-a0a3-62c1d1b0c7de\",\"timestamp\":\"2025-06-25T08:57:34.618082+00:00\",\"device_id\":\"capteur-é2\",\"values\":[21.0,0.0001,1e-05,1.5e+16,123456789012345.6,-0.0,120,-7,18446744073709551616,NaN,Infinity,-Infinity,null,true,false,\"Paramètres °C 😀\\t\\n\\\"\\\\/\\u0001\x7f\\b\\f\\r\",[{\"channel_mask\":1,\"parameters\":[300,20,1]}],{},[]],\"labels\":[\"température\",\"a,b\",null,\"\"],\"metadata\":{\"persist\":[true,false],\"datatype_min\":-40.0}}"
)

func goldenObject() object {
	return object{
		{"request_id", "4bcf0f94-9a3e-4d0f-a0a3-62c1d1b0c7de"},
		{"timestamp", "2025-06-25T08:57:34.618082+00:00"},
		{"device_id", "capteur-é2"},
		{"values", []any{
			21.0, 0.0001, 1e-05, 1.5e+16, 123456789012345.6, math.Copysign(0, -1), int64(120), int64(-7),
			bigInt("18446744073709551616"), math.NaN(), math.Inf(1), math.Inf(-1), nil, true, false,
			"Paramètres °C 😀\t\n\"\\/\x01\x7f\b\f\r",
			[]any{object{{"channel_mask", int64(1)}, {"parameters", []any{int64(300), int64(20), int64(1)}}}},
			object{}, []any{},
		}},
		{"labels", []any{"température", "a,b", nil, ""}},
		{"metadata", object{{"persist", []any{true, false}}, {"datatype_min", -40.0}}},
	}
}

func TestPythonJSONDumpsBytes(t *testing.T) {
	if got := string(stylePython.encode(nil, goldenObject())); got != goldenPython {
		t.Errorf("json.dumps default style:\n got %s\nwant %s", got, goldenPython)
	}
	if got := string(styleCompact.encode(nil, goldenObject())); got != goldenCompact {
		t.Errorf("compact raw UTF-8 style:\n got %q\nwant %q", got, goldenCompact)
	}
}

func TestIsoformat(t *testing.T) {
	ts := time.Date(2025, 6, 8, 18, 27, 17, 476623000, time.UTC)
	for _, tc := range []struct {
		t      time.Time
		offset bool
		want   string
	}{
		{ts, false, "2025-06-08T18:27:17.476623"},
		{ts, true, "2025-06-08T18:27:17.476623+00:00"},
		{ts.Truncate(time.Second), false, "2025-06-08T18:27:17"},
		{ts.Truncate(time.Second), true, "2025-06-08T18:27:17+00:00"},
		{ts.Truncate(time.Second).Add(5 * time.Microsecond), true, "2025-06-08T18:27:17.000005+00:00"},
	} {
		if got := isoformat(tc.t, tc.offset); got != tc.want {
			t.Errorf("isoformat(%v, %v) = %q, want %q", tc.t, tc.offset, got, tc.want)
		}
	}
}

func collect(t *testing.T, seed int64, opts Options, n int) []Reading {
	t.Helper()
	g, err := New(seed, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	out := make([]Reading, n)
	for i := range out {
		out[i] = g.Next()
	}
	return out
}

func TestDeterministic(t *testing.T) {
	a := collect(t, 42, DefaultOptions(), 2000)
	b := collect(t, 42, DefaultOptions(), 2000)
	for i := range a {
		if !bytes.Equal(a[i].Key, b[i].Key) || !bytes.Equal(a[i].Value, b[i].Value) || !a[i].Timestamp.Equal(b[i].Timestamp) || !reflect.DeepEqual(a[i].Expect, b[i].Expect) {
			t.Fatalf("message %d differs between two runs with seed 42:\n%s\n%s", i, a[i].Value, b[i].Value)
		}
	}
	c := collect(t, 43, DefaultOptions(), 2000)
	same := 0
	for i := range a {
		if bytes.Equal(a[i].Value, c[i].Value) {
			same++
		}
	}
	if same > 0 {
		t.Errorf("seeds 42 and 43 produced %d identical messages out of 2000", same)
	}
}

func TestOptionsValidated(t *testing.T) {
	for _, o := range []Options{
		{Devices: 0, BadShare: 0.1},
		{Devices: 5, BadShare: -0.1},
		{Devices: 5, BadShare: 1.5},
		{Devices: 5, Precision: 10 * time.Millisecond},
	} {
		if _, err := New(1, o); err == nil {
			t.Errorf("New accepted invalid options %+v", o)
		}
	}
}

func TestBadShare(t *testing.T) {
	for _, share := range []float64{0, 0.05, 0.2, 1} {
		opts := DefaultOptions()
		opts.BadShare = share
		rs := collect(t, 7, opts, 20000)
		byKind := map[BadKind]int{}
		bad := 0
		for _, r := range rs {
			if r.Expect.Outcome == OutcomeError {
				bad++
				byKind[r.Expect.BadKind]++
			}
		}
		got := float64(bad) / float64(len(rs))
		if math.Abs(got-share) > 0.01 {
			t.Errorf("bad share %v: got %v (%d of %d)", share, got, bad, len(rs))
		}
		if share == 0 {
			continue
		}
		// Kinds are dealt round by round: every kind within one of the others.
		minN, maxN := len(rs), 0
		for _, k := range BadKinds {
			minN, maxN = min(minN, byKind[k]), max(maxN, byKind[k])
		}
		if maxN-minN > 1 {
			t.Errorf("bad share %v: kinds unevenly dealt: %v", share, byKind)
		}
	}
}

// requiredVariants: every variant of the contract and every bad kind must
// show up in a few thousand messages of the default stream.
var requiredVariants = []string{
	"enc:python", "enc:compact",
	"ts:naive", "ts:offset", "ts:whole-second", "ts:record-time:absent", "ts:record-time:null", "ts:record-time:empty",
	"labels:labels", "labels:label", "labels:both", "labels:none", "labels:null",
	"label:null-entry", "label:empty", "label:escape",
	"display_names:present", "display_names:null", "display_names:absent",
	"metadata:object", "metadata:null", "metadata:absent", "metadata:extras-nested",
	"persist:absent", "persist:true", "persist:false", "persist:list", "persist:list-short", "persist:list-long",
	"datatype_type:full", "datatype_type:short",
	"typed:number", "typed:integer", "typed:boolean", "typed:string",
	"index:T", "index:M", "index:U", "index:P", "index:OK_ALARM", "index:P_ARRAY", "typed",
	"values:single", "values:multi",
	"value:float", "value:float-integral", "value:float-exp", "value:int", "value:bigint", "value:bool",
	"value:numeric-string", "value:string", "value:string-newline", "value:nested", "value:nested-nonfinite",
	"value:null", "value:nan", "value:+inf", "value:-inf",
	"device:escape", "outcome:filtered", "bad:with-nonfinite",
	"bad:not_json:truncated", "bad:not_json:python-repr", "bad:not_json:text", "bad:not_json:invalid-utf8", "bad:not_json:lowercase-nan",
	"bad:not_object:array", "bad:not_object:string", "bad:not_object:number", "bad:not_object:null", "bad:not_object:bool", "bad:not_object:nan",
	"bad:missing_device_id:absent", "bad:missing_device_id:empty", "bad:missing_device_id:null", "bad:missing_device_id:number",
	"bad:values_not_array:absent", "bad:values_not_array:number", "bad:values_not_array:string", "bad:values_not_array:object", "bad:values_not_array:null",
}

func TestEveryVariantAppears(t *testing.T) {
	seen := map[string]int{}
	for _, r := range collect(t, 1, DefaultOptions(), 5000) {
		for _, v := range r.Expect.Variants {
			seen[v]++
		}
	}
	for _, k := range BadKinds {
		if seen["bad:"+string(k)] == 0 {
			t.Errorf("bad kind %s never generated in 5000 messages", k)
		}
	}
	for _, v := range requiredVariants {
		if seen[v] == 0 {
			t.Errorf("variant %s never generated in 5000 messages", v)
		}
	}
	devices := map[string]bool{}
	for _, r := range collect(t, 1, DefaultOptions(), 5000) {
		devices[string(r.Key)] = true
	}
	for _, id := range []string{"282c02424eed", "2261001", "sensor 12", "gw,north-3", "probe=7", "capteur-é2"} {
		if !devices[id] {
			t.Errorf("device %q never used", id)
		}
	}
}

// pyTokensToNull turns Python's NaN / Infinity / -Infinity tokens outside
// strings into null, so encoding/json can read the rest of a message.
func pyTokensToNull(b []byte) []byte {
	var out []byte
	inStr, esc := false, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inStr {
			out = append(out, c)
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		switch {
		case c == '"':
			inStr = true
		case bytes.HasPrefix(b[i:], []byte("NaN")):
			out, i = append(out, "null"...), i+2
			continue
		case bytes.HasPrefix(b[i:], []byte("Infinity")):
			out, i = append(out, "null"...), i+7
			continue
		case bytes.HasPrefix(b[i:], []byte("-Infinity")):
			out, i = append(out, "null"...), i+8
			continue
		}
		out = append(out, c)
	}
	return out
}

// TestMessagesMatchTheirExpectations checks the structure of every message
// against its expectation: valid messages decode, carry the expected
// measurement and timestamp, and account for every value; bad ones are bad
// in the way their kind says.
func TestMessagesMatchTheirExpectations(t *testing.T) {
	opts := DefaultOptions()
	opts.BadShare = 0.2
	for _, r := range collect(t, 3, opts, 5000) {
		e := r.Expect
		python := strings.Contains(strings.Join(e.Variants, " "), "enc:python")
		if python && !isASCII(r.Value) && e.BadKind != BadNotJSON {
			t.Errorf("seq %d: json.dumps style message is not pure ASCII: %s", e.Seq, r.Value)
		}
		var doc any
		decErr := json.Unmarshal(pyTokensToNull(r.Value), &doc)
		obj, isObj := doc.(map[string]any)
		if e.Outcome == OutcomeError {
			switch e.BadKind {
			case BadNotJSON:
				if decErr == nil {
					t.Errorf("seq %d: not_json message is JSON: %s", e.Seq, r.Value)
				}
				if e.RequestID != string(r.Key) {
					t.Errorf("seq %d: not_json expects request_id %q, want the key %q", e.Seq, e.RequestID, r.Key)
				}
			case BadNotObject:
				if decErr != nil || isObj {
					t.Errorf("seq %d: not_object message is not a non-object JSON value (%v): %s", e.Seq, decErr, r.Value)
				}
			default:
				if decErr != nil || !isObj {
					t.Errorf("seq %d: %s message is not a JSON object (%v): %s", e.Seq, e.BadKind, decErr, r.Value)
				}
				if e.ErrorKind != ErrorKindValidation || e.RequestID != obj["request_id"] {
					t.Errorf("seq %d: %s expects kind %q request_id %q", e.Seq, e.BadKind, e.ErrorKind, e.RequestID)
				}
			}
			continue
		}
		if decErr != nil || !isObj {
			t.Fatalf("seq %d: valid message does not decode as an object (%v): %s", e.Seq, decErr, r.Value)
		}
		if rid, _ := obj["request_id"].(string); !uuid4Pattern.MatchString(rid) || rid != e.RequestID {
			t.Errorf("seq %d: request_id %q is not the expected UUID4 %q", e.Seq, rid, e.RequestID)
		}
		if obj["device_id"] != e.Measurement || string(r.Key) != e.Measurement {
			t.Errorf("seq %d: measurement %q, device_id %v, key %q", e.Seq, e.Measurement, obj["device_id"], r.Key)
		}
		var ts time.Time
		var err error
		switch tsText, _ := obj["timestamp"].(string); tsText {
		case "":
			// Absent, null or empty: the record time, which Kafka keeps in ms.
			ts = r.Timestamp
			if ts.IsZero() || ts.Nanosecond()%int(time.Millisecond) != 0 {
				t.Errorf("seq %d: no timestamp and record time %v is not whole milliseconds", e.Seq, ts)
			}
		default:
			if !strings.HasSuffix(tsText, "+00:00") {
				tsText += "+00:00" // naive isoformat means UTC
			}
			ts, err = time.Parse("2006-01-02T15:04:05.999999-07:00", tsText)
			if err == nil && !r.Timestamp.Equal(ts.Truncate(time.Millisecond)) {
				t.Errorf("seq %d: record time %v is not the reading's %v", e.Seq, r.Timestamp, ts)
			}
		}
		if err != nil {
			t.Errorf("seq %d: timestamp %v: %v", e.Seq, obj["timestamp"], err)
		} else if ts.UnixNano() != e.TimestampNS {
			t.Errorf("seq %d: timestamp %v is %d ns, expectation says %d", e.Seq, obj["timestamp"], ts.UnixNano(), e.TimestampNS)
		}
		values := obj["values"].([]any)
		if n := len(e.Fields) + e.Skipped.Null + e.Skipped.NonFinite + e.Skipped.Unpersisted; n != len(values) {
			t.Errorf("seq %d: %d values but expectation accounts for %d: %s", e.Seq, len(values), n, r.Value)
		}
		// The persist flags that fall on values are the unpersisted count.
		if meta, ok := obj["metadata"].(map[string]any); ok {
			wantUnpersisted := 0
			switch p := meta["persist"].(type) {
			case bool:
				if !p {
					wantUnpersisted = len(values)
				}
			case []any:
				for i, flag := range p {
					if i < len(values) && flag == false {
						wantUnpersisted++
					}
				}
			}
			if e.Skipped.Unpersisted != wantUnpersisted {
				t.Errorf("seq %d: persist %v over %d values, expectation skips %d as unpersisted", e.Seq, meta["persist"], len(values), e.Skipped.Unpersisted)
			}
		}
		if (e.Outcome == OutcomeFiltered) != (len(e.Fields) == 0) {
			t.Errorf("seq %d: outcome %s with %d fields", e.Seq, e.Outcome, len(e.Fields))
		}
	}
}

var uuid4Pattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// TestFieldTypesConsistent: one field name never changes type, or InfluxDB
// would reject the later points for a reason that is the generator's fault.
func TestFieldTypesConsistent(t *testing.T) {
	types := map[string]FieldType{}
	for _, r := range collect(t, 5, DefaultOptions(), 20000) {
		for _, f := range r.Expect.Fields {
			if prev, ok := types[f.Name]; ok && prev != f.Type {
				t.Fatalf("field %q is %s in seq %d but %s before", f.Name, f.Type, r.Expect.Seq, prev)
			}
			types[f.Name] = f.Type
			switch f.Type {
			case FieldFloat:
				v := f.Value.(float64)
				if math.IsNaN(v) || math.IsInf(v, 0) {
					t.Errorf("seq %d: field %q expects non-finite %v", r.Expect.Seq, f.Name, v)
				}
			case FieldInteger:
				_ = f.Value.(int64)
			case FieldBoolean:
				_ = f.Value.(bool)
			case FieldString:
				if s := f.Value.(string); strings.Contains(s, "\n") || !utf8.ValidString(s) {
					t.Errorf("seq %d: field %q expects a string InfluxDB cannot hold: %q", r.Expect.Seq, f.Name, s)
				}
			}
		}
	}
}

func TestTimestampsUniquePerDevice(t *testing.T) {
	for _, prec := range []time.Duration{time.Microsecond, time.Second} {
		opts := DefaultOptions()
		opts.Devices = 5
		opts.Precision = prec
		seen := map[string]int{}
		for _, r := range collect(t, 9, opts, 5000) {
			if r.Expect.Outcome != OutcomeStored {
				continue
			}
			if r.Expect.TimestampNS%int64(prec) != 0 {
				t.Errorf("precision %v: seq %d timestamp %d not truncated", prec, r.Expect.Seq, r.Expect.TimestampNS)
			}
			k := fmt.Sprintf("%s/%d", r.Expect.Measurement, r.Expect.TimestampNS)
			if prev, dup := seen[k]; dup {
				t.Errorf("precision %v: seq %d and %d are one point %s", prec, prev, r.Expect.Seq, k)
			}
			seen[k] = r.Expect.Seq
		}
	}
}

func TestExpectationJSONLines(t *testing.T) {
	for _, r := range collect(t, 11, DefaultOptions(), 3000) {
		line, err := r.Expect.MarshalJSONLine()
		if err != nil {
			t.Fatalf("seq %d: marshal: %v", r.Expect.Seq, err)
		}
		if bytes.ContainsRune(line, '\n') {
			t.Fatalf("seq %d: line contains a newline", r.Expect.Seq)
		}
		back, err := ParseExpectation(line)
		if err != nil {
			t.Fatalf("seq %d: %v", r.Expect.Seq, err)
		}
		want := r.Expect
		if len(want.Fields) == 0 {
			want.Fields = nil
		}
		if !reflect.DeepEqual(back, want) {
			t.Fatalf("seq %d: round trip changed the expectation:\n got %+v\nwant %+v", r.Expect.Seq, back, want)
		}
	}
}

// TestExpectHandChecked applies the rules to hand-built messages whose
// outcome was worked out by hand from the contract and the mapping issue.
func TestExpectHandChecked(t *testing.T) {
	g, err := New(1, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	spec := &labelSpec{name: "x", decl: "number"}
	ts := time.Date(2025, 6, 8, 18, 27, 17, 476623000, time.UTC)
	const tsNS = int64(1749407237476623000)
	c := func(label, v any, decl string, persist any) cell {
		return cell{spec: spec, label: label, value: v, decl: decl, persist: persist}
	}
	for _, tc := range []struct {
		name string
		m    message
		want Expectation
	}{{
		// Contract example 2: older `label` key, floats, persist list.
		name: "contract example 2",
		m: message{deviceID: "2261001", labelsMode: "label", persistMode: "list", cells: []cell{
			c("temperature", 21.5, "", true), c("humidity", 48.0, "", true),
		}},
		want: Expectation{Outcome: OutcomeStored, Measurement: "2261001", TimestampNS: tsNS, Fields: []Field{
			{Name: "temperature", Type: FieldFloat, Value: 21.5}, {Name: "humidity", Type: FieldFloat, Value: 48.0},
		}},
	}, {
		// Contract example 1: text parameters are numeric strings, stored as floats.
		name: "contract example 1",
		m: message{deviceID: "282c02424eed", labelsMode: "labels", persistMode: "true", cells: []cell{
			c("measurement_period_base", "5", "", nil), c("transmission_interval", "120", "", nil),
		}},
		want: Expectation{Outcome: OutcomeStored, Measurement: "282c02424eed", TimestampNS: tsNS, Fields: []Field{
			{Name: "measurement_period_base", Type: FieldFloat, Value: 5.0}, {Name: "transmission_interval", Type: FieldFloat, Value: 120.0},
		}},
	}, {
		// Contract example 3: nested configuration arrays become JSON text.
		name: "contract example 3",
		m: message{deviceID: "282c02424eed", labelsMode: "labels", cells: []cell{
			c("rules", []any{object{{"channel_mask", int64(1)}, {"parameters", []any{int64(300), int64(20), int64(1)}}}}, "", nil),
			c("led_config", []any{int64(8), int64(8), int64(8), int64(8)}, "", nil),
		}},
		want: Expectation{Outcome: OutcomeStored, Measurement: "282c02424eed", TimestampNS: tsNS, Fields: []Field{
			{Name: "rules", Type: FieldString, Value: `[{"channel_mask":1,"parameters":[300,20,1]}]`, JSONText: true},
			{Name: "led_config", Type: FieldString, Value: `[8,8,8,8]`, JSONText: true},
		}},
	}, {
		// No labels: value_{i}; null skipped; non-finite skipped; an int literal
		// stays an integer; beyond int64 a float; a null label entry is value_{i}.
		name: "positional, nulls, non-finite, ints",
		m: message{deviceID: "sensor 12", labelsMode: "labels", cells: []cell{
			c(nil, 1.5, "", nil), c("n", int64(7), "", nil), c("gone", nil, "", nil), c("nan", math.NaN(), "", nil),
			c("big", bigInt("18446744073709551616"), "", nil), c("", -2.0, "", nil), c("flag", false, "", nil),
			c("txt", "ligne 1\nligne 2", "", nil), c("hex", "0x1F", "", nil), c("padded", " 42 ", "", nil),
		}},
		want: Expectation{Outcome: OutcomeStored, Measurement: "sensor 12", TimestampNS: tsNS,
			Skipped: Skipped{Null: 1, NonFinite: 1},
			Fields: []Field{
				{Name: "value_0", Type: FieldFloat, Value: 1.5}, {Name: "n", Type: FieldInteger, Value: int64(7)},
				{Name: "big", Type: FieldFloat, Value: 18446744073709551616.0}, {Name: "value_5", Type: FieldFloat, Value: -2.0},
				{Name: "flag", Type: FieldBoolean, Value: false}, {Name: "txt", Type: FieldString, Value: `ligne 1\nligne 2`},
				{Name: "hex", Type: FieldString, Value: "0x1F"}, {Name: "padded", Type: FieldFloat, Value: 42.0},
			}},
	}, {
		// datatype_type decides; a shorter list leaves the rest to the defaults;
		// the persist list is shorter too (missing flags mean store).
		name: "declared types",
		m: message{deviceID: "2261001", labelsMode: "labels", persistMode: "list", cells: []cell{
			c("setpoint", int64(20), "number", true), c("period_s", "600", "integer", false),
			c("period_s2", 600.0, "integer", true), c("relay", "true", "boolean", nil),
			c("serial_text", "000123", "string", nil), c("undeclared", "000123", "", nil),
		}},
		want: Expectation{Outcome: OutcomeStored, Measurement: "2261001", TimestampNS: tsNS,
			Skipped: Skipped{Unpersisted: 1},
			Fields: []Field{
				{Name: "setpoint", Type: FieldFloat, Value: 20.0}, {Name: "period_s2", Type: FieldInteger, Value: int64(600)},
				{Name: "relay", Type: FieldBoolean, Value: true}, {Name: "serial_text", Type: FieldString, Value: "000123"},
				{Name: "undeclared", Type: FieldFloat, Value: 123.0},
			}},
	}, {
		// `labels` wins over `label`; the whole message unpersisted is filtered.
		name: "persist false filters",
		m: message{deviceID: "2261001", labelsMode: "both", persistMode: "false", cells: []cell{
			c("a", 1.0, "", nil), c("b", 2.0, "", nil),
		}},
		want: Expectation{Outcome: OutcomeFiltered, Measurement: "2261001", TimestampNS: tsNS, Skipped: Skipped{Unpersisted: 2}},
	}} {
		tc.m.requestID = "rid"
		tc.want.RequestID = "rid"
		got := g.expect(&tc.m, ts)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
}
