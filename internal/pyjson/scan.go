package pyjson

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

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

// plainEnd returns where the run of plain string characters from b[i] ends: at
// the first byte stringStop marks, or len(b); and whether it met a byte above
// 0x7F (it may say so for one past the end of the run, in the same word). It
// tests eight bytes at a time for a byte below 0x20, a quote or a backslash:
// with the table of token starts, this takes about a third off the token check
// on the generator's stream (BenchmarkTokenCheck/generated).
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
