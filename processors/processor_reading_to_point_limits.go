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
// parsed, the contract arrays over max_fields are emptied in a copy, and the
// one that makes the reading a validation error is noted.
type readingPruner struct {
	limit   int
	buf     []byte // the copy
	over    string // the array over the limit in the last reading, or ""
	entries int    // its entries
}

// needed reports whether in may be huge, and readies the pruner for it.
func (p *readingPruner) needed(m *pointMapper, in []byte) bool {
	if m.maxFields <= 0 || !mayHoldOversizedArray(in, m.maxFields) {
		return false
	}
	p.limit, p.over, p.entries = m.maxFields, "", 0
	return true
}

// Prune implements pyjson.Pruner.
func (p *readingPruner) Prune(text []byte) []byte {
	pruned, over, n := oversizedArrays(text, p.limit, p.buf)
	if !sameBytes(pruned, text) {
		p.buf = pruned
	}
	p.over, p.entries = over, n
	return pruned
}

// arraySpan is one top-level contract array found in a reading's text.
type arraySpan struct {
	member     int // index in contractArrays
	start, end int // the array's text, brackets included
	entries    int
}

// oversizedArrays walks the top-level object of b, JSON the caller has
// validated (Python tokens may stand as scalars), and returns the text to parse
// in its place: b itself when no contract array has more than limit entries,
// else a copy, appended to buf, where those arrays are empty. over names the
// array whose size makes the reading a validation error ("" when none does: an
// earlier duplicate key, which the mapping ignores anyway, may be the only one
// over), and entries is its count.
func oversizedArrays(b []byte, limit int, buf []byte) (text []byte, over string, entries int) {
	var found [8]arraySpan
	spans := found[:0]
	pyjson.Members(b, 0, func(key []byte, start, end int) {
		if b[start] != '[' {
			return
		}
		for m, name := range contractArrays {
			if pyjson.KeyIs(key, name) {
				n, _ := pyjson.Entries(b, start)
				spans = append(spans, arraySpan{member: m, start: start, end: end, entries: n})
				return
			}
		}
	})

	// The last of duplicate keys is the one the mapping reads.
	var last [len(contractArrays)]int
	for m := range last {
		last[m] = -1
	}
	cut := false
	for k, s := range spans {
		last[s.member] = k
		cut = cut || s.entries > limit
	}
	if !cut {
		return b, "", 0
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
	text = buf[:0]
	copied := 0
	for _, s := range spans {
		if s.entries > limit {
			text = append(text, b[copied:s.start+1]...)
			copied = s.end - 1
		}
	}
	return append(text, b[copied:]...), over, entries
}

func tooManyEntriesErr(array string, n, limit int) *mappingError {
	return validationErr(array + " has " + strconv.Itoa(n) + " entries, more than the " + strconv.Itoa(limit) + " fields a point may have (max_fields)")
}

func lineTooLongErr(limit, i int) *mappingError {
	return validationErr("the point's line is longer than the " + strconv.Itoa(limit) + " bytes a line may have (max_line_bytes) once values[" + strconv.Itoa(i) + "] is added")
}
