package readinggen

import (
	"math"
	"strings"
)

// bad builds a message that breaks the contract in exactly one way, starting
// from a valid message so that everything else about it is realistic.
func (g *Generator) bad(dev *device, kind BadKind) Reading {
	m := g.build(dev, buildOpts{plain: true, minCells: 2})
	m.tag("bad:" + string(kind))
	e := Expectation{
		Outcome:   OutcomeError,
		ErrorKind: kind.ErrorKind(),
		BadKind:   kind,
		RequestID: m.requestID,
	}
	key := []byte(dev.id)

	var value []byte
	switch kind {
	case BadNotJSON:
		// The request_id cannot be read: the error record falls back to the key.
		e.RequestID = dev.id
		obj := g.object(m)
		switch g.rng.IntN(5) {
		case 0:
			enc := m.style.encode(nil, obj)
			value = enc[:1+g.rng.IntN(len(enc)-1)] // any strict prefix of an object is incomplete
			m.tag("bad:not_json:truncated")
		case 1:
			value = []byte("{'request_id': '" + m.requestID + "', 'device_id': '" + dev.id + "', 'values': [21.5, True], 'labels': None}")
			m.tag("bad:not_json:python-repr")
		case 2:
			value = []byte(dev.id + " temperature=21.5 1718000000")
			m.tag("bad:not_json:text")
		case 3:
			value = append([]byte{0xff, 0xfe, '{', '"'}, "values\": [\x00\x81]"...)
			m.tag("bad:not_json:invalid-utf8")
		default:
			// Lower-case nan is not one of Python's tokens.
			value = []byte(`{"request_id": "` + m.requestID + `", "device_id": "` + jsonEscape(dev.id) + `", "values": [nan], "labels": ["temperature"]}`)
			m.tag("bad:not_json:lowercase-nan")
		}
	case BadNotObject:
		e.RequestID = dev.id
		switch g.rng.IntN(6) {
		case 0:
			value = m.style.encode(nil, []any{21.5, 48.0})
			m.tag("bad:not_object:array")
		case 1:
			value = m.style.encode(nil, dev.id)
			m.tag("bad:not_object:string")
		case 2:
			value = []byte("42")
			m.tag("bad:not_object:number")
		case 3:
			value = []byte("null")
			m.tag("bad:not_object:null")
		case 4:
			value = []byte("true")
			m.tag("bad:not_object:bool")
		default:
			value = []byte("NaN") // a number once Python's tokens are accepted, still not an object
			m.tag("bad:not_object:nan")
		}
	default:
		obj := g.breakObject(m, kind)
		value = m.style.encode(nil, obj)
	}
	e.Variants = dedupe(m.tags)
	return Reading{Key: key, Value: value, Timestamp: recordTime(m.time), Expect: e}
}

func (g *Generator) breakObject(m *message, kind BadKind) object {
	// Python's non-finite tokens in a message rejected for another reason:
	// the error record must still carry the original as valid JSON (null in
	// their place). Only where the rejected part is not the value itself.
	if kind == BadMissingDeviceID || kind == BadLabelsMismatch || kind == BadTimestamp {
		if g.chance(0.25) {
			for i := range m.cells {
				if _, ok := m.cells[i].value.(float64); ok {
					m.cells[i].value = pick(g, []float64{math.NaN(), math.Inf(1), math.Inf(-1)})
					m.tag("bad:with-nonfinite")
					break
				}
			}
		}
	}
	switch kind {
	case BadLabelsMismatch:
		if g.chance(0.5) {
			m.cells = m.cells[:len(m.cells)-1]
			obj := g.object(m)
			values, _ := obj.get("values")
			// Put the dropped value back: values now has one more entry than labels.
			return obj.set("values", append(values.([]any), int64(1)))
		}
		obj := g.object(m)
		labels, _ := obj.get("labels")
		return obj.set("labels", append(labels.([]any), "extra_label"))
	case BadDuplicateLabels:
		m.cells[1].label = m.cells[0].label
	case BadNewlineKey:
		s := m.cells[0].label.(string)
		cut := 1 + g.rng.IntN(len(s)-1)
		m.cells[0].label = s[:cut] + "\n" + s[cut:]
	case BadFieldTime:
		m.cells[g.rng.IntN(len(m.cells))].label = "time"
	case BadFieldUnderscore:
		m.cells[g.rng.IntN(len(m.cells))].label = "_" + m.cells[0].spec.name
	case BadTypeMismatch:
		// Declare every value's natural type, then give one a value that
		// cannot take its declared type.
		m.declMode = "full"
		for i := range m.cells {
			m.cells[i].decl = m.cells[i].spec.decl
		}
		i := g.rng.IntN(len(m.cells))
		switch g.rng.IntN(4) {
		case 0:
			m.cells[i].decl, m.cells[i].value = "integer", 21.5
		case 1:
			m.cells[i].decl, m.cells[i].value = "number", "abc"
		case 2:
			m.cells[i].decl, m.cells[i].value = "boolean", "maybe"
		default:
			m.cells[i].decl, m.cells[i].value = "integer", "12.5"
		}
	}
	obj := g.object(m)
	switch kind {
	case BadMissingDeviceID:
		switch g.rng.IntN(4) {
		case 0:
			obj = obj.del("device_id")
			m.tag("bad:missing_device_id:absent")
		case 1:
			obj = obj.set("device_id", "")
			m.tag("bad:missing_device_id:empty")
		case 2:
			obj = obj.set("device_id", nil)
			m.tag("bad:missing_device_id:null")
		default:
			obj = obj.set("device_id", int64(2261001))
			m.tag("bad:missing_device_id:number")
		}
	case BadValuesNotArray:
		switch g.rng.IntN(5) {
		case 0:
			obj = obj.del("values")
			m.tag("bad:values_not_array:absent")
		case 1:
			obj = obj.set("values", 21.5)
			m.tag("bad:values_not_array:number")
		case 2:
			obj = obj.set("values", "21.5")
			m.tag("bad:values_not_array:string")
		case 3:
			obj = obj.set("values", object{{"temperature", 21.5}})
			m.tag("bad:values_not_array:object")
		default:
			obj = obj.set("values", nil)
			m.tag("bad:values_not_array:null")
		}
	case BadTimestamp:
		ts := pick(g, []string{"not-a-time", "2025-02-30T10:00:00", "08/06/2025 18:27:17", "2025-06-08T25:61:00.000000+00:00"})
		obj = obj.set("timestamp", ts)
	}
	return obj
}

// jsonEscape escapes the two characters a device id could carry that would
// break the hand-written JSON-like text above.
func jsonEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}
