package readinggen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Outcome is what the ingestor must do with a message.
type Outcome string

const (
	// OutcomeStored: one point, with the expected fields, is written.
	OutcomeStored Outcome = "stored"
	// OutcomeFiltered: valid, but every value is unpersisted, null or
	// non-finite; acknowledged and counted, nothing written, no error record.
	OutcomeFiltered Outcome = "filtered"
	// OutcomeError: one record on the error topic, nothing written.
	OutcomeError Outcome = "error"
)

// Error kinds of the error topic (contract, "Output: iot_errors").
const (
	ErrorKindDecode     = "decode"
	ErrorKindValidation = "validation"
)

// BadKind names the one way a bad message breaks the contract.
type BadKind string

// Every kind of bad message the generator writes.
const (
	BadNotJSON         BadKind = "not_json"
	BadNotObject       BadKind = "not_object"
	BadMissingDeviceID BadKind = "missing_device_id"
	BadValuesNotArray  BadKind = "values_not_array"
	BadLabelsMismatch  BadKind = "labels_length_mismatch"
	BadDuplicateLabels BadKind = "duplicate_labels"
	BadTimestamp       BadKind = "bad_timestamp"
	BadTypeMismatch    BadKind = "type_mismatch"
	BadNewlineKey      BadKind = "newline_in_key"
	BadFieldTime       BadKind = "field_named_time"
	BadFieldUnderscore BadKind = "field_leading_underscore"
)

// BadKinds lists every bad kind, in the order the generator cycles through.
var BadKinds = []BadKind{
	BadNotJSON, BadNotObject, BadMissingDeviceID, BadValuesNotArray, BadLabelsMismatch,
	BadDuplicateLabels, BadTimestamp, BadTypeMismatch, BadNewlineKey, BadFieldTime,
	BadFieldUnderscore,
}

// ErrorKind is the `kind` of the error record a bad message of this kind gets.
func (k BadKind) ErrorKind() string {
	if k == BadNotJSON || k == BadNotObject {
		return ErrorKindDecode
	}
	return ErrorKindValidation
}

// FieldType is an InfluxDB field type.
type FieldType string

// The InfluxDB field types the default mapping produces.
const (
	FieldFloat   FieldType = "float"
	FieldInteger FieldType = "integer"
	FieldBoolean FieldType = "boolean"
	FieldString  FieldType = "string"
)

// Field is one stored field with its exact typed value: float64, int64, bool
// or string as Type says.
type Field struct {
	Name  string    `json:"name"`
	Type  FieldType `json:"type"`
	Value any       `json:"value"`
	// JSONText marks a nested array or object stored as JSON text: compare it
	// as JSON (numbers as numbers), not byte for byte, because key order and
	// spacing of the stored text are the mapper's choice.
	JSONText bool `json:"json_text,omitempty"`
}

// Skipped counts the values of a valid message that are not stored, by reason.
type Skipped struct {
	Null        int `json:"null"`
	Unpersisted int `json:"unpersisted"`
	NonFinite   int `json:"non_finite"`
}

// Expectation is what the ingestor must make of one message, computed from
// the contract's rules while the message is built, never by the mapper.
type Expectation struct {
	Seq     int     `json:"seq"`
	Key     string  `json:"key"`
	Outcome Outcome `json:"outcome"`
	// Measurement, TimestampNS and Fields describe the stored point
	// (OutcomeStored); TimestampNS is truncated to Options.Precision.
	Measurement string  `json:"measurement,omitempty"`
	TimestampNS int64   `json:"timestamp_ns,omitempty"`
	Fields      []Field `json:"fields,omitempty"`
	Skipped     Skipped `json:"skipped,omitzero"`
	// ErrorKind ("decode" or "validation") and BadKind describe the error
	// record (OutcomeError).
	ErrorKind string  `json:"error_kind,omitempty"`
	BadKind   BadKind `json:"bad_kind,omitempty"`
	// RequestID is the request_id the message's error record must carry: the
	// input's request_id when it is a non-empty string, else the record key.
	RequestID string `json:"request_id"`
	// Variants names the contract variants the message exercises.
	Variants []string `json:"variants,omitempty"`
	// Source is where the record landed, filled in by a producer once the
	// broker acknowledged it; the error record's `source` must match it.
	Source *Source `json:"source,omitempty"`
}

// Source is a record's place in Kafka, the shape of an error record's `source`.
type Source struct {
	Topic       string `json:"topic"`
	Partition   int32  `json:"partition"`
	Offset      int64  `json:"offset"`
	TimestampMS int64  `json:"timestamp_ms"`
}

// Field returns the expected field called name.
func (e Expectation) Field(name string) (Field, bool) {
	for _, f := range e.Fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

// MarshalJSONLine encodes the expectation as one line of JSON (no newline).
func (e Expectation) MarshalJSONLine() ([]byte, error) {
	return json.Marshal(e)
}

// ParseExpectation decodes a line written by MarshalJSONLine, giving every
// field value its Go type back (JSON alone would make every number a float64
// and lose integers beyond 2^53).
func ParseExpectation(line []byte) (Expectation, error) {
	var e Expectation
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if err := dec.Decode(&e); err != nil {
		return e, fmt.Errorf("decoding expectation line: %w", err)
	}
	for i := range e.Fields {
		f := &e.Fields[i]
		switch f.Type {
		case FieldFloat:
			n, ok := f.Value.(json.Number)
			if !ok {
				return e, fmt.Errorf("expectation seq %d field %q: float value %v is not a number", e.Seq, f.Name, f.Value)
			}
			v, err := strconv.ParseFloat(string(n), 64)
			if err != nil {
				return e, fmt.Errorf("expectation seq %d field %q: %w", e.Seq, f.Name, err)
			}
			f.Value = v
		case FieldInteger:
			n, ok := f.Value.(json.Number)
			if !ok {
				return e, fmt.Errorf("expectation seq %d field %q: integer value %v is not a number", e.Seq, f.Name, f.Value)
			}
			v, err := strconv.ParseInt(string(n), 10, 64)
			if err != nil {
				return e, fmt.Errorf("expectation seq %d field %q: %w", e.Seq, f.Name, err)
			}
			f.Value = v
		case FieldBoolean:
			if _, ok := f.Value.(bool); !ok {
				return e, fmt.Errorf("expectation seq %d field %q: boolean value %v is not a bool", e.Seq, f.Name, f.Value)
			}
		case FieldString:
			if _, ok := f.Value.(string); !ok {
				return e, fmt.Errorf("expectation seq %d field %q: string value %v is not a string", e.Seq, f.Name, f.Value)
			}
		default:
			return e, fmt.Errorf("expectation seq %d field %q: unknown type %q", e.Seq, f.Name, f.Type)
		}
	}
	return e, nil
}

//------------------------------------------------------------------------------

// The contract's rules for one value, written from the contract and the
// mapping issue, independently of the mapper. skip is "" when the value is
// stored, else the reason it is not. Only the value shapes the generator
// produces need to be covered; anything else is a generator bug and panics.

const (
	skipNull      = "null"
	skipNonFinite = "non_finite"
)

func expectValue(name string, v any, declType string) (f Field, skip string) {
	f.Name = name
	if v == nil {
		return f, skipNull
	}
	if x, ok := v.(float64); ok && (math.IsNaN(x) || math.IsInf(x, 0)) {
		return f, skipNonFinite
	}
	switch declType {
	case "":
		return expectUndeclared(f, v), ""
	case "number":
		switch t := v.(type) {
		case float64:
			f.Type, f.Value = FieldFloat, t
		case int64:
			f.Type, f.Value = FieldFloat, float64(t)
		case bigInt:
			f.Type, f.Value = FieldFloat, mustParseFloat(string(t))
		case string:
			f.Type, f.Value = FieldFloat, mustParseFloat(strings.TrimSpace(t))
		default:
			panic(fmt.Sprintf("readinggen: %T declared number", v))
		}
	case "integer":
		switch t := v.(type) {
		case int64:
			f.Type, f.Value = FieldInteger, t
		case float64:
			if t != math.Trunc(t) {
				panic("readinggen: non-integral float declared integer in a good message")
			}
			f.Type, f.Value = FieldInteger, int64(t)
		case string:
			n, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
			if err != nil {
				panic("readinggen: non-integral string declared integer in a good message")
			}
			f.Type, f.Value = FieldInteger, n
		default:
			panic(fmt.Sprintf("readinggen: %T declared integer", v))
		}
	case "boolean":
		switch t := v.(type) {
		case bool:
			f.Type, f.Value = FieldBoolean, t
		case string:
			f.Type, f.Value = FieldBoolean, t == "true"
		default:
			panic(fmt.Sprintf("readinggen: %T declared boolean", v))
		}
	case "string":
		s, ok := v.(string)
		if !ok {
			panic(fmt.Sprintf("readinggen: %T declared string in a good message", v))
		}
		f.Type, f.Value = FieldString, storedString(s)
	default:
		panic("readinggen: unknown datatype_type " + declType)
	}
	return f, ""
}

func expectUndeclared(f Field, v any) Field {
	switch t := v.(type) {
	case bool:
		f.Type, f.Value = FieldBoolean, t
	case int64:
		f.Type, f.Value = FieldInteger, t
	case bigInt:
		// Beyond int64: a float, the nearest one to the literal.
		f.Type, f.Value = FieldFloat, mustParseFloat(string(t))
	case float64:
		f.Type, f.Value = FieldFloat, t
	case string:
		if x, ok := numericString(t); ok {
			f.Type, f.Value = FieldFloat, x
		} else {
			f.Type, f.Value = FieldString, storedString(t)
		}
	case []any, object:
		f.Type, f.Value, f.JSONText = FieldString, jsonText(t), true
	default:
		panic(fmt.Sprintf("readinggen: value of type %T in a message", v))
	}
	return f
}

// numericString: a string that is, after trimming spaces, a finite decimal or
// exponent number becomes a float (what the earlier ingestor did).
func numericString(s string) (float64, bool) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, false
	}
	i := 0
	if t[i] == '-' || t[i] == '+' {
		i++
	}
	digits := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
		digits++
	}
	if i < len(t) && t[i] == '.' {
		i++
		for i < len(t) && t[i] >= '0' && t[i] <= '9' {
			i++
			digits++
		}
	}
	if digits == 0 {
		return 0, false
	}
	if i < len(t) && (t[i] == 'e' || t[i] == 'E') {
		i++
		if i < len(t) && (t[i] == '-' || t[i] == '+') {
			i++
		}
		expDigits := 0
		for i < len(t) && t[i] >= '0' && t[i] <= '9' {
			i++
			expDigits++
		}
		if expDigits == 0 {
			return 0, false
		}
	}
	if i != len(t) {
		return 0, false
	}
	x, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsInf(x, 0) {
		return 0, false
	}
	return x, true
}

// storedString is the text InfluxDB keeps for a string field: line protocol
// cannot carry a newline, so the mapper writes it as the two characters \n,
// which InfluxDB stores as they are.
func storedString(s string) string {
	return strings.ReplaceAll(s, "\n", `\n`)
}

func mustParseFloat(s string) float64 {
	x, err := strconv.ParseFloat(s, 64)
	if err != nil {
		panic("readinggen: " + err.Error())
	}
	return x
}
