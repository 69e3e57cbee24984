package lineprotocol

import (
	"math"
	"testing"
	"time"
	"unicode/utf8"

	lpv2 "github.com/influxdata/line-protocol/v2/lineprotocol"
)

func TestAppendEscaping(t *testing.T) {
	cases := []struct {
		name string
		got  []byte
		want string
	}{
		{"measurement comma space", AppendMeasurement(nil, "a b,c=d"), `a\ b\,c=d`},
		{"measurement non-ascii", AppendMeasurement(nil, "capteur-é °C"), `capteur-é\ °C`},
		{"key", AppendKey(nil, "a b,c=d\"e"), `a\ b\,c\=d"e`},
		{"string quotes backslash", AppendString(nil, `say "hi" \ end`), `"say \"hi\" \\ end"`},
		{"string newline cr tab", AppendString(nil, "a\nb\rc\td"), `"a\nb\rc` + "\t" + `d"`},
		{"string empty", AppendString(nil, ""), `""`},
		{"int", AppendInt(nil, -42), `-42i`},
		{"int min", AppendInt(nil, math.MinInt64), `-9223372036854775808i`},
		{"float", AppendFloat(nil, 21.5), `21.5`},
		{"float integral", AppendFloat(nil, 48), `48`},
		{"float negative zero", AppendFloat(nil, math.Copysign(0, -1)), `0`},
		{"float big", AppendFloat(nil, 1.5e300), `1.5e+300`},
		{"float small", AppendFloat(nil, 1e-7), `1e-07`},
		{"float max", AppendFloat(nil, math.MaxFloat64), `1.7976931348623157e+308`},
		{"bool", AppendBool(AppendBool(nil, true), false), `truefalse`},
		{"timestamp", AppendTimestamp(nil, -1), ` -1`},
	}
	for _, c := range cases {
		if string(c.got) != c.want {
			t.Errorf("%s: got %s, want %s", c.name, c.got, c.want)
		}
	}
}

func TestCheckName(t *testing.T) {
	cases := []struct {
		in, why string
	}{
		{"temperature", ""},
		{"a b,c=d", ""},
		{`C:\temp`, ""},
		{"日本", ""},
		{"", "is empty"},
		{"a\nb", "contains a newline, which line protocol cannot carry in a name"},
		{"a\tb", `contains the control character '\t', which line protocol cannot carry in a name`},
		{"a\x7fb", `contains the control character '\x7f', which line protocol cannot carry in a name`},
		{`a\`, "ends with a backslash, which InfluxDB would read as an escape"},
		{`a\ b`, `contains a backslash before ' ', which InfluxDB parsers read differently`},
		{`a\\b`, `contains a backslash before '\\', which InfluxDB parsers read differently`},
		{"a\xffb", "is not valid UTF-8"},
	}
	for _, c := range cases {
		if got := CheckName(c.in); got != c.why {
			t.Errorf("CheckName(%q) = %q, want %q", c.in, got, c.why)
		}
	}
	if got := CheckMeasurement("#x"); got != "starts with '#', which line protocol reads as a comment line" {
		t.Errorf("CheckMeasurement(#x) = %q", got)
	}
	for _, k := range []string{"time", "_field", "_"} {
		if !IsReservedKey(k) {
			t.Errorf("IsReservedKey(%q) = false", k)
		}
	}
	for _, k := range []string{"times", "x_", "Time", ""} {
		if IsReservedKey(k) {
			t.Errorf("IsReservedKey(%q) = true", k)
		}
	}
}

// FuzzRoundTrip: every name CheckName accepts and every string value come
// back unchanged through the reference decoder.
func FuzzRoundTrip(f *testing.F) {
	for _, s := range []string{"a", "a b", "a,b=c", `a\b`, `"q"`, "é°日本", "x\ny\rz", `\`, `\\`, "#", "\x00"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, name, value string) {
		if CheckMeasurement(name) != "" || !utf8.ValidString(value) {
			return // the caller's to reject
		}
		line := AppendMeasurement(nil, name)
		line = append(line, ',')
		line = AppendKey(line, name)
		line = append(line, '=')
		line = AppendKey(line, name)
		line = append(line, ' ')
		line = AppendKey(line, name)
		line = append(line, '=')
		line = AppendString(line, value)
		line = AppendTimestamp(line, 1)

		dec := lpv2.NewDecoderWithBytes(line)
		if !dec.Next() {
			t.Fatalf("no point in %q: %v", line, dec.Err())
		}
		m, err := dec.Measurement()
		if err != nil || string(m) != name {
			t.Fatalf("measurement of %q: %q, %v; want %q", line, m, err, name)
		}
		k, v, err := dec.NextTag()
		if err != nil || string(k) != name || string(v) != name {
			t.Fatalf("tag of %q: %q=%q, %v; want %q", line, k, v, err, name)
		}
		if k, _, err := dec.NextTag(); err != nil || k != nil {
			t.Fatalf("extra tag in %q: %q, %v", line, k, err)
		}
		k, val, err := dec.NextField()
		if err != nil || string(k) != name || val.Kind() != lpv2.String || val.StringV() != value {
			t.Fatalf("field of %q: %q=%v, %v; want %q=%q", line, k, val, err, name, value)
		}
		if k, _, err := dec.NextField(); err != nil || k != nil {
			t.Fatalf("extra field in %q: %q, %v", line, k, err)
		}
		ts, err := dec.Time(lpv2.Nanosecond, time.Time{})
		if err != nil || ts.UnixNano() != 1 {
			t.Fatalf("time of %q: %v, %v", line, ts, err)
		}
		if dec.Next() {
			t.Fatalf("more than one point in %q", line)
		}
	})
}
