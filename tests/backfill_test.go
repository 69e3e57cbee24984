package tests

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/preservarium/iot-ingestor/internal/dev/devbroker"
	"github.com/preservarium/iot-ingestor/internal/dev/readinggen"
	"github.com/preservarium/iot-ingestor/internal/testkit/devbrokertest"
	"github.com/preservarium/iot-ingestor/internal/testkit/influxtest"
)

// The backfill tests run config/backfill-kafka.yaml and config/backfill-files.yaml as shipped
// against the embedded stack: each must end by itself, store exactly what it was asked to, and
// change nothing when replayed.

// configFile is the absolute path of a pipeline in config/.
func configFile(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "config", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("pipeline %s: %v", name, err)
	}
	return p
}

// waitExit waits for a pipeline that must end by itself and fails unless it exits 0.
func (p *ingestor) waitExit(timeout time.Duration) {
	p.t.Helper()
	select {
	case <-p.proc.Done():
	case <-time.After(timeout):
		p.dumpLog(40)
		p.t.Fatalf("the pipeline did not end by itself within %v", timeout)
	}
	if p.proc.ExitErr() != nil {
		p.dumpLog(40)
		p.t.Fatalf("the pipeline exited with %v", p.proc.ExitErr())
	}
}

// logLines returns the log lines containing s.
func (p *ingestor) logLines(s string) []string {
	b, err := os.ReadFile(p.proc.LogPath())
	if err != nil {
		p.t.Fatalf("reading the pipeline log: %v", err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

// createTopic creates a topic on the stack's broker with the stack's partition count.
func (s *stack) createTopic(name string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(s.client()).CreateTopic(ctx, s.opts.Partitions, 1, nil, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		s.t.Fatalf("creating topic %s: %v", name, err)
	}
}

// topicRecords reads a whole topic, from its start to its current end.
func (s *stack) topicRecords(topic string) []*kgo.Record {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(s.client()).ListEndOffsets(ctx, topic)
	if err != nil {
		s.t.Fatalf("end offsets of %s: %v", topic, err)
	}
	want := int64(0)
	ends.Each(func(e kadm.ListedOffset) { want += e.Offset })
	cl := s.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var out []*kgo.Record
	for int64(len(out)) < want {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			s.t.Fatalf("reading %s: got %d of %d records: %v", topic, len(out), want, err)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

// groupCommitted returns a group's committed offsets as "topic/partition" -> offset.
func (s *stack) groupCommitted(group string) map[string]int64 {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := kadm.NewClient(s.client()).FetchOffsets(ctx, group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return map[string]int64{}
	}
	if err != nil {
		s.t.Fatalf("offsets of group %s: %v", group, err)
	}
	out := map[string]int64{}
	offs.Each(func(o kadm.OffsetResponse) { out[fmt.Sprintf("%s/%d", o.Topic, o.Partition)] = o.At })
	return out
}

// measurements lists the measurements of the test database.
func (s *stack) measurements() []string {
	s.t.Helper()
	var out []string
	for _, ser := range s.influx.Query(database, "SHOW MEASUREMENTS") {
		for _, row := range ser.Values {
			out = append(out, row[0].(string))
		}
	}
	sort.Strings(out)
	return out
}

// dump is every point of every measurement as JSON text, to compare whole databases.
func (s *stack) dump() string {
	s.t.Helper()
	var b strings.Builder
	for _, m := range s.measurements() {
		js, err := json.Marshal(s.influx.Query(database, fmt.Sprintf("SELECT * FROM %s ORDER BY time", quoteIdent(m))))
		if err != nil {
			s.t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %s\n", m, js)
	}
	return b.String()
}

// storedExpectations groups the stored outcomes by measurement, for verifyStored.
func storedExpectations(readings []readinggen.Reading) (map[string][]readinggen.Expectation, int) {
	out := map[string][]readinggen.Expectation{}
	values := 0
	for _, r := range readings {
		if r.Expect.Outcome == readinggen.OutcomeStored {
			out[r.Expect.Measurement] = append(out[r.Expect.Measurement], r.Expect)
			values += len(r.Expect.Fields)
		}
	}
	return out, values
}

func rfc3339Milli(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
}

// TestBackfillTimestampRange produces a stream, then backfills a range of it from Kafka under
// its own group: exactly the readings stamped inside the range are stored (and exactly their
// error records written), the live group's offsets are not touched, the pipeline ends by
// itself and logs its progress. A second run of the same range, under a new group, leaves
// InfluxDB exactly as it was.
func TestBackfillTimestampRange(t *testing.T) {
	start := time.Now()
	s := newStack(t, stackOptions{partitions: 4})
	readings := generate(t, 21, 1500, 0.05)
	// The broker finds a time's offset with its time index, which assumes record times grow
	// along a partition, as they do when stage 2 publishes as readings come in.
	sort.SliceStable(readings, func(i, j int) bool { return readings[i].Timestamp.Before(readings[j].Timestamp) })
	from := readings[400].Timestamp.UnixMilli()
	until := readings[1100].Timestamp.UnixMilli()
	// One record published late, stamped before the range, lands inside the range's offsets:
	// the pipeline's own time check must drop it.
	lateAt := time.UnixMilli(from).Add(-time.Hour).UTC()
	late := handmade(string(readings[0].Key), fmt.Sprintf(`{"request_id": "bf-late", "timestamp": %q, "device_id": "bf_late", "values": [1.5]}`,
		lateAt.Format("2006-01-02T15:04:05.000000")), lateAt)
	s.produce(readings[:800])
	s.produce([]readinggen.Reading{late})
	s.produce(readings[800:])

	var inRange []readinggen.Reading
	for _, r := range readings {
		if ms := r.Timestamp.UnixMilli(); ms >= from && ms < until {
			inRange = append(inRange, r)
		}
	}
	if len(inRange) < 600 || len(inRange) == len(readings) {
		t.Fatalf("the range holds %d of %d readings: the test needs a real sub-range", len(inRange), len(readings))
	}
	byMeasurement, values := storedExpectations(inRange)

	env := map[string]string{
		"BACKFILL_START":          rfc3339Milli(from),
		"BACKFILL_END":            rfc3339Milli(until),
		"BACKFILL_CONSUMER_GROUP": "backfill_1",
		"BACKFILL_PROGRESS_EVERY": "100",
	}
	p := s.startIngestorConfig(configFile(t, "backfill-kafka.yaml"), env)
	p.waitExit(120 * time.Second)

	o := s.verify(inRange, nil)
	if got := s.measurements(); len(got) != len(byMeasurement) {
		t.Errorf("%d measurements stored, %d expected: readings outside the range were stored", len(got), len(byMeasurement))
	}
	for _, m := range s.measurements() {
		if m == "bf_late" {
			t.Errorf("a record stamped before the range was stored")
		}
	}
	if live := s.groupCommitted(group); len(live) != 0 {
		t.Errorf("the backfill committed offsets for the live group %q: %v", group, live)
	}
	if c := s.groupCommitted("backfill_1"); len(c) == 0 {
		t.Errorf("the backfill group committed nothing")
	}
	progress := p.logLines("backfill progress")
	if len(progress) < len(inRange)/100-1 {
		t.Errorf("%d progress lines for %d messages at one every 100", len(progress), len(inRange))
	}
	for _, want := range []string{"done=", "rate_per_s=", "position=", "range_done_pct=", "remaining_est=", "eta_s="} {
		if len(progress) > 0 && !strings.Contains(progress[len(progress)-1], want) {
			t.Errorf("progress line without %s: %s", want, progress[len(progress)-1])
		}
	}
	if len(progress) > 0 {
		t.Logf("last progress line: %s", progress[len(progress)-1])
	}
	before := s.dump()
	errorsBefore := len(s.errorRecords())

	// The same range again, under a new group: nothing in InfluxDB changes.
	env["BACKFILL_CONSUMER_GROUP"] = "backfill_2"
	p2 := s.startIngestorConfig(configFile(t, "backfill-kafka.yaml"), env)
	p2.waitExit(120 * time.Second)
	if after := s.dump(); after != before {
		t.Errorf("replaying the range changed InfluxDB:\nbefore: %s\nafter:  %s", truncate([]byte(before), 2000), truncate([]byte(after), 2000))
	}
	if got := s.verifyStored(byMeasurement, true); got != values {
		t.Errorf("after the replay: %d values stored, %d expected", got, values)
	}
	// The replay reports the range's errors again; by source they are the same records.
	if n := len(s.errorRecords()); n != 2*errorsBefore {
		t.Errorf("after the replay: %d error records, expected %d (each of the %d again)", n, 2*errorsBefore, errorsBefore)
	}

	// The finished group again: it resumes at its commits and ends without consuming.
	p3 := s.startIngestorConfig(configFile(t, "backfill-kafka.yaml"), env)
	p3.waitExit(60 * time.Second)
	if got := len(p3.logLines("backfill progress")); got != 0 {
		t.Errorf("a finished group consumed again: %d progress lines", got)
	}
	report(t, fmt.Sprintf("backfill-kafka-range(%d of %d)", len(inRange), len(readings)), o, time.Since(start))
}

// TestBackfillFiles writes a stream as two JSON-lines dumps, one plain and one gzip (with
// blank lines), and backfills them: every reading with a timestamp is stored exactly, every
// reading without one is a validation error whose source is its file, and the pipeline ends
// by itself, logging remaining messages and an ETA. Replaying the files changes nothing.
func TestBackfillFiles(t *testing.T) {
	start := time.Now()
	s := newStack(t, stackOptions{partitions: 4})
	readings := generate(t, 22, 1000, 0)
	dir := t.TempDir()
	plain := filepath.Join(dir, "dump-1.jsonl")
	gz := filepath.Join(dir, "dump-2.jsonl.gz")
	var first, second bytes.Buffer
	for i, r := range readings {
		if bytes.ContainsAny(r.Value, "\r\n") {
			t.Fatalf("reading %d holds a line break: it cannot be one JSON line", i)
		}
		w := &first
		if i >= len(readings)/2 {
			w = &second
		}
		w.Write(r.Value)
		w.WriteString("\n")
		if i%97 == 0 {
			w.WriteString("\n") // blank lines in a dump are skipped
		}
	}
	if err := os.WriteFile(plain, first.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	_, _ = zw.Write(second.Bytes())
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gz, zipped.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	// A file has no record time: a reading without a usable timestamp cannot be stored.
	var stored []readinggen.Reading
	noTime := map[string]bool{} // request_id -> an error record is required
	for _, r := range readings {
		if hasTimestamp(t, r.Value) {
			stored = append(stored, r)
			continue
		}
		if r.Expect.Outcome == readinggen.OutcomeStored {
			noTime[r.Expect.RequestID] = true
		}
	}
	if len(noTime) == 0 {
		t.Fatalf("the stream has no reading without a timestamp: the test needs some")
	}
	byMeasurement, values := storedExpectations(stored)

	env := map[string]string{
		"BACKFILL_FILES":          filepath.Join(dir, "dump-*"),
		"BACKFILL_TOTAL_LINES":    strconv.Itoa(len(readings)),
		"BACKFILL_PROGRESS_EVERY": "100",
	}
	p := s.startIngestorConfig(configFile(t, "backfill-files.yaml"), env)
	p.waitExit(120 * time.Second)

	got := s.verifyStored(byMeasurement, true)
	if got != values {
		t.Errorf("values stored: %d, expected %d", got, values)
	}
	if m := s.measurements(); len(m) != len(byMeasurement) {
		t.Errorf("%d measurements stored, %d expected", len(m), len(byMeasurement))
	}
	records := s.errorRecords()
	seen := map[string]bool{}
	for _, rec := range records {
		var src struct {
			Source map[string]any `json:"source"`
		}
		_ = json.Unmarshal(rec.Raw, &src)
		path, _ := src.Source["path"].(string)
		if path != plain && path != gz {
			t.Errorf("error record for %q: source %v, expected one of the dump files", rec.RequestID, src.Source)
		}
		if rec.Service != "ingestor" || rec.Kind != "validation" || !strings.Contains(rec.Error, "timestamp") {
			t.Errorf("error record for %q: %s", rec.RequestID, rec.Raw)
		}
		if !noTime[rec.RequestID] && !seen[rec.RequestID] {
			// A reading without a timestamp and with nothing to store may be either.
			found := false
			for _, r := range readings {
				if r.Expect.RequestID == rec.RequestID && !hasTimestamp(t, r.Value) {
					found = true
				}
			}
			if !found {
				t.Errorf("unexpected error record: %s", rec.Raw)
			}
		}
		seen[rec.RequestID] = true
	}
	for id := range noTime {
		if !seen[id] {
			t.Errorf("no error record for reading %s without a timestamp", id)
		}
	}
	progress := p.logLines("backfill progress")
	if len(progress) == 0 {
		t.Fatalf("no progress line in the log")
	}
	last := progress[len(progress)-1]
	for _, want := range []string{"done=", "rate_per_s=", "file=", "remaining=", "eta_s="} {
		if !strings.Contains(last, want) {
			t.Errorf("progress line without %s: %s", want, last)
		}
	}
	t.Logf("last progress line: %s", last)

	before := s.dump()
	p2 := s.startIngestorConfig(configFile(t, "backfill-files.yaml"), env)
	p2.waitExit(120 * time.Second)
	if after := s.dump(); after != before {
		t.Errorf("replaying the files changed InfluxDB")
	}
	o := outcome{sent: len(readings), valuesExpected: values, valuesStored: got, errorsExpected: len(noTime), errorRecords: len(seen)}
	for _, ms := range byMeasurement {
		o.pointsExpected += len(ms)
	}
	report(t, "backfill-files(plain+gzip)", o, time.Since(start))
}

// hasTimestamp reports whether a message has a usable timestamp (a non-empty string).
func hasTimestamp(t *testing.T, value []byte) bool {
	t.Helper()
	v, err := decodeNumbers(nonFiniteToNull(value))
	if err != nil {
		t.Fatalf("a good reading is not JSON: %v: %s", err, value)
	}
	m, _ := v.(map[string]any)
	ts, _ := m["timestamp"].(string)
	return strings.TrimSpace(ts) != ""
}

// BenchmarkBackfillFiles measures the file backfill end to end: the real binary reads a gzip
// dump of 20000 generated readings and stores them in InfluxDB 1.8 (the same points each
// iteration, which overwrite themselves). Reported as messages per second of wall time,
// process start-up included.
func BenchmarkBackfillFiles(b *testing.B) {
	const n = 20000
	broker := devbrokertest.Start(b, devbroker.Options{Partitions: 4, Topics: []string{inputTopic, errorTopic}})
	influx := influxtest.Start(b, influxtest.Options{})
	influx.CreateDatabase(database)

	opts := readinggen.DefaultOptions()
	opts.BadShare = 0
	g, err := readinggen.New(41, opts)
	if err != nil {
		b.Fatal(err)
	}
	var dump bytes.Buffer
	zw := gzip.NewWriter(&dump)
	for i := 0; i < n; i++ {
		_, _ = zw.Write(g.Next().Value)
		_, _ = zw.Write([]byte("\n"))
	}
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "dump.jsonl.gz")
	if err := os.WriteFile(path, dump.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	config, err := filepath.Abs("../config/backfill-files.yaml")
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	httpAddr := l.Addr().String()
	_ = l.Close()

	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(binary(b), "run", config)
		cmd.Env = append(os.Environ(),
			"BACKFILL_FILES="+path,
			"KAFKA_BOOTSTRAP_SERVERS="+broker.Addr(),
			"INFLUXDB_URL="+influx.URL(),
			"INFLUXDB_TOKEN="+influx.Token(),
			"HTTP_ADDRESS="+httpAddr,
			"LOG_LEVEL=WARN",
		)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("the file backfill failed: %v\n%s", err, truncate(out, 2000))
		}
	}
	b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "msgs/s")
	b.StopTimer()
	if got := influx.Query(database, "SHOW MEASUREMENTS"); len(got) == 0 {
		b.Fatalf("nothing stored")
	}
}
