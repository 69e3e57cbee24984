package readinggen

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// cell is one entry of the parallel values / labels / display_names / persist
// / datatype_type arrays.
type cell struct {
	spec    *labelSpec
	label   any // string, or nil for a null entry
	display any // string or nil
	value   any
	decl    string // "" when datatype_type does not cover this value
	persist any    // bool, or nil when the persist list does not cover it
}

// message is the model of one stage-2 message before it is encoded; bad
// messages are made by breaking a valid one.
type message struct {
	requestID string
	timestamp any
	// time is the reading's time: the timestamp's, or the Kafka record time
	// the producer must set when timestampMode is absent, null or empty.
	time          time.Time
	timestampMode string
	deviceID      any
	index         string
	cells         []cell
	grp           *group

	labelsMode  string // labels, label, both, none, null
	altLabels   []any  // the older `label` key in mode "both"
	displayMode string // present, null, absent
	metaMode    string // object, null, absent
	persistMode string // absent, true, false, list
	persistLong bool   // the persist list has an extra trailing flag
	declMode    string // absent, full, short

	style pyStyle
	tags  []string
}

func (m *message) tag(t ...string) { m.tags = append(m.tags, t...) }

// buildOpts restricts a message so that it can be broken one way only.
type buildOpts struct {
	plain    bool // labels mode, no nulls, no non-finite, no persist, no datatype_type, no typed/nested groups
	minCells int
}

func (g *Generator) pickGroup(plain bool) *group {
	for {
		total := 0
		for _, w := range groupWeights {
			total += w
		}
		n := g.rng.IntN(total)
		for i, w := range groupWeights {
			if n < w {
				grp := groups[i]
				if plain && (grp.name == "typed" || grp.name == "index:P_ARRAY") {
					break
				}
				return grp
			}
			n -= w
		}
	}
}

func (g *Generator) build(dev *device, bo buildOpts) *message {
	m := &message{requestID: g.uuid4(), deviceID: dev.id}

	// Encoding: json.dumps defaults most of the time, compact raw UTF-8 else.
	if g.chance(0.7) {
		m.style = stylePython
		m.tag("enc:python")
	} else {
		m.style = styleCompact
		m.tag("enc:compact")
	}

	// The three isoformat() styles; now and then no usable timestamp at all,
	// which means the Kafka record time (milliseconds).
	switch r := g.rng.IntN(100); {
	case r < 38 || bo.plain && r >= 95:
		m.time = g.nextTime(dev, false)
		m.timestamp = isoformat(m.time, false)
		m.tag("ts:naive")
	case r < 76:
		m.time = g.nextTime(dev, false)
		m.timestamp = isoformat(m.time, true)
		m.tag("ts:offset")
	case r < 95:
		m.time = g.nextTime(dev, true)
		m.timestamp = isoformat(m.time, g.chance(0.5))
		m.tag("ts:whole-second")
	default:
		m.time = g.nextTime(dev, false).Truncate(time.Millisecond)
		dev.last = m.time
		m.timestampMode = pick(g, []string{"absent", "null", "empty"})
		switch m.timestampMode {
		case "null":
			m.timestamp = nil
		case "empty":
			m.timestamp = ""
		}
		m.tag("ts:record-time", "ts:record-time:"+m.timestampMode)
	}

	// Labels: `labels` (current), `label` (older normalizer), both, or none.
	m.labelsMode = "labels"
	if !bo.plain {
		m.labelsMode = g.choose(share{66, "labels"}, share{18, "label"}, share{6, "both"}, share{6, "none"}, share{4, "null"})
	}
	m.tag("labels:" + m.labelsMode)

	var specs []*labelSpec
	if m.labelsMode == "none" || m.labelsMode == "null" {
		// No names: fields are value_0.., so only floats, to keep each
		// positional name one type.
		m.grp = groups[0]
		m.index = pick(g, []string{"T", "M", ""})
		n := 1 + g.rng.IntN(len(positionalLabels))
		specs = positionalLabels[:max(n, bo.minCells)]
	} else {
		m.grp = g.pickGroup(bo.plain)
		m.index = pick(g, m.grp.indexes)
		n := 1
		if g.chance(0.6) {
			n = 2 + g.rng.IntN(len(m.grp.labels)-1)
		}
		n = max(n, bo.minCells)
		perm := g.rng.Perm(len(m.grp.labels))[:n]
		for _, i := range perm {
			specs = append(specs, m.grp.labels[i])
		}
	}
	m.tag(m.grp.name)
	if len(specs) > 1 {
		m.tag("values:multi")
	} else {
		m.tag("values:single")
	}

	// datatype_type: always for typed groups (sometimes shorter than values),
	// sometimes for the others, never for nested values whose declared type
	// would be ambiguous.
	m.declMode = "absent"
	if !bo.plain {
		if m.grp.name == "typed" {
			m.declMode = "full"
			if len(specs) > 1 && g.chance(0.3) {
				m.declMode = "short"
			}
		} else if m.grp.name != "index:P_ARRAY" && g.chance(0.25) {
			m.declMode = "full"
		}
	}
	declCount := 0
	switch m.declMode {
	case "full":
		declCount = len(specs)
	case "short":
		declCount = 1 + g.rng.IntN(len(specs)-1)
	}

	m.cells = make([]cell, len(specs))
	for i, s := range specs {
		c := cell{spec: s, label: s.name, display: s.display}
		if i < declCount {
			c.decl = s.decl
		}
		c.value = s.value(g, c.decl != "")
		m.cells[i] = c
	}

	if !bo.plain {
		g.sprinkle(m)
	}
	return m
}

// sprinkle adds the optional variants of a valid message: null and empty
// label entries, nulls, non-finite numbers, persist flags, display names and
// metadata shapes.
func (g *Generator) sprinkle(m *message) {
	named := m.labelsMode != "none" && m.labelsMode != "null"
	plainFloat := func(c cell) bool {
		_, isFloat := c.value.(float64)
		return isFloat && c.decl == "" && c.spec.decl == "number" && !c.spec.typed
	}

	// A null or empty label names its value value_{i}: only for plain floats,
	// the one type every value_{i} has.
	if named && g.chance(0.06) {
		for i := range m.cells {
			if plainFloat(m.cells[i]) {
				if g.chance(0.5) {
					m.cells[i].label = nil
					m.tag("label:null-entry")
				} else {
					m.cells[i].label = ""
					m.tag("label:empty")
				}
				break
			}
		}
	}
	if m.declMode == "absent" && g.chance(0.06) {
		m.cells[g.rng.IntN(len(m.cells))].value = nil
	}
	if m.declMode == "absent" && g.chance(0.06) {
		for i := range m.cells {
			if plainFloat(m.cells[i]) {
				m.cells[i].value = pick(g, []float64{math.NaN(), math.Inf(1), math.Inf(-1)})
				break
			}
		}
	}

	m.persistMode = g.choose(share{40, "absent"}, share{15, "true"}, share{3, "false"}, share{42, "list"})
	if m.persistMode == "list" {
		allFalse := g.chance(0.05)
		n := len(m.cells)
		if n > 1 && g.chance(0.2) {
			n = 1 + g.rng.IntN(n-1)
			m.tag("persist:list-short")
		}
		// Some values unpersisted in multi-value messages; a whole message
		// unpersisted only rarely, as in the field.
		for i := range n {
			m.cells[i].persist = !allFalse && (len(m.cells) == 1 || !g.chance(0.2))
		}
		// Longer than values only when it covers them all: a trailing flag
		// added to a short list would land on a value.
		if n == len(m.cells) && g.chance(0.1) {
			m.persistLong = true
			m.tag("persist:list-long")
		}
	}
	m.tag("persist:" + m.persistMode)

	if named && m.labelsMode != "label" {
		m.displayMode = g.choose(share{55, "present"}, share{10, "null"}, share{35, "absent"})
		if m.displayMode == "present" && g.chance(0.15) {
			m.cells[g.rng.IntN(len(m.cells))].display = nil
		}
		m.tag("display_names:" + m.displayMode)
	}
	if m.labelsMode == "both" {
		m.altLabels = make([]any, len(m.cells))
		for i, c := range m.cells {
			m.altLabels[i] = "old_" + c.spec.name
		}
	}
}

// metaMode is decided at encoding: persist and datatype_type need an object.
func (g *Generator) chooseMeta(m *message) {
	if m.persistMode != "absent" && m.persistMode != "" || m.declMode != "absent" {
		m.metaMode = "object"
	} else {
		m.metaMode = g.choose(share{8, "null"}, share{5, "absent"}, share{87, "object"})
	}
	m.tag("metadata:" + m.metaMode)
}

func (g *Generator) metadata(m *message) object {
	gm := m.grp.meta
	var o object
	if g.chance(0.7) {
		o = append(o, member{"datatype_id", g.uuid4()})
	}
	if gm.name != "" && g.chance(0.7) {
		o = append(o, member{"datatype_name", gm.name})
	}
	if gm.unit != "" && g.chance(0.6) {
		o = append(o, member{"datatype_unit", gm.unit})
	}
	if m.declMode != "absent" {
		n := len(m.cells)
		for n > 0 && m.cells[n-1].decl == "" {
			n--
		}
		types := make([]any, n)
		for i := range n {
			types[i] = m.cells[i].decl
		}
		o = append(o, member{"datatype_type", types})
		m.tag("datatype_type:" + m.declMode)
	}
	if gm.category != "" && g.chance(0.3) {
		o = append(o, member{"datatype_category", gm.category})
	}
	if gm.min != nil && g.chance(0.25) {
		o = append(o, member{"datatype_min", gm.min}, member{"datatype_max", gm.max})
	}
	if gm.description != "" && g.chance(0.2) {
		o = append(o, member{"datatype_description", gm.description})
	}
	switch m.persistMode {
	case "true":
		o = append(o, member{"persist", true})
	case "false":
		o = append(o, member{"persist", false})
	case "list":
		var flags []any
		for _, c := range m.cells {
			if c.persist != nil {
				flags = append(flags, c.persist)
			}
		}
		if m.persistLong {
			flags = append(flags, false)
		}
		o = append(o, member{"persist", flags})
	}
	if m.grp.name == "index:P_ARRAY" {
		if g.chance(0.9) {
			o = append(o, member{"is_config_parameter", true})
		}
		if g.chance(0.8) {
			o = append(o, member{"config_hash", fmt.Sprintf("%016x", g.rng.Uint64())})
		}
	}
	if g.chance(0.25) {
		o = append(o, member{"source_sn_hex", fmt.Sprintf("0x%08x", g.rng.Uint32())})
	}
	if g.chance(0.1) {
		o = append(o, member{"frame", object{{"fcnt", int64(g.rng.IntN(65536))}, {"port", int64(1 + g.rng.IntN(4))}, {"rssi", round(-120+g.rng.Float64()*90, 1)}}})
		m.tag("metadata:extras-nested")
	}
	return o
}

// object renders the message in the key order of stage 2's pydantic model.
func (g *Generator) object(m *message) object {
	o := object{{"request_id", m.requestID}}
	if m.timestampMode != "absent" {
		o = append(o, member{"timestamp", m.timestamp})
	}
	o = append(o, member{"device_id", m.deviceID})
	values := make([]any, len(m.cells))
	for i, c := range m.cells {
		values[i] = c.value
	}
	o = append(o, member{"values", values})
	labels := func() []any {
		ls := make([]any, len(m.cells))
		for i, c := range m.cells {
			ls[i] = c.label
		}
		return ls
	}
	switch m.labelsMode {
	case "labels":
		o = append(o, member{"labels", labels()})
	case "label":
		o = append(o, member{"label", labels()})
	case "both":
		o = append(o, member{"labels", labels()}, member{"label", m.altLabels})
	case "null":
		o = append(o, member{"labels", nil})
	}
	switch m.displayMode {
	case "present":
		ds := make([]any, len(m.cells))
		for i, c := range m.cells {
			ds[i] = c.display
		}
		o = append(o, member{"display_names", ds})
	case "null":
		o = append(o, member{"display_names", nil})
	}
	o = append(o, member{"index", m.index})
	if m.metaMode == "" {
		g.chooseMeta(m)
	}
	switch m.metaMode {
	case "object":
		o = append(o, member{"metadata", g.metadata(m)})
	case "null":
		o = append(o, member{"metadata", nil})
	}
	return o
}

// expect applies the default mapping to a valid message.
func (g *Generator) expect(m *message, ts time.Time) Expectation {
	e := Expectation{
		Outcome:     OutcomeStored,
		Measurement: m.deviceID.(string),
		TimestampNS: g.expectedNS(ts),
		RequestID:   m.requestID,
	}
	for i, c := range m.cells {
		stored := true
		switch m.persistMode {
		case "false":
			stored = false
		case "list":
			if b, ok := c.persist.(bool); ok {
				stored = b
			}
		}
		if !stored {
			e.Skipped.Unpersisted++
			continue
		}
		name := fmt.Sprintf("value_%d", i)
		if s, ok := c.label.(string); ok && s != "" && m.labelsMode != "none" && m.labelsMode != "null" {
			name = s
		}
		f, skip := expectValue(name, c.value, c.decl)
		switch skip {
		case skipNull:
			e.Skipped.Null++
		case skipNonFinite:
			e.Skipped.NonFinite++
		default:
			e.Fields = append(e.Fields, f)
		}
	}
	if len(e.Fields) == 0 {
		e.Outcome = OutcomeFiltered
	}
	return e
}

// valueTags names the value variants present in the encoded message.
func valueTags(m *message) []string {
	var tags []string
	for _, c := range m.cells {
		tags = append(tags, c.spec.tag)
		switch v := c.value.(type) {
		case nil:
			tags = append(tags, "value:null")
		case float64:
			switch {
			case math.IsNaN(v):
				tags = append(tags, "value:nan")
			case math.IsInf(v, 1):
				tags = append(tags, "value:+inf")
			case math.IsInf(v, -1):
				tags = append(tags, "value:-inf")
			case v == math.Trunc(v) && math.Abs(v) < 1e16:
				tags = append(tags, "value:float-integral")
			}
		case string:
			if strings.Contains(v, "\n") {
				tags = append(tags, "value:string-newline")
			}
		case []any:
			if slices.ContainsFunc(v, func(x any) bool { f, ok := x.(float64); return ok && math.IsNaN(f) }) {
				tags = append(tags, "value:nested-nonfinite")
			}
		}
	}
	return tags
}

func (g *Generator) good(dev *device) Reading {
	m := g.build(dev, buildOpts{})
	obj := g.object(m)
	e := g.expect(m, m.time)
	m.tag(valueTags(m)...)
	if strings.ContainsAny(dev.id, " ,=") {
		m.tag("device:escape")
	}
	if e.Outcome == OutcomeFiltered {
		m.tag("outcome:filtered")
	}
	e.Variants = dedupe(m.tags)
	return Reading{Key: []byte(dev.id), Value: m.style.encode(make([]byte, 0, 768), obj), Timestamp: recordTime(m.time), Expect: e}
}

// recordTime is the Kafka record time for a reading: Kafka keeps milliseconds.
func recordTime(t time.Time) time.Time { return t.Truncate(time.Millisecond) }

func dedupe(tags []string) []string {
	out := slices.Clone(tags)
	slices.Sort(out)
	return slices.Compact(out)
}
