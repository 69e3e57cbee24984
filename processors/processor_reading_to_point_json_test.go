package processors

import (
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
