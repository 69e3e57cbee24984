package pyjson_test

import (
	"testing"

	"github.com/valyala/fastjson"

	"github.com/preservarium/iot-ingestor/internal/dev/readinggen"
	"github.com/preservarium/iot-ingestor/internal/pyjson"
)

// generated is the generator's stream (internal/dev/readinggen, default options),
// what the end-to-end harness sends.
func generated(b *testing.B, n int) [][]byte {
	gen, err := readinggen.New(1, readinggen.DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	out := make([][]byte, n)
	for i := range out {
		out[i] = gen.Next().Value
	}
	return out
}

// BenchmarkTokenCheck compares the token check Decode runs on every message
// with the full validation it replaced, and with fastjson's parse alone.
func BenchmarkTokenCheck(b *testing.B) {
	msgs := generated(b, 4096)
	b.Run("generated", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			_ = pyjson.TokenError(msgs[i%len(msgs)])
		}
	})
	b.Run("fastjson.Validate", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			_ = fastjson.ValidateBytes(msgs[i%len(msgs)])
		}
	})
}

// BenchmarkDecode is the whole dialect's cost on the generator's stream.
func BenchmarkDecode(b *testing.B) {
	msgs := generated(b, 4096)
	var d pyjson.Decoder
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := d.Decode(msgs[i%len(msgs)], nil); err != nil {
			b.Fatal(err)
		}
	}
}
