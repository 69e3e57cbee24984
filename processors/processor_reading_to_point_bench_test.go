package processors

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Jeffail/gabs/v2"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/valyala/fastjson"

	"github.com/preservarium/iot-ingestor/internal/dev/readinggen"
	"github.com/preservarium/iot-ingestor/internal/lineprotocol"
)

// benchCorpus is a realistic mix of what stage 2 publishes: single and
// multi-value readings, text parameters, alarms, nested configuration arrays,
// both timestamp styles, Python's spaced and \u-escaped output and compact
// UTF-8, and one reading with a NaN token.
func benchCorpus() []string {
	return []string{
		// Single value, Python json.dumps, no offset.
		`{"request_id": "0d9b6a52-3f3c-4f7e-9a55-0f3f0b7c2a11", "timestamp": "2025-06-08T18:27:17.476623", "device_id": "2261001", "values": [21.5], "labels": ["temperature"], "display_names": ["Temp\u00e9rature"], "index": "T", "metadata": {"datatype_id": "8f1f0c1e-5a8b-4d7e-9f7c-2e4b6d8a0c11", "datatype_name": "Temp\u00e9rature", "datatype_unit": "\u00b0C", "datatype_type": ["number"], "persist": [true]}}`,
		// Multi-value, older singular label.
		`{"request_id":"0d9b6a52-3f3c-4f7e-9a55-0f3f0b7c2a12","timestamp":"2025-06-08T18:27:17.476623","device_id":"2261001","values":[21.5,48.0,1013.25,3.61],"label":["temperature","humidity","pressure","battery"],"index":"M","metadata":{"datatype_unit":"°C","persist":[true,true,true,true]}}`,
		// Text parameters with offset.
		`{"request_id":"4bcf0f94-9a3e-4d0f-a0a3-62c1d1b0c7de","timestamp":"2025-06-25T08:57:34.618082+00:00","device_id":"282c02424eed","values":["5","120"],"labels":["measurement_period_base","transmission_interval"],"index":"P","metadata":{"datatype_name":"Paramètres Texte","datatype_unit":"%","persist":true}}`,
		// Alarm: booleans and an integer code.
		`{"request_id": "9a1e7c3b-2d4f-4e6a-8b0c-1f2e3d4c5b6a", "timestamp": "2025-06-24T21:37:35.033561+00:00", "device_id": "282c02424eed", "values": [true, false, 17], "labels": ["ok_alarm", "low_battery", "alarm_code"], "index": "OK_ALARM", "metadata": {"datatype_type": ["boolean", "boolean", "integer"], "persist": [true, true, true]}}`,
		// Nested configuration arrays.
		`{"request_id":"7c2e3d0a-1111-4b7a-8c55-2b0c6a9e0f42","timestamp":"2025-06-24T21:37:35.033561+00:00","device_id":"282c02424eed","values":[[{"channel_mask":1,"parameters":[300,20,1]}],[8,8,8,8]],"labels":["rules","led_config"],"index":"P_ARRAY","metadata":{"is_config_parameter":true,"config_hash":"a1b2c3"}}`,
		// Integer counters, no fraction in the timestamp.
		`{"request_id": "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9", "timestamp": "2025-06-08T18:27:17", "device_id": "2261002", "values": [1024, 3, 0], "labels": ["pulses", "resets", "errors"], "index": "I", "metadata": {"datatype_type": ["integer", "integer", "integer"], "persist": [true, false, true], "source_sn_hex": "0a1b2c"}}`,
		// Unit conversion reading with a non-finite value.
		`{"request_id": "6f7a8b9c-0d1e-4f2a-b3c4-d5e6f7a8b9c0", "timestamp": "2025-06-08T18:27:18.000125", "device_id": "2261003", "values": [NaN, 12.75], "labels": ["flow", "level"], "index": "U", "metadata": {"datatype_unit": "m", "persist": [true, true]}}`,
		// Single value without labels, compact.
		`{"request_id":"8b9c0d1e-2f3a-4b5c-d6e7-f8a9b0c1d2e3","timestamp":"2025-06-25T08:57:35.100000+00:00","device_id":"282c02424eef","values":[3.3],"index":"U","metadata":null}`,
	}
}

func benchMessages(corpus []string, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(corpus[i%len(corpus)])
	}
	return out
}

// cpuTime is the CPU time the process has used. The benchmarks report
// messages per CPU-second as well as per wall-clock second: on a shared
// machine wall time includes waiting for a core, CPU time is what a core
// really spends (GC included).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startPerMessage resets the timer and returns the CPU time at the start.
func startPerMessage(b *testing.B) time.Duration {
	b.ReportAllocs()
	b.ResetTimer()
	return cpuTime()
}

func reportPerMessage(b *testing.B, cpuStart time.Duration, msgs int) {
	cpu := cpuTime() - cpuStart
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(msgs), "ns/msg")
	b.ReportMetric(float64(msgs)/b.Elapsed().Seconds(), "msgs/s")
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(msgs), "cpu-ns/msg")
		b.ReportMetric(float64(msgs)/cpu.Seconds(), "msgs/cpu-s")
	}
}

// BenchmarkReadingToPointMapper measures the mapping alone, one message per op.
func BenchmarkReadingToPointMapper(b *testing.B) {
	benchMapping(b, "tags: {index: index, unit: metadata.datatype_unit}", benchMessages(benchCorpus(), 1024))
}

// benchMapping maps msgs in turn with the processor configured by conf, one message per op.
func benchMapping(b *testing.B, conf string, msgs [][]byte) {
	p := newTestReadingToPoint(b, conf)
	st := new(mapState)
	rec := recordMeta{timestampMs: 1749996800123, hasTimestampMs: true, key: "k", hasKey: true}
	out := make([]byte, 0, 4096)
	cpu := startPerMessage(b)
	for i := 0; i < b.N; i++ {
		out, _ = p.mapper.mapReading(st, msgs[i%len(msgs)], rec, out[:0], nil)
	}
	reportPerMessage(b, cpu, b.N)
}

// BenchmarkReadingToPointProcessBatch measures the processor as the engine
// runs it: batches of 100 messages carrying the kafka metadata, including
// building the messages (which the kafka input does anyway).
func BenchmarkReadingToPointProcessBatch(b *testing.B) {
	p := newTestReadingToPoint(b, "")
	msgs := benchMessages(benchCorpus(), 100)
	ctx := context.Background()
	cpu := startPerMessage(b)
	for i := 0; i < b.N; i++ {
		batch := make(service.MessageBatch, len(msgs))
		for j, m := range msgs {
			batch[j] = service.NewMessage(m)
			batch[j].MetaSetMut("kafka_key", "282c02424eed")
			batch[j].MetaSetMut("kafka_timestamp_ms", "1749996800123")
		}
		if _, err := p.ProcessBatch(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	reportPerMessage(b, cpu, b.N*len(msgs))
}

// BenchmarkBatchConstruction is the part of BenchmarkReadingToPointProcessBatch
// that is the engine's, not the processor's: building the messages and their
// kafka metadata. Subtract it to get the processor's own cost.
func BenchmarkBatchConstruction(b *testing.B) {
	msgs := benchMessages(benchCorpus(), 100)
	cpu := startPerMessage(b)
	for i := 0; i < b.N; i++ {
		batch := make(service.MessageBatch, len(msgs))
		for j, m := range msgs {
			batch[j] = service.NewMessage(m)
			batch[j].MetaSetMut("kafka_key", "282c02424eed")
			batch[j].MetaSetMut("kafka_timestamp_ms", "1749996800123")
		}
	}
	reportPerMessage(b, cpu, b.N*len(msgs))
}

// BenchmarkGabsMapping maps the same corpus the way gabs allows (numbers all
// float64, so integer fields are lost), to justify the choice of parser with
// figures. gabs cannot read the NaN token at all, so that reading is given to
// it with null instead.
func BenchmarkGabsMapping(b *testing.B) {
	corpus := benchCorpus()
	for i, s := range corpus {
		corpus[i] = strings.ReplaceAll(s, "NaN", "null")
	}
	msgs := benchMessages(corpus, 1024)
	out := make([]byte, 0, 4096)
	var text []byte
	cpu := startPerMessage(b)
	for i := 0; i < b.N; i++ {
		c, err := gabs.ParseJSON(msgs[i%len(msgs)])
		if err != nil {
			b.Fatal(err)
		}
		out = out[:0]
		device, _ := c.Path("device_id").Data().(string)
		out = lineprotocol.AppendMeasurement(out, device)
		labels := c.Path("labels")
		if labels == nil {
			labels = c.Path("label")
		}
		for j, v := range c.Path("values").Children() {
			if j == 0 {
				out = append(out, ' ')
			} else {
				out = append(out, ',')
			}
			name := valueName(j)
			if labels != nil {
				if l, ok := labels.Index(j).Data().(string); ok {
					name = l
				}
			}
			out = lineprotocol.AppendKey(out, name)
			out = append(out, '=')
			switch d := v.Data().(type) {
			case float64:
				out = lineprotocol.AppendFloat(out, d)
			case string:
				out = lineprotocol.AppendString(out, d)
			case bool:
				out = lineprotocol.AppendBool(out, d)
			case nil:
			default:
				text = append(text[:0], v.Bytes()...)
				out = lineprotocol.AppendString(out, string(text))
			}
		}
		if ts, ok := c.Path("timestamp").Data().(string); ok {
			ns, _ := parseISOTimestamp(ts)
			out = lineprotocol.AppendTimestamp(out, ns)
		}
	}
	reportPerMessage(b, cpu, b.N)
}

// generatedMessages is the stream the end-to-end harness and the demo send (internal/dev/readinggen,
// default options): the mapper's cost there, not on the hand-written corpus, is what the
// end-to-end figures depend on.
func generatedMessages(b *testing.B, n int) ([][]byte, int) {
	gen, err := readinggen.New(1, readinggen.DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	out := make([][]byte, n)
	size := 0
	for i := range out {
		out[i] = gen.Next().Value
		size += len(out[i])
	}
	return out, size / n
}

// BenchmarkReadingToPointMapperGenerated is BenchmarkReadingToPointMapper on the generator's
// stream with the default mapping, beside fastjson's parse of the same text alone
// (internal/pyjson's BenchmarkTokenCheck has the token check).
func BenchmarkReadingToPointMapperGenerated(b *testing.B) {
	msgs, mean := generatedMessages(b, 4096)
	b.Logf("%d messages, %d bytes on average", len(msgs), mean)
	b.Run("mapReading", func(b *testing.B) { benchMapping(b, "", msgs) })
	b.Run("parse", func(b *testing.B) {
		var p fastjson.Parser
		for i := 0; i < b.N; i++ {
			_, _ = p.ParseBytes(msgs[i%len(msgs)])
		}
	})
}

// hugeZerosReading is a reading of about size bytes whose values are all 0: the
// cheapest text per value, and so the most values a record of that size holds.
func hugeZerosReading(size int) []byte {
	const head, tail = `{"request_id":"huge-1","device_id":"d","timestamp":"2025-06-08T18:27:17","values":[`, `0]}`
	n := (size - len(head) - len(tail)) / 2
	return []byte(head + strings.Repeat("0,", n) + tail)
}

// BenchmarkReadingToPointHugeReading maps a 1 MB reading of {"values":[0,0,...]}
// (half a million values) through the processor, each op with a fresh processor
// so the parser's reused memory does not hide the cost: B/op is what one such
// reading costs the first time it arrives.
func BenchmarkReadingToPointHugeReading(b *testing.B) {
	in := hugeZerosReading(1 << 20)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		p := newTestReadingToPoint(b, "")
		msg := service.NewMessage(in)
		msg.MetaSetMut("kafka_timestamp_ms", "1749996800123")
		b.StartTimer()
		if _, err := p.ProcessBatch(context.Background(), service.MessageBatch{msg}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadingToPointHugeMetadata is BenchmarkReadingToPointHugeReading for
// a 1 MB reading of one value whose bulk is in metadata, or under an unknown
// key: B/op is what one such reading costs the first time it arrives.
func BenchmarkReadingToPointHugeMetadata(b *testing.B) {
	for _, where := range []string{"metadata", "unknown key", "persist"} {
		b.Run(strings.ReplaceAll(where, " ", "_"), func(b *testing.B) {
			in := hugeBulkReading(1<<20, where)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				p := newTestReadingToPoint(b, "")
				msg := service.NewMessage(in)
				b.StartTimer()
				if _, err := p.ProcessBatch(context.Background(), service.MessageBatch{msg}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
