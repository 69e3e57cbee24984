package pyjson

import "bytes"

// hasSurrogateEscape is the cheap test for \uD800-\uDFFF escapes (emoji in
// Python's ASCII output, or a lone surrogate).
func hasSurrogateEscape(b []byte) bool {
	return bytes.Contains(b, []byte(`\ud`)) || bytes.Contains(b, []byte(`\uD`))
}

// fixLoneSurrogates rewrites, in place, every \u escape of a UTF-16 surrogate
// that is not part of a high+low pair to \ufffd. fastjson keeps a lone one as
// its six characters of text, and when one is followed by another escape it
// swallows that escape's character; Go's encoding/json decodes a lone
// surrogate to U+FFFD, which this reproduces. b must be validated JSON, so
// every backslash is an escape inside a string.
func fixLoneSurrogates(b []byte) {
	for i := 0; i+1 < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if b[i+1] != 'u' || i+6 > len(b) {
			i++ // \\, \" and the like: skip the escaped character
			continue
		}
		r := hex4(b[i+2 : i+6])
		switch {
		case r >= 0xD800 && r < 0xDC00:
			if i+12 <= len(b) && b[i+6] == '\\' && b[i+7] == 'u' {
				if lo := hex4(b[i+8 : i+12]); lo >= 0xDC00 && lo < 0xE000 {
					i += 11 // a proper pair
					continue
				}
			}
			copy(b[i:i+6], `\ufffd`)
		case r >= 0xDC00 && r < 0xE000:
			copy(b[i:i+6], `\ufffd`)
		}
		i += 5
	}
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return -1
		}
	}
	return r
}
