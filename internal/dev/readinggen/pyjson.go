package readinggen

import (
	"math"
	"strconv"

	"github.com/preservarium/iot-ingestor/internal/pyjson"
)

// The stage-2 normalizer is Python: its bytes come from json.dumps. This file
// reproduces those bytes from a small ordered value model, because Go's
// encoding/json writes floats, separators and escapes differently (21 for
// 21.0, no NaN, raw UTF-8, sorted map keys).
//
// Values of the model: nil, bool, int64, float64 (NaN and ±Inf included),
// string, bigInt (an integer literal beyond int64), []any and object.

// object is a JSON object that keeps its key order, as a Python dict does.
type object []member

type member struct {
	key   string
	value any
}

// bigInt is an integer literal Python writes for an int beyond int64.
type bigInt string

func (o object) get(key string) (any, bool) {
	for _, m := range o {
		if m.key == key {
			return m.value, true
		}
	}
	return nil, false
}

// set replaces the value of key, or appends key when absent.
func (o object) set(key string, v any) object {
	for i := range o {
		if o[i].key == key {
			o[i].value = v
			return o
		}
	}
	return append(o, member{key, v})
}

func (o object) del(key string) object {
	out := o[:0:0]
	for _, m := range o {
		if m.key != key {
			out = append(out, m)
		}
	}
	return out
}

// pyStyle says how json.dumps was called.
type pyStyle struct {
	// spaces: the default separators (", ", ": ") instead of (",", ":").
	spaces bool
	// ensureASCII: the default ensure_ascii=True, escaping non-ASCII as \uXXXX.
	ensureASCII bool
}

var (
	// stylePython is json.dumps(obj) with every default.
	stylePython = pyStyle{spaces: true, ensureASCII: true}
	// styleCompact is json.dumps(obj, separators=(",", ":"), ensure_ascii=False).
	styleCompact = pyStyle{}
)

func (st pyStyle) encode(buf []byte, v any) []byte {
	switch t := v.(type) {
	case nil:
		return append(buf, "null"...)
	case bool:
		if t {
			return append(buf, "true"...)
		}
		return append(buf, "false"...)
	case int64:
		return strconv.AppendInt(buf, t, 10)
	case int:
		return strconv.AppendInt(buf, int64(t), 10)
	case bigInt:
		return append(buf, t...)
	case float64:
		return pyjson.AppendFloat(buf, t)
	case string:
		return st.encodeString(buf, t)
	case []any:
		buf = append(buf, '[')
		for i, e := range t {
			if i > 0 {
				buf = st.sep(buf, ',')
			}
			buf = st.encode(buf, e)
		}
		return append(buf, ']')
	case object:
		buf = append(buf, '{')
		for i, m := range t {
			if i > 0 {
				buf = st.sep(buf, ',')
			}
			buf = st.encodeString(buf, m.key)
			buf = st.sep(buf, ':')
			buf = st.encode(buf, m.value)
		}
		return append(buf, '}')
	}
	panic("readinggen: value of unexpected type in message model")
}

func (st pyStyle) sep(buf []byte, c byte) []byte {
	buf = append(buf, c)
	if st.spaces {
		buf = append(buf, ' ')
	}
	return buf
}

// encodeString follows CPython's encoder (pyjson.AppendString).
func (st pyStyle) encodeString(buf []byte, s string) []byte {
	return pyjson.AppendString(buf, s, st.ensureASCII)
}

// jsonText is the canonical text a nested value is expected to be stored as:
// compact, raw UTF-8, non-finite numbers as null (what the mapping rules ask
// for; a consumer compares it as JSON, not byte for byte).
func jsonText(v any) string {
	return string(styleCompact.encode(nil, finiteOnly(v)))
}

func finiteOnly(v any) any {
	switch t := v.(type) {
	case float64:
		if math.IsNaN(t) || math.IsInf(t, 0) {
			return nil
		}
		return t
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = finiteOnly(e)
		}
		return out
	case object:
		out := make(object, len(t))
		for i, m := range t {
			out[i] = member{m.key, finiteOnly(m.value)}
		}
		return out
	}
	return v
}
