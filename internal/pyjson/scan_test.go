package pyjson

import (
	"bytes"
	"testing"

	"github.com/valyala/fastjson"
)

// tokenError must never confirm what fastjson's validator rejects (that would let invalid
// JSON through), and should confirm what it accepts (else the message pays a second pass).
var tokenCases = []string{
	`{"a":"plain","b":1,"c":-0.5,"d":1e10,"e":2.5E-3,"f":true,"g":false,"h":null,"i":[1,[2,{}]]}`,
	`{"esc":"\" \\ \/ \b \f \n \r \t \u00e9 \uD83D\uDE00","k\"ey":0}`,
	` { "a" : [ 0 , -1 , 10 ] } `,
	`"just a string"`, `0`, `-0`, `123`, `[]`, `{}`, `true`, `null`,
	`{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1.2.3}`, `{"a":+5}`, `{"a":-}`, `{"a":1e}`,
	`{"a":1e+}`, `{"a":--1}`, `{"a":nan}`, `{"a":NaN}`, `{"a":inf}`, `{"a":-Inf}`, `{"a":Infinity}`,
	`{"a":"tab	inside"}`, "{\"a\":\"nl\ninside\"}", `{"a":"\x"}`, `{"a":"\u12"}`, `{"a":"\u12G4"}`,
	`{"a":"\'"}`, `{"a":1x}`, `{"a":1,}`, `{"a":tru}`, `{"a":nul}`, `{"a":falsey}`,
}

func TestTokenErrorAgreesWithValidator(t *testing.T) {
	var p fastjson.Parser
	for _, in := range tokenCases {
		b := []byte(in)
		if _, err := p.ParseBytes(b); err != nil {
			continue // the parser refuses it: the full validation reports it
		}
		valid := fastjson.ValidateBytes(b) == nil
		if err := tokenError(b); (err == nil) != valid {
			t.Errorf("tokenError(%s) = %v, validator says valid=%v", in, err, valid)
		}
	}
}

func FuzzTokenError(f *testing.F) {
	for _, in := range tokenCases {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p fastjson.Parser
		if _, err := p.ParseBytes(b); err != nil {
			return
		}
		if tokenError(b) == nil && fastjson.ValidateBytes(b) != nil {
			t.Fatalf("tokenError confirmed %q, which the validator rejects", b)
		}
	})
}

// The validator misses a control character followed by an escape in the same string; the
// mapping still refuses such a message as not JSON, as Python's json.loads does.
func TestControlCharBeforeEscapeIsNotJSON(t *testing.T) {
	in := []byte("{\"\":[\"\x17\\b\"]}")
	if err := tokenError(in); err == nil || err.Error() != "string cannot contain control char 0x17" {
		t.Errorf("tokenError = %v", err)
	}
}

// plainEnd reads eight bytes at a time; it must stop exactly where a byte-by-byte scan stops,
// whatever the position of the stop in the word and whatever surrounds it (bytes just above
// 0x20, and bytes that are a quote or a backslash with the high bit set), and never miss a
// byte above 0x7F in the run it read.
func TestPlainEndMatchesBytewiseScan(t *testing.T) {
	bytewise := func(b []byte, i int) int {
		for i < len(b) && !stringStop[b[i]] {
			i++
		}
		return i
	}
	fillers := []byte{'a', 0x20, 0x21, 0x7f, 0x80, 0xa2, 0xdc, 0xff}
	stops := []byte{0x00, 0x01, 0x1f, '"', '\\', 'x'} // 'x': no stop at all
	for n := 0; n <= 27; n++ {
		for _, fill := range fillers {
			for _, stop := range stops {
				for p := 0; p < n; p++ {
					b := bytes.Repeat([]byte{fill}, n)
					b[p] = stop
					if p+1 < n && stop != 'x' {
						b[p+1] = '"' // a second stop right after the first
					}
					for start := 0; start <= min(n, 9); start++ {
						got, high := plainEnd(b, start)
						if want := bytewise(b, start); got != want {
							t.Fatalf("plainEnd(% x, %d) = %d, want %d", b, start, got, want)
						}
						if !high && bytes.IndexFunc(b[start:got], func(r rune) bool { return r >= 0x80 }) >= 0 {
							t.Fatalf("plainEnd(% x, %d) missed a byte above 0x7F", b, start)
						}
					}
				}
			}
		}
	}
}

func FuzzPlainEnd(f *testing.F) {
	f.Add([]byte("abcdefgh\"ijklmnop"), 0)
	f.Add([]byte("\xa2\xdc\x9f\x20\x21abcdefg\\"), 1)
	f.Fuzz(func(t *testing.T, b []byte, start int) {
		if start < 0 || start > len(b) {
			return
		}
		want, high := start, false
		for want < len(b) && !stringStop[b[want]] {
			high = high || b[want] >= 0x80
			want++
		}
		got, sawHigh := plainEnd(b, start)
		if got != want {
			t.Fatalf("plainEnd(%q, %d) = %d, want %d", b, start, got, want)
		}
		if high && !sawHigh {
			t.Fatalf("plainEnd(%q, %d) missed a byte above 0x7F", b, start)
		}
	})
}
