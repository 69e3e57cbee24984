package processors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// Python's json.dumps writes non-finite floats as the bare tokens NaN, Infinity
// and -Infinity, which are not JSON. fastjson's parser reads NaN, Inf and -Inf
// as numbers but not Infinity, and its validator reads none of them, so a
// message holding them is rewritten twice before decoding: once with every
// token replaced by null (strict JSON, validated, and kept as the original
// message for the error branch), and once with Infinity shortened to Inf padded
// with spaces (same structure, parsed to find which values were non-finite).

var (
	tokNaN    = []byte("NaN")
	tokInf    = []byte("Infinity")
	tokNegInf = []byte("-Infinity")
)

// hasPythonTokens is the cheap test for the tokens, run only where the token
// check (scanText) stopped at an error before the end of the input.
func hasPythonTokens(b []byte) bool {
	return bytes.Contains(b, tokNaN) || bytes.Contains(b, tokInf)
}

// rewritePythonTokens replaces the Python tokens found outside JSON strings:
// asNull receives the input with each token replaced by null, forParse the input
// with Infinity written as Inf (NaN and -Inf stay, fastjson reads them). found
// reports whether any token was replaced. A token glued to other characters is
// left alone so that the strict validation that follows still rejects it.
func rewritePythonTokens(in, asNull, forParse []byte) (nullOut, parseOut []byte, found bool) {
	nullOut, parseOut = asNull[:0], forParse[:0]
	copied := 0 // in[:copied] is in both outputs
	inString := false
	for i := 0; i < len(in); i++ {
		c := in[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		if c == '"' {
			inString = true
			continue
		}
		if c != 'N' && c != 'I' && c != '-' {
			continue
		}
		var tok []byte
		switch {
		case bytes.HasPrefix(in[i:], tokNaN):
			tok = tokNaN
		case bytes.HasPrefix(in[i:], tokInf):
			tok = tokInf
		case bytes.HasPrefix(in[i:], tokNegInf):
			tok = tokNegInf
		default:
			continue
		}
		if !tokenBoundary(in, i-1) || !tokenBoundary(in, i+len(tok)) {
			continue
		}
		nullOut = append(append(nullOut, in[copied:i]...), "null"...)
		parseOut = append(parseOut, in[copied:i]...)
		switch len(tok) {
		case len(tokNaN):
			parseOut = append(parseOut, "NaN"...)
		case len(tokInf):
			parseOut = append(parseOut, "Inf     "...)
		default:
			parseOut = append(parseOut, "-Inf     "...)
		}
		i += len(tok) - 1
		copied = i + 1
		found = true
	}
	nullOut = append(nullOut, in[copied:]...)
	parseOut = append(parseOut, in[copied:]...)
	return nullOut, parseOut, found
}

// tokenBoundary reports whether position i (possibly out of range) is a place
// where a JSON value may begin or end: outside the input, whitespace or a
// structural character.
func tokenBoundary(in []byte, i int) bool {
	if i < 0 || i >= len(in) {
		return true
	}
	switch in[i] {
	case ' ', '\t', '\n', '\r', ',', ':', '[', ']', '{', '}':
		return true
	}
	return false
}

// hasSurrogateEscape is the cheap test for \uD800-\uDFFF escapes (emoji in
// Python's ASCII output, or a lone surrogate).
func hasSurrogateEscape(b []byte) bool {
	return bytes.Contains(b, []byte(`\ud`)) || bytes.Contains(b, []byte(`\uD`))
}

// fixLoneSurrogates rewrites, in place, every \u escape of a UTF-16 surrogate
// that is not part of a high+low pair to \ufffd. fastjson keeps a lone one as
// its six characters of text, and when one is followed by another escape it
// swallows that escape's character; Go's encoding/json decodes a lone
// surrogate to U+FFFD, which this reproduces. b must be validated JSON, so
// every backslash is an escape inside a string.
func fixLoneSurrogates(b []byte) {
	for i := 0; i+1 < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if b[i+1] != 'u' || i+6 > len(b) {
			i++ // \\, \" and the like: skip the escaped character
			continue
		}
		r := hex4(b[i+2 : i+6])
		switch {
		case r >= 0xD800 && r < 0xDC00:
			if i+12 <= len(b) && b[i+6] == '\\' && b[i+7] == 'u' {
				if lo := hex4(b[i+8 : i+12]); lo >= 0xDC00 && lo < 0xE000 {
					i += 11 // a proper pair
					continue
				}
			}
			copy(b[i:i+6], `\ufffd`)
		case r >= 0xDC00 && r < 0xE000:
			copy(b[i:i+6], `\ufffd`)
		}
		i += 5
	}
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return -1
		}
	}
	return r
}

// isNonFiniteLiteral reports whether a fastjson number literal is one of the
// non-finite tokens (NaN, Inf, -Inf after rewriting).
func isNonFiniteLiteral(lit []byte) bool {
	if len(lit) == 0 {
		return false
	}
	c := lit[0]
	if c == '-' && len(lit) > 1 {
		c = lit[1]
	}
	return c == 'N' || c == 'n' || c == 'I' || c == 'i'
}

// rawLiteral returns the source text of a scalar fastjson value (a number's
// literal as written), appended to scratch.
func rawLiteral(v *fastjson.Value, scratch []byte) []byte {
	return v.MarshalTo(scratch[:0])
}

// appendJSON appends v as compact JSON text: number literals as written,
// non-finite numbers as null, strings re-escaped. fastjson's own MarshalTo would
// copy NaN through and quotes unescaped strings Go-style, neither of which is
// JSON.
func appendJSON(dst []byte, v *fastjson.Value) []byte {
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		dst = append(dst, '{')
		first := true
		o.Visit(func(k []byte, item *fastjson.Value) {
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = appendJSONString(dst, b2s(k))
			dst = append(dst, ':')
			dst = appendJSON(dst, item)
		})
		return append(dst, '}')
	case fastjson.TypeArray:
		a, _ := v.Array()
		dst = append(dst, '[')
		for i, item := range a {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSON(dst, item)
		}
		return append(dst, ']')
	case fastjson.TypeString:
		s, _ := v.StringBytes()
		return appendJSONString(dst, b2s(s))
	case fastjson.TypeNumber:
		start := len(dst)
		dst = v.MarshalTo(dst)
		if isNonFiniteLiteral(dst[start:]) {
			return append(dst[:start], "null"...)
		}
		return dst
	case fastjson.TypeTrue:
		return append(dst, "true"...)
	case fastjson.TypeFalse:
		return append(dst, "false"...)
	default:
		return append(dst, "null"...)
	}
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes U+FFFD so
// the result is always valid JSON.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, s[start:i]...)
				dst = append(dst, "\uFFFD"...)
				i++
				start = i
				continue
			}
			i += size
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendRawObject appends {"raw":"<in as text>"}: how a message that is not a
// JSON object travels to the error branch.
func appendRawObject(dst, in []byte) []byte {
	dst = append(dst, `{"raw":`...)
	dst = appendJSONString(dst, b2s(in))
	return append(dst, '}')
}

// stringStop marks the bytes that end a run of plain characters inside a JSON
// string: the closing quote, an escape, and the control characters JSON forbids.
var stringStop = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// What a byte outside a string begins, for tokenError.
const (
	tokInvalid byte = iota
	tokSkip         // structure or whitespace: the parser has checked their place
	tokString
	tokNumber
	tokTrue
	tokFalse
	tokNull
)

var tokenStart = func() (t [256]byte) {
	for _, c := range "{}[]:, \t\n\r" {
		t[c] = tokSkip
	}
	t['"'] = tokString
	t['-'] = tokNumber
	for c := '0'; c <= '9'; c++ {
		t[c] = tokNumber
	}
	t['t'], t['f'], t['n'] = tokTrue, tokFalse, tokNull
	return t
}()

// tokenError checks the strings and numbers of b, which fastjson's parser has
// accepted, and returns what in them is not JSON, or nil. The parser checks the
// structure and the literals true, false and null, but not what is inside a
// string (control characters, escapes) nor the grammar of a number (it takes
// 1.2.3, 01, +5, nan and inf): this one pass replaces a second, full validation
// of every message. It is also stricter than fastjson's validator, which misses
// a control character followed by an escape in the same string ("\x17\b"):
// Python's json.loads refuses both.
func tokenError(b []byte) error {
	return scanText(b, false).err
}

// textScan is what the token check of a message finds, beside its error: what
// the mapping would otherwise look for in passes of its own. Each finding
// covers the text before err; all of it only when err is nil.
type textScan struct {
	err error // what in the strings and numbers is not JSON (see tokenError)
	// python: a NaN, Infinity or -Infinity token stands where a value may, as
	// rewritePythonTokens finds them (scanned as values only when asked).
	python bool
	// surrogate: a string holds a \uD... escape (hasSurrogateEscape finds them,
	// and also text that only looks like one).
	surrogate bool
	// nonASCII: a string may hold a byte above 0x7F (set for some that do not):
	// without one, the text is valid UTF-8.
	nonASCII bool
}

// scanText checks the tokens of b in one pass (see tokenError), taking the
// Python tokens as values when python is set, and notes what textScan holds.
func scanText(b []byte, python bool) textScan {
	sawPython, surrogate, nonASCII := false, false, false
	fail := func(err error) textScan {
		return textScan{err: err, python: sawPython, surrogate: surrogate, nonASCII: nonASCII}
	}
	for i := 0; i < len(b); {
		class := tokenStart[b[i]]
		if class == tokSkip {
			// Most common by far (Python writes ", " and ": "), and a plain
			// branch costs less than the switch's jump.
			i++
			continue
		}
		switch class {
		case tokString:
			i++
			for {
				var high bool
				i, high = plainEnd(b, i)
				nonASCII = nonASCII || high
				if i >= len(b) {
					return fail(errors.New("string has no closing quote"))
				}
				if b[i] < 0x20 {
					return fail(fmt.Errorf("string cannot contain control char 0x%02X", b[i]))
				}
				if b[i] == '"' {
					i++
					break
				}
				// An escape: \" \\ \/ \b \f \n \r \t or \u and four hex digits.
				if i+1 >= len(b) {
					return fail(errors.New("string ends in an escape"))
				}
				switch b[i+1] {
				case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
					i += 2
				case 'u':
					if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
						return fail(errors.New(`invalid escape sequence \u: want four hex digits`))
					}
					if b[i+2]|0x20 == 'd' {
						surrogate = true
					}
					i += 6
				default:
					return fail(fmt.Errorf(`unknown escape sequence \%c`, b[i+1]))
				}
			}
		case tokNumber:
			if python && b[i] == '-' {
				if n := pythonToken(b, i); n > 0 {
					sawPython = true
					i += n
					continue
				}
			}
			end, ok := numberEnd(b, i)
			if !ok {
				return fail(fmt.Errorf("invalid number at byte %d", i))
			}
			i = end
		case tokTrue:
			if !bytes.HasPrefix(b[i:], []byte("true")) {
				return fail(fmt.Errorf("unexpected value at byte %d", i))
			}
			i += 4
		case tokFalse:
			if !bytes.HasPrefix(b[i:], []byte("false")) {
				return fail(fmt.Errorf("unexpected value at byte %d", i))
			}
			i += 5
		case tokNull:
			if !bytes.HasPrefix(b[i:], []byte("null")) {
				return fail(fmt.Errorf("unexpected value at byte %d", i))
			}
			i += 4
		default:
			if python {
				if n := pythonToken(b, i); n > 0 {
					sawPython = true
					i += n
					continue
				}
			}
			return fail(fmt.Errorf("unexpected character %q at byte %d", b[i], i))
		}
	}
	return textScan{python: sawPython, surrogate: surrogate, nonASCII: nonASCII}
}

// pythonToken returns the length of the Python token at b[i] if there is one
// that rewritePythonTokens would replace, else 0.
func pythonToken(b []byte, i int) int {
	for _, tok := range [...][]byte{tokNaN, tokInf, tokNegInf} {
		if bytes.HasPrefix(b[i:], tok) {
			if tokenBoundary(b, i-1) && tokenBoundary(b, i+len(tok)) {
				return len(tok)
			}
			return 0
		}
	}
	return 0
}

// plainEnd returns where the run of plain string characters from b[i] ends: at
// the first byte stringStop marks, or len(b); and whether it met a byte above
// 0x7F (it may say so for one past the end of the run, in the same word). It
// tests eight bytes at a time for a byte below 0x20, a quote or a backslash:
// with the table of token starts, this takes about a third off the token check
// on the generator's stream (BenchmarkReadingToPointMapperGenerated/tokenError).
func plainEnd(b []byte, i int) (int, bool) {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	var seen uint64 // every word read, or'ed: its high bits tell a byte above 0x7F
	for i+8 <= len(b) {
		x := binary.LittleEndian.Uint64(b[i:])
		seen |= x
		q := x ^ (ones * '"')
		s := x ^ (ones * '\\')
		// Each term sets the high bit of a byte that is below 0x20, zero after
		// the xor with a quote, or zero after the xor with a backslash; a term
		// can also mark bytes above the first marked one (a borrow), never below,
		// so the lowest mark is exact.
		if m := (((x - ones*0x20) &^ x) | ((q - ones) &^ q) | ((s - ones) &^ s)) & highs; m != 0 {
			return i + bits.TrailingZeros64(m)/8, seen&highs != 0
		}
		i += 8
	}
	for i < len(b) && !stringStop[b[i]] {
		seen |= uint64(b[i])
		i++
	}
	return i, seen&highs != 0
}

// numberEnd returns where the JSON number starting at b[i] ends, and false when
// the token there is not one: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?,
// not followed by another character of a number.
func numberEnd(b []byte, i int) (int, bool) {
	digits := func(i int) int {
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i
	}
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(i)
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		j := digits(i + 1)
		if j == i+1 {
			return i, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(i)
		if j == i {
			return i, false
		}
		i = j
	}
	if i < len(b) {
		switch c := b[i]; {
		case c >= '0' && c <= '9', c == '.', c == 'e', c == 'E', c == '+', c == '-',
			c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			return i, false
		}
	}
	return i, true
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}
