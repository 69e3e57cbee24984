package pyjson

import (
	"bytes"
	"encoding/json"
)

// Walking validated text without parsing it: how deep it nests, where a value
// ends, what a key says. These cost no memory whatever the size of the text,
// where the parser costs a value per JSON value.

// nestingExceeds reports whether arrays and objects in b nest deeper than
// limit. Counting the brackets first keeps the common case to two fast scans.
func nestingExceeds(b []byte, limit int) bool {
	if bytes.Count(b, []byte{'['})+bytes.Count(b, []byte{'{'}) <= limit {
		return false
	}
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			i = stringEnd(b, i) - 1
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

// Members calls visit for each member of the object whose text starts at b[i]
// (validated JSON, in which Python tokens may stand as values), in order,
// duplicates included: the text of its key, quotes included, and where its
// value's text starts and ends. It returns where the object ends.
func Members(b []byte, i int, visit func(key []byte, start, end int)) int {
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != '{' {
		return i
	}
	i++
	for {
		i = skipSpace(b, i)
		if i >= len(b) {
			return i
		}
		switch b[i] {
		case '}':
			return i + 1
		case ',':
			i++
			continue
		}
		keyEnd := stringEnd(b, i)
		key := b[i:keyEnd]
		i = skipSpace(b, keyEnd)
		if i < len(b) && b[i] == ':' {
			i = skipSpace(b, i+1)
		}
		if i >= len(b) {
			return i
		}
		end := valueEnd(b, i)
		visit(key, i, end)
		i = end
	}
}

// Entries counts the entries of the array whose text starts at b[i] (validated
// as for Members) and returns where it ends.
func Entries(b []byte, i int) (n, end int) {
	j := skipSpace(b, i+1)
	if j < len(b) && b[j] == ']' {
		return 0, j + 1
	}
	for j < len(b) {
		j = valueEnd(b, j)
		n++
		j = skipSpace(b, j)
		if j < len(b) && b[j] == ',' {
			j = skipSpace(b, j+1)
			continue
		}
		if j < len(b) {
			j++ // the closing bracket
		}
		break
	}
	return n, j
}

// EntriesEnd returns where the first n entries of the array whose text starts
// at b[i] end (just after the n-th, or after the bracket for none), when the
// array has more than n; else -1. A cut from there to the closing bracket
// keeps those n.
func EntriesEnd(b []byte, i, n int) int {
	j := skipSpace(b, i+1)
	if n <= 0 {
		if j < len(b) && b[j] != ']' {
			return i + 1
		}
		return -1
	}
	for k := 0; j < len(b) && b[j] != ']'; k++ {
		j = valueEnd(b, j)
		if k+1 == n {
			if next := skipSpace(b, j); next < len(b) && b[next] == ',' {
				return j
			}
			return -1
		}
		j = skipSpace(b, j)
		if j < len(b) && b[j] == ',' {
			j = skipSpace(b, j+1)
		}
	}
	return -1
}

// KeyIs reports whether key, the text of a JSON string (quotes included), says
// name once its escapes are decoded.
func KeyIs(key []byte, name string) bool {
	if len(key) < 2 {
		return false
	}
	inner := key[1 : len(key)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner) == name
	}
	// An escaped key (rare): decode it as the parser would.
	var s string
	return json.Unmarshal(key, &s) == nil && s == name
}

// valueEnd returns where the JSON value starting at b[i] ends.
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '[', '{':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = stringEnd(b, j) - 1
			case '[', '{':
				depth++
			case ']', '}':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	default: // a number, true, false, null or a Python token
		j := i
		for j < len(b) {
			switch b[j] {
			case ',', ']', '}', ' ', '\t', '\n', '\r':
				return j
			}
			j++
		}
		return j
	}
}

// stringEnd returns the index just after the string starting at b[i], or
// len(b) when it has no closing quote.
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// kindOf names the kind of the JSON value that b (validated) holds, as the
// decode error does, or "" for an object.
func kindOf(b []byte) string {
	i := skipSpace(b, 0)
	if i >= len(b) {
		return "empty"
	}
	switch b[i] {
	case '{':
		return ""
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number"
	}
}
