package tests

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/preservarium/iot-ingestor/internal/dev/readinggen"
)

// oversizedPoison is a 300 KB reading that breaks the contract (two labels, one value) and whose
// string value is full of '<': HTML-escaped, its error record was 1.5 MB, over every limit.
func oversizedPoison() []byte {
	return []byte(`{"request_id": "poison-300k", "timestamp": "2026-11-27T10:15:02.118000", "device_id": "poison", "values": ["` +
		strings.Repeat("<a>", 100000) + `"], "labels": ["a", "b"]}`)
}

// Scenario "oversized poison": the error topic takes records of at most 200,000 bytes (its
// max.message.bytes, below the shipped 1 MiB, read by the ingestor at start). The poison's
// record is cut to fit and written, its partition commits past it, and every other reading,
// on every partition, is stored or reported as usual.
func TestFaultOversizedPoison(t *testing.T) {
	start := time.Now()
	s := newStack(t, stackOptions{partitions: 4})
	const topicLimit = 200000
	v := strconv.Itoa(topicLimit)
	res, err := kadm.NewClient(s.client()).AlterTopicConfigs(context.Background(),
		[]kadm.AlterConfig{{Op: kadm.SetConfig, Name: "max.message.bytes", Value: &v}}, errorTopic)
	if err == nil {
		for _, r := range res {
			err = r.Err
		}
	}
	if err != nil {
		t.Fatalf("setting the error topic's max.message.bytes: %v", err)
	}
	readings := generate(t, 21, 2000, 0.05)
	p := s.startIngestor(nil)
	p.waitStatus("/ready", 200, 30*time.Second)

	poison := oversizedPoison()
	cl := s.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	r := cl.ProduceSync(context.Background(), &kgo.Record{Topic: inputTopic, Partition: 1, Key: []byte("poison"), Value: poison})
	if err := r.FirstErr(); err != nil {
		t.Fatalf("producing the poison: %v", err)
	}
	at := r[0].Record
	s.produce(readings)
	s.waitDrained(180 * time.Second)

	poisonKey := sourceKey(&readinggen.Source{Topic: inputTopic, Partition: at.Partition, Offset: at.Offset})
	var found bool
	for _, rec := range s.errorRecords() {
		if rec.sourceKey() != poisonKey {
			continue
		}
		found = true
		if n := len(rec.Raw) + len(rec.Key) + 100; n > topicLimit {
			t.Errorf("the poison's record takes %d bytes with key and framing, over the topic's %d", n, topicLimit)
		}
		var cut struct {
			Original struct {
				Raw string `json:"raw"`
			} `json:"original_message"`
			Truncated bool `json:"original_truncated"`
			Bytes     int  `json:"original_bytes"`
		}
		if err := json.Unmarshal(rec.Raw, &cut); err != nil {
			t.Fatal(err)
		}
		if rec.Kind != "validation" || !cut.Truncated || cut.Bytes != len(poison) ||
			!strings.HasPrefix(string(poison), cut.Original.Raw) || len(cut.Original.Raw) < topicLimit/2 {
			t.Errorf("the poison's record: kind %q, truncated %v, original_bytes %d (want %d), raw of %d bytes",
				rec.Kind, cut.Truncated, cut.Bytes, len(poison), len(cut.Original.Raw))
		}
	}
	if !found {
		t.Fatalf("no error record for the poison at %s", poisonKey)
	}
	ms := p.metrics()
	if v := metricTotal(ms, "error_topic_up"); v != 1 {
		t.Errorf("error_topic_up = %v, want 1", v)
	}
	// Counted once acknowledged: as many as the topic holds.
	if got, want := metricTotal(ms, "iot_error_records"), float64(len(s.errorRecords())); got != want {
		t.Errorf("iot_error_records = %v, the error topic holds %v records", got, want)
	}
	// Rejected readings went straight to the error topic: no failed write was logged for them.
	if p.logContains("Failed to send message to influxdb_v2") {
		t.Errorf("the engine logged rejected readings as failed InfluxDB writes")
	}
	report(t, "oversized-poison", s.verify(readings, map[string]string{poisonKey: "validation"}), time.Since(start))
}

// get is the status and body of GET path on the ingestor's server.
func (p *ingestor) get(path string) (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + p.httpAddr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// logCount is how many lines of the ingestor's log contain s.
func (p *ingestor) logCount(s string) int {
	b, err := os.ReadFile(p.proc.LogPath())
	if err != nil {
		return 0
	}
	return strings.Count(string(b), s)
}

// checkRefusalInstruments is what an operator sees while the error topic refuses records for
// good: /ready 503 naming the cause and a waiting message's source, error_topic_up 0, no record
// counted, and few ERROR lines (one per back-off, 1 s doubling, not one per retried batch).
func checkRefusalInstruments(t *testing.T, p *ingestor, refusedFor time.Duration) {
	t.Helper()
	code, body := p.get("/ready")
	if code != 503 || !strings.Contains(body, "TOPIC_AUTHORIZATION_FAILED") || !strings.Contains(body, "refuses the record of the message from topic "+inputTopic+" partition ") {
		t.Errorf("/ready during the refusal: %d %s", code, body)
	}
	ms := p.metrics()
	if v := metricTotal(ms, "error_topic_up"); v != 0 {
		t.Errorf("error_topic_up = %v while the error topic refuses, want 0", v)
	}
	if v := metricTotal(ms, "iot_error_records"); v != 0 {
		t.Errorf("iot_error_records = %v while no record was written", v)
	}
	// Two sources back off on their own: the error output's Connect (1 s doubling) and the
	// router's report of it (once, then every 30 s). Before, every retried batch was a line.
	if n, most := p.logCount("level=error"), 2*int(refusedFor/time.Second)+4; n > most {
		t.Errorf("%d ERROR lines in %v of refusal, want at most %d", n, refusedFor, most)
	}
}

// A GET /ready during a Kafka outage used to build the lazily created error_topic resource,
// whose writer then sat in its connect loop where the stream could not stop it: SIGTERM waited
// the whole shutdown timeout. With the error output declared inside the fallback, the stream
// stops it and the process exits within a few seconds.
func TestSIGTERMAfterReadyDuringKafkaOutage(t *testing.T) {
	s := newStack(t, stackOptions{partitions: 2})
	config := shippedConfig
	if alt := os.Getenv("INGESTOR_TEST_CONFIG"); alt != "" { // to run an older config against the test
		config = alt
	}
	p := s.startIngestorConfig(config, map[string]string{"SHUTDOWN_TIMEOUT": "30s"})
	// No /ready before the outage: the first one, during it, is what built the resource.
	p.waitStatus("/ping", 200, 30*time.Second)
	time.Sleep(2 * time.Second) // the input joins its group
	s.broker.Close()
	time.Sleep(time.Second)
	p.waitStatus("/ready", 503, 60*time.Second)
	for i := 0; i < 5; i++ {
		p.status("/ready")
		time.Sleep(300 * time.Millisecond)
	}
	took := p.terminate(10 * time.Second)
	t.Logf("exited %v after SIGTERM", took)
}
