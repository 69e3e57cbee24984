package processors

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// TestReadingToPointRules checks the mapping settings that replace Bloblang:
// static_tags, field_rename, field_include, field_exclude, field_tags, and a
// measurement that resolves nothing.
func TestReadingToPointRules(t *testing.T) {
	const ts = `"timestamp":"2025-06-08T18:27:17"`
	const tsNs = " 1749407237000000000"
	const reading = `{"request_id":"r","device_id":"d","values":[21.5,48,"1.2.3",-70,true],"labels":["temp","hum","firmware","rssi","debug_ok"],"index":"T","metadata":{"datatype_name":"Climat"},` + ts + `}`
	cases := []struct {
		name, conf, input string
		line, err         string
		dropped           bool
	}{
		{name: "static tags, sorted among path tags", conf: "static_tags: {site: paris, b: 'x y'}\ntags: {index: index}", input: reading,
			line: `d,b=x\ y,index=T,site=paris temp=21.5,hum=48i,firmware="1.2.3",rssi=-70i,debug_ok=true` + tsNs},
		{name: "rename labels and value_i", conf: "field_rename: {temp: temperature, value_1: second}", input: `{"device_id":"d","values":[1,2],"labels":["temp",null],` + ts + `}`,
			line: `d temperature=1i,second=2i` + tsNs},
		{name: "rename a reserved label", conf: "field_rename: {time: t}", input: `{"device_id":"d","values":[1],"labels":["time"],` + ts + `}`, line: `d t=1i` + tsNs},
		{name: "include", conf: "field_include: ['te*', hum]", input: reading, line: `d temp=21.5,hum=48i` + tsNs},
		{name: "exclude", conf: "field_exclude: ['debug_*', rssi]", input: reading, line: `d temp=21.5,hum=48i,firmware="1.2.3"` + tsNs},
		{name: "exclude wins over include", conf: "field_include: ['*']\nfield_exclude: ['[a-h]*']", input: reading, line: `d temp=21.5,rssi=-70i` + tsNs},
		{name: "patterns see the label before the rename", conf: "field_rename: {temp: temperature}\nfield_include: [temp]", input: reading, line: `d temperature=21.5` + tsNs},
		{name: "patterns see value_i for a value without label", conf: "field_include: ['value_[02]']", input: `{"device_id":"d","values":[0,1,2],` + ts + `}`, line: `d value_0=0i,value_2=2i` + tsNs},
		{name: "excluded values are not checked", conf: "field_exclude: [bad]", input: `{"device_id":"d","values":["x",1],"labels":["bad","ok"],"metadata":{"datatype_type":["integer"]},` + ts + `}`, line: `d ok=1i` + tsNs},
		{name: "field tags", conf: "field_tags: [firmware, debug_ok, rssi]", input: reading, line: `d,debug_ok=true,firmware=1.2.3,rssi=-70 temp=21.5,hum=48i` + tsNs},
		{name: "field tag key after rename", conf: "field_tags: [firmware]\nfield_rename: {firmware: fw}", input: reading, line: `d,fw=1.2.3 temp=21.5,hum=48i,rssi=-70i,debug_ok=true` + tsNs},
		{name: "field tag null, unpersisted or absent is left out", conf: "field_tags: [a, b, c]", input: `{"device_id":"d","values":[null,"x",1],"labels":["a","b","v"],"metadata":{"persist":[true,false,true]},` + ts + `}`, line: `d v=1i` + tsNs},
		{name: "field tag from nested value", conf: "field_tags: [cfg]", input: `{"device_id":"d","values":[[1,2],1],"labels":["cfg","v"],` + ts + `}`, line: `d,cfg=[1\,2] v=1i` + tsNs},
		{name: "only tags left: filtered", conf: "field_tags: [firmware]", input: `{"device_id":"d","values":["1.2.3"],"labels":["firmware"],` + ts + `}`, dropped: true},
		{name: "everything excluded: filtered", conf: "field_exclude: ['*']", input: reading, dropped: true},
		{name: "measurement from a path", conf: `measurement: '${! json("metadata.datatype_name") }'`, input: reading, line: `Climat temp=21.5,hum=48i,firmware="1.2.3",rssi=-70i,debug_ok=true` + tsNs},
		{name: "measurement resolves nothing", conf: `measurement: '${! json("metadata.datatype_unit") }'`, input: reading,
			err: "validation: measurement resolves nothing in this message (json path `metadata.datatype_unit`: value is null)"},
		{name: "measurement null in a second section", conf: `measurement: '${! json("index") }_${! json("metadata.nope") }'`, input: reading,
			err: "validation: measurement resolves nothing in this message (json path `metadata.nope`: value is null)"},
		{name: "measurement with a fallback", conf: `measurement: '${! json("metadata.datatype_unit").or("unitless") }-${! json("index") }'`, input: reading, line: `unitless-T temp=21.5,hum=48i,firmware="1.2.3",rssi=-70i,debug_ok=true` + tsNs},
		{name: "measurement with braces inside", conf: `measurement: '${! {"a": json("index")}.a }'`, input: reading, line: `T temp=21.5,hum=48i,firmware="1.2.3",rssi=-70i,debug_ok=true` + tsNs},
		{name: "measurement from metadata missing", conf: `measurement: '${! @site }'`, input: reading, err: "validation: measurement resolves nothing in this message (meta field site: value is null)"},
		{name: "measurement escaped section stays text", conf: `measurement: 'm_${{! x }}'`, input: reading, line: `m_${!\ x\ } temp=21.5,hum=48i,firmware="1.2.3",rssi=-70i,debug_ok=true` + tsNs},

		{name: "field tag label twice", conf: "field_tags: [a]", input: `{"device_id":"d","values":[1,2,3],"labels":["a","a","v"],` + ts + `}`, err: `validation: field name "a" (labels[1]) appears more than once in the message`},
		{name: "field tag value line protocol cannot carry", conf: "field_tags: [a]", input: `{"device_id":"d","values":["x\ny",1],"labels":["a","v"],` + ts + `}`, err: `validation: tag "a" from labels[0] "x\ny" contains a newline, which line protocol cannot carry in a name`},
		{name: "rename onto a label of the message", conf: "field_rename: {a: b}", input: `{"device_id":"d","values":[1,2],"labels":["a","b"],` + ts + `}`, err: `validation: field name "b" (labels[1]) appears more than once in the message`},
		{name: "label named as a static tag", conf: "static_tags: {site: paris}", input: `{"device_id":"d","values":[1],"labels":["site"],` + ts + `}`, err: `validation: field name "site" (labels[0]) is also a configured tag key`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newTestReadingToPoint(t, c.conf)
			r := runRTP(t, p, c.input, nil)
			if r.err != c.err || r.line != c.line || r.dropped != c.dropped {
				t.Errorf("got line %q, error %q, dropped %v\nwant line %q, error %q, dropped %v", r.line, r.err, r.dropped, c.line, c.err, c.dropped)
			}
			if r.line != "" {
				assertDecodesAsLineProtocol(t, r.line)
			}
		})
	}
}

func TestReadingToPointRulesConfigErrors(t *testing.T) {
	cases := []struct{ conf, err string }{
		{conf: "static_tags: {index: P}\ntags: {index: index}", err: `field static_tags: tag key "index" is also set by tags; keep one of them`},
		{conf: "static_tags: {_site: p}", err: `field static_tags: tag key "_site" is reserved by InfluxDB (time, or a leading _)`},
		{conf: "static_tags: {site: ''}", err: `field static_tags: tag "site" has an empty value, which InfluxDB does not store`},
		{conf: "static_tags: {site: \"a\\nb\"}", err: `field static_tags: tag "site" value "a\nb" contains a newline, which line protocol cannot carry in a name`},
		{conf: "field_rename: {a: time}", err: `field field_rename: "a" -> "time": the new name is reserved by InfluxDB (time, or a leading _)`},
		{conf: "field_rename: {a: x, b: x}", err: `field field_rename: "a" and "b" are both renamed to "x", which would make one field of two`},
		{conf: "field_rename: {a: ''}", err: `field field_rename: "a" -> "": both names must be non-empty`},
		{conf: "field_rename: {a: site}\nstatic_tags: {site: paris}", err: `field field_rename: "a" -> "site" collides with the tag key "site" set by static_tags`},
		{conf: "field_rename: {a: fw}\nfield_tags: [fw]", err: `field field_rename: "a" -> "fw" collides with the tag key "fw" set by field_tags`},
		{conf: "field_include: ['[a']", err: `field field_include: pattern "[a" is not a valid glob (* ? [...] \, as Go's path.Match): syntax error in pattern`},
		{conf: "field_exclude: ['']", err: `field field_exclude: a pattern is empty`},
		{conf: "field_tags: [fw]\nfield_exclude: ['f*']", err: `field field_tags: "fw" is excluded by the field_exclude pattern "f*", so it would never be stored`},
		{conf: "field_tags: [fw]\nfield_include: [temp]", err: `field field_tags: "fw" matches no pattern of field_include, so it would never be stored`},
		{conf: "field_tags: [fw, fw]", err: `field field_tags: "fw" is listed twice`},
		{conf: "field_tags: [index]\ntags: {index: index}", err: `field field_tags: tag key "index" (from the label "index") is also set by tags; keep one of them`},
		{conf: "field_tags: [fw]\nfield_rename: {fw: _fw}", err: `field field_rename: "fw" -> "_fw": the new name is reserved by InfluxDB (time, or a leading _)`},
		{conf: "field_tags: [time]", err: `field field_tags: tag key "time" (from the label "time") is reserved by InfluxDB (time, or a leading _)`},
		{conf: "max_fields: 0", err: `field max_fields: 0 must be at least 1`},
		{conf: "max_line_bytes: 10", err: `field max_line_bytes: 10 must be at least 64`},
	}
	for _, c := range cases {
		parsed, err := readingToPointSpec().ParseYAML(c.conf, nil)
		if err != nil {
			t.Fatalf("parse %q: %v", c.conf, err)
		}
		_, err = newReadingToPoint(parsed, service.MockResources())
		if err == nil || err.Error() != c.err {
			t.Errorf("config %q:\n got: %v\nwant: %s", c.conf, err, c.err)
		}
	}
}

func TestNullCheckedMeasurement(t *testing.T) {
	cases := map[string]string{
		`readings`:                         `readings`,
		`${! json("a") }`:                  `${! (json("a")).not_null() }`,
		`x_${!json("a")}_${! @k }`:         `x_${! (json("a")).not_null() }_${! (@k).not_null() }`,
		`${! {"a":{"b":1}}.a.b }`:          `${! ({"a":{"b":1}}.a.b).not_null() }`,
		`${! json("a").or("}") }`:          `${! (json("a").or("}")).not_null() }`,
		`$${{! literal }}$`:                `$${{! literal }}$`,
		`${! json("a") | json("b") } tail`: `${! (json("a") | json("b")).not_null() } tail`,
	}
	for in, want := range cases {
		got, err := nullCheckedMeasurement(in)
		if err != nil || got != want {
			t.Errorf("%s: got %q, %v; want %q", in, got, err, want)
		}
		if _, err := service.NewInterpolatedString(got); err != nil {
			t.Errorf("%s: the rewritten %q does not parse: %v", in, got, err)
		}
	}
}

// TestReadingToPointTagMissingMetric runs the processor in a stream: a tags
// path that resolves nothing is counted per tag in iot_tag_missing and logged
// once per tag.
func TestReadingToPointTagMissingMetric(t *testing.T) {
	exporter := &countingExporter{counts: map[string]int64{}}
	env := service.NewEnvironment()
	if err := env.RegisterMetricsExporter("rtp_counting", service.NewConfigSpec(),
		func(*service.ParsedConfig, *service.Logger) (service.MetricsExporter, error) { return exporter, nil }); err != nil {
		t.Fatal(err)
	}
	logs := &logRecorder{}
	sb := env.NewStreamBuilder()
	sb.SetLogger(slog.New(logs))
	if err := sb.SetMetricsYAML("rtp_counting: {}"); err != nil {
		t.Fatal(err)
	}
	produce, err := sb.AddBatchProducerFunc()
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.AddProcessorYAML("reading_to_point: {tags: {unit: metadata.datatype_unit, index: index}, static_tags: {site: paris}}"); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	if err := sb.AddConsumerFunc(func(_ context.Context, m *service.Message) error {
		b, _ := m.AsBytes()
		mu.Lock()
		defer mu.Unlock()
		got = append(got, string(b))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	stream, err := sb.Build()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- stream.Run(ctx) }()

	inputs := []string{
		`{"request_id":"m-1","device_id":"d","values":[1],"index":"T","timestamp":"2025-06-08T18:27:17"}`,
		`{"request_id":"m-2","device_id":"d","values":[2],"index":"","metadata":{"datatype_unit":null},"timestamp":"2025-06-08T18:27:18"}`,
		`{"request_id":"m-3","device_id":"d","values":[3],"index":"T","metadata":{"datatype_unit":"C"},"timestamp":"2025-06-08T18:27:19"}`,
		`{"request_id":"m-4","device_id":"d","values":[null],"timestamp":"2025-06-08T18:27:20"}`, // filtered: not counted
		`{"request_id":"m-5","device_id":"","values":[1],"timestamp":"2025-06-08T18:27:21"}`,     // rejected: not counted
	}
	for _, in := range inputs {
		if err := produce(ctx, service.MessageBatch{service.NewMessage([]byte(in))}); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	if err := stream.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	<-done

	want := []string{
		`d,index=T,site=paris value_0=1i 1749407237000000000`,
		`d,site=paris value_0=2i 1749407238000000000`,
		`d,index=T,site=paris,unit=C value_0=3i 1749407239000000000`,
		`{"request_id":"m-5","device_id":"","values":[1],"timestamp":"2025-06-08T18:27:21"}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stream output\n got: %q\nwant: %q", got, want)
	}
	for key, n := range map[string]int64{
		`iot_tag_missing{tag=unit}`:  2,
		`iot_tag_missing{tag=index}`: 1,
		`iot_tag_missing{tag=site}`:  0,
	} {
		if v := exporter.get(key); v != n {
			t.Errorf("metric %s = %d, want %d (all: %v)", key, v, n, exporter.counts)
		}
	}
	if l := logs.matching("WARN", `tag "unit"`, "metadata.datatype_unit", "request_id=m-1"); len(l) != 1 {
		t.Errorf("warning for unit: %q (all logs: %q)", l, logs.lines)
	}
	if l := logs.matching("WARN", `tag "index"`, "request_id=m-2"); len(l) != 1 {
		t.Errorf("warning for index: %q", l)
	}
	if l := logs.matching("WARN", "resolved nothing"); len(l) != 2 {
		t.Errorf("want one warning per tag, got %q", l)
	}
}
