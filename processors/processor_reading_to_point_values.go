package processors

import (
	"math"
	"strconv"
	"strings"

	"github.com/valyala/fastjson"

	"github.com/preservarium/iot-ingestor/internal/lineprotocol"
	"github.com/preservarium/iot-ingestor/internal/pyjson"
)

// How one value of a reading becomes a field value: the contract's types
// (an integer literal is an integer, a float a float, a numeric string a
// float), numbers: float, nested_values, and metadata.datatype_type when it
// declares the type instead.

// declaredType is one entry of metadata.datatype_type.
type declaredType uint8

const (
	declNone declaredType = iota
	declNumber
	declInteger
	declBoolean
	declString
)

var declNames = [...]string{"", "number", "integer", "boolean", "string"}

// valueNames avoids formatting value_{i} for the usual message sizes.
var valueNames = func() []string {
	n := make([]string, 64)
	for i := range n {
		n[i] = "value_" + strconv.Itoa(i)
	}
	return n
}()

func valueName(i int) string {
	if i < len(valueNames) {
		return valueNames[i]
	}
	return "value_" + strconv.Itoa(i)
}

// isIntegerText reports whether a number's text has neither a fraction nor an
// exponent (a loop: strings.IndexAny builds its set of bytes on every call).
func isIntegerText(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '.' || c == 'e' || c == 'E' {
			return false
		}
	}
	return true
}

// valueFate is what became of one value: stored, or skipped (null, a dropped
// nested value), or skipped because it was NaN or infinite, which is counted.
type valueFate uint8

const (
	valueStored valueFate = iota
	valueSkipped
	valueNonFinite
)

// appendValue appends the field value of v (without its key), or says why it
// is not stored.
func (m *pointMapper) appendValue(st *mapState, out []byte, v *fastjson.Value, decl declaredType, i int) ([]byte, valueFate, *mappingError) {
	switch v.Type() {
	case fastjson.TypeNull:
		return out, valueSkipped, nil
	case fastjson.TypeTrue, fastjson.TypeFalse:
		b := v.Type() == fastjson.TypeTrue
		switch decl {
		case declNone, declBoolean:
			return lineprotocol.AppendBool(out, b), valueStored, nil
		case declString:
			return lineprotocol.AppendString(out, strconv.FormatBool(b)), valueStored, nil
		}
		return out, valueStored, declErr(i, v, decl)
	case fastjson.TypeNumber:
		var finite bool
		st.scratch, finite = pyjson.NumberLiteral(v, st.scratch)
		lit := b2s(st.scratch)
		if !finite {
			return out, valueNonFinite, nil
		}
		isInt := isIntegerText(lit)
		switch decl {
		case declNone:
			if isInt {
				if n, err := strconv.ParseInt(lit, 10, 64); err == nil {
					return m.appendInt(out, n), valueStored, nil
				}
			} else if written, ok := lineprotocol.AppendFloatText(out, lit); ok {
				return written, valueStored, nil
			}
			f, _ := strconv.ParseFloat(lit, 64)
			if math.IsInf(f, 0) {
				// A finite literal beyond float64 reads as infinity, as in Python.
				return out, valueNonFinite, nil
			}
			return lineprotocol.AppendFloat(out, f), valueStored, nil
		case declNumber:
			if written, ok := lineprotocol.AppendFloatText(out, lit); ok {
				return written, valueStored, nil
			}
			f, _ := strconv.ParseFloat(lit, 64)
			if math.IsInf(f, 0) {
				return out, valueNonFinite, nil
			}
			return lineprotocol.AppendFloat(out, f), valueStored, nil
		case declInteger:
			n, ok := integral(lit, isInt)
			if !ok {
				return out, valueStored, declErr(i, v, decl)
			}
			return m.appendInt(out, n), valueStored, nil
		case declString:
			return lineprotocol.AppendString(out, lit), valueStored, nil
		}
		return out, valueStored, declErr(i, v, decl)
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		s := b2s(b)
		switch decl {
		case declNone:
			if f, ok := numericString(s); ok {
				return lineprotocol.AppendFloat(out, f), valueStored, nil
			}
			return appendStringField(out, s, i)
		case declString:
			return appendStringField(out, s, i)
		case declNumber:
			if f, ok := numericString(s); ok {
				return lineprotocol.AppendFloat(out, f), valueStored, nil
			}
		case declInteger:
			t := trimSpace(s)
			if looksNumeric(t) {
				if n, ok := integral(t, isIntegerText(t)); ok {
					return m.appendInt(out, n), valueStored, nil
				}
			}
		case declBoolean:
			t := trimSpace(s)
			if strings.EqualFold(t, "true") {
				return lineprotocol.AppendBool(out, true), valueStored, nil
			}
			if strings.EqualFold(t, "false") {
				return lineprotocol.AppendBool(out, false), valueStored, nil
			}
		}
		return out, valueStored, declErr(i, v, decl)
	default: // object or array
		if decl != declNone && decl != declString {
			return out, valueStored, declErr(i, v, decl)
		}
		if m.dropNested && decl == declNone {
			return out, valueSkipped, nil
		}
		st.textBuf = pyjson.AppendValue(st.textBuf[:0], v)
		return appendStringField(out, b2s(st.textBuf), i)
	}
}

func appendStringField(out []byte, s string, i int) ([]byte, valueFate, *mappingError) {
	if len(s) > lineprotocol.MaxStringFieldLen {
		return out, valueStored, validationErr("values[" + strconv.Itoa(i) + "] is a string of " + strconv.Itoa(len(s)) + " bytes, InfluxDB stores at most " + strconv.Itoa(lineprotocol.MaxStringFieldLen))
	}
	return lineprotocol.AppendString(out, s), valueStored, nil
}

func (m *pointMapper) appendInt(out []byte, n int64) []byte {
	if m.floatNumbers {
		return lineprotocol.AppendFloat(out, float64(n))
	}
	return lineprotocol.AppendInt(out, n)
}

func declErr(i int, v *fastjson.Value, decl declaredType) *mappingError {
	return validationErr("values[" + strconv.Itoa(i) + "] is " + describe(v) + ", which cannot be stored as " + declNames[decl] + " as metadata.datatype_type[" + strconv.Itoa(i) + "] declares")
}

// integral reads a numeric literal as an int64 when its value is a whole
// number in range (21, 21.0, 2.1e1).
func integral(lit string, isInt bool) (int64, bool) {
	if isInt {
		lit = strings.TrimPrefix(lit, "+")
		n, err := strconv.ParseInt(lit, 10, 64)
		return n, err == nil
	}
	f, err := strconv.ParseFloat(lit, 64)
	// 2^63 is exactly representable, and the first float64 out of range.
	if err != nil || f != math.Trunc(f) || f < -(1<<63) || f >= 1<<63 {
		return 0, false
	}
	return int64(f), true
}

// numericString reports whether s, trimmed, is a finite decimal or exponent
// number (what the earlier ingestor stored as a float), and its value.
func numericString(s string) (float64, bool) {
	t := trimSpace(s)
	if !looksNumeric(t) {
		return 0, false
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

// looksNumeric accepts [+-] digits [. digits] [e [+-] digits], with digits on
// at least one side of the point; it refuses what strconv would also take
// (hex, underscores, inf, nan) because those were never numbers upstream.
func looksNumeric(s string) bool {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	digitsBefore := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
		digitsBefore++
	}
	digitsAfter := 0
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			digitsAfter++
		}
	}
	if digitsBefore+digitsAfter == 0 {
		return false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		expDigits := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			expDigits++
		}
		if expDigits == 0 {
			return false
		}
	}
	return i == len(s)
}

// trimSpace trims what Python's str.strip() trims from ASCII text.
func trimSpace(s string) string {
	return strings.Trim(s, " \t\n\r\f\v")
}
