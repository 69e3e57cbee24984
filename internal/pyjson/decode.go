package pyjson

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// Decoder decodes messages of the dialect, reusing its parser and buffers from
// one message to the next: a Decoder serves one goroutine, and what Decode
// returns is valid until its next call.
type Decoder struct {
	parser   fastjson.Parser
	strict   []byte // the input with Python tokens as null
	parseBuf []byte // the input as fastjson reads it (Inf, surrogates fixed)
}

// Message is a decoded message.
type Message struct {
	// Object is the message's top-level object. Non-finite numbers are number
	// values whose literal NumberLiteral reports as not finite.
	Object *fastjson.Object
	// Root is the value that holds Object, for paths (Root.Get).
	Root *fastjson.Value
	// Original is the message as strict JSON text (Python tokens as null),
	// what the error record carries. It is the input itself when that is
	// already JSON, else the decoder's buffer.
	Original []byte
}

// Error is why a message is not of the dialect, one line a user can act on.
type Error struct{ Reason string }

func (e *Error) Error() string { return e.Reason }

func fail(reason string) (Message, error) { return Message{}, &Error{Reason: reason} }

// Pruner takes out of a large message what its reader will not look at, before
// the message is parsed: the parser builds a value for every JSON value of the
// text, about 400 bytes of memory per byte of text for a megabyte of small
// numbers.
type Pruner interface {
	// Prune is given the message's text, a validated JSON object in which
	// Python tokens may stand as values, and returns the text to parse in its
	// place: text itself, or a copy in which members are emptied.
	Prune(text []byte) []byte
}

// Decode reads in as one JSON object of the dialect. A message that is not one
// (not JSON even with Python's tokens, not UTF-8, nested deeper than
// fastjson.MaxDepth, or another JSON value) is an *Error. prune, when not nil,
// is applied before the message is parsed; without it the message is
// validated and parsed in one pass, which is cheaper for the usual small one.
func (d *Decoder) Decode(in []byte, prune Pruner) (Message, error) {
	msg := Message{Original: in}
	src := in // what is parsed
	// One pass over the text checks its tokens and finds what else decoding
	// looks for. Where it stopped at an error, its findings cover only the
	// text before, and the dedicated checks run instead.
	scan := scanText(in, true)
	clean := scan.err == nil && !scan.python
	// A message with Python tokens is rewritten before it is validated: they
	// are common, and a failed validation costs more (fastjson builds its error
	// text) than the rewrite.
	tokens := false
	if scan.python || (scan.err != nil && HasPythonTokens(in)) {
		d.strict, d.parseBuf, tokens = rewritePythonTokens(in, d.strict, d.parseBuf)
	}
	if tokens {
		if fastjson.ValidateBytes(d.strict) != nil {
			tokens = false // not JSON even with them: report the input's own error
		} else if terr := tokenError(d.strict); terr != nil {
			// A control character the validator misses (see tokenError).
			return fail("message is not JSON: " + terr.Error())
		} else {
			msg.Original, src = d.strict, d.parseBuf
		}
	}
	if nestingExceeds(in, fastjson.MaxDepth) {
		// Checked before validating: fastjson's validator recurses without a
		// limit, so a megabyte of [ would cost hundreds of MB of stack.
		return fail("message nests arrays and objects deeper than " + strconv.Itoa(fastjson.MaxDepth) + " levels")
	}
	// One parse and a pass over the strings and numbers (tokenError) stand for a
	// full validation and a parse; what they refuse is validated in full, whose
	// error text is the one reported when it refuses it too.
	var root *fastjson.Value
	if !tokens {
		var parsed *fastjson.Value
		var perr, terr error
		if prune != nil {
			perr = fastjson.ValidateBytes(in)
		} else {
			parsed, perr = d.parser.ParseBytes(in)
		}
		switch {
		case perr != nil:
		case scan.python:
			terr = tokenError(in) // the Python tokens were not JSON after all
		default:
			terr = scan.err
		}
		if perr == nil && terr == nil {
			root = parsed // nil when pruned: parsed below
		} else {
			reason := ""
			if verr := fastjson.ValidateBytes(in); verr != nil {
				reason = verr.Error()
			} else if terr != nil {
				reason = terr.Error() // a control character the validator misses
			}
			if reason != "" {
				return fail("message is not JSON: " + shortReason(reason))
			}
		}
	}
	if (!clean || scan.nonASCII) && !utf8.Valid(in) {
		return fail("message is not valid UTF-8 text")
	}
	if (clean && scan.surrogate) || (!clean && hasSurrogateEscape(src)) {
		if sameBytes(src, in) {
			d.parseBuf = append(d.parseBuf[:0], in...)
			src = d.parseBuf
		}
		fixLoneSurrogates(src)
		root = nil // parsed before the fix
	}
	if prune != nil {
		if kind := kindOf(src); kind != "" {
			return fail("message is a JSON " + kind + ", expected an object")
		}
		src = prune.Prune(src)
	}
	if root == nil {
		var perr error
		if root, perr = d.parser.ParseBytes(src); perr != nil {
			// Valid JSON that fastjson refuses: nesting deeper than it allows.
			return fail("message cannot be decoded: " + shortReason(perr.Error()))
		}
	}
	if t := root.Type(); t != fastjson.TypeObject {
		kind := t.String()
		if t == fastjson.TypeTrue || t == fastjson.TypeFalse {
			kind = "boolean"
		}
		return fail("message is a JSON " + kind + ", expected an object")
	}
	msg.Root = root
	msg.Object, _ = root.Object()
	return msg, nil
}

// sameBytes reports whether a and b are the same memory.
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// shortReason keeps a parser's error on one line and within a few hundred
// bytes: fastjson repeats "cannot parse array value: " once per nesting level,
// and the innermost reason and the unparsed tail are at the end.
func shortReason(s string) string {
	const limit = 400
	if strings.ContainsAny(s, "\r\n") {
		s = strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(s)
	}
	if len(s) <= limit {
		return s
	}
	cut := len(s) - limit
	for cut < len(s) && !utf8.RuneStart(s[cut]) {
		cut++
	}
	return "…" + s[cut:]
}
