package lineprotocol

import (
	"math"
	"math/rand/v2"
	"strconv"
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

// AppendFloatText must write exactly what AppendFloat writes for the parsed value whenever it
// takes the text as it is; checked on random decimals of every shape, and on the edges.
func TestAppendFloatTextMatchesAppendFloat(t *testing.T) {
	check := func(text string) bool {
		got, ok := AppendFloatText([]byte("x="), text)
		if !ok {
			if string(got) != "x=" {
				t.Fatalf("AppendFloatText(%q) refused but wrote %q", text, got)
			}
			return false
		}
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			t.Fatalf("AppendFloatText(%q) took text that is not a number", text)
		}
		if want := string(AppendFloat([]byte("x="), f)); string(got) != want {
			t.Fatalf("AppendFloatText(%q) = %q, AppendFloat writes %q", text, got, want)
		}
		return true
	}
	taken := 0
	for _, text := range []string{
		"21.5", "-21.5", "1013.25", "0.5", "100", "-7", "0.000001", "0.0000012", "123456789012345",
		"1234567890123456", "0.30000000000000004", "0.1", "0.2", "0.3", "9007199254740993", "2.5e3",
		"1E5", "0", "-0", "0.0", "-0.0", "1.50", "48.0", "-48.00", "100.0", "0.50", "0.0000010", "1.000000000000000000001", "1.", ".5", "-", "", "01", "-01.5", "1.2.3", "0.0000001",
		"999999999999999", "0.999999999999999", "4.35", "1.005", "1e-7", "NaN", "Inf", "+5",
	} {
		if check(text) {
			taken++
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	digits := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('0' + rng.IntN(10))
		}
		return string(b)
	}
	for range 2_000_000 {
		text := digits(1 + rng.IntN(12))
		if rng.IntN(4) > 0 {
			text += "." + digits(1+rng.IntN(12))
		}
		if rng.IntN(2) == 0 {
			text = "-" + text
		}
		if check(text) {
			taken++
		}
	}
	if taken < 500_000 {
		t.Fatalf("only %d texts taken as they are: the fast path is not exercised", taken)
	}
}

func FuzzAppendFloatText(f *testing.F) {
	for _, s := range []string{"21.5", "0.000001", "100", "-0.5", "1.50", "123456789012345"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		got, ok := AppendFloatText(nil, text)
		if !ok {
			return
		}
		v, err := strconv.ParseFloat(text, 64)
		if err != nil {
			t.Fatalf("took %q, which is not a number", text)
		}
		if want := AppendFloat(nil, v); string(got) != string(want) {
			t.Fatalf("AppendFloatText(%q) = %q, AppendFloat writes %q", text, got, want)
		}
	})
}
