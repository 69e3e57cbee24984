package processors

import (
	"context"
	"runtime"
	"strings"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/valyala/fastjson"

	"github.com/preservarium/iot-ingestor/internal/meta"
)

// zeros is n comma-separated zeros.
func zeros(n int) string { return strings.TrimSuffix(strings.Repeat("0,", n), ",") }

// TestReadingToPointLimits checks max_fields and max_line_bytes: a reading over
// either is a validation error naming the setting, whichever path (the cheap
// one, or the guard that empties oversized arrays before decoding) finds it,
// and a reading at the limit is mapped.
func TestReadingToPointLimits(t *testing.T) {
	const ts = `"timestamp":"2025-06-08T18:27:17"`
	const tsNs = " 1749407237000000000"
	cases := []struct {
		name, conf, input string
		line, err         string
		requestID         string
	}{
		{name: "at max_fields", conf: "max_fields: 3", input: `{"device_id":"d","values":[0,0,0],` + ts + `}`, line: `d value_0=0i,value_1=0i,value_2=0i` + tsNs},
		{name: "over max_fields", conf: "max_fields: 3", input: `{"request_id":"r1","device_id":"d","values":[0,0,0,0],` + ts + `}`, requestID: "r1",
			err: `validation: values has 4 entries, more than the 3 fields a point may have (max_fields)`},
		{name: "over max_fields, spaced, python tokens", conf: "max_fields: 3", input: `{"request_id": "r2", "device_id": "d", "values": [NaN, Infinity, -Infinity, 1], ` + ts + `}`, requestID: "r2",
			err: `validation: values has 4 entries, more than the 3 fields a point may have (max_fields)`},
		{name: "over max_fields with nested entries", conf: "max_fields: 3", input: `{"device_id":"d","values":[[1,2,3],{"a":[4,5]},"x,y",0],` + ts + `}`,
			err: `validation: values has 4 entries, more than the 3 fields a point may have (max_fields)`},
		{name: "nested commas are not entries", conf: "max_fields: 3", input: `{"device_id":"d","values":[[1,2,3,4,5],"a,b,c,d"],` + ts + `}`, line: `d value_0="[1,2,3,4,5]",value_1="a,b,c,d"` + tsNs},
		{name: "labels over max_fields", conf: "max_fields: 3", input: `{"request_id":"r3","device_id":"d","values":[0],"labels":["a","b","c","d","e"],` + ts + `}`, requestID: "r3",
			err: `validation: labels has 5 entries, more than the 3 fields a point may have (max_fields)`},
		{name: "label over max_fields ignored when labels wins", conf: "max_fields: 3", input: `{"device_id":"d","values":[0],"labels":["a"],"label":["a","b","c","d","e"],` + ts + `}`, line: `d a=0i` + tsNs},
		{name: "earlier duplicate values over max_fields ignored", conf: "max_fields: 3", input: `{"device_id":"d","values":[0,0,0,0,0],"values":[1],` + ts + `}`, line: `d value_0=1i` + tsNs},
		{name: "later duplicate values over max_fields", conf: "max_fields: 3", input: `{"device_id":"d","values":[1],"values":[0,0,0,0,0],` + ts + `}`,
			err: `validation: values has 5 entries, more than the 3 fields a point may have (max_fields)`},
		{name: "escaped key", conf: "max_fields: 3", input: `{"device_id":"d","valu\u0065s":[0,0,0,0],` + ts + `}`,
			err: `validation: values has 4 entries, more than the 3 fields a point may have (max_fields)`},
		{name: "oversized but not json is a decode error", conf: "max_fields: 3", input: `{"device_id":"d","values":[0,0,0,0,],` + ts + `}`,
			err: `decode: message is not JSON: cannot parse JSON: cannot parse object: cannot parse object value: cannot parse array: cannot parse array value: cannot parse number: expecting 0..9 digit, got ]; unparsed tail: "],\"timestamp\":\"2025-06-08T18:27:17\"}"`},
		{name: "oversized with a control character is a decode error", conf: "max_fields: 3", input: "{\"device_id\":\"d\x01\\n\",\"values\":[0,0,0,0]}",
			err: `decode: message is not JSON: string cannot contain control char 0x01`},
		{name: "oversized invalid utf-8 is a decode error", conf: "max_fields: 3", input: "{\"device_id\":\"d\xff\",\"values\":[0,0,0,0]}",
			err: `decode: message is not valid UTF-8 text`},
		{name: "oversized top-level array is a decode error", conf: "max_fields: 3", input: `[0,0,0,0,0,0,0,0]`, err: `decode: message is a JSON array, expected an object`},
		{name: "other validation errors still reported", conf: "max_fields: 3", input: `{"device_id":"","values":[0],"metadata":{"junk":[0,0,0,0,0]},` + ts + `}`, err: `validation: device_id is empty`},
		{name: "default max_fields", input: `{"device_id":"d","values":[` + zeros(1001) + `],` + ts + `}`,
			err: `validation: values has 1001 entries, more than the 1000 fields a point may have (max_fields)`},
		{name: "default max_fields reached", input: `{"device_id":"d","values":[` + zeros(1000) + `],` + ts + `}`, line: `d ` + zerosLine(1000) + tsNs},

		// `d value_0="` and `" 1749407237000000000` are 32 bytes.
		{name: "at max_line_bytes", conf: "max_line_bytes: 64", input: `{"device_id":"d","values":["` + strings.Repeat("x", 32) + `"],` + ts + `}`, line: `d value_0="` + strings.Repeat("x", 32) + `"` + tsNs},
		{name: "over max_line_bytes with the timestamp", conf: "max_line_bytes: 64", input: `{"device_id":"d","values":["` + strings.Repeat("x", 33) + `"],` + ts + `}`,
			err: `validation: the point's line is longer than the 64 bytes a line may have (max_line_bytes) once its timestamp is added`},
		{name: "over max_line_bytes at a field", conf: "max_line_bytes: 64", input: `{"device_id":"d","values":[1,"` + strings.Repeat("x", 60) + `",2],` + ts + `}`,
			err: `validation: the point's line is longer than the 64 bytes a line may have (max_line_bytes) once values[1] is added`},
		{name: "default max_line_bytes", input: `{"device_id":"d","values":[` + strings.Repeat(`"`+strings.Repeat("x", 65000)+`",`, 17) + `1],` + ts + `}`,
			err: `validation: the point's line is longer than the 1048576 bytes a line may have (max_line_bytes) once values[16] is added`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newTestReadingToPoint(t, c.conf)
			r := runRTP(t, p, c.input, nil)
			if r.err != c.err {
				t.Errorf("error\n got: %s\nwant: %s", r.err, c.err)
			}
			if r.line != c.line {
				t.Errorf("line\n got: %.200s\nwant: %.200s", r.line, c.line)
			}
			if c.requestID != "" && r.requestID != c.requestID {
				t.Errorf("request id %q, want %q", r.requestID, c.requestID)
			}
			if r.original != c.input && !strings.HasPrefix(r.err, "decode") && !strings.Contains(c.input, "Infinity") {
				t.Errorf("iot_original is not the input: %.200s", r.original)
			}
		})
	}
}

// zerosLine is value_0=0i,...,value_{n-1}=0i.
func zerosLine(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(valueName(i) + "=0i")
	}
	return b.String()
}

// TestReadingToPointHugeReadingAllocates maps a 1 MB reading of
// {"values":[0,0,...]} with a fresh processor and checks how many bytes that
// allocated (the runtime's count, not a timing). Before max_fields it took
// 355 MB (BenchmarkReadingToPointHugeReading).
func TestReadingToPointHugeReadingAllocates(t *testing.T) {
	in := hugeZerosReading(1 << 20)
	p := newTestReadingToPoint(t, "")
	msg := service.NewMessage(in)
	msg.MetaSetMut("kafka_timestamp_ms", "1749996800123")
	got, out := allocatedByProcess(t, p, msg)
	if len(out) != 1 || out[0][0].GetError() == nil || !strings.Contains(out[0][0].GetError().Error(), "(max_fields)") {
		t.Fatalf("want the reading rejected for max_fields, got %v", out)
	}
	const limit = 8 << 20
	if got > limit {
		t.Errorf("mapping a 1 MB reading allocated %d bytes, want at most %d", got, limit)
	} else {
		t.Logf("mapping a %d-byte reading allocated %d bytes", len(in), got)
	}
	if id, _ := msg.MetaGet(meta.RequestID); id != "huge-1" {
		t.Errorf("request id %q, want huge-1", id)
	}
}

// hugeBulkReading is a reading of about size bytes whose values are one
// temperature and whose bulk sits in a member the line does not need: where
// says which (metadata.config, an unknown top-level key, or a persist list far
// longer than values).
func hugeBulkReading(size int, where string) []byte {
	head := `{"request_id":"huge-bulk","device_id":"d","timestamp":"2025-06-08T18:27:17","values":[21.5],"labels":["t"],`
	item, tail := "0,", `0]}}`
	switch where {
	case "metadata":
		head += `"metadata":{"datatype_unit":"C","persist":[true],"config":[`
	case "unknown key":
		head += `"metadata":{"datatype_unit":"C"},"extras":{"dump":[`
	case "persist":
		head += `"metadata":{"datatype_unit":"C","persist":[`
		item, tail = "true,", `false]}}`
	}
	n := (size - len(head) - len(tail)) / len(item)
	return []byte(head + strings.Repeat(item, n) + tail)
}

// TestReadingToPointHugeMetadataAllocates maps a 1 MB reading whose bulk is in
// metadata, or under a key the contract does not know, and checks that it is
// stored as any other reading (contract.md: metadata carries parser extras of
// any shape, and unknown keys are ignored) for a small multiple of its size in
// allocations: the parser builds a value per JSON value, about 200 MB for
// this reading, unless what the mapping never reads is left out first.
func TestReadingToPointHugeMetadataAllocates(t *testing.T) {
	const tsNs = " 1749407237000000000"
	for _, c := range []struct{ name, where, conf, line string }{
		{name: "metadata", where: "metadata", line: "d t=21.5" + tsNs},
		{name: "unknown key", where: "unknown key", line: "d t=21.5" + tsNs},
		{name: "metadata with a tag from it", where: "metadata", conf: "tags: {unit: metadata.datatype_unit}", line: "d,unit=C t=21.5" + tsNs},
		{name: "unknown key with a tag from metadata", where: "unknown key", conf: "tags: {unit: metadata.datatype_unit}", line: "d,unit=C t=21.5" + tsNs},
		{name: "persist list", where: "persist", line: "d t=21.5" + tsNs},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := hugeBulkReading(1<<20, c.where)
			p := newTestReadingToPoint(t, c.conf)
			msg := service.NewMessage(in)
			allocated, out := allocatedByProcess(t, p, msg)
			if len(out) != 1 || out[0][0].GetError() != nil {
				t.Fatalf("want the reading mapped, got %v", out)
			}
			if line, _ := out[0][0].AsBytes(); string(line) != c.line {
				t.Errorf("line %q, want %q", line, c.line)
			}
			if orig, _ := msg.MetaGet(meta.Original); orig != string(in) {
				t.Errorf("iot_original is not the input (%d bytes, want %d)", len(orig), len(in))
			}
			if limit := uint64(8 * len(in)); allocated > limit {
				t.Errorf("mapping a %d-byte reading allocated %d bytes, want at most %d", len(in), allocated, limit)
			} else {
				t.Logf("mapping a %d-byte reading allocated %d bytes", len(in), allocated)
			}
		})
	}
}

// allocatedByProcess runs one message through p and returns the bytes that
// allocated (the runtime's count, not a timing) with the result.
func allocatedByProcess(t *testing.T, p *readingToPoint, msg *service.Message) (uint64, []service.MessageBatch) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	out, err := p.ProcessBatch(context.Background(), service.MessageBatch{msg})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	return after.TotalAlloc - before.TotalAlloc, out
}

// FuzzPruneReading checks the walk that counts the contract arrays without
// decoding against the parser: for any JSON object, the entries it counts in
// the last values, labels and label are the parser's, and the text it returns
// parses to an object of the same members, in which what the mapping reads
// (request_id, timestamp, device_id, metadata's persist and datatype_type up
// to limit entries) is unchanged.
func FuzzPruneReading(f *testing.F) {
	for _, s := range []string{
		`{"values":[1,2,3],"labels":["a","b","c"]}`,
		`{"values":[[1,2],{"a":[3,4]},"x,y]"],"label":["a"],"values":[1,2,3,4]}`,
		` { "valu\u0065s" : [ 1 , 2 , 3 ] , "x" : { "values" : [1,2,3,4] } } `,
		`{"labels":[],"values":[null,true,false,-1.5e3,"\"]"]}`,
		`{"device_id":"d","values":[1],"metadata":{"persist":[true,false,true],"x":[1,2,3],"datatype_type":["number"]},"extra":{"a":[1,2]},"metadata":[1,2,3]}`,
	} {
		f.Add([]byte(s), 2)
		f.Add([]byte(s), 0)
	}
	f.Fuzz(func(t *testing.T, in []byte, limit int) {
		if limit < 0 || limit > 8 {
			return
		}
		var p fastjson.Parser
		v, err := p.ParseBytes(in)
		if err != nil || v.Type() != fastjson.TypeObject || fastjson.ValidateBytes(in) != nil {
			return
		}
		o, _ := v.Object()
		counts := map[string]int{}
		o.Visit(func(k []byte, item *fastjson.Value) {
			if _, ok := counts[string(k)]; !ok && item.Type() == fastjson.TypeArray {
				counts[string(k)] = 0
			}
			if item.Type() == fastjson.TypeArray {
				a, _ := item.Array()
				counts[string(k)] = len(a)
			} else {
				delete(counts, string(k))
			}
		})
		text, over, n, _ := pruneReading(in, limit, nil, nil, nil)
		if over != "" {
			if counts[over] != n || n <= limit {
				t.Fatalf("%s: reported %s with %d entries, the parser counts %d (limit %d)", in, over, n, counts[over], limit)
			}
		} else if c, ok := counts["values"]; ok && c > limit {
			t.Fatalf("%s: values has %d entries over %d, not reported", in, c, limit)
		}
		cut, err := fastjson.ParseBytes(text)
		if err != nil {
			t.Fatalf("%s: the cut text %s does not parse: %v", in, text, err)
		}
		co, _ := cut.Object()
		if co.Len() != o.Len() {
			t.Fatalf("%s: the cut text %s has %d members, want %d", in, text, co.Len(), o.Len())
		}
		// What the mapping reads besides the arrays is what the reading says.
		for _, key := range []string{"request_id", "timestamp", "device_id"} {
			if got, want := lastMemberText(co, key), lastMemberText(o, key); got != want {
				t.Fatalf("%s: %s is %s in the cut text %s, want %s", in, key, got, text, want)
			}
		}
		md, cmd := lastMember(o, "metadata"), lastMember(co, "metadata")
		if md != nil && md.Type() == fastjson.TypeObject {
			mo, _ := md.Object()
			cmo, _ := cmd.Object()
			for _, key := range []string{"persist", "datatype_type"} {
				got, want := lastMember(cmo, key), lastMember(mo, key)
				if want != nil && want.Type() == fastjson.TypeArray {
					// A list keeps the entries a value can use, the first limit.
					all, _ := want.Array()
					kept, _ := got.Array()
					if len(kept) != min(len(all), limit) {
						t.Fatalf("%s: metadata.%s keeps %d entries in the cut text %s, want %d", in, key, len(kept), text, min(len(all), limit))
					}
					for i := range kept {
						if kept[i].String() != all[i].String() {
							t.Fatalf("%s: metadata.%s[%d] is %s in the cut text %s", in, key, i, kept[i], text)
						}
					}
				} else if g, w := lastMemberText(cmo, key), lastMemberText(mo, key); g != w {
					t.Fatalf("%s: metadata.%s is %s in the cut text %s, want %s", in, key, g, text, w)
				}
			}
		}
	})
}

// lastMember is the value of the last member key of o (the one the mapping
// reads), or nil.
func lastMember(o *fastjson.Object, key string) *fastjson.Value {
	var last *fastjson.Value
	o.Visit(func(k []byte, v *fastjson.Value) {
		if string(k) == key {
			last = v
		}
	})
	return last
}

func lastMemberText(o *fastjson.Object, key string) string {
	if v := lastMember(o, key); v != nil {
		return v.String()
	}
	return "(absent)"
}
