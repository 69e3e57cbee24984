package processors

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/valyala/fastjson"

	"github.com/preservarium/iot-ingestor/internal/lineprotocol"
	"github.com/preservarium/iot-ingestor/internal/meta"
)

// pointMapper turns one stage-2 reading (the raw Kafka value) into one
// line-protocol line. It holds only configuration, so one mapper serves every
// goroutine; the per-call scratch lives in a mapState.
type pointMapper struct {
	floatNumbers   bool  // numbers: float
	dropNested     bool  // nested_values: drop
	kafkaTime      bool  // time_source: kafka
	precisionNs    int64 // precision as a multiple of nanoseconds
	renameReserved bool  // reserved_keys: rename
	reservedPrefix string
	tags           []tagSpec // sorted by key, as InfluxDB prefers
	maxFields      int       // the most entries values may have
	maxLineBytes   int       // the most bytes of one point's line
	fieldRules               // field_rename, field_include, field_exclude, field_tags
}

// tagKind is where a configured tag's value comes from.
type tagKind uint8

const (
	tagFromPath  tagKind = iota // tags: a path in the message
	tagStatic                   // static_tags: a fixed value
	tagFromValue                // field_tags: the value of a label
)

// tagSpec is one configured tag: its key and where its value comes from.
type tagSpec struct {
	key  string
	kind tagKind
	path []string // tagFromPath
	desc string   // tagFromPath: the dotted path, for error messages
	pair []byte   // tagStatic: ",key=value", escaped
}

// mapState is the scratch one goroutine reuses from message to message, so the
// hot path allocates nothing for parsing.
type mapState struct {
	parser   fastjson.Parser
	nullBuf  []byte // input with Python tokens as null
	parseBuf []byte // input with Python tokens as fastjson reads them
	scratch  []byte // literal text and conversions
	textBuf  []byte // JSON text of nested values
	names    []string
	nameSet  map[string]struct{} // only for messages with many fields
	cutBuf   []byte              // a reading with its oversized arrays emptied
	// missing lists the path tags (indexes in pointMapper.tags) that resolved
	// nothing in the last message, for iot_tag_missing.
	missing []int
	// valueTags holds, per configured tag, the value a field_tags label gave
	// in this message; their text is in valueTagText.
	valueTags    []valueTag
	valueTagText []byte
}

// valueTag is what one field_tags label gave in a message.
type valueTag struct {
	seen       bool // the label was there (stored or not)
	start, end int  // its text in valueTagText; empty when left out
}

// namesLinearMax is how many field names are compared one by one before a
// set takes over: a handful of fields is the norm, thousands are possible.
const namesLinearMax = 16

func (st *mapState) resetNames() {
	st.names = st.names[:0]
	if len(st.nameSet) > 0 {
		clear(st.nameSet)
	}
}

// isDuplicate reports whether name was already used in this message, and
// records it otherwise.
func (st *mapState) isDuplicate(name string) bool {
	if len(st.names) < namesLinearMax {
		for _, prev := range st.names {
			if prev == name {
				return true
			}
		}
		st.names = append(st.names, name)
		return false
	}
	if st.nameSet == nil {
		st.nameSet = make(map[string]struct{}, 4*namesLinearMax)
	}
	if len(st.nameSet) == 0 {
		for _, prev := range st.names {
			st.nameSet[prev] = struct{}{}
		}
	}
	if _, ok := st.nameSet[name]; ok {
		return true
	}
	st.nameSet[name] = struct{}{}
	return false
}

// recordMeta is what the mapper needs from the Kafka record.
type recordMeta struct {
	timestampMs    int64
	hasTimestampMs bool
	key            string
	hasKey         bool
}

// mapOutcome reports what happened to one message besides its line.
type mapOutcome struct {
	// original is the message as valid JSON text; it may alias the input or
	// the state's buffers, so the caller copies it before the next call.
	original []byte
	// requestID is the input's request_id, or the record key, or ""; like
	// original it may alias the state's buffers.
	requestID string
	// filtered is set when no value of the message is to be stored.
	filtered bool
	// nonFinite counts values skipped because they were NaN or ±Infinity.
	nonFinite int
	err       *mappingError
}

// mappingError is a message's own failure, of kind decode or validation, which the error
// branch and the metrics use.
type mappingError struct {
	kind meta.Kind
	msg  string
}

const (
	kindDecode     = meta.KindDecode
	kindValidation = meta.KindValidation
)

func (e *mappingError) Error() string { return string(e.kind) + ": " + e.msg }

// Unwrap gives the error as the metadata contract's typed error, so a reader anywhere
// downstream finds its kind with meta.KindOf.
func (e *mappingError) Unwrap() error { return &meta.Error{Kind: e.kind, Reason: e.msg} }

func decodeErr(msg string) *mappingError { return &mappingError{kind: kindDecode, msg: msg} }

func validationErr(msg string) *mappingError {
	return &mappingError{kind: kindValidation, msg: msg}
}

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

// b2s views parser-owned bytes as a string without copying; the result is
// valid until the state parses the next message.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// undecodable is the outcome for input that is not a JSON object the mapping
// can read; its original is kept as {"raw": "<text>"}.
func (st *mapState) undecodable(in []byte, rec recordMeta, reason string) mapOutcome {
	st.nullBuf = appendRawObject(st.nullBuf[:0], in)
	return mapOutcome{original: st.nullBuf, requestID: keyRequestID(rec), err: decodeErr(reason)}
}

// mapReading appends the line for in to out and returns it with the outcome.
// On error or when filtered, out is returned unchanged. measure, when not nil,
// computes the measurement from the original JSON (a configured interpolation).
func (m *pointMapper) mapReading(st *mapState, in []byte, rec recordMeta, out []byte, measure func(original []byte) (string, error)) ([]byte, mapOutcome) {
	var res mapOutcome
	src := in
	res.original = in
	st.missing = st.missing[:0]
	// One pass over the text checks its tokens and finds what else the mapping
	// looks for. Where it stopped at an error, its findings cover only the text
	// before, and the dedicated checks run instead.
	scan := scanText(in, true)
	clean := scan.err == nil && !scan.python
	// A reading that may hold an array over max_fields is validated without
	// being parsed, and parsed only once such arrays are emptied (see
	// oversizedArrays).
	big := m.maxFields > 0 && mayHoldOversizedArray(in, m.maxFields)
	// A message with Python tokens is rewritten before it is validated: they
	// are common, and a failed validation costs more (fastjson builds its error
	// text) than the rewrite.
	tokens := false
	if scan.python || (scan.err != nil && hasPythonTokens(in)) {
		st.nullBuf, st.parseBuf, tokens = rewritePythonTokens(in, st.nullBuf, st.parseBuf)
	}
	if tokens {
		if fastjson.ValidateBytes(st.nullBuf) != nil {
			tokens = false // not JSON even with them: report the input's own error
		} else if terr := tokenError(st.nullBuf); terr != nil {
			// A control character the validator misses (see tokenError).
			return out, st.undecodable(in, rec, "message is not JSON: "+terr.Error())
		} else {
			res.original, src = st.nullBuf, st.parseBuf
		}
	}
	if nestingExceeds(in, fastjson.MaxDepth) {
		// Checked before validating: fastjson's validator recurses without a
		// limit, so a megabyte of [ would cost hundreds of MB of stack.
		return out, st.undecodable(in, rec, "message nests arrays and objects deeper than "+strconv.Itoa(fastjson.MaxDepth)+" levels")
	}
	// One parse and a pass over the strings and numbers (tokenError) stand for a
	// full validation and a parse; what they refuse is validated in full, whose
	// error text is the one reported when it refuses it too.
	var root *fastjson.Value
	if !tokens {
		var parsed *fastjson.Value
		var perr, terr error
		if big {
			perr = fastjson.ValidateBytes(in)
		} else {
			parsed, perr = st.parser.ParseBytes(in)
		}
		switch {
		case perr != nil:
		case scan.python:
			terr = tokenError(in) // the Python tokens were not JSON after all
		default:
			terr = scan.err
		}
		if perr == nil && terr == nil {
			root = parsed // nil when big: parsed below
		} else {
			reason := ""
			if verr := fastjson.ValidateBytes(in); verr != nil {
				reason = verr.Error()
			} else if terr != nil {
				reason = terr.Error() // a control character the validator misses
			}
			if reason != "" {
				return out, st.undecodable(in, rec, "message is not JSON: "+shortReason(reason))
			}
		}
	}
	if (!clean || scan.nonASCII) && !utf8.Valid(in) {
		return out, st.undecodable(in, rec, "message is not valid UTF-8 text")
	}
	if (clean && scan.surrogate) || (!clean && hasSurrogateEscape(src)) {
		if sameBytes(src, in) {
			st.parseBuf = append(st.parseBuf[:0], in...)
			src = st.parseBuf
		}
		fixLoneSurrogates(src)
		root = nil // parsed before the fix
	}
	var oversized *mappingError
	if big {
		if kind := jsonKindOf(src); kind != "" {
			return out, st.undecodable(in, rec, "message is a JSON "+kind+", expected an object")
		}
		text, over, n := oversizedArrays(src, m.maxFields, st.cutBuf)
		if !sameBytes(text, src) {
			st.cutBuf, src = text, text
		}
		if over != "" {
			oversized = tooManyEntriesErr(over, n, m.maxFields)
		}
	}
	var perr error
	if root == nil {
		root, perr = st.parser.ParseBytes(src)
	}
	if perr != nil {
		// Valid JSON that fastjson refuses: nesting deeper than it allows.
		return out, st.undecodable(in, rec, "message cannot be decoded: "+shortReason(perr.Error()))
	}
	if t := root.Type(); t != fastjson.TypeObject {
		kind := t.String()
		if t == fastjson.TypeTrue || t == fastjson.TypeFalse {
			kind = "boolean"
		}
		return out, st.undecodable(in, rec, "message is a JSON "+kind+", expected an object")
	}

	var requestID, timestamp, deviceID, values, labels, label, metadata *fastjson.Value
	obj, _ := root.Object()
	// Visit keeps the last of duplicate keys, as Python's json.loads does.
	obj.Visit(func(k []byte, v *fastjson.Value) {
		switch string(k) {
		case "request_id":
			requestID = v
		case "timestamp":
			timestamp = v
		case "device_id":
			deviceID = v
		case "values":
			values = v
		case "labels":
			labels = v
		case "label":
			label = v
		case "metadata":
			metadata = v
		}
	})
	if requestID != nil && requestID.Type() == fastjson.TypeString {
		if s, _ := requestID.StringBytes(); len(s) > 0 {
			res.requestID = b2s(s)
		}
	}
	if res.requestID == "" {
		res.requestID = keyRequestID(rec)
	}
	if oversized != nil {
		res.err = oversized
		return out, res
	}

	start := len(out)
	var err *mappingError
	out, res.filtered, res.nonFinite, err = m.appendPoint(st, root, out, rec, fields{
		timestamp: timestamp, deviceID: deviceID, values: values,
		labels: labels, label: label, metadata: metadata,
	}, measure, res.original)
	if err != nil || res.filtered {
		out = out[:start]
	}
	res.err = err
	return out, res
}

// fields are the top-level members of a reading the mapping reads.
type fields struct {
	timestamp, deviceID, values, labels, label, metadata *fastjson.Value
}

func (m *pointMapper) appendPoint(st *mapState, root *fastjson.Value, out []byte, rec recordMeta, f fields, measure func([]byte) (string, error), original []byte) ([]byte, bool, int, *mappingError) {
	lineStart := len(out)
	// device_id is part of the contract whatever the measurement is.
	if f.deviceID == nil {
		return out, false, 0, validationErr("device_id is missing")
	}
	if f.deviceID.Type() != fastjson.TypeString {
		return out, false, 0, validationErr("device_id is " + describe(f.deviceID) + ", expected a non-empty string")
	}
	deviceBytes, _ := f.deviceID.StringBytes()
	device := b2s(deviceBytes)
	if device == "" {
		return out, false, 0, validationErr("device_id is empty")
	}
	if f.values == nil {
		return out, false, 0, validationErr("values is missing")
	}
	if f.values.Type() != fastjson.TypeArray {
		return out, false, 0, validationErr("values is " + describe(f.values) + ", expected an array")
	}
	vals, _ := f.values.Array()
	if len(vals) > m.maxFields {
		return out, false, 0, tooManyEntriesErr("values", len(vals), m.maxFields)
	}

	// labels wins over the older singular label; null counts as absent.
	names, namesKey := f.labels, "labels"
	if names == nil || names.Type() == fastjson.TypeNull {
		names, namesKey = f.label, "label"
	}
	var nameList []*fastjson.Value
	if names != nil && names.Type() != fastjson.TypeNull {
		if names.Type() != fastjson.TypeArray {
			return out, false, 0, validationErr(namesKey + " is " + describe(names) + ", expected an array of strings or null")
		}
		nameList, _ = names.Array()
		if len(nameList) != len(vals) {
			return out, false, 0, validationErr(namesKey + " has " + strconv.Itoa(len(nameList)) + " entries, values has " + strconv.Itoa(len(vals)))
		}
	}

	var persistAll = true
	var persistList, typeList []*fastjson.Value
	if md := f.metadata; md != nil && md.Type() != fastjson.TypeNull {
		if md.Type() != fastjson.TypeObject {
			return out, false, 0, validationErr("metadata is " + describe(md) + ", expected an object or null")
		}
		// One visit for both keys (Get unescapes all the keys and scans again
		// for each key it misses); like the top level, the last of duplicate
		// keys counts, as with Python's json.loads.
		var p, t *fastjson.Value
		mdObj, _ := md.Object()
		mdObj.Visit(func(k []byte, v *fastjson.Value) {
			switch string(k) {
			case "persist":
				p = v
			case "datatype_type":
				t = v
			}
		})
		if p != nil {
			switch p.Type() {
			case fastjson.TypeTrue, fastjson.TypeNull:
			case fastjson.TypeFalse:
				persistAll = false
			case fastjson.TypeArray:
				persistList, _ = p.Array()
			default:
				return out, false, 0, validationErr("metadata.persist is " + describe(p) + ", expected a boolean or a list of booleans")
			}
		}
		if t != nil {
			switch t.Type() {
			case fastjson.TypeNull:
			case fastjson.TypeArray:
				typeList, _ = t.Array()
			default:
				return out, false, 0, validationErr("metadata.datatype_type is " + describe(t) + ", expected a list of number, integer, boolean or string")
			}
		}
	}

	ts, terr := m.timestamp(f.timestamp, rec)
	if terr != nil {
		return out, false, 0, terr
	}

	// Measurement and tags first: they come first on the line.
	measurement := device
	what := "device_id"
	if measure != nil {
		s, err := measure(original)
		if err != nil {
			return out, false, 0, measurementErr(err)
		}
		measurement, what = s, "measurement"
	}
	if why := lineprotocol.CheckMeasurement(measurement); why != "" {
		return out, false, 0, validationErr(what + " " + quoteForError(measurement) + " " + why)
	}
	if len(m.valueTagIndex) > 0 {
		// field_tags: the tags come before the fields on the line, so the
		// values they take are found first.
		if err := m.collectValueTags(st, vals, nameList, namesKey, persistAll, persistList); err != nil {
			return out, false, 0, err
		}
	}
	out = lineprotocol.AppendMeasurement(out, measurement)
	for i := range m.tags {
		tag := &m.tags[i]
		switch tag.kind {
		case tagFromPath:
			var err *mappingError
			var missing bool
			out, missing, err = m.appendTag(st, root, tag, out)
			if err != nil {
				return out, false, 0, err
			}
			if missing {
				st.missing = append(st.missing, i)
			}
		case tagStatic:
			out = append(out, tag.pair...)
		case tagFromValue:
			if vt := st.valueTags[i]; vt.end > vt.start {
				out = appendTagPair(out, tag.key, b2s(st.valueTagText[vt.start:vt.end]))
			}
		}
	}

	st.resetNames()
	nonFinite := 0
	written := 0
	for i, v := range vals {
		// The rules of persisted and valueLabel, written out: this loop runs
		// for every value of every message, and neither call is inlined.
		if persistList != nil {
			if i < len(persistList) {
				switch persistList[i].Type() {
				case fastjson.TypeFalse:
					continue
				case fastjson.TypeTrue, fastjson.TypeNull:
				default:
					return out, false, 0, persistEntryErr(persistList[i], i)
				}
			}
		} else if !persistAll {
			continue
		}
		// Field name: the label, or value_{i} when there is none.
		name, fromLabel := "", false
		if nameList != nil {
			switch nameList[i].Type() {
			case fastjson.TypeString:
				b, _ := nameList[i].StringBytes()
				name, fromLabel = b2s(b), true
			case fastjson.TypeNull:
			default:
				return out, false, 0, labelEntryErr(nameList[i], namesKey, i)
			}
		}
		if name == "" {
			name, fromLabel = valueName(i), false
		}
		if m.fieldRules.set {
			// The label as it arrives selects the value; field_tags labels
			// were written among the tags; then the rename.
			if !m.selects(name) {
				continue
			}
			if _, isTag := m.valueTagIndex[name]; isTag {
				continue
			}
			if to, ok := m.rename[name]; ok {
				name = to
			}
		}
		decl := declNone
		var err *mappingError
		if i < len(typeList) {
			if decl, err = parseDeclared(typeList[i], i); err != nil {
				return out, false, 0, err
			}
		}
		reserved := lineprotocol.IsReservedKey(name)
		if reserved && m.renameReserved {
			name = m.reservedPrefix + name
		}

		fieldStart := len(out)
		if written == 0 {
			out = append(out, ' ')
		} else {
			out = append(out, ',')
		}
		out = lineprotocol.AppendKey(out, name)
		out = append(out, '=')
		var skip, nf bool
		out, skip, nf, err = m.appendValue(st, out, v, decl, i)
		if err != nil {
			return out, false, 0, err
		}
		if skip {
			if nf {
				nonFinite++
			}
			out = out[:fieldStart]
			continue
		}
		// The name only matters for a value that is stored.
		if reserved && !m.renameReserved {
			return out, false, 0, fieldNameErr(name, namesKey, fromLabel, i, "is a key InfluxDB reserves; rename it upstream or set reserved_keys: rename to store it as "+quoteForError(m.reservedPrefix+name))
		}
		if why := lineprotocol.CheckName(name); why != "" {
			return out, false, 0, fieldNameErr(name, namesKey, fromLabel, i, why)
		}
		if st.isDuplicate(name) {
			return out, false, 0, fieldNameErr(name, namesKey, fromLabel, i, "appears more than once in the message")
		}
		for j := range m.tags {
			if m.tags[j].key == name {
				return out, false, 0, fieldNameErr(name, namesKey, fromLabel, i, "is also a configured tag key")
			}
		}
		// Checked as the line grows, so a reading over the limit costs at most
		// the limit and one field.
		if len(out)-lineStart > m.maxLineBytes {
			return out, false, 0, lineTooLongErr(m.maxLineBytes, i)
		}
		written++
	}
	if written == 0 {
		return out, true, nonFinite, nil
	}
	out = lineprotocol.AppendTimestamp(out, ts)
	if len(out)-lineStart > m.maxLineBytes {
		return out, false, 0, validationErr("the point's line is longer than the " + strconv.Itoa(m.maxLineBytes) + " bytes a line may have (max_line_bytes) once its timestamp is added")
	}
	return out, false, nonFinite, nil
}

// fieldNameErr reports a bad field name and where it came from: the label, or
// the value's position when the name is value_{i}.
func fieldNameErr(name, namesKey string, fromLabel bool, i int, why string) *mappingError {
	where := "values[" + strconv.Itoa(i) + "]"
	if fromLabel {
		where = namesKey + "[" + strconv.Itoa(i) + "]"
	}
	return validationErr("field name " + quoteForError(name) + " (" + where + ") " + why)
}

func parseDeclared(v *fastjson.Value, i int) (declaredType, *mappingError) {
	switch v.Type() {
	case fastjson.TypeNull:
		return declNone, nil
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		switch string(b) {
		case "number":
			return declNumber, nil
		case "integer":
			return declInteger, nil
		case "boolean":
			return declBoolean, nil
		case "string":
			return declString, nil
		}
	}
	return declNone, validationErr("metadata.datatype_type[" + strconv.Itoa(i) + "] is " + describe(v) + ", expected number, integer, boolean or string")
}

// appendValue appends the field value of v (without its key). skip reports a
// value that is not stored (null, non-finite, dropped nested value); nonFinite
// tells which of those were NaN or infinite.
func (m *pointMapper) appendValue(st *mapState, out []byte, v *fastjson.Value, decl declaredType, i int) (_ []byte, skip, nonFinite bool, _ *mappingError) {
	switch v.Type() {
	case fastjson.TypeNull:
		return out, true, false, nil
	case fastjson.TypeTrue, fastjson.TypeFalse:
		b := v.Type() == fastjson.TypeTrue
		switch decl {
		case declNone, declBoolean:
			return lineprotocol.AppendBool(out, b), false, false, nil
		case declString:
			return lineprotocol.AppendString(out, strconv.FormatBool(b)), false, false, nil
		}
		return out, false, false, declErr(i, v, decl)
	case fastjson.TypeNumber:
		st.scratch = rawLiteral(v, st.scratch)
		lit := b2s(st.scratch)
		if isNonFiniteLiteral(st.scratch) {
			return out, true, true, nil
		}
		isInt := isIntegerText(lit)
		switch decl {
		case declNone:
			if isInt {
				if n, err := strconv.ParseInt(lit, 10, 64); err == nil {
					return m.appendInt(out, n), false, false, nil
				}
			} else if written, ok := lineprotocol.AppendFloatText(out, lit); ok {
				return written, false, false, nil
			}
			f, _ := strconv.ParseFloat(lit, 64)
			if math.IsInf(f, 0) {
				// A finite literal beyond float64 reads as infinity, as in Python.
				return out, true, true, nil
			}
			return lineprotocol.AppendFloat(out, f), false, false, nil
		case declNumber:
			if written, ok := lineprotocol.AppendFloatText(out, lit); ok {
				return written, false, false, nil
			}
			f, _ := strconv.ParseFloat(lit, 64)
			if math.IsInf(f, 0) {
				return out, true, true, nil
			}
			return lineprotocol.AppendFloat(out, f), false, false, nil
		case declInteger:
			n, ok := integral(lit, isInt)
			if !ok {
				return out, false, false, declErr(i, v, decl)
			}
			return m.appendInt(out, n), false, false, nil
		case declString:
			return lineprotocol.AppendString(out, lit), false, false, nil
		}
		return out, false, false, declErr(i, v, decl)
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		s := b2s(b)
		switch decl {
		case declNone:
			if f, ok := numericString(s); ok {
				return lineprotocol.AppendFloat(out, f), false, false, nil
			}
			return appendStringField(out, s, i)
		case declString:
			return appendStringField(out, s, i)
		case declNumber:
			if f, ok := numericString(s); ok {
				return lineprotocol.AppendFloat(out, f), false, false, nil
			}
		case declInteger:
			t := trimSpace(s)
			if looksNumeric(t) {
				if n, ok := integral(t, isIntegerText(t)); ok {
					return m.appendInt(out, n), false, false, nil
				}
			}
		case declBoolean:
			t := trimSpace(s)
			if strings.EqualFold(t, "true") {
				return lineprotocol.AppendBool(out, true), false, false, nil
			}
			if strings.EqualFold(t, "false") {
				return lineprotocol.AppendBool(out, false), false, false, nil
			}
		}
		return out, false, false, declErr(i, v, decl)
	default: // object or array
		if decl != declNone && decl != declString {
			return out, false, false, declErr(i, v, decl)
		}
		if m.dropNested && decl == declNone {
			return out, true, false, nil
		}
		st.textBuf = appendJSON(st.textBuf[:0], v)
		return appendStringField(out, b2s(st.textBuf), i)
	}
}

func appendStringField(out []byte, s string, i int) ([]byte, bool, bool, *mappingError) {
	if len(s) > lineprotocol.MaxStringFieldLen {
		return out, false, false, validationErr("values[" + strconv.Itoa(i) + "] is a string of " + strconv.Itoa(len(s)) + " bytes, InfluxDB stores at most " + strconv.Itoa(lineprotocol.MaxStringFieldLen))
	}
	return lineprotocol.AppendString(out, s), false, false, nil
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

// timestamp returns the point's time in nanoseconds, truncated to the precision.
func (m *pointMapper) timestamp(v *fastjson.Value, rec recordMeta) (int64, *mappingError) {
	if !m.kafkaTime && v != nil && v.Type() != fastjson.TypeNull {
		if v.Type() != fastjson.TypeString {
			return 0, validationErr("timestamp is " + describe(v) + ", expected an ISO-8601 string")
		}
		b, _ := v.StringBytes()
		if len(b) > 0 {
			ns, err := parseISOTimestamp(b2s(b))
			if err != nil {
				return 0, validationErr("timestamp " + quoteForError(b2s(b)) + " " + err.Error())
			}
			return truncateTime(ns, m.precisionNs), nil
		}
	}
	if !rec.hasTimestampMs {
		if m.kafkaTime {
			return 0, validationErr("time_source is kafka but the record has no kafka_timestamp_ms")
		}
		return 0, validationErr("timestamp is missing or empty and the record has no kafka_timestamp_ms to fall back on")
	}
	if rec.timestampMs > math.MaxInt64/1_000_000 || rec.timestampMs < math.MinInt64/1_000_000 {
		return 0, validationErr("kafka_timestamp_ms " + strconv.FormatInt(rec.timestampMs, 10) + " is out of range")
	}
	return truncateTime(rec.timestampMs*1_000_000, m.precisionNs), nil
}

// appendTag appends ,key=value for a tag from a path, or nothing when the
// value is missing, null, empty or non-finite, which missing reports.
func (m *pointMapper) appendTag(st *mapState, root *fastjson.Value, tag *tagSpec, out []byte) (_ []byte, missing bool, _ *mappingError) {
	v := root.Get(tag.path...)
	if v == nil {
		return out, true, nil
	}
	text := st.tagText(v)
	if text == "" {
		return out, true, nil
	}
	if why := lineprotocol.CheckName(text); why != "" {
		return out, false, validationErr("tag " + quoteForError(tag.key) + " from " + tag.desc + " " + quoteForError(text) + " " + why)
	}
	return appendTagPair(out, tag.key, text), false, nil
}

// tagText is a value's text as a tag: "" (left out) for null and non-finite
// numbers, a number's literal, true or false, and JSON text for arrays and
// objects. The result may view the state's buffers until the next call.
func (st *mapState) tagText(v *fastjson.Value) string {
	switch v.Type() {
	case fastjson.TypeNull:
		return ""
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		return b2s(b)
	case fastjson.TypeNumber:
		st.scratch = rawLiteral(v, st.scratch)
		if isNonFiniteLiteral(st.scratch) {
			return ""
		}
		return b2s(st.scratch)
	case fastjson.TypeTrue:
		return "true"
	case fastjson.TypeFalse:
		return "false"
	default:
		st.textBuf = appendJSON(st.textBuf[:0], v)
		return b2s(st.textBuf)
	}
}

// appendTagPair appends ,key=value, escaped.
func appendTagPair(out []byte, key, value string) []byte {
	out = append(out, ',')
	out = lineprotocol.AppendKey(out, key)
	out = append(out, '=')
	return lineprotocol.AppendKey(out, value)
}

// persisted reads metadata.persist for the value at i: a list of flags (a
// missing or null entry means store), else the flag for the whole message.
// Small enough to be inlined: it runs for every value.
func persisted(all bool, list []*fastjson.Value, i int) (bool, *mappingError) {
	if list == nil {
		return all, nil
	}
	if i >= len(list) {
		return true, nil
	}
	switch list[i].Type() {
	case fastjson.TypeFalse:
		return false, nil
	case fastjson.TypeTrue, fastjson.TypeNull:
		return true, nil
	}
	return false, persistEntryErr(list[i], i)
}

func persistEntryErr(v *fastjson.Value, i int) *mappingError {
	return validationErr("metadata.persist[" + strconv.Itoa(i) + "] is " + describe(v) + ", expected a boolean")
}

// valueLabel is the name of the value at i before any rule: its label, or
// value_{i} when there is none (fromLabel false). Inlined, like persisted.
func valueLabel(nameList []*fastjson.Value, namesKey string, i int) (name string, fromLabel bool, _ *mappingError) {
	if nameList != nil {
		if t := nameList[i].Type(); t == fastjson.TypeString {
			if b, _ := nameList[i].StringBytes(); len(b) > 0 {
				return b2s(b), true, nil
			}
		} else if t != fastjson.TypeNull {
			return "", false, labelEntryErr(nameList[i], namesKey, i)
		}
	}
	return valueName(i), false, nil
}

func labelEntryErr(v *fastjson.Value, namesKey string, i int) *mappingError {
	return validationErr(namesKey + "[" + strconv.Itoa(i) + "] is " + describe(v) + ", expected a string or null")
}

// keyRequestID is the request id used when the message has none: the record
// key as text.
func keyRequestID(rec recordMeta) string {
	if !rec.hasKey {
		return ""
	}
	return strings.ToValidUTF8(rec.key, "\uFFFD")
}

// describe names a JSON value's type (and short value) for error messages.
func describe(v *fastjson.Value) string {
	switch v.Type() {
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		return "the string " + quoteForError(b2s(b))
	case fastjson.TypeNumber:
		return "the number " + quoteForError(v.String())
	case fastjson.TypeTrue, fastjson.TypeFalse:
		return "a boolean"
	case fastjson.TypeNull:
		return "null"
	case fastjson.TypeArray:
		return "an array"
	default:
		return "an object"
	}
}

// quoteForError quotes s on one line, shortened to keep error records readable.
func quoteForError(s string) string {
	const limit = 64
	if len(s) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "…"
	}
	return strconv.Quote(s)
}

// shortReason keeps a parser's error on one line and within a few hundred
// bytes: fastjson repeats "cannot parse array value: " once per nesting level,
// and the innermost reason and the unparsed tail are at the end.
func shortReason(s string) string {
	const limit = 400
	s = oneLine(s)
	if len(s) <= limit {
		return s
	}
	cut := len(s) - limit
	for cut < len(s) && !utf8.RuneStart(s[cut]) {
		cut++
	}
	return "…" + s[cut:]
}

// nestingExceeds reports whether arrays and objects in b nest deeper than
// limit. Counting the brackets first keeps the common case to two fast scans.
func nestingExceeds(b []byte, limit int) bool {
	if bytes.Count(b, []byte{'['})+bytes.Count(b, []byte{'{'}) <= limit {
		return false
	}
	depth := 0
	inString := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '[', '{':
			depth++
			if depth > limit {
				return true
			}
		case ']', '}':
			depth--
		}
	}
	return false
}

// oneLine keeps an error text on one line.
func oneLine(s string) string {
	if strings.ContainsAny(s, "\r\n") {
		s = strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(s)
	}
	return s
}
