// Package errrecord makes an error record fit the error topic. The record is built by the
// iot_error_record processor at the size it is configured with, and checked again by the
// kafka_franz output, which alone knows the topic's real limit (the smaller of its own
// max_message_bytes and the broker's max.message.bytes, read at connect): both shorten a record
// that is too big with Fit, so the rule is written once.
//
// A record that does not fit keeps every key but the original: original_message becomes
// {"raw": "<the original's leading bytes that fit, as text>"} and two keys follow it,
// "original_truncated": true and "original_bytes": <the original's size> (contract.md, "Output:
// iot_errors").
package errrecord

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"unicode/utf8"
)

// Framing is what a record costs in a produce request beyond its key, value and headers: the
// record batch's header (61 bytes, what a broker measures against max.message.bytes, plus the
// producer's 4-byte length prefix) and the record's own varint lengths, attributes and deltas
// (at most 28 bytes), rounded up.
const Framing = 100

// HeaderFraming is what each record header costs beyond its key and value (two varint lengths).
const HeaderFraming = 10

// Keys the record gains when its original is cut.
const (
	KeyOriginal          = "original_message"
	KeyOriginalTruncated = "original_truncated"
	KeyOriginalBytes     = "original_bytes"
)

// Budget is the most bytes a record's value may take under a limit on the whole produced
// record, given its key and the bytes of its headers (keys plus values).
func Budget(limit, keyLen, headerBytes, headers int) int {
	return limit - Framing - keyLen - headerBytes - headers*HeaderFraming
}

type member struct {
	key   string
	value json.RawMessage
}

// Fit returns rec, a JSON object holding original_message, shortened to at most max bytes by
// cutting the original; unchanged when it fits. original is the input as received, whose
// leading bytes are kept and whose size is original_bytes; nil takes what the record holds (the
// original object's text, or the text of its {"raw": ...}). A record already cut is cut further
// and keeps its original_bytes. It fails when the record's other keys alone take more than max.
func Fit(rec []byte, max int, original []byte) ([]byte, error) {
	if len(rec) <= max {
		return rec, nil
	}
	members, err := parse(rec)
	if err != nil {
		return nil, fmt.Errorf("error record is not a JSON object: %w", err)
	}
	var text []byte
	truncated, held, found := false, 0, false
	for _, m := range members {
		switch m.key {
		case KeyOriginal:
			text, found = originalText(m.value), true
		case KeyOriginalTruncated:
			truncated = string(m.value) == "true"
		case KeyOriginalBytes:
			if n, err := json.Number(m.value).Int64(); err == nil {
				held = int(n)
			}
		}
	}
	inputSize := 0
	if original != nil {
		text, inputSize = original, len(original)
	} else if truncated && held > 0 {
		inputSize = held
	}
	if inputSize <= 0 {
		inputSize = len(text)
	}
	if !found {
		return nil, fmt.Errorf("error record of %d bytes has no %s to cut", len(rec), KeyOriginal)
	}

	// The record with an empty fragment: what the other keys take.
	fixed := assemble(nil, members, nil, inputSize)
	room := max - len(fixed)
	if room < 0 {
		return nil, fmt.Errorf("error record needs %d bytes without its original, over the limit of %d", len(fixed), max)
	}
	frag, _ := AppendText(nil, text, room)
	return assemble(make([]byte, 0, len(fixed)+len(frag)), members, frag, inputSize), nil
}

// originalText is what a cut keeps the leading bytes of: the string of a {"raw": "..."}, else the
// original object's text.
func originalText(v json.RawMessage) []byte {
	var raw struct {
		Raw *string `json:"raw"`
	}
	if err := json.Unmarshal(v, &raw); err == nil && raw.Raw != nil {
		var keys map[string]json.RawMessage
		if json.Unmarshal(v, &keys) == nil && len(keys) == 1 {
			return []byte(*raw.Raw)
		}
	}
	return bytes.TrimSpace(v)
}

// assemble writes the members in their order with original_message as {"raw": frag} (frag
// already escaped) and the two truncation keys after it.
func assemble(dst []byte, members []member, frag []byte, inputSize int) []byte {
	dst = append(dst, '{')
	first := true
	for _, m := range members {
		if m.key == KeyOriginalTruncated || m.key == KeyOriginalBytes {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = AppendString(dst, m.key)
		dst = append(dst, ':')
		if m.key != KeyOriginal {
			dst = append(dst, m.value...)
			continue
		}
		dst = append(dst, `{"raw":"`...)
		dst = append(dst, frag...)
		dst = append(dst, `"},"`+KeyOriginalTruncated+`":true,"`+KeyOriginalBytes+`":`...)
		dst = fmt.Appendf(dst, "%d", inputSize)
	}
	return append(dst, '}')
}

func parse(rec []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(rec))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, fmt.Errorf("want an object")
	}
	var members []member
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		// Kept as written: the original's leading bytes are the input's, not a re-encoding's.
		members = append(members, member{key, bytes.TrimSpace(v)})
	}
	if _, err := dec.Token(); err != nil && err != io.EOF {
		return nil, err
	}
	return members, nil
}

// AppendString appends s as a JSON string, quotes included, without HTML escaping.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst, _ = AppendText(dst, []byte(s), -1)
	return append(dst, '"')
}

const hex = "0123456789abcdef"

// AppendText appends the JSON string content (no quotes) of s, stopping before the written text
// would pass max bytes (max < 0: no limit), and returns how many bytes of s it took. It cuts on a
// rune boundary, writes invalid UTF-8 as U+FFFD and does no HTML escaping: <, > and & stay one
// byte each, so a record's size follows its original's.
func AppendText(dst, s []byte, max int) ([]byte, int) {
	start := len(dst)
	var esc [6]byte
	i := 0
	for i < len(s) {
		var out []byte
		c := s[i]
		size := 1
		switch {
		case c == '"' || c == '\\':
			esc[0], esc[1] = '\\', c
			out = esc[:2]
		case c < 0x20:
			switch c {
			case '\n':
				esc[0], esc[1] = '\\', 'n'
				out = esc[:2]
			case '\r':
				esc[0], esc[1] = '\\', 'r'
				out = esc[:2]
			case '\t':
				esc[0], esc[1] = '\\', 't'
				out = esc[:2]
			default:
				esc = [6]byte{'\\', 'u', '0', '0', hex[c>>4], hex[c&0xf]}
				out = esc[:6]
			}
		case c < utf8.RuneSelf:
			out = s[i : i+1]
		default:
			r, n := utf8.DecodeRune(s[i:])
			size = n
			if r == utf8.RuneError && n == 1 {
				out = []byte("\ufffd")
			} else {
				out = s[i : i+n]
			}
		}
		if max >= 0 && len(dst)-start+len(out) > max {
			break
		}
		dst = append(dst, out...)
		i += size
	}
	return dst, i
}
