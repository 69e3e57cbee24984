// Package pyjson reads and writes the JSON dialect of the stage-2 normalizer:
// the bytes of Python's json.dumps with its defaults.
//
// That dialect is JSON plus Python's habits: the bare tokens NaN, Infinity and
// -Infinity for non-finite floats (not JSON), non-ASCII text as \uXXXX escapes
// (lone surrogates included, which Python writes and reads back), duplicate
// keys (the last one counts, as with json.loads), and a float always written
// with a fraction or exponent. Compact JSON with raw UTF-8 is the same dialect.
//
// Decoder.Decode is the one way in: it accepts exactly what json.loads accepts
// as an object (nesting up to fastjson.MaxDepth) and gives the parsed object
// with the message as strict JSON text for the error record. The Append
// functions are the way out: strict JSON for the mapper's nested values and
// error records, and Python's own text for the generator of test readings.
package pyjson
