package pyjson

import "bytes"

// Python's json.dumps writes non-finite floats as the bare tokens NaN, Infinity
// and -Infinity, which are not JSON. fastjson's parser reads NaN, Inf and -Inf
// as numbers but not Infinity, and its validator reads none of them, so a
// message holding them is rewritten twice before decoding: once with every
// token replaced by null (strict JSON, validated, and kept as the original
// message for the error branch), and once with Infinity shortened to Inf padded
// with spaces (same structure, parsed to find which values were non-finite).

var (
	tokNaN    = []byte("NaN")
	tokInf    = []byte("Infinity")
	tokNegInf = []byte("-Infinity")
)

// HasPythonTokens is the cheap test for the tokens: it reports whether b holds
// the text NaN or Infinity anywhere, inside strings or not.
func HasPythonTokens(b []byte) bool {
	return bytes.Contains(b, tokNaN) || bytes.Contains(b, tokInf)
}

// rewritePythonTokens replaces the Python tokens found outside JSON strings:
// asNull receives the input with each token replaced by null, forParse the input
// with Infinity written as Inf (NaN and -Inf stay, fastjson reads them). found
// reports whether any token was replaced. A token glued to other characters is
// left alone so that the strict validation that follows still rejects it.
func rewritePythonTokens(in, asNull, forParse []byte) (nullOut, parseOut []byte, found bool) {
	nullOut, parseOut = asNull[:0], forParse[:0]
	copied := 0 // in[:copied] is in both outputs
	for i := 0; i < len(in); i++ {
		c := in[i]
		if c == '"' {
			i = stringEnd(in, i) - 1
			continue
		}
		if c != 'N' && c != 'I' && c != '-' {
			continue
		}
		n := pythonToken(in, i)
		if n == 0 {
			continue
		}
		nullOut = append(append(nullOut, in[copied:i]...), "null"...)
		parseOut = append(parseOut, in[copied:i]...)
		switch n {
		case len(tokNaN):
			parseOut = append(parseOut, "NaN"...)
		case len(tokInf):
			parseOut = append(parseOut, "Inf     "...)
		default:
			parseOut = append(parseOut, "-Inf     "...)
		}
		i += n - 1
		copied = i + 1
		found = true
	}
	nullOut = append(nullOut, in[copied:]...)
	parseOut = append(parseOut, in[copied:]...)
	return nullOut, parseOut, found
}

// pythonToken returns the length of the Python token at b[i] if there is one
// standing where a value may (not glued to other characters), else 0.
func pythonToken(b []byte, i int) int {
	for _, tok := range [...][]byte{tokNaN, tokInf, tokNegInf} {
		if bytes.HasPrefix(b[i:], tok) {
			if tokenBoundary(b, i-1) && tokenBoundary(b, i+len(tok)) {
				return len(tok)
			}
			return 0
		}
	}
	return 0
}

// tokenBoundary reports whether position i (possibly out of range) is a place
// where a JSON value may begin or end: outside the input, whitespace or a
// structural character.
func tokenBoundary(in []byte, i int) bool {
	if i < 0 || i >= len(in) {
		return true
	}
	switch in[i] {
	case ' ', '\t', '\n', '\r', ',', ':', '[', ']', '{', '}':
		return true
	}
	return false
}

// isNonFiniteLiteral reports whether a fastjson number literal is one of the
// non-finite tokens (NaN, Inf, -Inf after rewriting).
func isNonFiniteLiteral(lit []byte) bool {
	if len(lit) == 0 {
		return false
	}
	c := lit[0]
	if c == '-' && len(lit) > 1 {
		c = lit[1]
	}
	return c == 'N' || c == 'n' || c == 'I' || c == 'i'
}
