package processors

import (
	"bytes"
	"strconv"

	"github.com/preservarium/iot-ingestor/internal/pyjson"
)

// The size limits of a point (max_fields, max_line_bytes) and the guard that
// enforces max_fields before a reading is decoded.
//
// The parser builds one value per JSON value of the text, in a slice that
// grows by a quarter at a time while every earlier copy stays referenced, so a
// megabyte of {"values":[0,0,...]} (half a million values) cost about 200 MB
// to parse before the mapping saw that the reading was absurd. A reading whose
// text has fewer commas than max_fields cannot hold a values array over the
// limit, which settles almost every message with one length comparison; for
// the others, a walk of the top-level object counts the entries of values,
// labels and label without decoding them, and the arrays over the limit are
// emptied in a copy that is parsed instead, so the message still yields its
// request_id and its other errors for the error record.

const (
	// rtpDefaultMaxFields is 1,000 fields: stage 2 publishes 1 to about 20
	// values per reading; a thousand is far beyond any device and still bounds
	// what one reading costs to map (its names, its line).
	rtpDefaultMaxFields = 1000
	// rtpDefaultMaxLineBytes is 1 MiB: a realistic line is under 1 KB (a few
	// KB with a nested configuration stored as JSON text), and 1 MiB is also
	// the largest record Kafka accepts by default, so no reading that arrives
	// whole needs more. Without it, 1,000 fields of 64 KiB strings would make a
	// 64 MB line.
	rtpDefaultMaxLineBytes = 1 << 20
	// rtpMinLineBytes refuses a limit no point fits in (a measurement, a
	// field and a timestamp take tens of bytes).
	rtpMinLineBytes = 64
)

// mayHoldOversizedArray reports whether in could hold an array with more than
// limit entries: that takes at least limit commas and twice as many bytes.
func mayHoldOversizedArray(in []byte, limit int) bool {
	return len(in) > 2*limit && bytes.Count(in, commaByte) >= limit
}

var commaByte = []byte{','}

// contractArrays are the top-level members whose entries become fields, in
// the order their excess is reported.
var contractArrays = [...]string{"values", "labels", "label"}

// readingPruner is the guard for a reading that may be huge: before it is
// parsed, a copy leaves out what the mapping cannot use, so that what the
// parser builds stays proportional to what the line needs, whatever the size
// of the rest. The contract arrays over max_fields are emptied, and the one
// that makes the reading a validation error is noted; the members the mapping
// never reads become null: top-level keys the contract does not know (its
// consumers ignore them), and in metadata what is neither persist,
// datatype_type nor a configured tag's path (contract.md: the rest of metadata
// is datatype facts and parser extras of any shape). The error record keeps
// the whole original; a configured measurement reads the original too.
type readingPruner struct {
	m       *pointMapper
	buf     []byte // the copy
	over    string // the array over the limit in the last reading, or ""
	entries int    // its entries
	cuts    []textCut
}

// textCut replaces b[start:end] with with in the pruned copy.
type textCut struct {
	start, end int
	with       string
}

// needed reports whether in may be huge, and readies the pruner for it. A
// reading of fewer commas than max_fields holds fewer JSON values than that
// (beyond its nesting, which the decoder bounds), and costs little to parse.
func (p *readingPruner) needed(m *pointMapper, in []byte) bool {
	if m.maxFields <= 0 || !mayHoldOversizedArray(in, m.maxFields) {
		return false
	}
	p.m, p.over, p.entries = m, "", 0
	return true
}

// Prune implements pyjson.Pruner.
func (p *readingPruner) Prune(text []byte) []byte {
	var pruned []byte
	pruned, p.over, p.entries, p.cuts = pruneReading(text, p.m.maxFields, p.m.tags, p.buf, p.cuts[:0])
	if !sameBytes(pruned, text) {
		p.buf = pruned
	}
	return pruned
}

// mappedMembers are the top-level members the mapping reads, besides the
// contract arrays and the configured tags' paths.
var mappedMembers = [...]string{"request_id", "timestamp", "device_id", "metadata"}

// arraySpan is one top-level contract array found in a reading's text.
type arraySpan struct {
	member     int // index in contractArrays
	start, end int // the array's text, brackets included
	entries    int
}

// pruneReading walks the top-level object of b, JSON the caller has
// validated (Python tokens may stand as scalars), and returns the text to parse
// in its place, a copy appended to buf: contract arrays over limit emptied, and
// the members the mapping does not read (see readingPruner) null. over names
// the array whose size makes the reading a validation error ("" when none
// does: an earlier duplicate key, which the mapping ignores anyway, may be the
// only one over), and entries is its count. cuts is scratch.
func pruneReading(b []byte, limit int, tags []tagSpec, buf []byte, cuts []textCut) (text []byte, over string, entries int, _ []textCut) {
	var found [8]arraySpan
	spans := found[:0]
	pyjson.Members(b, 0, func(key []byte, start, end int) {
		for m, name := range contractArrays {
			if !pyjson.KeyIs(key, name) {
				continue
			}
			if b[start] == '[' {
				n, _ := pyjson.Entries(b, start)
				spans = append(spans, arraySpan{member: m, start: start, end: end, entries: n})
				if n > limit {
					cuts = append(cuts, textCut{start: start + 1, end: end - 1})
				}
			}
			return
		}
		switch {
		case pyjson.KeyIs(key, "metadata"):
			cuts = pruneMetadata(b, start, end, limit, tags, cuts)
		case !isMappedMember(key, tags):
			cuts = append(cuts, textCut{start: start, end: end, with: "null"})
		}
	})

	// The last of duplicate keys is the one the mapping reads.
	var last [len(contractArrays)]int
	for m := range last {
		last[m] = -1
	}
	for k, s := range spans {
		last[s.member] = k
	}
	for m, k := range last {
		if k < 0 || spans[k].entries <= limit {
			continue
		}
		if contractArrays[m] == "label" && last[1] >= 0 {
			continue // labels wins over label: the older key is ignored
		}
		over, entries = contractArrays[m], spans[k].entries
		break
	}
	if len(cuts) == 0 {
		return b, over, entries, cuts
	}
	text = buf[:0]
	copied := 0
	for _, c := range cuts {
		text = append(append(text, b[copied:c.start]...), c.with...)
		copied = c.end
	}
	return append(text, b[copied:]...), over, entries, cuts
}

// pruneMetadata adds the cuts for the metadata value at b[start:end]: its
// members the mapping does not read become null, persist and datatype_type
// lists keep their first limit entries; an array (a validation error, which
// names only its type) becomes empty.
func pruneMetadata(b []byte, start, end, limit int, tags []tagSpec, cuts []textCut) []textCut {
	switch b[start] {
	case '[':
		return append(cuts, textCut{start: start + 1, end: end - 1})
	case '{':
	default:
		return cuts
	}
	for i := range tags {
		if tags[i].kind == tagFromPath && len(tags[i].path) == 1 && tags[i].path[0] == "metadata" {
			return cuts // a tag of the whole object
		}
	}
	pyjson.Members(b, start, func(key []byte, vStart, vEnd int) {
		switch {
		case isTagPath(key, "metadata", tags):
		case pyjson.KeyIs(key, "persist") || pyjson.KeyIs(key, "datatype_type"):
			// One entry per value, and values has at most limit entries (else
			// the reading is refused): the entries beyond are never read.
			if b[vStart] == '[' {
				if cut := pyjson.EntriesEnd(b, vStart, limit); cut >= 0 {
					cuts = append(cuts, textCut{start: cut, end: vEnd - 1})
				}
			}
		default:
			cuts = append(cuts, textCut{start: vStart, end: vEnd, with: "null"})
		}
	})
	return cuts
}

// isMappedMember reports whether the mapping reads the top-level member key.
func isMappedMember(key []byte, tags []tagSpec) bool {
	for _, name := range mappedMembers {
		if pyjson.KeyIs(key, name) {
			return true
		}
	}
	return isTagPath(key, "", tags)
}

// isTagPath reports whether a configured tag's path goes through key: its
// first segment when parent is "", else its second under parent.
func isTagPath(key []byte, parent string, tags []tagSpec) bool {
	for i := range tags {
		path := tags[i].path
		if tags[i].kind != tagFromPath {
			continue
		}
		if parent == "" && len(path) > 0 && pyjson.KeyIs(key, path[0]) {
			return true
		}
		if parent != "" && len(path) > 1 && path[0] == parent && pyjson.KeyIs(key, path[1]) {
			return true
		}
	}
	return false
}

func tooManyEntriesErr(array string, n, limit int) *mappingError {
	return validationErr(array + " has " + strconv.Itoa(n) + " entries, more than the " + strconv.Itoa(limit) + " fields a point may have (max_fields)")
}

func lineTooLongErr(limit, i int) *mappingError {
	return validationErr("the point's line is longer than the " + strconv.Itoa(limit) + " bytes a line may have (max_line_bytes) once values[" + strconv.Itoa(i) + "] is added")
}
