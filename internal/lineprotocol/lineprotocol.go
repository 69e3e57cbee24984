// Package lineprotocol appends InfluxDB line-protocol elements to a caller-owned
// []byte, escaping exactly, so a point can be built without allocating.
//
// Escaping follows the rules every InfluxDB parser agrees on:
//
//   - measurement: `,` and ` ` are escaped with a backslash;
//   - tag keys, tag values, field keys: `,`, `=` and ` ` are escaped;
//   - string field values are double-quoted, `"` and `\` are escaped, and a
//     newline or carriage return is written as the two characters `\n` / `\r`,
//     because line protocol cannot carry a raw line break (InfluxDB then stores
//     the backslash and the letter).
//
// Names (measurement, keys, tag values) cannot carry everything: control
// characters have no escape, and a backslash that precedes an escapable
// character or ends the name is read differently by different InfluxDB parsers
// (InfluxDB's own parser treats `\\` as one backslash, the line-protocol/v2
// decoder keeps both). CheckName reports those cases so the caller can reject the
// message instead of writing a line that some server would misread.
package lineprotocol

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxStringFieldLen is the largest string field value InfluxDB stores, in bytes.
const MaxStringFieldLen = 64 * 1024

// AppendMeasurement appends the escaped measurement name s to dst.
func AppendMeasurement(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ',' || c == ' ' {
			dst = append(dst, '\\')
		}
		dst = append(dst, c)
	}
	return dst
}

// AppendKey appends s escaped as a tag key, tag value or field key.
func AppendKey(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ',' || c == '=' || c == ' ' {
			dst = append(dst, '\\')
		}
		dst = append(dst, c)
	}
	return dst
}

// AppendString appends s as a double-quoted string field value. s must be
// valid UTF-8: InfluxDB rejects anything else.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		var esc byte
		switch s[i] {
		case '"':
			esc = '"'
		case '\\':
			esc = '\\'
		case '\n':
			esc = 'n'
		case '\r':
			esc = 'r'
		default:
			continue
		}
		dst = append(dst, s[start:i]...)
		dst = append(dst, '\\', esc)
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// AppendInt appends v as an integer field value (`12i`).
func AppendInt(dst []byte, v int64) []byte {
	return append(strconv.AppendInt(dst, v, 10), 'i')
}

// AppendFloat appends v as a float field value in its shortest exact form.
// v must be finite: line protocol has no NaN or infinity.
func AppendFloat(dst []byte, v float64) []byte {
	if v == 0 {
		// Both zeros are written as 0: InfluxDB does not keep the sign of zero.
		return append(dst, '0')
	}
	exp := math.Abs(v)
	if exp >= 1e21 || exp < 1e-6 {
		return strconv.AppendFloat(dst, v, 'e', -1, 64)
	}
	return strconv.AppendFloat(dst, v, 'f', -1, 64)
}

// AppendFloatText appends the float written in decimal as text (a JSON number
// literal: -?digits[.digits], no exponent) as AppendFloat would write its
// value, and reports whether it did; when it did not, dst is returned as is and
// the caller parses and formats. It does for the usual readings: not zero, at
// least 1e-6 in magnitude, and at most 15 significant digits once the zeros
// that end a fraction are dropped (Python writes 48.0). Such a text, without
// those zeros, is the shortest form of its value: two decimals of at most 15
// significant digits never round to the same float64, so no shorter one reads
// back as it. That spares a parse and a format per value.
func AppendFloatText(dst []byte, text string) ([]byte, bool) {
	unsigned := strings.TrimPrefix(text, "-")
	whole, frac, hasPoint := strings.Cut(unsigned, ".")
	if !isDigits(whole) || (len(whole) > 1 && whole[0] == '0') || (hasPoint && !isDigits(frac)) {
		return dst, false // not the JSON form of a number without exponent
	}
	frac = strings.TrimRight(frac, "0")
	var significant, leadingZeros int
	if w := strings.TrimLeft(whole, "0"); w != "" {
		significant = len(w) + len(frac)
	} else {
		f := strings.TrimLeft(frac, "0")
		if f == "" {
			return dst, false // zero, written 0 whatever its sign
		}
		significant, leadingZeros = len(f), len(frac)-len(f)
	}
	if significant > 15 || leadingZeros > 5 {
		return dst, false // more digits than survive, or below 1e-6 (written with an exponent)
	}
	dst = append(dst, text[:len(text)-len(unsigned)]...)
	dst = append(dst, whole...)
	if frac != "" {
		dst = append(append(dst, '.'), frac...)
	}
	return dst, true
}

// isDigits reports whether s is one or more decimal digits.
func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// AppendBool appends v as a boolean field value.
func AppendBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, "true"...)
	}
	return append(dst, "false"...)
}

// AppendTimestamp appends ' ' and the timestamp in nanoseconds.
func AppendTimestamp(dst []byte, ns int64) []byte {
	dst = append(dst, ' ')
	return strconv.AppendInt(dst, ns, 10)
}

// CheckName reports why s cannot be written as a measurement, key or tag value,
// or "" when it can. It is empty, invalid UTF-8, holds a control character
// (no escape exists for one), or holds a backslash whose meaning parsers
// disagree on: one before a character that needs escaping in names
// (`,`, `=`, space, `\`) or at the very end.
func CheckName(s string) string {
	if s == "" {
		return "is empty"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\n':
			return "contains a newline, which line protocol cannot carry in a name"
		case c < 0x20 || c == 0x7f:
			return "contains the control character " + strconv.QuoteRune(rune(c)) + ", which line protocol cannot carry in a name"
		case c == '\\':
			if i == len(s)-1 {
				return "ends with a backslash, which InfluxDB would read as an escape"
			}
			if n := s[i+1]; n == ',' || n == '=' || n == ' ' || n == '\\' {
				return "contains a backslash before " + strconv.QuoteRune(rune(n)) + ", which InfluxDB parsers read differently"
			}
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size <= 1 {
				return "is not valid UTF-8"
			}
			i += size - 1
		}
	}
	return ""
}

// CheckMeasurement is CheckName for a measurement, which also may not start
// with '#': a line starting with it is a comment, and no escape exists for it.
func CheckMeasurement(s string) string {
	if len(s) > 0 && s[0] == '#' {
		return "starts with '#', which line protocol reads as a comment line"
	}
	return CheckName(s)
}

// IsReservedKey reports whether InfluxDB rejects k as a tag or field key:
// `time`, or any key starting with `_` (kept for InfluxDB's own columns).
func IsReservedKey(k string) bool {
	return k == "time" || (len(k) > 0 && k[0] == '_')
}
