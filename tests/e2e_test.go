package tests

import (
	"os/exec"
	"testing"
	"time"

	"github.com/preservarium/iot-ingestor/internal/dev/readinggen"
)

// TestEndToEnd runs the shipped pipeline over a mixed stream: good messages of every variant of
// the contract and bad messages of every kind, plus a message InfluxDB itself rejects (a field
// type conflict with data already stored). Every stored value, every error record and the
// committed offsets are checked, and /metrics must agree with what was sent.
func TestEndToEnd(t *testing.T) {
	start := time.Now()
	s := newStack(t, stackOptions{partitions: 4})

	readings := generate(t, 1, 1500, 0.15)
	variants, bad := map[string]bool{}, map[readinggen.BadKind]bool{}
	for _, r := range readings {
		for _, v := range r.Expect.Variants {
			variants[v] = true
		}
		if r.Expect.Outcome == readinggen.OutcomeError {
			bad[r.Expect.BadKind] = true
		}
	}
	for _, k := range readinggen.BadKinds {
		if !bad[k] {
			t.Errorf("the stream has no bad message of kind %s", k)
		}
	}
	t.Logf("stream: %d messages, %d variants, %d bad kinds", len(readings), len(variants), len(bad))

	// A message the mapper accepts and InfluxDB rejects: value_0 is already a float in the
	// same shard (1.8 checks field types per shard: the seed must be in the same week).
	if code, body := s.influx.WriteLP(database, "e2e_conflict value_0=1.5 1749340800000000000"); code != 204 {
		t.Fatalf("seeding the conflicting field: %d %s", code, body)
	}
	conflict := readinggen.Reading{
		Key:   []byte("e2e_conflict"),
		Value: []byte(`{"request_id": "c0ffee00-0000-4000-8000-000000000001", "timestamp": "2025-06-08T18:27:17.476623", "device_id": "e2e_conflict", "values": [7], "index": "T"}`),
		Expect: readinggen.Expectation{
			Outcome: "write-conflict", RequestID: "c0ffee00-0000-4000-8000-000000000001",
		},
	}
	all := append(readings, conflict)

	p := s.startIngestor(nil)
	p.waitStatus("/ready", 200, 30*time.Second)
	s.produce(all)
	s.waitDrained(90 * time.Second)

	conflictSource := sourceKey(all[len(all)-1].Expect.Source)
	readings = all[:len(all)-1] // produce() recorded where each landed in all
	o := s.verify(readings, map[string]string{conflictSource: "write"})
	for _, rec := range s.errorRecords() {
		if rec.sourceKey() == conflictSource {
			if rec.RequestID != "c0ffee00-0000-4000-8000-000000000001" || rec.Key != rec.RequestID {
				t.Errorf("write error record: request_id %q key %q", rec.RequestID, rec.Key)
			}
			if !jsonTextEqual(string(rec.OriginalMessage), string(conflict.Value)) {
				t.Errorf("write error record: original_message %s", rec.OriginalMessage)
			}
			t.Logf("write error record: %s", rec.Error)
		}
	}
	if got := s.influx.Count(database, "e2e_conflict", "value_0"); got != 1 {
		t.Errorf("e2e_conflict has %d values, expected only the seeded one", got)
	}

	// The counters on /metrics match what was sent.
	ms := p.metrics()
	byKind := map[string]int{}
	for _, r := range readings {
		if r.Expect.Outcome == readinggen.OutcomeError {
			byKind[r.Expect.ErrorKind]++
		}
	}
	byKind["write"] = 1
	checks := []struct {
		name string
		got  float64
		want int
	}{
		{"input_received", metricTotal(ms, "input_received"), len(all)},
		{"influxdb_points_written", metricTotal(ms, "influxdb_points_written"), o.pointsExpected},
		{"iot_messages_filtered", metricTotal(ms, "iot_messages_filtered"), o.filtered},
		{"iot_error_records{kind=decode}", metricWith(ms, "iot_error_records", "kind", "decode"), byKind["decode"]},
		{"iot_error_records{kind=validation}", metricWith(ms, "iot_error_records", "kind", "validation"), byKind["validation"]},
		{"iot_error_records{kind=write}", metricWith(ms, "iot_error_records", "kind", "write"), byKind["write"]},
	}
	for _, c := range checks {
		if int(c.got) != c.want {
			t.Errorf("/metrics %s = %v, sent %d", c.name, c.got, c.want)
		}
	}
	if _, ok := ms["kafka_consumer_lag"]; !ok {
		t.Errorf("/metrics has no kafka_consumer_lag")
	}
	o.errorsExpected++ // the write conflict
	report(t, "end-to-end", o, time.Since(start))
}

// TestReadyFollowsInfluxDB stops InfluxDB while messages flow: /ready answers 503 during the
// outage and 200 after it, nothing reaches the error topic because of it, nothing is lost.
func TestReadyFollowsInfluxDB(t *testing.T) {
	start := time.Now()
	s := newStack(t, stackOptions{partitions: 4})
	readings := generate(t, 2, 600, 0)
	p := s.startIngestor(nil)
	p.waitStatus("/ready", 200, 30*time.Second)
	for _, path := range []string{"/ping", "/version", "/metrics"} {
		if got := p.status(path); got != 200 {
			t.Fatalf("%s answered %d", path, got)
		}
	}

	s.produce(readings[:200])
	s.waitDrained(60 * time.Second)

	s.influx.Stop()
	s.produce(readings[200:400])
	p.waitStatus("/ready", 503, 30*time.Second)
	if got := p.status("/ping"); got != 200 {
		t.Errorf("/ping answered %d during the outage", got)
	}
	s.influx.Restart()
	s.produce(readings[400:])
	p.waitStatus("/ready", 200, 60*time.Second)
	s.waitDrained(90 * time.Second)

	o := s.verify(readings, nil)
	if o.errorRecords != 0 {
		t.Errorf("%d error records after an outage: outages are not data errors", o.errorRecords)
	}
	report(t, "ready-follows-influxdb", o, time.Since(start))
}

// TestEveryConfigLints runs `ingestor lint` over every config in the repository.
func TestEveryConfigLints(t *testing.T) {
	out, err := runIngestor(t, "lint", "--deprecated", "../config/...")
	if err != nil {
		t.Fatalf("ingestor lint: %v\n%s", err, out)
	}
}

func runIngestor(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	b, err := cmd.CombinedOutput()
	return string(b), err
}
