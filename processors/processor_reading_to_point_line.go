package processors

import (
	"math"
	"strconv"

	"github.com/valyala/fastjson"

	"github.com/preservarium/iot-ingestor/internal/lineprotocol"
	"github.com/preservarium/iot-ingestor/internal/pyjson"
)

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
		var finite bool
		st.scratch, finite = pyjson.NumberLiteral(v, st.scratch)
		if !finite {
			return ""
		}
		return b2s(st.scratch)
	case fastjson.TypeTrue:
		return "true"
	case fastjson.TypeFalse:
		return "false"
	default:
		st.textBuf = pyjson.AppendValue(st.textBuf[:0], v)
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

// Writing a reading's line: measurement, tags, fields, timestamp, in the
// order line protocol has them, each a step below.

// lineCounts is what writing a line found besides the line.
type lineCounts struct {
	fields    int // fields written; none means the reading is filtered
	nonFinite int // values skipped because they were NaN or ±Infinity
}

// appendLine appends the line of r to out. original is the message as JSON,
// for a configured measurement. On error out may hold part of the line: the
// caller cuts it.
func (m *pointMapper) appendLine(st *mapState, root *fastjson.Value, r *reading, rec recordMeta, measure func([]byte) (string, error), original, out []byte) ([]byte, lineCounts, *mappingError) {
	lineStart := len(out)
	ts, err := m.timestamp(r.timestamp, rec)
	if err != nil {
		return out, lineCounts{}, err
	}
	measurement, err := m.measurementOf(r, measure, original)
	if err != nil {
		return out, lineCounts{}, err
	}
	if len(m.valueTagIndex) > 0 {
		// field_tags: the tags come before the fields on the line, so the
		// values they take are found first.
		if err := m.collectValueTags(st, r); err != nil {
			return out, lineCounts{}, err
		}
	}
	out = lineprotocol.AppendMeasurement(out, measurement)
	if out, err = m.appendTags(st, root, out); err != nil {
		return out, lineCounts{}, err
	}
	var counts lineCounts
	if out, counts, err = m.appendFields(st, r, out, lineStart); err != nil || counts.fields == 0 {
		return out, counts, err
	}
	out = lineprotocol.AppendTimestamp(out, ts)
	if len(out)-lineStart > m.maxLineBytes {
		return out, lineCounts{}, validationErr("the point's line is longer than the " + strconv.Itoa(m.maxLineBytes) + " bytes a line may have (max_line_bytes) once its timestamp is added")
	}
	return out, counts, nil
}

// measurementOf is device_id, or the configured measurement.
func (m *pointMapper) measurementOf(r *reading, measure func([]byte) (string, error), original []byte) (string, *mappingError) {
	measurement, what := r.device, "device_id"
	if measure != nil {
		s, err := measure(original)
		if err != nil {
			return "", measurementErr(err)
		}
		measurement, what = s, "measurement"
	}
	if why := lineprotocol.CheckMeasurement(measurement); why != "" {
		return "", validationErr(what + " " + quoteForError(measurement) + " " + why)
	}
	return measurement, nil
}

// appendTags appends the configured tags, sorted by key: from paths, static,
// and from field_tags labels (collected before).
func (m *pointMapper) appendTags(st *mapState, root *fastjson.Value, out []byte) ([]byte, *mappingError) {
	for i := range m.tags {
		tag := &m.tags[i]
		switch tag.kind {
		case tagFromPath:
			var err *mappingError
			var missing bool
			if out, missing, err = m.appendTag(st, root, tag, out); err != nil {
				return out, err
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
	return out, nil
}

// appendFields appends one field per stored value. A value goes through
// metadata.persist, then field_include/field_exclude, then becomes a tag
// (field_tags, written before) or a field named by field_rename and
// reserved_keys.
func (m *pointMapper) appendFields(st *mapState, r *reading, out []byte, lineStart int) ([]byte, lineCounts, *mappingError) {
	var counts lineCounts
	st.resetNames()
	for i, v := range r.values {
		keep, err := r.persisted(i)
		if err != nil {
			return out, counts, err
		}
		if !keep {
			continue
		}
		name, fromLabel, err := r.label(i)
		if err != nil {
			return out, counts, err
		}
		if m.fieldRules.set {
			if name, keep = m.fieldName(name); !keep {
				continue
			}
		}
		decl := declNone
		if i < len(r.types) {
			if decl, err = parseDeclared(r.types[i], i); err != nil {
				return out, counts, err
			}
		}
		reserved := lineprotocol.IsReservedKey(name)
		if reserved && m.renameReserved {
			name = m.reservedPrefix + name
		}

		fieldStart := len(out)
		if counts.fields == 0 {
			out = append(out, ' ')
		} else {
			out = append(out, ',')
		}
		out = lineprotocol.AppendKey(out, name)
		out = append(out, '=')
		var fate valueFate
		if out, fate, err = m.appendValue(st, out, v, decl, i); err != nil {
			return out, counts, err
		}
		if fate != valueStored {
			if fate == valueNonFinite {
				counts.nonFinite++
			}
			out = out[:fieldStart]
			continue
		}
		// The name only matters for a value that is stored.
		if err := m.checkFieldName(st, r, name, reserved, fromLabel, i); err != nil {
			return out, counts, err
		}
		// Checked as the line grows, so a reading over the limit costs at most
		// the limit and one field.
		if len(out)-lineStart > m.maxLineBytes {
			return out, counts, lineTooLongErr(m.maxLineBytes, i)
		}
		counts.fields++
	}
	return out, counts, nil
}

// fieldName applies the field rules to a value's label as it arrives: whether
// field_include and field_exclude keep it as a field (a field_tags label is
// already a tag), and its name after field_rename.
func (m *pointMapper) fieldName(label string) (string, bool) {
	if !m.selects(label) {
		return "", false
	}
	if _, isTag := m.valueTagIndex[label]; isTag {
		return "", false
	}
	if to, ok := m.rename[label]; ok {
		return to, true
	}
	return label, true
}

// checkFieldName refuses a stored field's name that line protocol or InfluxDB
// cannot take, or that the message or the configured tags already use.
func (m *pointMapper) checkFieldName(st *mapState, r *reading, name string, reserved, fromLabel bool, i int) *mappingError {
	if reserved && !m.renameReserved {
		return fieldNameErr(name, r.namesKey, fromLabel, i, "is a key InfluxDB reserves; rename it upstream or set reserved_keys: rename to store it as "+quoteForError(m.reservedPrefix+name))
	}
	if why := lineprotocol.CheckName(name); why != "" {
		return fieldNameErr(name, r.namesKey, fromLabel, i, why)
	}
	if st.isDuplicate(name) {
		return fieldNameErr(name, r.namesKey, fromLabel, i, "appears more than once in the message")
	}
	for j := range m.tags {
		if m.tags[j].key == name {
			return fieldNameErr(name, r.namesKey, fromLabel, i, "is also a configured tag key")
		}
	}
	return nil
}
