package processors

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/Jeffail/gabs/v2"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/preservarium/iot-ingestor/internal/meta"
)

// rtpKafkaMs is the record time the tests' kafka metadata carries:
// 2025-06-15T14:13:20.123Z.
const rtpKafkaMs = "1749996800123"

// rtpResult is what the processor did with one message.
type rtpResult struct {
	line      string // content when mapped
	err       string // error text when rejected
	dropped   bool   // filtered out of the batch
	original  string // iot_original
	requestID string // iot_request_id
}

func newTestReadingToPoint(t testing.TB, conf string) *readingToPoint {
	t.Helper()
	parsed, err := readingToPointSpec().ParseYAML(conf, nil)
	if err != nil {
		t.Fatalf("parse config %q: %v", conf, err)
	}
	p, err := newReadingToPoint(parsed, service.MockResources())
	if err != nil {
		t.Fatalf("build processor from %q: %v", conf, err)
	}
	return p
}

// runRTP maps one message with the given kafka metadata (nil: the defaults).
func runRTP(t testing.TB, p *readingToPoint, input string, recMeta map[string]any) rtpResult {
	t.Helper()
	msg := service.NewMessage([]byte(input))
	if recMeta == nil {
		recMeta = map[string]any{"kafka_key": "dev-key", "kafka_timestamp_ms": rtpKafkaMs}
	}
	for k, v := range recMeta {
		msg.MetaSetMut(k, v)
	}
	batches, err := p.ProcessBatch(context.Background(), service.MessageBatch{msg})
	if err != nil {
		t.Fatalf("ProcessBatch returned an error for the whole batch: %v", err)
	}
	var r rtpResult
	orig, ok := msg.MetaGetMut(meta.Original)
	if !ok {
		t.Fatalf("iot_original not set for %q", input)
	}
	r.original = orig.(string)
	id, ok := msg.MetaGetMut(meta.RequestID)
	if !ok {
		t.Fatalf("iot_request_id not set for %q", input)
	}
	r.requestID = id.(string)
	if len(batches) == 0 || len(batches[0]) == 0 {
		r.dropped = true
		return r
	}
	if len(batches) != 1 || len(batches[0]) != 1 {
		t.Fatalf("expected one message back, got %d batches", len(batches))
	}
	out := batches[0][0]
	if e := out.GetError(); e != nil {
		r.err = e.Error()
		b, _ := out.AsBytes()
		if string(b) != input {
			t.Errorf("a rejected message must keep its content: got %q", b)
		}
		return r
	}
	b, _ := out.AsBytes()
	r.line = string(b)
	return r
}

func TestReadingToPointLines(t *testing.T) {
	const ts = `"timestamp":"2025-06-08T18:27:17.476623"`
	const tsNs = " 1749407237476623000"
	cases := []struct {
		name  string
		conf  string
		input string
		line  string
	}{
		// The three contract examples.
		{name: "contract text params", input: `{"request_id":"4bcf0f94-9a3e-4d0f-a0a3-62c1d1b0c7de","timestamp":"2025-06-25T08:57:34.618082+00:00","device_id":"282c02424eed","values":["5","120"],"labels":["measurement_period_base","transmission_interval"],"index":"P","metadata":{"datatype_name":"Paramètres Texte","datatype_unit":"%","persist":true}}`,
			line: `282c02424eed measurement_period_base=5,transmission_interval=120 1750841854618082000`},
		{name: "contract singular label", input: `{"request_id":"0d9b6a52-3f3c-4f7e-9a55-0f3f0b7c2a11","timestamp":"2025-06-08T18:27:17.476623","device_id":"2261001","values":[21.5,48.0],"label":["temperature","humidity"],"index":"T","metadata":{"datatype_id":"8f1f...","datatype_unit":"°C","persist":[true,true]}}`,
			line: `2261001 temperature=21.5,humidity=48 1749407237476623000`},
		{name: "contract nested config", input: `{"request_id":"7c2e3d0a-1111-4b7a-8c55-2b0c6a9e0f42","timestamp":"2025-06-24T21:37:35.033561+00:00","device_id":"282c02424eed","values":[[{"channel_mask":1,"parameters":[300,20,1]}],[8,8,8,8]],"labels":["rules","led_config"],"index":"P_ARRAY","metadata":{"is_config_parameter":true}}`,
			line: `282c02424eed rules="[{\"channel_mask\":1,\"parameters\":[300,20,1]}]",led_config="[8,8,8,8]" 1750801055033561000`},
		{name: "python json.dumps spacing and \\u escapes", input: `{"device_id": "2261001", "values": [21.5, 48.0], "labels": ["temp\u00e9rature", "hum"], "timestamp": "2025-06-08T18:27:17", "metadata": {"datatype_name": "Param\u00e8tres Texte"}}`,
			line: `2261001 température=21.5,hum=48 1749407237000000000`},

		// Labels.
		{name: "labels wins over label", input: `{"device_id":"d","values":[1],"labels":["new"],"label":["old"],` + ts + `}`, line: `d new=1i` + tsNs},
		{name: "null labels falls back to label", input: `{"device_id":"d","values":[1],"labels":null,"label":["old"],` + ts + `}`, line: `d old=1i` + tsNs},
		{name: "no labels", input: `{"device_id":"d","values":[1,2.5],` + ts + `}`, line: `d value_0=1i,value_1=2.5` + tsNs},
		{name: "null and empty label", input: `{"device_id":"d","values":[1,2,3],"labels":[null,"","c"],` + ts + `}`, line: `d value_0=1i,value_1=2i,c=3i` + tsNs},

		// persist.
		{name: "persist list", input: `{"device_id":"d","values":[1,2,3],"labels":["a","b","c"],"metadata":{"persist":[true,false,true]},` + ts + `}`, line: `d a=1i,c=3i` + tsNs},
		{name: "persist list shorter", input: `{"device_id":"d","values":[1,2,3],"metadata":{"persist":[false]},` + ts + `}`, line: `d value_1=2i,value_2=3i` + tsNs},
		{name: "persist list longer and null", input: `{"device_id":"d","values":[1,2],"metadata":{"persist":[null,true,false,false]},` + ts + `}`, line: `d value_0=1i,value_1=2i` + tsNs},
		{name: "persist true", input: `{"device_id":"d","values":[1],"metadata":{"persist":true},` + ts + `}`, line: `d value_0=1i` + tsNs},
		{name: "metadata null", input: `{"device_id":"d","values":[1],"metadata":null,` + ts + `}`, line: `d value_0=1i` + tsNs},

		// Number literals.
		{name: "integers and floats", input: `{"device_id":"d","values":[1,-5,0,-0,9223372036854775807,9223372036854775808,-9223372036854775809,1.0,1e3,2.5E-3,-0.0,1.5e300,1e-7],` + ts + `}`,
			line: `d value_0=1i,value_1=-5i,value_2=0i,value_3=0i,value_4=9223372036854775807i,value_5=9223372036854776000,value_6=-9223372036854776000,value_7=1,value_8=1000,value_9=0.0025,value_10=0,value_11=1.5e+300,value_12=1e-07` + tsNs},
		{name: "numbers float", conf: `numbers: float`, input: `{"device_id":"d","values":[1,2.5,"3"],"metadata":{"datatype_type":[null,null,"integer"]},` + ts + `}`, line: `d value_0=1,value_1=2.5,value_2=3` + tsNs},
		{name: "booleans", input: `{"device_id":"d","values":[true,false],` + ts + `}`, line: `d value_0=true,value_1=false` + tsNs},
		{name: "strings", input: `{"device_id":"d","values":[" 12.5 ","1e3","-.5","abc","NaN","inf","0x10","1_000","","+7","1.2.3"],` + ts + `}`,
			line: `d value_0=12.5,value_1=1000,value_2=-0.5,value_3="abc",value_4="NaN",value_5="inf",value_6="0x10",value_7="1_000",value_8="",value_9=7,value_10="1.2.3"` + tsNs},
		{name: "null values skipped", input: `{"device_id":"d","values":[null,1,null],` + ts + `}`, line: `d value_1=1i` + tsNs},

		// datatype_type.
		{name: "declared number", input: `{"device_id":"d","values":[21,"21.5",2.5],"metadata":{"datatype_type":["number","number","number"]},` + ts + `}`, line: `d value_0=21,value_1=21.5,value_2=2.5` + tsNs},
		{name: "declared integer", input: `{"device_id":"d","values":[21.0,"42"," 4.2e1 ",7,-3.0],"metadata":{"datatype_type":["integer","integer","integer","integer","integer"]},` + ts + `}`, line: `d value_0=21i,value_1=42i,value_2=42i,value_3=7i,value_4=-3i` + tsNs},
		{name: "declared boolean", input: `{"device_id":"d","values":[true,"TRUE","false",false],"metadata":{"datatype_type":["boolean","boolean","boolean","boolean"]},` + ts + `}`, line: `d value_0=true,value_1=true,value_2=false,value_3=false` + tsNs},
		{name: "declared string", input: `{"device_id":"d","values":[21.0,true,"12",[1,{"a":NaN}]],"metadata":{"datatype_type":["string","string","string","string"]},` + ts + `}`, line: `d value_0="21.0",value_1="true",value_2="12",value_3="[1,{\"a\":null}]"` + tsNs},
		{name: "datatype_type shorter and longer", input: `{"device_id":"d","values":["5",6],"metadata":{"datatype_type":["string"]},` + ts + `}`, line: `d value_0="5",value_1=6i` + tsNs},
		{name: "datatype_type longer and null", input: `{"device_id":"d","values":["5"],"metadata":{"datatype_type":[null,"integer","bogus"]},` + ts + `}`, line: `d value_0=5` + tsNs},

		// Escaping.
		{name: "measurement escaping", input: `{"device_id":"a b,c=d\"e","values":[1],` + ts + `}`, line: `a\ b\,c=d"e value_0=1i` + tsNs},
		{name: "field key escaping", input: `{"device_id":"d","values":[1],"labels":["x y,z=w\"q"],` + ts + `}`, line: `d x\ y\,z\=w"q=1i` + tsNs},
		{name: "string value escaping", input: `{"device_id":"d","values":["he said \"hi\" \\ C:\\temp\nnext\rline\ttab","°C é 日本"],` + ts + `}`,
			line: `d value_0="he said \"hi\" \\ C:\\temp\nnext\rline` + "\t" + `tab",value_1="°C é 日本"` + tsNs},
		{name: "backslash before ordinary char in name", input: `{"device_id":"C:\\dev","values":[1],"labels":["a\\b"],` + ts + `}`, line: `C:\dev a\b=1i` + tsNs},
		{name: "non-ascii names", input: `{"device_id":"capteur-é","values":[1],"labels":["température °C"],` + ts + `}`, line: `capteur-é température\ °C=1i` + tsNs},
		{name: "lone surrogate escapes become U+FFFD", input: `{"device_id":"d","values":["\ud800\u00e9","\udc00x","a\\ud800","\uD83D\uDE00\ud83d"],` + ts + `}`,
			line: `d value_0="` + "\uFFFD" + `é",value_1="` + "\uFFFD" + `x",value_2="a\\ud800",value_3="😀` + "\uFFFD" + `"` + tsNs},
		{name: "surrogate pair escape", input: `{"device_id":"d","values":["\ud83d\ude00"],` + ts + `}`, line: `d value_0="😀"` + tsNs},

		// Non-finite tokens.
		{name: "python non-finite tokens skipped", input: `{"device_id": "d", "values": [NaN, 1.5, -Infinity, Infinity], "labels": ["a", "b", "c", "e"], ` + ts + `}`, line: `d b=1.5` + tsNs},
		{name: "non-finite in nested value", input: `{"device_id":"d","values":[[NaN,Infinity,-Infinity,1]],` + ts + `}`, line: `d value_0="[null,null,null,1]"` + tsNs},
		{name: "token text inside strings untouched", input: `{"device_id":"NaN Infinity","values":["-Infinity"],` + ts + `}`, line: `NaN\ Infinity value_0="-Infinity"` + tsNs},
		{name: "float overflow is non-finite", input: `{"device_id":"d","values":[1e400,2],` + ts + `}`, line: `d value_1=2i` + tsNs},

		// Nested values.
		{name: "nested keys re-escaped", input: `{"device_id":"d","values":[{"k\"1":"v\\\n","n":null,"b":[true,false]}],` + ts + `}`, line: `d value_0="{\"k\\\"1\":\"v\\\\\\n\",\"n\":null,\"b\":[true,false]}"` + tsNs},
		{name: "nested drop", conf: `nested_values: drop`, input: `{"device_id":"d","values":[[1],2,{"a":1}],` + ts + `}`, line: `d value_1=2i` + tsNs},

		// Timestamps.
		{name: "timestamp with offset", input: `{"device_id":"d","values":[1],"timestamp":"2025-06-24T23:37:35.033561+02:00"}`, line: `d value_0=1i 1750801055033561000`},
		{name: "timestamp negative offset", input: `{"device_id":"d","values":[1],"timestamp":"2025-06-24T16:37:35.033561-05:00"}`, line: `d value_0=1i 1750801055033561000`},
		{name: "timestamp Z and millis", input: `{"device_id":"d","values":[1],"timestamp":"2025-06-24T21:37:35.033Z"}`, line: `d value_0=1i 1750801055033000000`},
		{name: "timestamp nanos truncated to us", input: `{"device_id":"d","values":[1],"timestamp":"2025-06-24T21:37:35.123456789"}`, line: `d value_0=1i 1750801055123456000`},
		{name: "precision ns", conf: `precision: ns`, input: `{"device_id":"d","values":[1],"timestamp":"2025-06-24T21:37:35.123456789"}`, line: `d value_0=1i 1750801055123456789`},
		{name: "precision ms", conf: `precision: ms`, input: `{"device_id":"d","values":[1],"timestamp":"2025-06-24T21:37:35.123456789"}`, line: `d value_0=1i 1750801055123000000`},
		{name: "precision s", conf: `precision: s`, input: `{"device_id":"d","values":[1],"timestamp":"2025-06-24T21:37:35.999999"}`, line: `d value_0=1i 1750801055000000000`},
		{name: "precision s before 1970 floors", conf: `precision: s`, input: `{"device_id":"d","values":[1],"timestamp":"1969-12-31T23:59:59.5"}`, line: `d value_0=1i -1000000000`},
		{name: "space separator and offset with seconds", input: `{"device_id":"d","values":[1],"timestamp":"2025-06-24 21:37:35+00:00:00"}`, line: `d value_0=1i 1750801055000000000`},
		{name: "leap day", input: `{"device_id":"d","values":[1],"timestamp":"2024-02-29T00:00:00"}`, line: `d value_0=1i 1709164800000000000`},
		{name: "missing timestamp uses kafka time", input: `{"device_id":"d","values":[1]}`, line: `d value_0=1i 1749996800123000000`},
		{name: "null timestamp uses kafka time", input: `{"device_id":"d","values":[1],"timestamp":null}`, line: `d value_0=1i 1749996800123000000`},
		{name: "empty timestamp uses kafka time", conf: `precision: s`, input: `{"device_id":"d","values":[1],"timestamp":""}`, line: `d value_0=1i 1749996800000000000`},
		{name: "time_source kafka", conf: `time_source: kafka`, input: `{"device_id":"d","values":[1],` + ts + `}`, line: `d value_0=1i 1749996800123000000`},

		// Tags.
		{name: "tags", conf: "tags: {index: index, datatype: metadata.datatype_name, unit: metadata.datatype_unit}", input: `{"device_id":"282c02424eed","values":["5"],"labels":["p"],"index":"P","metadata":{"datatype_name":"Paramètres Texte, v=2","datatype_unit":"%"},` + ts + `}`,
			line: `282c02424eed,datatype=Paramètres\ Texte\,\ v\=2,index=P,unit=% p=5` + tsNs},
		{name: "empty and missing tags omitted", conf: "tags: {index: index, unit: metadata.datatype_unit, n: metadata.n}", input: `{"device_id":"d","values":[1],"index":"","metadata":{"datatype_unit":null,"n":3},` + ts + `}`, line: `d,n=3 value_0=1i` + tsNs},
		{name: "tag from array index and bool", conf: "tags: {first: labels.0, flag: metadata.is_config_parameter}", input: `{"device_id":"d","values":[1],"labels":["a"],"metadata":{"is_config_parameter":true},` + ts + `}`, line: `d,first=a,flag=true a=1i` + tsNs},

		// Reserved keys renamed.
		{name: "reserved renamed", conf: "reserved_keys: rename", input: `{"device_id":"d","values":[1,2],"labels":["time","_x"],` + ts + `}`, line: `d x_time=1i,x__x=2i` + tsNs},
		{name: "reserved renamed with prefix", conf: "reserved_keys: rename\nreserved_key_prefix: f_", input: `{"device_id":"d","values":[1],"labels":["time"],` + ts + `}`, line: `d f_time=1i` + tsNs},
		{name: "reserved but not stored", input: `{"device_id":"d","values":[null,1],"labels":["time","ok"],` + ts + `}`, line: `d ok=1i` + tsNs},

		// Duplicate keys in the JSON: the last one wins, as in Python.
		{name: "many distinct fields", input: `{"device_id":"d","values":[` + strings.Repeat("1,", 19) + `2],` + ts + `}`, line: `d ` + manyFields(20) + tsNs},
		{name: "duplicate json keys", input: `{"device_id":"first","device_id":"second","values":[1],` + ts + `}`, line: `second value_0=1i` + tsNs},
		{name: "duplicate metadata keys", input: `{"device_id":"d","values":[1,2],"metadata":{"persist":[true,true],"datatype_type":["string","string"],"persist":[false,true],"datatype_type":["integer","number"]},` + ts + `}`, line: `d value_1=2` + tsNs},

		// Custom measurement.
		{name: "interpolated measurement", conf: `measurement: '${! json("metadata.datatype_name") }'`, input: `{"device_id":"d","values":[1, NaN],"metadata":{"datatype_name":"Temp C"},` + ts + `}`, line: `Temp\ C value_0=1i` + tsNs},
		{name: "static measurement", conf: `measurement: readings`, input: `{"device_id":"d","values":[1],` + ts + `}`, line: `readings value_0=1i` + tsNs},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newTestReadingToPoint(t, c.conf)
			r := runRTP(t, p, c.input, nil)
			if r.err != "" || r.dropped {
				t.Fatalf("expected a line, got error %q (dropped %v)", r.err, r.dropped)
			}
			if r.line != c.line {
				t.Errorf("line\n got: %s\nwant: %s", r.line, c.line)
			}
			assertDecodesAsLineProtocol(t, r.line)
			if !json.Valid([]byte(r.original)) {
				t.Errorf("iot_original is not valid JSON: %s", r.original)
			}
		})
	}
}

// manyFields is value_0=1i,...,value_{n-1}=2i: n values, the last one 2.
func manyFields(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(valueName(i))
		if i == n-1 {
			b.WriteString("=2i")
		} else {
			b.WriteString("=1i")
		}
	}
	return b.String()
}

func TestReadingToPointErrors(t *testing.T) {
	const ts = `"timestamp":"2025-06-08T18:27:17.476623"`
	cases := []struct {
		name  string
		conf  string
		input string
		meta  map[string]any
		err   string
	}{
		{name: "not json", input: `nope`, err: `decode: message is not JSON: cannot parse JSON: unexpected value found: "nope"; unparsed tail: "nope"`},
		{name: "empty input", input: ``, err: `decode: message is not JSON: cannot parse JSON: cannot parse empty string; unparsed tail: ""`},
		{name: "truncated", input: `{"device_id":"d","values":[1`, err: `decode: message is not JSON: cannot parse JSON: cannot parse object: cannot parse object value: cannot parse array: unexpected end of array; unparsed tail: ""`},
		{name: "array", input: `[1,2]`, err: `decode: message is a JSON array, expected an object`},
		{name: "string", input: `"x"`, err: `decode: message is a JSON string, expected an object`},
		{name: "boolean", input: ` true `, err: `decode: message is a JSON boolean, expected an object`},
		{name: "null", input: `null`, err: `decode: message is a JSON null, expected an object`},
		{name: "python token alone", input: `NaN`, err: `decode: message is a JSON number, expected an object`},
		{name: "lowercase nan is not python", input: `{"device_id":"d","values":[nan]}`, err: `decode: message is not JSON: cannot parse JSON: cannot parse object: cannot parse object value: cannot parse array: cannot parse array value: unexpected value found: "nan]}"; unparsed tail: "nan]}"`},
		{name: "control char before an escape", input: "{\"device_id\":\"d\x17\\n\",\"values\":[1]}", err: `decode: message is not JSON: string cannot contain control char 0x17`},
		{name: "control char before an escape, with a Python token", input: "{\"device_id\":\"d\",\"values\":[NaN,1],\"x\x01\\n\":1}", err: `decode: message is not JSON: string cannot contain control char 0x01`},
		{name: "glued token", input: `{"device_id":"d","values":[1NaN]}`, err: `decode: message is not JSON: cannot parse JSON: cannot parse object: cannot parse object value: cannot parse array: missing ',' after array value; unparsed tail: "NaN]}"`},
		{name: "too deep", input: `{"device_id":"d","values":[` + strings.Repeat("[", 1<<20) + strings.Repeat("]", 1<<20) + `]}`, err: `decode: message nests arrays and objects deeper than 300 levels`},
		{name: "deep and invalid keeps the reason short", input: `{"values":` + strings.Repeat("[", 250) + `x` + strings.Repeat("]", 250) + `}`, err: `decode: message is not JSON: … parse array value: ` + strings.Repeat("cannot parse array: cannot parse array value: ", 5) + `cannot parse number: expecting 0..9 digit, got x; unparsed tail: "x]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]...]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"`},
		{name: "invalid utf-8", input: "{\"device_id\":\"d\xff\",\"values\":[1]}", err: `decode: message is not valid UTF-8 text`},

		{name: "device_id missing", input: `{"values":[1],` + ts + `}`, err: `validation: device_id is missing`},
		{name: "device_id empty", input: `{"device_id":"","values":[1],` + ts + `}`, err: `validation: device_id is empty`},
		{name: "device_id number", input: `{"device_id":2261001,"values":[1],` + ts + `}`, err: `validation: device_id is the number "2261001", expected a non-empty string`},
		{name: "device_id null", input: `{"device_id":null,"values":[1],` + ts + `}`, err: `validation: device_id is null, expected a non-empty string`},
		{name: "device_id newline", input: `{"device_id":"a\nb","values":[1],` + ts + `}`, err: `validation: device_id "a\nb" contains a newline, which line protocol cannot carry in a name`},
		{name: "device_id trailing backslash", input: `{"device_id":"a\\","values":[1],` + ts + `}`, err: `validation: device_id "a\\" ends with a backslash, which InfluxDB would read as an escape`},
		{name: "device_id backslash before comma", input: `{"device_id":"a\\,b","values":[1],` + ts + `}`, err: `validation: device_id "a\\,b" contains a backslash before ',', which InfluxDB parsers read differently`},
		{name: "device_id comment", input: `{"device_id":"#d","values":[1],` + ts + `}`, err: `validation: device_id "#d" starts with '#', which line protocol reads as a comment line`},
		{name: "values missing", input: `{"device_id":"d",` + ts + `}`, err: `validation: values is missing`},
		{name: "values not array", input: `{"device_id":"d","values":"1",` + ts + `}`, err: `validation: values is the string "1", expected an array`},
		{name: "labels length", input: `{"device_id":"d","values":[1.0,2.0,3.0],"labels":["a","b"],` + ts + `}`, err: `validation: labels has 2 entries, values has 3`},
		{name: "label length", input: `{"device_id":"d","values":[1.0],"label":["a","b"],` + ts + `}`, err: `validation: label has 2 entries, values has 1`},
		{name: "labels not array", input: `{"device_id":"d","values":[1],"labels":"a",` + ts + `}`, err: `validation: labels is the string "a", expected an array of strings or null`},
		{name: "label entry not string", input: `{"device_id":"d","values":[1],"labels":[5],` + ts + `}`, err: `validation: labels[0] is the number "5", expected a string or null`},
		{name: "duplicate labels", input: `{"device_id":"d","values":[1,2],"labels":["a","a"],` + ts + `}`, err: `validation: field name "a" (labels[1]) appears more than once in the message`},
		{name: "duplicate among many labels", input: `{"device_id":"d","values":[` + strings.Repeat("1,", 40) + `1],"labels":[` + strings.Repeat("null,", 39) + `"value_3",null],` + ts + `}`, err: `validation: field name "value_3" (labels[39]) appears more than once in the message`},
		{name: "label collides with value_i", input: `{"device_id":"d","values":[1,2],"labels":["value_1",null],` + ts + `}`, err: `validation: field name "value_1" (values[1]) appears more than once in the message`},
		{name: "label newline", input: `{"device_id":"d","values":[1],"labels":["a\nb"],` + ts + `}`, err: `validation: field name "a\nb" (labels[0]) contains a newline, which line protocol cannot carry in a name`},
		{name: "label tab", input: `{"device_id":"d","values":[1],"labels":["a\tb"],` + ts + `}`, err: `validation: field name "a\tb" (labels[0]) contains the control character '\t', which line protocol cannot carry in a name`},
		{name: "reserved time", input: `{"device_id":"d","values":[1],"labels":["time"],` + ts + `}`, err: `validation: field name "time" (labels[0]) is a key InfluxDB reserves; rename it upstream or set reserved_keys: rename to store it as "x_time"`},
		{name: "reserved underscore", input: `{"device_id":"d","values":[1],"labels":["_field"],` + ts + `}`, err: `validation: field name "_field" (labels[0]) is a key InfluxDB reserves; rename it upstream or set reserved_keys: rename to store it as "x__field"`},
		{name: "field equals tag key", conf: "tags: {index: index}", input: `{"device_id":"d","values":[1],"labels":["index"],"index":"P",` + ts + `}`, err: `validation: field name "index" (labels[0]) is also a configured tag key`},
		{name: "metadata not object", input: `{"device_id":"d","values":[1],"metadata":"x",` + ts + `}`, err: `validation: metadata is the string "x", expected an object or null`},
		{name: "persist not bool", input: `{"device_id":"d","values":[1],"metadata":{"persist":"yes"},` + ts + `}`, err: `validation: metadata.persist is the string "yes", expected a boolean or a list of booleans`},
		{name: "persist entry not bool", input: `{"device_id":"d","values":[1],"metadata":{"persist":[1]},` + ts + `}`, err: `validation: metadata.persist[0] is the number "1", expected a boolean`},
		{name: "datatype_type not list", input: `{"device_id":"d","values":[1],"metadata":{"datatype_type":"number"},` + ts + `}`, err: `validation: metadata.datatype_type is the string "number", expected a list of number, integer, boolean or string`},
		{name: "datatype_type unknown", input: `{"device_id":"d","values":[1],"metadata":{"datatype_type":["float"]},` + ts + `}`, err: `validation: metadata.datatype_type[0] is the string "float", expected number, integer, boolean or string`},
		{name: "integer from fraction", input: `{"device_id":"d","values":[21.5],"metadata":{"datatype_type":["integer"]},` + ts + `}`, err: `validation: values[0] is the number "21.5", which cannot be stored as integer as metadata.datatype_type[0] declares`},
		{name: "integer from text", input: `{"device_id":"d","values":["abc"],"metadata":{"datatype_type":["integer"]},` + ts + `}`, err: `validation: values[0] is the string "abc", which cannot be stored as integer as metadata.datatype_type[0] declares`},
		{name: "integer out of range", input: `{"device_id":"d","values":[1e19],"metadata":{"datatype_type":["integer"]},` + ts + `}`, err: `validation: values[0] is the number "1e19", which cannot be stored as integer as metadata.datatype_type[0] declares`},
		{name: "integer literal out of range", input: `{"device_id":"d","values":[9223372036854775808],"metadata":{"datatype_type":["integer"]},` + ts + `}`, err: `validation: values[0] is the number "9223372036854775808", which cannot be stored as integer as metadata.datatype_type[0] declares`},
		{name: "number from text", input: `{"device_id":"d","values":["abc"],"metadata":{"datatype_type":["number"]},` + ts + `}`, err: `validation: values[0] is the string "abc", which cannot be stored as number as metadata.datatype_type[0] declares`},
		{name: "number from bool", input: `{"device_id":"d","values":[true],"metadata":{"datatype_type":["number"]},` + ts + `}`, err: `validation: values[0] is a boolean, which cannot be stored as number as metadata.datatype_type[0] declares`},
		{name: "boolean from number", input: `{"device_id":"d","values":[1],"metadata":{"datatype_type":["boolean"]},` + ts + `}`, err: `validation: values[0] is the number "1", which cannot be stored as boolean as metadata.datatype_type[0] declares`},
		{name: "boolean from text", input: `{"device_id":"d","values":["yes"],"metadata":{"datatype_type":["boolean"]},` + ts + `}`, err: `validation: values[0] is the string "yes", which cannot be stored as boolean as metadata.datatype_type[0] declares`},
		{name: "number from nested", input: `{"device_id":"d","values":[[1]],"metadata":{"datatype_type":["number"]},` + ts + `}`, err: `validation: values[0] is an array, which cannot be stored as number as metadata.datatype_type[0] declares`},
		{name: "timestamp garbage", input: `{"device_id":"d","values":[1],"timestamp":"yesterday"}`, err: `validation: timestamp "yesterday" is not an ISO-8601 date-time like 2025-06-24T21:37:35.033561+00:00`},
		{name: "timestamp bad day", input: `{"device_id":"d","values":[1],"timestamp":"2025-02-29T00:00:00"}`, err: `validation: timestamp "2025-02-29T00:00:00" has a date or time field out of range (or lies outside 1678-2262)`},
		{name: "timestamp bad offset", input: `{"device_id":"d","values":[1],"timestamp":"2025-02-28T00:00:00+25:00"}`, err: `validation: timestamp "2025-02-28T00:00:00+25:00" has an offset that is not ±HH:MM, ±HHMM or ±HH:MM:SS`},
		{name: "timestamp long fraction", input: `{"device_id":"d","values":[1],"timestamp":"2025-02-28T00:00:00.1234567891"}`, err: `validation: timestamp "2025-02-28T00:00:00.1234567891" has a fraction that is not 1 to 9 digits`},
		{name: "timestamp out of range", input: `{"device_id":"d","values":[1],"timestamp":"2300-01-01T00:00:00"}`, err: `validation: timestamp "2300-01-01T00:00:00" has a date or time field out of range (or lies outside 1678-2262)`},
		{name: "timestamp number", input: `{"device_id":"d","values":[1],"timestamp":1750801055}`, err: `validation: timestamp is the number "1750801055", expected an ISO-8601 string`},
		{name: "no time at all", input: `{"device_id":"d","values":[1]}`, meta: map[string]any{}, err: `validation: timestamp is missing or empty and the record has no kafka_timestamp_ms to fall back on`},
		{name: "kafka time missing", conf: "time_source: kafka", input: `{"device_id":"d","values":[1],` + ts + `}`, meta: map[string]any{}, err: `validation: time_source is kafka but the record has no kafka_timestamp_ms`},
		{name: "tag newline", conf: "tags: {unit: metadata.datatype_unit}", input: `{"device_id":"d","values":[1],"metadata":{"datatype_unit":"a\nb"},` + ts + `}`, err: `validation: tag "unit" from metadata.datatype_unit "a\nb" contains a newline, which line protocol cannot carry in a name`},
		{name: "string too long", input: `{"device_id":"d","values":["` + strings.Repeat("x", 65537) + `"],` + ts + `}`, err: `validation: values[0] is a string of 65537 bytes, InfluxDB stores at most 65536`},
		{name: "measurement empty", conf: `measurement: '${! json("nothing").or("") }'`, input: `{"device_id":"d","values":[1],` + ts + `}`, err: `validation: measurement "" is empty`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newTestReadingToPoint(t, c.conf)
			r := runRTP(t, p, c.input, c.meta)
			if r.err != c.err {
				t.Errorf("error\n got: %s\nwant: %s", r.err, c.err)
			}
			if strings.ContainsAny(r.err, "\r\n") {
				t.Errorf("error text spans lines: %q", r.err)
			}
			if !json.Valid([]byte(r.original)) {
				t.Errorf("iot_original is not valid JSON: %s", r.original)
			}
		})
	}
}

func TestReadingToPointOriginalAndRequestID(t *testing.T) {
	cases := []struct {
		name      string
		input     string
		meta      map[string]any
		original  string
		requestID string
		dropped   bool
	}{
		{name: "valid object kept byte for byte", input: `{"request_id": "r-1", "device_id": "d", "values": [1.0]}`, original: `{"request_id": "r-1", "device_id": "d", "values": [1.0]}`, requestID: "r-1"},
		{name: "python tokens become null", input: `{"request_id": "r-2", "device_id": "d", "values": [NaN, -Infinity, Infinity, 2.0], "labels": ["NaN", "x", "y", "z"]}`,
			original: `{"request_id": "r-2", "device_id": "d", "values": [null, null, null, 2.0], "labels": ["NaN", "x", "y", "z"]}`, requestID: "r-2"},
		{name: "not an object", input: `[1, "a\"b"]`, original: `{"raw":"[1, \"a\\\"b\"]"}`, requestID: "dev-key"},
		{name: "not json at all", input: "line\nbreak\x01", original: `{"raw":"line\nbreak\u0001"}`, requestID: "dev-key"},
		{name: "invalid utf-8 replaced", input: "{\"device_id\":\"\xff\xfe\"}", original: `{"raw":"{\"device_id\":\"` + "\uFFFD\uFFFD" + `\"}"}`, requestID: "dev-key"},
		{name: "empty request_id uses key", input: `{"request_id":"","device_id":"d","values":[1]}`, original: `{"request_id":"","device_id":"d","values":[1]}`, requestID: "dev-key"},
		{name: "non-string request_id uses key", input: `{"request_id":5,"device_id":"d","values":[1]}`, original: `{"request_id":5,"device_id":"d","values":[1]}`, requestID: "dev-key"},
		{name: "invalid utf-8 key replaced", input: `{"device_id":"d","values":[1]}`, meta: map[string]any{"kafka_key": "k\xff", "kafka_timestamp_ms": rtpKafkaMs}, original: `{"device_id":"d","values":[1]}`, requestID: "k\uFFFD"},
		{name: "no key, no request_id", input: `{"device_id":"d","values":[1]}`, meta: map[string]any{"kafka_timestamp_ms": int64(1)}, original: `{"device_id":"d","values":[1]}`, requestID: ""},
		{name: "filtered still gets metadata", input: `{"request_id":"r-3","device_id":"d","values":[NaN, null],"metadata":{"persist":[true,true]}}`, original: `{"request_id":"r-3","device_id":"d","values":[null, null],"metadata":{"persist":[true,true]}}`, requestID: "r-3", dropped: true},
		{name: "unpersisted filtered", input: `{"request_id":"r-4","device_id":"d","values":[1],"metadata":{"persist":false}}`, original: `{"request_id":"r-4","device_id":"d","values":[1],"metadata":{"persist":false}}`, requestID: "r-4", dropped: true},
		{name: "empty values filtered", input: `{"request_id":"r-5","device_id":"d","values":[]}`, original: `{"request_id":"r-5","device_id":"d","values":[]}`, requestID: "r-5", dropped: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newTestReadingToPoint(t, "")
			r := runRTP(t, p, c.input, c.meta)
			if r.original != c.original {
				t.Errorf("iot_original\n got: %s\nwant: %s", r.original, c.original)
			}
			if r.requestID != c.requestID {
				t.Errorf("iot_request_id got %q, want %q", r.requestID, c.requestID)
			}
			if r.dropped != c.dropped {
				t.Errorf("dropped = %v, want %v (error %q, line %q)", r.dropped, c.dropped, r.err, r.line)
			}
			// The error branch parses it with the engine's JSON parser (gabs).
			if _, err := gabs.ParseJSON([]byte(r.original)); err != nil {
				t.Errorf("iot_original does not parse with gabs: %v", err)
			}
		})
	}
}

// TestReadingToPointBatch checks a mixed batch: order kept, filtered messages
// removed, errors marked in place, metadata set on each, lines not sharing
// capacity (so a later processor appending to one cannot corrupt the next).
func TestReadingToPointBatch(t *testing.T) {
	p := newTestReadingToPoint(t, "")
	inputs := []string{
		`{"request_id":"a","device_id":"d1","values":[1],"timestamp":"2025-06-08T18:27:17"}`,
		`{"request_id":"b","device_id":"d2","values":[null],"timestamp":"2025-06-08T18:27:17"}`,
		`not json`,
		`{"request_id":"c","device_id":"d3","values":[2.5],"timestamp":"2025-06-08T18:27:17"}`,
	}
	var batch service.MessageBatch
	for _, in := range inputs {
		m := service.NewMessage([]byte(in))
		m.MetaSetMut("kafka_key", "k")
		batch = append(batch, m)
	}
	out, err := p.ProcessBatch(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || len(out[0]) != 3 {
		t.Fatalf("want one batch of 3 messages (one filtered), got %v", out)
	}
	want := []string{`d1 value_0=1i 1749407237000000000`, `not json`, `d3 value_0=2.5 1749407237000000000`}
	for i, m := range out[0] {
		b, _ := m.AsBytes()
		if string(b) != want[i] {
			t.Errorf("message %d: got %q, want %q", i, b, want[i])
		}
		if (i == 1) != (m.GetError() != nil) {
			t.Errorf("message %d: error %v", i, m.GetError())
		}
		if i != 1 && cap(b) != len(b) {
			t.Errorf("message %d: line has spare capacity %d, appending to it would overwrite the next line", i, cap(b)-len(b))
		}
	}
	if id, _ := out[0][2].MetaGet(meta.RequestID); id != "c" {
		t.Errorf("request id of the last message: %q", id)
	}
	if orig, _ := out[0][1].MetaGet(meta.Original); orig != `{"raw":"not json"}` {
		t.Errorf("original of the rejected message: %q", orig)
	}

	// A batch whose messages are all filtered returns no batch: acknowledged.
	m := service.NewMessage([]byte(`{"device_id":"d","values":[NaN],"timestamp":"2025-06-08T18:27:17"}`))
	first := out[0]
	out, err = p.ProcessBatch(context.Background(), service.MessageBatch{m})
	if err != nil || len(out) != 0 {
		t.Fatalf("all-filtered batch: got %v, %v; want no batch", out, err)
	}

	// The buffers a batch is built in are reused by the next ones: what an earlier batch
	// handed on must not change.
	for i := 0; i < 3; i++ {
		next := service.MessageBatch{
			service.NewMessage([]byte(`{"request_id":"zzzzzzzz","device_id":"other","values":["text that is long"],"timestamp":"2025-06-08T18:27:18"}`)),
			service.NewMessage([]byte(`[1, 2, 3, 4, 5, 6, 7, 8, 9]`)),
		}
		if _, err := p.ProcessBatch(context.Background(), next); err != nil {
			t.Fatal(err)
		}
	}
	for i, m := range first {
		if b, _ := m.AsBytes(); string(b) != want[i] {
			t.Errorf("after later batches, message %d is %q, want %q", i, b, want[i])
		}
	}
	if id, _ := first[0].MetaGet(meta.RequestID); id != "a" {
		t.Errorf("after later batches, request id of the first message: %q", id)
	}
	if orig, _ := first[1].MetaGet(meta.Original); orig != `{"raw":"not json"}` {
		t.Errorf("after later batches, original of the rejected message: %q", orig)
	}
}

func TestReadingToPointConfigErrors(t *testing.T) {
	cases := []struct {
		conf string
		err  string
	}{
		{conf: "tags: {time: index}", err: `field tags: tag key "time" is reserved by InfluxDB (time, or a leading _)`},
		{conf: "tags: {_x: index}", err: `field tags: tag key "_x" is reserved by InfluxDB (time, or a leading _)`},
		{conf: "tags: {\"a\\nb\": index}", err: `field tags: tag key "a\nb" contains a newline, which line protocol cannot carry in a name`},
		{conf: "tags: {a: ''}", err: `field tags: tag "a" has an empty path`},
		{conf: "tags: {a: 'metadata..x'}", err: `field tags: tag "a" has the path "metadata..x" with an empty segment`},
		{conf: "reserved_keys: rename\nreserved_key_prefix: _p", err: `field reserved_key_prefix: "_p" must be non-empty and must not start with _`},
		{conf: "reserved_keys: rename\nreserved_key_prefix: 'p\\,'", err: `field reserved_key_prefix: "p\\," contains a backslash before ',', which InfluxDB parsers read differently`},
		{conf: "measurement: ''", err: `field measurement: must not be empty`},
	}
	for _, c := range cases {
		parsed, err := readingToPointSpec().ParseYAML(c.conf, nil)
		if err != nil {
			t.Fatalf("parse %q: %v", c.conf, err)
		}
		_, err = newReadingToPoint(parsed, service.MockResources())
		if err == nil || err.Error() != c.err {
			t.Errorf("config %q: got error %v, want %q", c.conf, err, c.err)
		}
	}
}

// TestReadingToPointLint checks the spec's cross-field lint rules through the
// engine's own linter, as `ingestor lint` runs them.
func TestReadingToPointLint(t *testing.T) {
	cases := []struct {
		conf string
		lint string
	}{
		{conf: "reading_to_point: {tags: {time: index}}", lint: "tag keys may not be empty, time or start with _"},
		{conf: "reading_to_point: {reserved_keys: rename, reserved_key_prefix: _x}", lint: "reserved_key_prefix must be non-empty"},
		{conf: "reading_to_point: {tags: {a: ' '}}", lint: "every tag needs a non-empty path"},
		{conf: "reading_to_point: {precision: m}", lint: "value m is not a valid option"},
		{conf: "reading_to_point: {tags: {index: index}, static_tags: {index: P}}", lint: "a tag key is in both static_tags and tags"},
		{conf: "reading_to_point: {static_tags: {_site: paris}}", lint: "static_tags keys may not be empty, time or start with _"},
		{conf: "reading_to_point: {max_fields: 0}", lint: "max_fields must be at least 1"},
		{conf: "reading_to_point: {max_line_bytes: 10}", lint: "max_line_bytes must be at least 64"},
		{conf: "reading_to_point: {tags: {index: index}, static_tags: {site: paris}, max_fields: 10, precision: s}", lint: ""},
		{conf: "reading_to_point: {tags: {index: index}, precision: s}", lint: ""},
	}
	for _, c := range cases {
		env := service.NewEnvironment()
		b := env.NewStreamBuilder()
		err := b.AddProcessorYAML(c.conf)
		if c.lint == "" {
			if err != nil {
				t.Errorf("config %q: unexpected lint error %v", c.conf, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.lint) {
			t.Errorf("config %q: got %v, want a lint error containing %q", c.conf, err, c.lint)
		}
	}
}
