package pyjson

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDecodeDialect(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		original string // the strict JSON text; "" when in itself
		err      string // the reason, when not decodable
	}{
		{name: "strict JSON is its own original", in: `{"a": [1, 2.5, "x"], "b": null}`},
		{name: "python tokens become null", in: `{"v": [NaN, Infinity, -Infinity, 1.0]}`, original: `{"v": [null, null, null, 1.0]}`},
		{name: "a token in a string stays text", in: `{"v": "NaN Infinity"}`},
		{name: "a token glued to text is not one", in: `{"v": NaNa}`, err: "message is not JSON: "},
		{name: "pairs and lone surrogates", in: `{"v": "\ud83d\ude00 \ud800 \udc00"}`},
		{name: "duplicate keys are kept", in: `{"a": 1, "a": 2}`},
		{name: "control char before an escape", in: "{\"\":[\"\x17\\b\"]}", err: "message is not JSON: string cannot contain control char 0x17"},
		{name: "invalid UTF-8", in: "{\"a\":\"\xff\"}", err: "message is not valid UTF-8 text"},
		{name: "an array", in: `[1]`, err: "message is a JSON array, expected an object"},
		{name: "a boolean", in: `true`, err: "message is a JSON boolean, expected an object"},
		{name: "too deep", in: strings.Repeat("[", 400) + strings.Repeat("]", 400), err: "message nests arrays and objects deeper than 300 levels"},
		{name: "empty", in: ``, err: "message is not JSON: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d Decoder
			for _, prune := range []Pruner{nil, keepAll{}} {
				msg, err := d.Decode([]byte(tc.in), prune)
				if tc.err != "" {
					if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
						t.Fatalf("Decode(%q) = %v, want an error starting %q", tc.in, err, tc.err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("Decode(%q): %v", tc.in, err)
				}
				want := tc.original
				if want == "" {
					want = tc.in
				}
				if string(msg.Original) != want {
					t.Fatalf("Original = %q, want %q", msg.Original, want)
				}
				if msg.Object == nil || msg.Root == nil {
					t.Fatalf("no object")
				}
			}
		})
	}
}

// keepAll prunes nothing: Decode takes its validate-then-parse path.
type keepAll struct{}

func (keepAll) Prune(text []byte) []byte { return text }

// A lone surrogate reads as U+FFFD, as Go's encoding/json and Python's
// json.loads (which keeps it, but cannot encode it as UTF-8) agree on.
func TestDecodeLoneSurrogate(t *testing.T) {
	var d Decoder
	msg, err := d.Decode([]byte(`{"v":"a\ud800\u00e9","w":"\udc00\ud83d\ude00"}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(msg.Object.Get("v").GetStringBytes()); got != "a\uFFFDé" {
		t.Errorf("v = %q", got)
	}
	if got := string(msg.Object.Get("w").GetStringBytes()); got != "\uFFFD😀" {
		t.Errorf("w = %q", got)
	}
}

func TestAppendStringReadsBack(t *testing.T) {
	for _, s := range []string{"plain", "q\"b\\s/", "\b\f\n\r\t\x01\x1f\x7f", "Paramètres °C 😀", "bad \xff\xfe utf8"} {
		for _, ascii := range []bool{false, true} {
			text := AppendString(nil, s, ascii)
			var back string
			if err := json.Unmarshal(text, &back); err != nil {
				t.Fatalf("AppendString(%q, %v) = %s: %v", s, ascii, text, err)
			}
			// Each invalid byte becomes one U+FFFD, as a rune conversion does.
			if want := string([]rune(s)); back != want {
				t.Errorf("AppendString(%q, %v) reads back as %q", s, ascii, back)
			}
			if ascii {
				for _, c := range text {
					if c >= 0x7f {
						t.Fatalf("AppendString(%q, true) = %s holds a byte 0x%x", s, text, c)
					}
				}
			}
		}
	}
}

// FuzzDecode: whatever the input, Decode does not panic; a JSON object that
// encoding/json reads is decoded with the input as its original; what
// encoding/json refuses is refused unless it holds Python tokens; and the
// original and the re-encoded object are JSON, equal as values.
func FuzzDecode(f *testing.F) {
	for _, s := range append(tokenCases,
		`{"device_id": "d", "values": [NaN, -Infinity, Infinity]}`,
		`{"v":["\ud800\u00e9"]}`, "{\"a\":\"\xff\"}", `[NaN]`, `NaN`, `{"a":-Infinity}`, ``,
		`{"a":1,"a":[2,{"b":"\u0000"}]}`) {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	var d Decoder
	f.Fuzz(func(t *testing.T, in []byte, pruned bool) {
		var prune Pruner
		if pruned {
			prune = keepAll{}
		}
		msg, err := d.Decode(in, prune)
		var asMap map[string]any
		strictObject := utf8.Valid(in) && json.Unmarshal(in, &asMap) == nil && asMap != nil &&
			strings.Count(string(in), "[")+strings.Count(string(in), "{") < 250
		if strictObject && err != nil {
			t.Fatalf("a JSON object was refused: %v (input %q)", err, in)
		}
		if err != nil {
			if msgErr := err.Error(); msgErr == "" || strings.ContainsAny(msgErr, "\r\n") {
				t.Fatalf("reason %q is empty or spans lines", msgErr)
			}
			return
		}
		if !strictObject && !HasPythonTokens(in) {
			t.Fatalf("input that encoding/json refuses was decoded (input %q)", in)
		}
		if strictObject && string(msg.Original) != string(in) {
			t.Fatalf("the original of a JSON object is not the input: %q", msg.Original)
		}
		var orig, again any
		if err := json.Unmarshal(msg.Original, &orig); err != nil {
			t.Fatalf("original %q is not JSON: %v", msg.Original, err)
		}
		text := AppendValue(nil, msg.Root)
		if err := json.Unmarshal(text, &again); err != nil {
			t.Fatalf("AppendValue = %q is not JSON: %v", text, err)
		}
		if !reflect.DeepEqual(orig, again) {
			t.Fatalf("re-encoded %s differs from the original %s", text, msg.Original)
		}
	})
}
