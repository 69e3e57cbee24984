package outputs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/preservarium/iot-ingestor/internal/dev/devbroker"
	"github.com/preservarium/iot-ingestor/internal/testkit/streamtest"
)

// storeOrReportStream runs store_or_report with a kafka_franz child on each side: store writes
// to the topic named by the message's dest metadata (an empty one fails that message alone, a
// rejection), report builds the error record and writes it to "reported".
func storeOrReportStream(t *testing.T, storeSeeds, reportSeeds []string) (service.MessageBatchHandlerFunc, *httptest.Server) {
	t.Helper()
	sb := service.NewStreamBuilder()
	mux := http.NewServeMux()
	sb.SetHTTPMux(mux)
	if err := sb.SetLoggerYAML("level: ${TEST_LOG_LEVEL:warn}"); err != nil {
		t.Fatal(err)
	}
	send, err := sb.AddBatchProducerFunc()
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.AddOutputYAML(fmt.Sprintf(`
store_or_report:
  store:
    label: store_side
    kafka_franz:
      seed_brokers: [ %q ]
      topic: '${! @dest }'
      timeout: 3s
  report:
    label: report_side
    kafka_franz:
      seed_brokers: [ %q ]
      topic: reported
      key: '${! meta("iot_request_id").or("") }'
      timeout: 3s
    processors:
      - iot_error_record: {}
`, strings.Join(storeSeeds, ","), strings.Join(reportSeeds, ","))); err != nil {
		t.Fatal(err)
	}
	streamtest.Run(t, sb, 10*time.Second)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return send, srv
}

func reading(id, dest string, err error) *service.Message {
	m := service.NewMessage([]byte(fmt.Sprintf(`{"request_id": %q}`, id)))
	m.MetaSetMut("dest", dest)
	m.MetaSetMut("iot_request_id", id)
	if err != nil {
		m.SetError(err)
	}
	return m
}

func TestStoreOrReportRoutesAndMergesVerdicts(t *testing.T) {
	b := startKafka(t, devbroker.Options{Topics: []string{"stored", "reported"}, Partitions: 1})
	send, _ := storeOrReportStream(t, b.SeedBrokers(), b.SeedBrokers())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	batch := service.MessageBatch{
		reading("ok-1", "stored", nil),
		reading("bad-1", "stored", errors.New("validation: labels has 2 entries, values has 3")),
		reading("rejected-1", "", nil), // the store output fails it: an empty topic
		reading("ok-2", "stored", nil),
	}
	if err := send(ctx, batch); err != nil {
		t.Fatalf("batch not acknowledged: %v", err)
	}
	var stored []string
	for _, r := range readAll(t, b.SeedBrokers(), "stored", 2) {
		stored = append(stored, string(r.Value))
	}
	sort.Strings(stored)
	if want := []string{`{"request_id": "ok-1"}`, `{"request_id": "ok-2"}`}; fmt.Sprint(stored) != fmt.Sprint(want) {
		t.Fatalf("stored %q, want %q", stored, want)
	}
	reported := map[string]errorRecord{}
	for _, r := range readAll(t, b.SeedBrokers(), "reported", 2) {
		reported[string(r.Key)] = decodeRecord(t, r)
	}
	if r := reported["bad-1"]; r.Kind != "validation" || r.Error != "validation: labels has 2 entries, values has 3" {
		t.Errorf("the errored reading's record: %+v", r)
	}
	if r := reported["rejected-1"]; r.Kind != "write" || !strings.Contains(r.Error, "empty string") {
		t.Errorf("the rejected reading's record: %+v", r)
	}
	if len(reported) != 2 {
		t.Errorf("reported %d records, want 2", len(reported))
	}
}

// TestStoreOrReportWholeBatches covers the two batches that go to one child whole, without a
// split: one without errors, of which store rejects a message (it must still be reported, and
// only it), and one where every message carries an error (all reported, none stored).
func TestStoreOrReportWholeBatches(t *testing.T) {
	b := startKafka(t, devbroker.Options{Topics: []string{"stored", "reported"}, Partitions: 1})
	send, _ := storeOrReportStream(t, b.SeedBrokers(), b.SeedBrokers())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	clean := service.MessageBatch{
		reading("ok-1", "stored", nil),
		reading("ok-2", "stored", nil),
		reading("rejected-1", "", nil), // the store output fails it: an empty topic
		reading("ok-3", "stored", nil),
	}
	if err := send(ctx, clean); err != nil {
		t.Fatalf("the batch without errors not acknowledged: %v", err)
	}
	allBad := service.MessageBatch{
		reading("bad-1", "stored", errors.New("decode: not JSON")),
		reading("bad-2", "stored", errors.New("validation: values is empty")),
	}
	if err := send(ctx, allBad); err != nil {
		t.Fatalf("the batch of errored readings not acknowledged: %v", err)
	}
	var stored []string
	for _, r := range readAll(t, b.SeedBrokers(), "stored", 3) {
		stored = append(stored, string(r.Value))
	}
	sort.Strings(stored)
	if want := []string{`{"request_id": "ok-1"}`, `{"request_id": "ok-2"}`, `{"request_id": "ok-3"}`}; fmt.Sprint(stored) != fmt.Sprint(want) {
		t.Fatalf("stored %q, want %q", stored, want)
	}
	reported := map[string]errorRecord{}
	for _, r := range readAll(t, b.SeedBrokers(), "reported", 3) {
		reported[string(r.Key)] = decodeRecord(t, r)
	}
	if r := reported["rejected-1"]; r.Kind != "write" || !strings.Contains(r.Error, "empty string") {
		t.Errorf("the rejected reading's record: %+v", r)
	}
	if r := reported["bad-1"]; r.Kind != "decode" || r.Error != "decode: not JSON" {
		t.Errorf("bad-1's record: %+v", r)
	}
	if r := reported["bad-2"]; r.Kind != "validation" || r.Error != "validation: values is empty" {
		t.Errorf("bad-2's record: %+v", r)
	}
	if len(reported) != 3 {
		t.Errorf("reported %d records (%v), want 3", len(reported), reported)
	}
}

// The engine sees the router's connection only: a child that is not connected must show there.
func TestStoreOrReportReadsChildConnections(t *testing.T) {
	b := startKafka(t, devbroker.Options{Topics: []string{"stored", "reported"}, Partitions: 1})
	dead := startKafka(t, devbroker.Options{})
	deadSeeds := dead.SeedBrokers()
	dead.Close()
	_, srv := storeOrReportStream(t, deadSeeds, b.SeedBrokers())
	var body string
	waitUntil(t, "/ready to name the store output's cause", func() bool {
		var code int
		code, body = get(t, srv.URL+"/ready")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "store_side: ") && strings.Contains(body, "no Kafka broker reachable")
	})
}

// The report output refuses for good: a batch with an errored reading waits, /ready names the
// cause, and readings without errors are stored meanwhile.
func TestStoreOrReportRefusingReportKeepsStoring(t *testing.T) {
	b := startKafka(t, devbroker.Options{Topics: []string{"stored", "reported"}, Partitions: 1})
	topics, err := adminClient(t, b.SeedBrokers()).ListTopics(context.Background(), "reported")
	if err != nil || topics.Error() != nil {
		t.Fatalf("topic metadata: %v %v", err, topics.Error())
	}
	reportedID := topics["reported"].ID
	var refusing atomic.Bool
	refusing.Store(true)
	b.Cluster().ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		b.Cluster().KeepControl()
		preq := req.(*kmsg.ProduceRequest)
		// Newer produce requests name topics by ID only.
		if !refusing.Load() || len(preq.Topics) == 0 || (preq.Topics[0].Topic != "reported" && preq.Topics[0].TopicID != reportedID) {
			return nil, nil, false
		}
		resp := preq.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range preq.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	send, srv := storeOrReportStream(t, b.SeedBrokers(), b.SeedBrokers())
	waitUntil(t, "/ready", func() bool { code, _ := get(t, srv.URL+"/ready"); return code == 200 })

	bad := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		defer cancel()
		bad <- send(ctx, service.MessageBatch{reading("bad-1", "stored", errors.New("decode: not JSON"))})
	}()
	var last string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last /ready: %s", last)
		}
	})
	waitUntil(t, "/ready to report the refusal", func() bool {
		code, body := get(t, srv.URL+"/ready")
		last = body
		return code == http.StatusServiceUnavailable && strings.Contains(body, "TOPIC_AUTHORIZATION_FAILED")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := send(ctx, service.MessageBatch{reading("ok-1", "stored", nil)}); err != nil {
		t.Fatalf("a clean batch during the refusal: %v", err)
	}
	if r := readAll(t, b.SeedBrokers(), "stored", 1); string(r[0].Value) != `{"request_id": "ok-1"}` {
		t.Fatalf("stored %s", r[0].Value)
	}
	select {
	case err := <-bad:
		t.Fatalf("the errored batch was given back (%v) instead of waiting", err)
	default:
	}
	refusing.Store(false)
	select {
	case err := <-bad:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("the errored batch was not reported after the topic accepted again")
	}
	if r := decodeRecord(t, readAll(t, b.SeedBrokers(), "reported", 1)[0]); r.Kind != "decode" {
		t.Fatalf("record %+v", r)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A reported reading is logged at DEBUG only, and counted by kind in a periodic INFO line.
func TestStoreOrReportLogsReportedReadingsAtDebugWithASummary(t *testing.T) {
	var logs lockedBuffer
	sb := service.NewStreamBuilder()
	sb.SetLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	send, err := sb.AddBatchProducerFunc()
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.AddOutputYAML(`
store_or_report:
  summary_interval: 1ms
  store:
    drop: {}
  report:
    drop: {}
`); err != nil {
		t.Fatal(err)
	}
	s, err := sb.Build()
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Run(context.Background()) }()
	defer func() { _ = s.StopWithin(5 * time.Second) }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < 2; i++ {
		time.Sleep(5 * time.Millisecond) // past the summary interval
		batch := service.MessageBatch{
			reading(fmt.Sprintf("v-%d", i), "", errors.New("validation: labels has 2 entries, values has 3")),
			reading(fmt.Sprintf("d-%d", i), "", errors.New("decode: not JSON")),
			reading(fmt.Sprintf("ok-%d", i), "", nil),
		}
		if err := send(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	out := logs.String()
	for _, want := range []string{
		`level=DEBUG msg="store_or_report: reported request_id=v-0: validation: labels has 2 entries, values has 3"`,
		`level=INFO msg="store_or_report: 2 readings reported to the error output in the last`,
		`(decode 1, validation 1)`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "level=ERROR") {
		t.Errorf("reported readings were logged at ERROR:\n%s", out)
	}
}
