package main

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestHugeShapes checks what the huge scenario sends: each shape is one JSON object of the size
// asked for, under the broker's record limit, and the shipped mapping makes of it what the
// scenario's table says (the wide values array and the blob are validation errors naming their
// limit: max_fields, InfluxDB's 64 KiB string; the metadata and tall readings are points).
func TestHugeShapes(t *testing.T) {
	mapper, err := newMapper()
	if err != nil {
		t.Fatal(err)
	}
	defer mapper.Close(context.Background())
	want := map[string]string{"wide": "(max_fields)", "blob": "InfluxDB stores at most 65536", "metadata": "", "tall": ""}
	rng := rand.New(rand.NewPCG(1, 13))
	const size = 1_000_000
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	for _, s := range hugeShapes {
		limit, ok := want[s.name]
		if !ok {
			t.Errorf("shape %s: not in the test's table", s.name)
			continue
		}
		body := s.body("huge-"+s.name, "r-1", at.Format("2006-01-02T15:04:05.000000"), size, rng)
		if len(body) < size*98/100 || len(body) > hugeMaxReadingBytes {
			t.Errorf("shape %s: %d bytes, want about %d and at most %d", s.name, len(body), size, hugeMaxReadingBytes)
		}
		var obj map[string]any
		if err := json.Unmarshal(body, &obj); err != nil {
			t.Errorf("shape %s: not a JSON object: %v", s.name, err)
			continue
		}
		if obj["device_id"] != "huge-"+s.name || obj["request_id"] != "r-1" {
			t.Errorf("shape %s: device_id %v, request_id %v", s.name, obj["device_id"], obj["request_id"])
		}
		got, reason, err := hugeExpect(context.Background(), mapper, "huge-"+s.name, body, at)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case limit == "" && got != "stored":
			t.Errorf("shape %s: the mapping gives %s %s, want a point", s.name, got, reason)
		case limit != "" && (got != "validation" || !strings.Contains(reason, limit)):
			t.Errorf("shape %s: the mapping gives %s %q, want a validation error naming %s", s.name, got, reason, limit)
		}
	}
}
