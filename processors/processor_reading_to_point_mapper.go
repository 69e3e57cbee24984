package processors

import (
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/valyala/fastjson"

	"github.com/preservarium/iot-ingestor/internal/meta"
	"github.com/preservarium/iot-ingestor/internal/pyjson"
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
	decoder pyjson.Decoder
	pruner  readingPruner // for a reading that may be huge
	rawBuf  []byte        // {"raw": ...} of an undecodable message
	scratch []byte        // literal text and conversions
	textBuf []byte        // JSON text of nested values
	names   []string
	nameSet map[string]struct{} // only for messages with many fields
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

// mapReading appends the line for in to out and returns it with the outcome:
// the message is decoded (the dialect, internal/pyjson), read as a reading
// (processor_reading_to_point_reading.go), and its line written
// (processor_reading_to_point_line.go). On error or when filtered, out is
// returned unchanged. measure, when not nil, computes the measurement from the
// original JSON (a configured interpolation).
func (m *pointMapper) mapReading(st *mapState, in []byte, rec recordMeta, out []byte, measure func(original []byte) (string, error)) ([]byte, mapOutcome) {
	st.missing = st.missing[:0]
	var prune pyjson.Pruner
	if st.pruner.needed(m, in) {
		prune = &st.pruner
	}
	msg, err := st.decoder.Decode(in, prune)
	if err != nil {
		st.rawBuf = pyjson.AppendRaw(st.rawBuf[:0], in)
		return out, mapOutcome{original: st.rawBuf, requestID: keyRequestID(rec), err: decodeErr(err.Error())}
	}
	res := mapOutcome{original: msg.Original}
	f := readMembers(msg.Object)
	res.requestID = f.requestIDOr(rec)
	if prune != nil && st.pruner.over != "" {
		res.err = tooManyEntriesErr(st.pruner.over, st.pruner.entries, m.maxFields)
		return out, res
	}
	r, rerr := m.readReading(f)
	if rerr != nil {
		res.err = rerr
		return out, res
	}
	start := len(out)
	out, counts, lerr := m.appendLine(st, msg.Root, &r, rec, measure, res.original, out)
	switch {
	case lerr != nil:
		res.err = lerr
	case counts.fields == 0:
		res.filtered, res.nonFinite = true, counts.nonFinite
	default:
		res.nonFinite = counts.nonFinite
		return out, res
	}
	return out[:start], res
}

// b2s views parser-owned bytes as a string without copying; the result is
// valid until the state parses the next message.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

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

// oneLine keeps an error text on one line.
func oneLine(s string) string {
	if strings.ContainsAny(s, "\r\n") {
		s = strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(s)
	}
	return s
}
