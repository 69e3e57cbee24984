package processors

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/preservarium/iot-ingestor/internal/lineprotocol"
)

// The mapping rules set by configuration instead of Bloblang: static_tags,
// field_rename, field_include, field_exclude and field_tags, and the check
// that a configured measurement resolves to something.
//
// A value goes through them in this order: its metadata.persist flag; its
// label as it arrives (value_{i} when it has none) selected by field_include
// and field_exclude; a label listed in field_tags becomes a tag; the others
// are fields, named by field_rename, then by reserved_keys.

// fieldRules is the per-value part of the configuration.
type fieldRules struct {
	set              bool // any of the four is configured
	rename           map[string]string
	include, exclude []string
	// valueTagIndex maps a field_tags label to its tag in pointMapper.tags.
	valueTagIndex map[string]int
}

// selects reports whether field_include and field_exclude keep a label.
// Patterns were checked at start, so path.Match cannot fail here.
func (r *fieldRules) selects(label string) bool {
	if len(r.include) > 0 && matchAny(r.include, label) == "" {
		return false
	}
	return matchAny(r.exclude, label) == ""
}

// matchAny returns the first of patterns that matches name, or "".
func matchAny(patterns []string, name string) string {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return p
		}
	}
	return ""
}

// collectValueTags finds the values of the field_tags labels in a message,
// with the same rules as fields (persist, include, exclude), and keeps their
// text in the state for the tag loop.
func (m *pointMapper) collectValueTags(st *mapState, r *reading) *mappingError {
	if cap(st.valueTags) < len(m.tags) {
		st.valueTags = make([]valueTag, len(m.tags))
	}
	st.valueTags = st.valueTags[:len(m.tags)]
	clear(st.valueTags)
	st.valueTagText = st.valueTagText[:0]
	for i, v := range r.values {
		if keep, err := r.persisted(i); err != nil {
			return err
		} else if !keep {
			continue
		}
		label, fromLabel, err := r.label(i)
		if err != nil {
			return err
		}
		ti, ok := m.valueTagIndex[label]
		if !ok || !m.selects(label) {
			continue
		}
		tag := &m.tags[ti]
		if st.valueTags[ti].seen {
			return fieldNameErr(label, r.namesKey, fromLabel, i, "appears more than once in the message")
		}
		text := st.tagText(v)
		if why := lineprotocol.CheckName(text); text != "" && why != "" {
			return validationErr("tag " + quoteForError(tag.key) + " from " + labelPlace(r.namesKey, fromLabel, i) + " " + quoteForError(text) + " " + why)
		}
		start := len(st.valueTagText)
		st.valueTagText = append(st.valueTagText, text...)
		st.valueTags[ti] = valueTag{seen: true, start: start, end: len(st.valueTagText)}
	}
	return nil
}

// labelPlace says where a value's name came from, for error messages.
func labelPlace(namesKey string, fromLabel bool, i int) string {
	if fromLabel {
		return fmt.Sprintf("%s[%d]", namesKey, i)
	}
	return fmt.Sprintf("values[%d]", i)
}

// sortedKeys returns the keys of a map in order, so that a configuration
// error names the same entry every time.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// checkTagName returns why key cannot be a tag key (or a field key), or "".
func checkTagName(key string) string {
	if lineprotocol.IsReservedKey(key) {
		return "is reserved by InfluxDB (time, or a leading _)"
	}
	return lineprotocol.CheckName(key)
}

// mappingRulesFromConfig reads static_tags and the field rules into m, whose
// tags from paths are already set (not yet sorted), and checks that they
// agree with each other.
func mappingRulesFromConfig(conf *service.ParsedConfig, m *pointMapper) error {
	tagFrom := map[string]string{} // tag key -> the setting that makes it
	for _, t := range m.tags {
		tagFrom[t.key] = rtpFieldTags
	}

	static, err := conf.FieldStringMap(rtpFieldStaticTags)
	if err != nil {
		return err
	}
	for _, key := range sortedKeys(static) {
		value := static[key]
		if why := checkTagName(key); why != "" {
			return fmt.Errorf("field %s: tag key %q %s", rtpFieldStaticTags, key, why)
		}
		if value == "" {
			return fmt.Errorf("field %s: tag %q has an empty value, which InfluxDB does not store", rtpFieldStaticTags, key)
		}
		if why := lineprotocol.CheckName(value); why != "" {
			return fmt.Errorf("field %s: tag %q value %q %s", rtpFieldStaticTags, key, value, why)
		}
		if from, dup := tagFrom[key]; dup {
			return fmt.Errorf("field %s: tag key %q is also set by %s; keep one of them", rtpFieldStaticTags, key, from)
		}
		tagFrom[key] = rtpFieldStaticTags
		m.tags = append(m.tags, tagSpec{key: key, kind: tagStatic, pair: appendTagPair(nil, key, value)})
	}

	r := &m.fieldRules
	for _, f := range []struct {
		name string
		dst  *[]string
	}{{rtpFieldFieldInclude, &r.include}, {rtpFieldFieldExclude, &r.exclude}} {
		patterns, err := conf.FieldStringList(f.name)
		if err != nil {
			return err
		}
		for _, p := range patterns {
			if p == "" {
				return fmt.Errorf("field %s: a pattern is empty", f.name)
			}
			if _, err := path.Match(p, ""); err != nil {
				return fmt.Errorf("field %s: pattern %q is not a valid glob (* ? [...] \\, as Go's path.Match): %v", f.name, p, err)
			}
		}
		*f.dst = patterns
	}

	rename, err := conf.FieldStringMap(rtpFieldFieldRename)
	if err != nil {
		return err
	}
	renamedFrom := map[string]string{} // target -> source
	for _, from := range sortedKeys(rename) {
		to := rename[from]
		if from == "" || to == "" {
			return fmt.Errorf("field %s: %q -> %q: both names must be non-empty", rtpFieldFieldRename, from, to)
		}
		if why := checkTagName(to); why != "" {
			return fmt.Errorf("field %s: %q -> %q: the new name %s", rtpFieldFieldRename, from, to, why)
		}
		if other, dup := renamedFrom[to]; dup {
			return fmt.Errorf("field %s: %q and %q are both renamed to %q, which would make one field of two", rtpFieldFieldRename, other, from, to)
		}
		renamedFrom[to] = from
	}

	fieldTags, err := conf.FieldStringList(rtpFieldFieldTags)
	if err != nil {
		return err
	}
	isValueTag := map[string]bool{}
	for _, label := range fieldTags {
		if label == "" {
			return fmt.Errorf("field %s: a label is empty", rtpFieldFieldTags)
		}
		if isValueTag[label] {
			return fmt.Errorf("field %s: %q is listed twice", rtpFieldFieldTags, label)
		}
		isValueTag[label] = true
		if len(r.include) > 0 && matchAny(r.include, label) == "" {
			return fmt.Errorf("field %s: %q matches no pattern of %s, so it would never be stored", rtpFieldFieldTags, label, rtpFieldFieldInclude)
		}
		if p := matchAny(r.exclude, label); p != "" {
			return fmt.Errorf("field %s: %q is excluded by the %s pattern %q, so it would never be stored", rtpFieldFieldTags, label, rtpFieldFieldExclude, p)
		}
		key := label
		if to, ok := rename[label]; ok {
			key = to
		}
		if why := checkTagName(key); why != "" {
			return fmt.Errorf("field %s: tag key %q (from the label %q) %s", rtpFieldFieldTags, key, label, why)
		}
		if from, dup := tagFrom[key]; dup {
			return fmt.Errorf("field %s: tag key %q (from the label %q) is also set by %s; keep one of them", rtpFieldFieldTags, key, label, from)
		}
		tagFrom[key] = rtpFieldFieldTags
		m.tags = append(m.tags, tagSpec{key: key, kind: tagFromValue})
	}
	// A field renamed to a tag's key would be refused in every message that has it.
	for _, from := range sortedKeys(rename) {
		to := rename[from]
		if isValueTag[from] {
			continue // its own tag key, checked above
		}
		if setting, clash := tagFrom[to]; clash {
			return fmt.Errorf("field %s: %q -> %q collides with the tag key %q set by %s", rtpFieldFieldRename, from, to, to, setting)
		}
	}

	sort.Slice(m.tags, func(i, j int) bool { return m.tags[i].key < m.tags[j].key })
	if len(fieldTags) > 0 {
		r.valueTagIndex = map[string]int{}
		for _, label := range fieldTags {
			key := label
			if to, ok := rename[label]; ok {
				key = to
			}
			for i := range m.tags {
				if m.tags[i].key == key {
					r.valueTagIndex[label] = i
				}
			}
		}
	}
	if len(rename) > 0 {
		r.rename = rename
	}
	r.set = r.rename != nil || len(r.include) > 0 || len(r.exclude) > 0 || r.valueTagIndex != nil
	return nil
}

// nullCheckedMeasurement rewrites a measurement interpolation so that each
// ${! ... } section fails when it resolves to null: the engine writes a null
// as the text "null", which made a missing key a measurement named null. A
// section ends at the first } where it parses, which is where the engine's
// parser, greedy within a section, ends it too.
func nullCheckedMeasurement(raw string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(raw); {
		rest := raw[i:]
		switch {
		case strings.HasPrefix(rest, "${{!"): // escaped: literal text
			end := strings.Index(rest, "}}")
			if end < 0 {
				b.WriteString(rest)
				return b.String(), nil
			}
			b.WriteString(rest[:end+2])
			i += end + 2
		case strings.HasPrefix(rest, "${!"):
			end := -1
			for j := 3; j < len(rest); j++ {
				if rest[j] == '}' {
					if _, err := service.NewInterpolatedString(rest[:j+1]); err == nil {
						end = j
						break
					}
				}
			}
			if end < 0 {
				return "", fmt.Errorf("cannot find where the interpolation %q ends", rest)
			}
			b.WriteString("${! (" + strings.TrimSpace(rest[3:end]) + ").not_null() }")
			i += end + 1
		default:
			b.WriteByte(raw[i])
			i++
		}
	}
	return b.String(), nil
}

// measurementErr is the validation error of a measurement interpolation that
// failed in one message.
func measurementErr(err error) *mappingError {
	text := oneLine(err.Error())
	if strings.HasSuffix(text, "value is null") {
		return validationErr("measurement resolves nothing in this message (" + text + ")")
	}
	return validationErr("measurement interpolation failed: " + text)
}
