package influxtest

import (
	"encoding/json"
	"testing"
)

func TestServerWriteQueryRestart(t *testing.T) {
	s := Start(t, Options{})
	s.CreateDatabase("iot_data")
	if code, body := s.WriteLP("iot_data", "dev,site=a temp=21.5,n=3i,ok=true,s=\"x\" 1700000000000000000\n"); code != 204 {
		t.Fatalf("write: %d %s", code, body)
	}
	got := s.Query("iot_data", `SELECT temp, n FROM dev`)
	if len(got) != 1 || got[0].Rows()[0]["temp"] != json.Number("21.5") || got[0].Rows()[0]["n"] != json.Number("3") {
		t.Fatalf("query answer %+v", got)
	}
	want := map[string]string{"temp": "float", "n": "integer", "ok": "boolean", "s": "string"}
	for k, v := range want {
		if ft := s.FieldTypes("iot_data", "dev"); ft[k] != v {
			t.Fatalf("field %s type %q, want %q (all %v)", k, ft[k], v, ft)
		}
	}
	s.Restart()
	if n := s.Count("iot_data", "dev", "temp"); n != 1 {
		t.Fatalf("after restart count %d, want 1", n)
	}
}

func TestServerAuth(t *testing.T) {
	s := Start(t, Options{Auth: true})
	s.CreateDatabase("iot_data")
	if code, body := s.WriteLP("iot_data", "dev temp=1 1\n"); code != 204 {
		t.Fatalf("write with admin token: %d %s", code, body)
	}
}
