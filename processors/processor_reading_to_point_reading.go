package processors

import (
	"strconv"

	"github.com/valyala/fastjson"
)

// What a stage-2 reading is, as ../shared/docs/contract.md ("Input") describes
// it, and the rules people change when the normalizer does: labels or the
// older label, metadata.persist, metadata.datatype_type. The line is written
// from a reading (processor_reading_to_point_line.go); nothing here knows
// line protocol.

// members are the top-level members of a message the mapping reads; nil when
// absent. Like Python's json.loads, the last of duplicate keys counts.
type members struct {
	requestID, timestamp, deviceID, values, labels, label, metadata *fastjson.Value
}

func readMembers(obj *fastjson.Object) members {
	var f members
	obj.Visit(func(k []byte, v *fastjson.Value) {
		switch string(k) {
		case "request_id":
			f.requestID = v
		case "timestamp":
			f.timestamp = v
		case "device_id":
			f.deviceID = v
		case "values":
			f.values = v
		case "labels":
			f.labels = v
		case "label":
			f.label = v
		case "metadata":
			f.metadata = v
		}
	})
	return f
}

// requestID is the message's request_id when it is a non-empty string, else
// the record key as text, else "". It may view the parser's memory.
func (f *members) requestIDOr(rec recordMeta) string {
	if f.requestID != nil && f.requestID.Type() == fastjson.TypeString {
		if s, _ := f.requestID.StringBytes(); len(s) > 0 {
			return b2s(s)
		}
	}
	return keyRequestID(rec)
}

// reading is a message whose members have the contract's types.
type reading struct {
	device    string          // device_id, non-empty
	timestamp *fastjson.Value // nil or null: none (the record's time is used)
	values    []*fastjson.Value
	// names are the labels of values, parallel to them, or nil when the
	// message has none; namesKey says which key they came from.
	names    []*fastjson.Value
	namesKey string
	// persist is metadata.persist: one flag for every value (persistAll) or
	// a list of flags, one per value (persistList, nil when not a list).
	persistAll  bool
	persistList []*fastjson.Value
	// types is metadata.datatype_type, one declared type per value, or nil.
	types []*fastjson.Value
}

// readReading checks the members' types and reads the per-message rules.
func (m *pointMapper) readReading(f members) (reading, *mappingError) {
	r := reading{timestamp: f.timestamp, persistAll: true}
	// device_id is part of the contract whatever the measurement is.
	switch {
	case f.deviceID == nil:
		return r, validationErr("device_id is missing")
	case f.deviceID.Type() != fastjson.TypeString:
		return r, validationErr("device_id is " + describe(f.deviceID) + ", expected a non-empty string")
	}
	device, _ := f.deviceID.StringBytes()
	if r.device = b2s(device); r.device == "" {
		return r, validationErr("device_id is empty")
	}
	switch {
	case f.values == nil:
		return r, validationErr("values is missing")
	case f.values.Type() != fastjson.TypeArray:
		return r, validationErr("values is " + describe(f.values) + ", expected an array")
	}
	r.values, _ = f.values.Array()
	if len(r.values) > m.maxFields {
		return r, tooManyEntriesErr("values", len(r.values), m.maxFields)
	}
	if err := r.readNames(f.labels, f.label); err != nil {
		return r, err
	}
	if md := f.metadata; md != nil && md.Type() != fastjson.TypeNull {
		if md.Type() != fastjson.TypeObject {
			return r, validationErr("metadata is " + describe(md) + ", expected an object or null")
		}
		if err := r.readMetadata(md); err != nil {
			return r, err
		}
	}
	return r, nil
}

// readNames reads the labels: labels wins over the older singular label, and
// null counts as absent.
func (r *reading) readNames(labels, label *fastjson.Value) *mappingError {
	names, key := labels, "labels"
	if names == nil || names.Type() == fastjson.TypeNull {
		names, key = label, "label"
	}
	r.namesKey = key
	if names == nil || names.Type() == fastjson.TypeNull {
		return nil
	}
	if names.Type() != fastjson.TypeArray {
		return validationErr(key + " is " + describe(names) + ", expected an array of strings or null")
	}
	r.names, _ = names.Array()
	if len(r.names) != len(r.values) {
		return validationErr(key + " has " + strconv.Itoa(len(r.names)) + " entries, values has " + strconv.Itoa(len(r.values)))
	}
	return nil
}

// readMetadata reads persist (a bool in older normalizers, a list of bools in
// newer ones) and datatype_type. One visit for both keys (Get unescapes all
// the keys and scans again for each key it misses); like the top level, the
// last of duplicate keys counts.
func (r *reading) readMetadata(md *fastjson.Value) *mappingError {
	var persist, types *fastjson.Value
	obj, _ := md.Object()
	obj.Visit(func(k []byte, v *fastjson.Value) {
		switch string(k) {
		case "persist":
			persist = v
		case "datatype_type":
			types = v
		}
	})
	if persist != nil {
		switch persist.Type() {
		case fastjson.TypeTrue, fastjson.TypeNull:
		case fastjson.TypeFalse:
			r.persistAll = false
		case fastjson.TypeArray:
			r.persistList, _ = persist.Array()
		default:
			return validationErr("metadata.persist is " + describe(persist) + ", expected a boolean or a list of booleans")
		}
	}
	if types != nil {
		switch types.Type() {
		case fastjson.TypeNull:
		case fastjson.TypeArray:
			r.types, _ = types.Array()
		default:
			return validationErr("metadata.datatype_type is " + describe(types) + ", expected a list of number, integer, boolean or string")
		}
	}
	return nil
}

// persisted reads metadata.persist for the value at i: its entry in the list
// (a missing or null entry means store), else the flag for the whole message.
// Small enough to be inlined (the list in persistedEntry): it runs for every
// value.
func (r *reading) persisted(i int) (bool, *mappingError) {
	if r.persistList == nil {
		return r.persistAll, nil
	}
	return r.persistedEntry(i)
}

func (r *reading) persistedEntry(i int) (bool, *mappingError) {
	if i >= len(r.persistList) {
		return true, nil
	}
	switch r.persistList[i].Type() {
	case fastjson.TypeFalse:
		return false, nil
	case fastjson.TypeTrue, fastjson.TypeNull:
		return true, nil
	}
	return false, persistEntryErr(r.persistList[i], i)
}

// label is the name of the value at i before any rule: its label, or
// value_{i} when it has none, or a null or empty one (fromLabel false).
func (r *reading) label(i int) (name string, fromLabel bool, _ *mappingError) {
	if r.names != nil {
		switch v := r.names[i]; v.Type() {
		case fastjson.TypeString:
			if b, _ := v.StringBytes(); len(b) > 0 {
				return b2s(b), true, nil
			}
		case fastjson.TypeNull:
		default:
			return "", false, labelEntryErr(v, r.namesKey, i)
		}
	}
	return valueName(i), false, nil
}

// parseDeclared reads metadata.datatype_type[i], the type declared for the
// value at i (declNone: none).
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

func persistEntryErr(v *fastjson.Value, i int) *mappingError {
	return validationErr("metadata.persist[" + strconv.Itoa(i) + "] is " + describe(v) + ", expected a boolean")
}

func labelEntryErr(v *fastjson.Value, namesKey string, i int) *mappingError {
	return validationErr(namesKey + "[" + strconv.Itoa(i) + "] is " + describe(v) + ", expected a string or null")
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
