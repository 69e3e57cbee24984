package pyjson

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/valyala/fastjson"
)

// AppendValue appends v as compact strict JSON: number literals as written,
// non-finite numbers as null, strings re-escaped with raw UTF-8. fastjson's own
// MarshalTo would copy NaN through and quote unescaped strings Go-style,
// neither of which is JSON.
func AppendValue(dst []byte, v *fastjson.Value) []byte {
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
			dst = AppendString(dst, b2s(k), false)
			dst = append(dst, ':')
			dst = AppendValue(dst, item)
		})
		return append(dst, '}')
	case fastjson.TypeArray:
		a, _ := v.Array()
		dst = append(dst, '[')
		for i, item := range a {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendValue(dst, item)
		}
		return append(dst, ']')
	case fastjson.TypeString:
		s, _ := v.StringBytes()
		return AppendString(dst, b2s(s), false)
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

// NumberLiteral returns the text of the number v as written, appended to
// scratch[:0], and whether it is finite: the Python tokens NaN, Infinity and
// -Infinity are number values that are not.
func NumberLiteral(v *fastjson.Value, scratch []byte) (lit []byte, finite bool) {
	lit = v.MarshalTo(scratch[:0])
	return lit, !isNonFiniteLiteral(lit)
}

// AppendRaw appends {"raw":"<in as text>"}: how a message that is not a JSON
// object travels in an error record.
func AppendRaw(dst, in []byte) []byte {
	dst = append(dst, `{"raw":`...)
	dst = AppendString(dst, b2s(in), false)
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string the way Python's json.dumps writes
// one: " and \ escaped, the five short escapes (\b \f \n \r \t), other control
// characters as \u00XX; with asciiOnly (ensure_ascii, Python's default)
// everything from DEL up as lowercase \uXXXX, a surrogate pair beyond the BMP,
// else raw UTF-8. Invalid UTF-8 becomes U+FFFD, so the result is always JSON.
func AppendString(dst []byte, s string, asciiOnly bool) []byte {
	dst = append(dst, '"')
	start := 0 // s[start:i] is plain text not yet copied
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			i++
			continue
		}
		if c >= 0x7f {
			r, size := utf8.DecodeRuneInString(s[i:])
			if !asciiOnly {
				if r == utf8.RuneError && size == 1 {
					dst = append(dst, s[start:i]...)
					dst = append(dst, "\uFFFD"...)
					start = i + 1
				}
				i += size
				continue
			}
			dst = append(dst, s[start:i]...)
			if r > 0xffff {
				r -= 0x10000
				dst = appendU(dst, 0xd800+(r>>10))
				dst = appendU(dst, 0xdc00+(r&0x3ff))
			} else {
				dst = appendU(dst, r)
			}
			i += size
			start = i
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
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		default:
			dst = appendU(dst, rune(c))
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

func appendU(dst []byte, r rune) []byte {
	return append(dst, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
}

// AppendFloat appends Python's repr(float): the shortest round-tripping
// digits, always with a fraction or an exponent; scientific notation when the
// decimal exponent is below -4 or at least 16, with a signed two-digit
// exponent; NaN, Infinity and -Infinity for the non-finite.
func AppendFloat(dst []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, "NaN"...)
	case math.IsInf(f, 1):
		return append(dst, "Infinity"...)
	case math.IsInf(f, -1):
		return append(dst, "-Infinity"...)
	}
	e := strconv.FormatFloat(f, 'e', -1, 64) // -d.ddde±dd
	if strings.HasPrefix(e, "-") {
		dst = append(dst, '-')
		e = e[1:]
	}
	mant, expStr, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(expStr)
	digits := strings.Replace(mant, ".", "", 1)
	switch {
	case exp < -4 || exp >= 16:
		dst = append(dst, digits[0])
		if len(digits) > 1 {
			dst = append(append(dst, '.'), digits[1:]...)
		}
		dst = append(dst, 'e')
		if exp < 0 {
			dst = append(dst, '-')
			exp = -exp
		} else {
			dst = append(dst, '+')
		}
		if exp < 10 {
			dst = append(dst, '0')
		}
		return strconv.AppendInt(dst, int64(exp), 10)
	case exp < 0:
		dst = append(dst, "0."...)
		dst = append(dst, strings.Repeat("0", -exp-1)...)
		return append(dst, digits...)
	case len(digits) <= exp+1:
		dst = append(dst, digits...)
		dst = append(dst, strings.Repeat("0", exp+1-len(digits))...)
		return append(dst, ".0"...)
	default:
		dst = append(dst, digits[:exp+1]...)
		return append(append(dst, '.'), digits[exp+1:]...)
	}
}

// b2s views parser-owned bytes as a string without copying.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
