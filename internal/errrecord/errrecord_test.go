package errrecord

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestAppendTextNoHTMLEscapingAndRuneCuts(t *testing.T) {
	in := []byte("a<b>&\"\\\n\x01é\xff€")
	got, n := AppendText(nil, in, -1)
	if want := `a<b>&\"\\\n\u0001é` + "\ufffd€"; string(got) != want || n != len(in) {
		t.Fatalf("got %q (%d of %d bytes), want %q", got, n, len(in), want)
	}
	// "€" is three bytes: a budget that ends inside it stops before it.
	for max := 0; max <= len(got); max++ {
		part, _ := AppendText(nil, in, max)
		if len(part) > max {
			t.Fatalf("max %d: wrote %d bytes", max, len(part))
		}
		if !utf8.Valid(part) || !json.Valid([]byte(`"`+string(part)+`"`)) {
			t.Fatalf("max %d: %q is not a valid JSON string's content", max, part)
		}
	}
}

func TestFit(t *testing.T) {
	orig := `{"device_id": "d", "values": ["` + strings.Repeat("<", 3000) + `"]}`
	rec := `{"request_id":"r","error":"validation: x","original_message":` + orig + `,"kind":"validation","source":{"topic":"t"},"redrive_count":1}`

	if got, err := Fit([]byte(rec), len(rec), nil); err != nil || string(got) != rec {
		t.Fatalf("a record that fits changed: %v", err)
	}

	for _, max := range []int{400, 1000, 2999} {
		got, err := Fit([]byte(rec), max, []byte(orig))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) > max || len(got) < max-4 {
			t.Fatalf("max %d: got %d bytes, want up to max and not much less", max, len(got))
		}
		var r struct {
			RequestID string `json:"request_id"`
			Original  struct {
				Raw string `json:"raw"`
			} `json:"original_message"`
			Truncated    bool `json:"original_truncated"`
			Bytes        int  `json:"original_bytes"`
			RedriveCount int  `json:"redrive_count"`
		}
		if err := json.Unmarshal(got, &r); err != nil {
			t.Fatalf("max %d: %v\n%s", max, err, got)
		}
		if !r.Truncated || r.Bytes != len(orig) || !strings.HasPrefix(orig, r.Original.Raw) || r.Original.Raw == "" ||
			r.RequestID != "r" || r.RedriveCount != 1 {
			t.Fatalf("max %d: %+v", max, r)
		}
		if !strings.HasPrefix(string(got), `{"request_id":"r","error":"validation: x","original_message":{"raw":"{\"device_id\": \"d`) ||
			!strings.Contains(string(got), `"},"original_truncated":true,"original_bytes":`+strconv.Itoa(len(orig))+`,"kind":"validation","source":{"topic":"t"},"redrive_count":1}`) {
			t.Fatalf("max %d: keys out of order: %s", max, got)
		}

		// Cut again at a smaller limit (the output's, below the builder's): original_bytes stays.
		again, err := Fit(got, max/2, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(again) > max/2 || !strings.Contains(string(again), `"original_bytes":`+strconv.Itoa(len(orig))) || strings.Count(string(again), "original_truncated") != 1 {
			t.Fatalf("max %d/2: %s", max, again)
		}
	}

	if _, err := Fit([]byte(rec), 20, nil); err == nil || !strings.Contains(err.Error(), "without its original") {
		t.Fatalf("a limit below the other keys: %v", err)
	}
}

func TestFitRawOriginal(t *testing.T) {
	rec := `{"error":"decode: not JSON","original_message":{"raw":"` + strings.Repeat("ab", 500) + `"}}`
	got, err := Fit([]byte(rec), 300, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(got), `{"error":"decode: not JSON","original_message":{"raw":"abab`) || !strings.HasSuffix(string(got), `"original_bytes":1000}`) {
		t.Fatalf("%s", got)
	}
}
