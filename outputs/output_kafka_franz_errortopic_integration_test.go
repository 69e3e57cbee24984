package outputs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/preservarium/iot-ingestor/internal/dev/devbroker"
	"github.com/preservarium/iot-ingestor/internal/testkit/streamtest"
	_ "github.com/preservarium/iot-ingestor/metrics"
	_ "github.com/preservarium/iot-ingestor/processors"
)

// errorTopicStream runs the error branch as the shipped pipelines declare it (iot_error_record
// on a kafka_franz output) behind a producer func, with the engine's /ready and /metrics served.
func errorTopicStream(t *testing.T, seeds []string, maxBytes string) (service.MessageBatchHandlerFunc, *httptest.Server) {
	t.Helper()
	sb := service.NewStreamBuilder()
	mux := http.NewServeMux()
	sb.SetHTTPMux(mux)
	if err := sb.SetLoggerYAML("level: warn"); err != nil {
		t.Fatal(err)
	}
	if err := sb.SetMetricsYAML("prometheus: {}"); err != nil {
		t.Fatal(err)
	}
	send, err := sb.AddBatchProducerFunc()
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.AddOutputYAML(fmt.Sprintf(`
kafka_franz:
  seed_brokers: [ %q ]
  topic: errs
  key: '${! meta("iot_request_id").or("") }'
  max_message_bytes: %s
  timeout: 5s
processors:
  - iot_error_record:
      max_record_bytes: %s
`, strings.Join(seeds, ","), maxBytes, maxBytes)); err != nil {
		t.Fatal(err)
	}
	streamtest.Run(t, sb, 5*time.Second)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return send, srv
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// metricValue sums the samples of a metric in a Prometheus text scrape whose labels include
// the given ones (the engine adds label and path), -1 when there is none.
func metricValue(scrape, name string, labels ...string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? ([0-9.e+-]+)$`)
	sum, found := 0.0, false
	for _, m := range re.FindAllStringSubmatch(scrape, -1) {
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			ok = ok && strings.Contains(m[1], labels[i]+`="`+labels[i+1]+`"`)
		}
		if ok {
			v, _ := strconv.ParseFloat(m[2], 64)
			sum, found = sum+v, true
		}
	}
	if !found {
		return -1
	}
	return sum
}

// waitUntil polls cond until it holds, failing after a generous deadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// poison is a 300 KB reading that failed validation, its string value full of '<': escaped as
// HTML, its error record was 1.5 MB.
func poison(partition, offset int) *service.Message {
	reading := `{"request_id": "poison-1", "device_id": "d1", "values": ["` + strings.Repeat("<b>", 100000) + `"], "labels": ["a", "b"]}`
	m := service.NewMessage([]byte(reading))
	m.MetaSetMut("iot_original", reading)
	m.MetaSetMut("iot_request_id", "poison-1")
	m.MetaSetMut("kafka_topic", "iot_validated_data")
	m.MetaSetMut("kafka_partition", partition)
	m.MetaSetMut("kafka_offset", offset)
	m.SetError(errors.New("validation: labels has 2 entries, values has 1"))
	return m
}

type errorRecord struct {
	Error    string `json:"error"`
	Kind     string `json:"kind"`
	Original struct {
		Raw string `json:"raw"`
	} `json:"original_message"`
	Truncated bool `json:"original_truncated"`
	Bytes     int  `json:"original_bytes"`
	Source    struct {
		Partition int `json:"partition"`
		Offset    int `json:"offset"`
	} `json:"source"`
}

func decodeRecord(t *testing.T, r *kgo.Record) errorRecord {
	t.Helper()
	var rec errorRecord
	if err := json.Unmarshal(r.Value, &rec); err != nil {
		t.Fatalf("record is not JSON: %v", err)
	}
	return rec
}

// The topic's max.message.bytes, read at connect, is below max_message_bytes: the poison's
// record is cut to the topic's limit, written, and counted once acknowledged.
func TestKafkaFranzOutputFitsTheTopicsLimit(t *testing.T) {
	const topicLimit = 16384
	b := startKafka(t, devbroker.Options{Topics: []string{"errs"}, Partitions: 1})
	adm := adminClient(t, b.SeedBrokers())
	setTopicLimit(t, adm, "errs", topicLimit)

	send, srv := errorTopicStream(t, b.SeedBrokers(), "1MiB")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := send(ctx, service.MessageBatch{poison(3, 18211)}); err != nil {
		t.Fatalf("the poison's record was not written: %v", err)
	}
	recs := readAll(t, b.SeedBrokers(), "errs", 1)
	r := recs[0]
	if n := len(r.Value) + len(r.Key) + 100; n > topicLimit {
		t.Fatalf("record takes %d bytes with key and framing, over the topic's %d", n, topicLimit)
	}
	rec := decodeRecord(t, r)
	if !rec.Truncated || rec.Bytes < 300000 || !strings.HasPrefix(rec.Original.Raw, `{"request_id": "poison-1", "device_id": "d1", "values": ["<b><b>`) ||
		rec.Kind != "validation" || rec.Source.Partition != 3 || rec.Source.Offset != 18211 {
		t.Fatalf("record %.400s", r.Value)
	}
	_, scrape := get(t, srv.URL+"/metrics")
	if v := metricValue(scrape, "iot_error_records", "kind", "validation"); v != 1 {
		t.Errorf("iot_error_records{kind=validation} = %v, want 1", v)
	}
	if v := metricValue(scrape, "error_topic_up"); v != 1 {
		t.Errorf("error_topic_up = %v, want 1", v)
	}
}

// The limit shrinks after the output connected: the broker refuses the record
// (MESSAGE_TOO_LARGE), the output reads the limit again before its retry and the record, cut
// to the new limit, is written.
func TestKafkaFranzOutputLimitThatChanged(t *testing.T) {
	b := startKafka(t, devbroker.Options{Topics: []string{"errs"}, Partitions: 1})
	adm := adminClient(t, b.SeedBrokers())
	send, srv := errorTopicStream(t, b.SeedBrokers(), "1MiB")
	waitUntil(t, "the output to connect", func() bool { code, _ := get(t, srv.URL+"/ready"); return code == 200 })
	setTopicLimit(t, adm, "errs", 20000)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := send(ctx, service.MessageBatch{poison(0, 5)}); err != nil {
		t.Fatalf("the poison's record was not written: %v", err)
	}
	r := readAll(t, b.SeedBrokers(), "errs", 1)[0]
	if n := len(r.Value) + len(r.Key) + 100; n > 20000 || !decodeRecord(t, r).Truncated {
		t.Fatalf("record of %d bytes with key and framing over the new limit, or not cut", n)
	}
}

// The topic refuses records for good (authorization, injected with a control function on the
// embedded broker's produce requests): the batch waits, /ready names the cause and the waiting
// message's source, error_topic_up is 0 and nothing is counted; once the topic accepts it
// again the record is written, counted, and error_topic_up is 1.
func TestKafkaFranzOutputRefusingTopicIsAnOutage(t *testing.T) {
	b := startKafka(t, devbroker.Options{Topics: []string{"errs"}, Partitions: 1})
	refusal, err := b.RefuseProduce(context.Background(), adminClient(t, b.SeedBrokers()), "errs")
	if err != nil {
		t.Fatal(err)
	}

	send, srv := errorTopicStream(t, b.SeedBrokers(), "1MiB")
	sent := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		defer cancel()
		sent <- send(ctx, service.MessageBatch{poison(4, 17)})
	}()

	var body string
	waitUntil(t, "/ready to report the refusal", func() bool {
		var code int
		code, body = get(t, srv.URL+"/ready")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "TOPIC_AUTHORIZATION_FAILED")
	})
	for _, want := range []string{`topic \"errs\" refuses`, "topic iot_validated_data partition 4 offset 17"} {
		if !strings.Contains(body, want) {
			t.Errorf("/ready %s, want it to name %s", body, want)
		}
	}
	_, scrape := get(t, srv.URL+"/metrics")
	if v := metricValue(scrape, "error_topic_up"); v != 0 {
		t.Errorf("error_topic_up = %v while the topic refuses, want 0", v)
	}
	if v := metricValue(scrape, "iot_error_records", "kind", "validation"); v > 0 {
		t.Errorf("iot_error_records{kind=validation} = %v for a record never written", v)
	}
	select {
	case err := <-sent:
		t.Fatalf("the refused message was given back (%v) instead of waiting", err)
	default:
	}

	refusal.Lift()
	select {
	case err := <-sent:
		if err != nil {
			t.Fatalf("after the topic accepted again: %v", err)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("the waiting record was not written after the topic accepted it again")
	}
	if rec := decodeRecord(t, readAll(t, b.SeedBrokers(), "errs", 1)[0]); rec.Source.Offset != 17 {
		t.Fatalf("record %+v", rec)
	}
	_, scrape = get(t, srv.URL+"/metrics")
	if v := metricValue(scrape, "error_topic_up"); v != 1 {
		t.Errorf("error_topic_up = %v after the record was written, want 1", v)
	}
	if v := metricValue(scrape, "iot_error_records", "kind", "validation"); v != 1 {
		t.Errorf("iot_error_records{kind=validation} = %v, want 1", v)
	}
	if code, _ := get(t, srv.URL+"/ready"); code != 200 {
		t.Errorf("/ready %d after recovery", code)
	}
}

func adminClient(t *testing.T, seeds []string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

func setTopicLimit(t *testing.T, adm *kadm.Client, topic string, limit int) {
	t.Helper()
	v := strconv.Itoa(limit)
	res, err := adm.AlterTopicConfigs(context.Background(), []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "max.message.bytes", Value: &v}}, topic)
	if err == nil {
		_, err = res.On(topic, nil)
	}
	if err == nil {
		for _, r := range res {
			err = errors.Join(err, r.Err)
		}
	}
	if err != nil {
		t.Fatalf("setting max.message.bytes of %s: %v", topic, err)
	}
}
