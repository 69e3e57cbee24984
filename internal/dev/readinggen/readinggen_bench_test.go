package readinggen

import (
	"testing"
)

// BenchmarkNext: the generator must outpace the ingestor it feeds, or the
// bench harness measures the generator.
func BenchmarkNext(b *testing.B) {
	g, err := New(1, DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	var bytes int64
	b.ReportAllocs()
	for b.Loop() {
		r := g.Next()
		bytes += int64(len(r.Value))
	}
	b.ReportMetric(float64(bytes)/float64(b.N), "bytes/msg")
}

func BenchmarkExpectationLine(b *testing.B) {
	g, err := New(1, DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	rs := make([]Reading, 1024)
	for i := range rs {
		rs[i] = g.Next()
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := rs[i%len(rs)].Expect.MarshalJSONLine(); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// FuzzParseExpectation: lines from a file must never crash the reader.
func FuzzParseExpectation(f *testing.F) {
	g, _ := New(1, DefaultOptions())
	for range 20 {
		line, _ := g.Next().Expect.MarshalJSONLine()
		f.Add(line)
	}
	f.Add([]byte(`{"fields":[{"name":"x","type":"integer","value":1.5}]}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := ParseExpectation(line)
		if err != nil {
			return
		}
		for _, fl := range e.Fields {
			switch fl.Type {
			case FieldFloat:
				_ = fl.Value.(float64)
			case FieldInteger:
				_ = fl.Value.(int64)
			case FieldBoolean:
				_ = fl.Value.(bool)
			case FieldString:
				_ = fl.Value.(string)
			}
		}
	})
}
