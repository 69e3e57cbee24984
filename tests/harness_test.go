// Package tests holds the end-to-end and fault tests: they drive the real ingestor binary with
// config/ingestor.yaml as shipped against the in-process Kafka-protocol broker and a real
// InfluxDB 1.8, then check InfluxDB value by value and the error topic record by record.
package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/preservarium/iot-ingestor/internal/dev/devbroker"
	"github.com/preservarium/iot-ingestor/internal/dev/process"
	"github.com/preservarium/iot-ingestor/internal/dev/readinggen"
	"github.com/preservarium/iot-ingestor/internal/testkit/devbrokertest"
	"github.com/preservarium/iot-ingestor/internal/testkit/influxtest"
	"github.com/preservarium/iot-ingestor/internal/testkit/testtier"
)

const (
	inputTopic = "iot_validated_data"
	errorTopic = "iot_errors"
	group      = "ingestor_group"
	database   = "iot_data"
)

// ingestorBin is the binary under test, built once by TestMain from ./cmd/ingestor (not under
// -short: every test here drives it, so the unit tier has nothing to run in this package).
var ingestorBin string

// shippedConfig is config/ingestor.yaml, the pipeline operators deploy.
var shippedConfig string

func TestMain(m *testing.M) {
	flag.Parse()
	var err error
	if shippedConfig, err = filepath.Abs("../config/ingestor.yaml"); err != nil {
		fmt.Fprintln(os.Stderr, "tests:", err)
		os.Exit(2)
	}
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "ingestor-tests-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests: temp dir:", err)
		os.Exit(2)
	}
	ingestorBin = filepath.Join(dir, "ingestor")
	build := exec.Command("go", "build", "-o", ingestorBin, "../cmd/ingestor")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "tests: building the ingestor:", err)
		os.Exit(2)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// binary returns the binary under test. Every test here is of the full tier: under -short it
// skips t, as the server starters do (internal/testkit/testtier).
func binary(t testing.TB) string {
	t.Helper()
	testtier.Integration(t, "the ingestor binary, which TestMain builds outside -short")
	return ingestorBin
}

// stack is the embedded stack one test runs against: a broker with the pipeline's topics and a
// real InfluxDB with the iot_data database.
type stack struct {
	t      *testing.T
	broker *devbroker.Broker
	opts   devbroker.Options
	influx *influxtest.Server
	// clientOpts are added to every Kafka client of the test itself (TLS, SASL).
	clientOpts []kgo.Opt
}

type stackOptions struct {
	partitions int32
	// persistBroker keeps the broker's state in a directory so it can be restarted.
	persistBroker bool
	influx        influxtest.Options
}

func newStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	if o.partitions == 0 {
		o.partitions = 4
	}
	devbrokertest.Gate(t)
	s := &stack{t: t}
	s.opts = devbroker.Options{Partitions: o.partitions, Topics: []string{inputTopic, errorTopic}}
	if o.persistBroker {
		s.opts.DataDir = t.TempDir()
	}
	b, err := devbroker.Start(s.opts)
	if err != nil {
		t.Fatalf("starting the broker: %v", err)
	}
	s.broker = b
	s.opts.Addr = b.Addr() // a restart comes back on the same address
	t.Cleanup(func() { s.broker.Close() })
	s.influx = influxtest.Start(t, o.influx)
	s.influx.CreateDatabase(database)
	return s
}

// restartBroker stops the broker and starts it again on the same address and data directory.
func (s *stack) restartBroker(down time.Duration) {
	s.t.Helper()
	s.broker.Close()
	time.Sleep(down)
	var err error
	for i := 0; i < 50; i++ { // the port may linger for a moment
		if s.broker, err = devbroker.Start(s.opts); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("restarting the broker: %v", err)
}

func (s *stack) client(opts ...kgo.Opt) *kgo.Client {
	s.t.Helper()
	all := append([]kgo.Opt{kgo.SeedBrokers(s.broker.Addr())}, s.clientOpts...)
	cl, err := kgo.NewClient(append(all, opts...)...)
	if err != nil {
		s.t.Fatalf("kafka client: %v", err)
	}
	s.t.Cleanup(cl.Close)
	return cl
}

// produce writes the readings to the input topic, keyed by device, and records where each
// landed in its expectation's Source.
func (s *stack) produce(readings []readinggen.Reading) {
	s.t.Helper()
	cl := s.client(kgo.DefaultProduceTopic(inputTopic), kgo.ProducerLinger(5*time.Millisecond))
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		failure error
	)
	for i := range readings {
		r := &readings[i]
		wg.Add(1)
		// The record time is the reading's time: readings without a timestamp are stored at it.
		cl.Produce(context.Background(), &kgo.Record{Key: r.Key, Value: r.Value, Timestamp: r.Timestamp}, func(rec *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				failure = err
				mu.Unlock()
				return
			}
			r.Expect.Source = &readinggen.Source{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset}
		})
	}
	wg.Wait()
	if failure != nil {
		s.t.Fatalf("producing readings: %v", failure)
	}
}

// committedAtEnd reports whether the group's committed offsets reach the end of every
// partition of the input topic, and how many records are still uncommitted.
func (s *stack) committedAtEnd(ctx context.Context) (bool, int64, error) {
	adm := kadm.NewClient(s.client())
	ends, err := adm.ListEndOffsets(ctx, inputTopic)
	if err != nil {
		return false, 0, err
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return false, 0, err
	}
	var behind int64
	ends.Each(func(e kadm.ListedOffset) {
		c, ok := committed.Lookup(e.Topic, e.Partition)
		at := int64(0)
		if ok {
			at = c.At
		}
		if at < e.Offset {
			behind += e.Offset - at
		}
	})
	return behind == 0, behind, nil
}

// waitDrained waits until the consumer group has committed every record of the input topic.
func (s *stack) waitDrained(timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	var behind int64
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		done, n, err := s.committedAtEnd(ctx)
		cancel()
		if err == nil && done {
			return
		}
		behind = n
		time.Sleep(250 * time.Millisecond)
	}
	s.t.Fatalf("the consumer group did not commit the whole input topic within %v: %d records behind", timeout, behind)
}

// errorRecord is one record of the error topic as the contract defines it.
type errorRecord struct {
	Key             string
	Raw             []byte
	RequestID       string          `json:"request_id"`
	Timestamp       string          `json:"timestamp"`
	Service         string          `json:"service"`
	Error           string          `json:"error"`
	Kind            string          `json:"kind"`
	OriginalMessage json.RawMessage `json:"original_message"`
	Source          *struct {
		Topic       string `json:"topic"`
		Partition   int32  `json:"partition"`
		Offset      int64  `json:"offset"`
		TimestampMS *int64 `json:"timestamp_ms"`
	} `json:"source"`
}

func (r errorRecord) sourceKey() string {
	if r.Source == nil {
		return "no source"
	}
	return fmt.Sprintf("%s/%d/%d", r.Source.Topic, r.Source.Partition, r.Source.Offset)
}

// errorRecords reads the whole error topic, from the start to its current end.
func (s *stack) errorRecords() []errorRecord {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(s.client())
	ends, err := adm.ListEndOffsets(ctx, errorTopic)
	if err != nil {
		s.t.Fatalf("error topic end offsets: %v", err)
	}
	want := int64(0)
	ends.Each(func(e kadm.ListedOffset) { want += e.Offset })
	cl := s.client(kgo.ConsumeTopics(errorTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var out []errorRecord
	for int64(len(out)) < want {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			s.t.Fatalf("reading the error topic: got %d of %d records: %v", len(out), want, err)
		}
		fs.EachRecord(func(rec *kgo.Record) {
			var er errorRecord
			if err := json.Unmarshal(rec.Value, &er); err != nil {
				s.t.Errorf("error record at %d/%d is not JSON: %v: %s", rec.Partition, rec.Offset, err, rec.Value)
			}
			er.Key = string(rec.Key)
			er.Raw = rec.Value
			out = append(out, er)
		})
	}
	return out
}

// ingestor is one running ingestor process.
type ingestor struct {
	t        *testing.T
	proc     *process.Process
	httpAddr string
}

// startIngestor runs the binary with config/ingestor.yaml; env adds to or overrides the
// settings that point it at the stack.
func (s *stack) startIngestor(env map[string]string) *ingestor {
	s.t.Helper()
	return s.startIngestorConfig(shippedConfig, env)
}

func (s *stack) startIngestorConfig(config string, env map[string]string) *ingestor {
	s.t.Helper()
	p := &ingestor{t: s.t, httpAddr: freeAddr(s.t)}
	base := map[string]string{
		"KAFKA_BOOTSTRAP_SERVERS":    s.broker.Addr(),
		"INFLUXDB_URL":               s.influx.URL(),
		"INFLUXDB_TOKEN":             s.influx.Token(),
		"INFLUXDB_BATCH_SIZE":        "50",
		"INFLUXDB_FLUSH_INTERVAL_MS": "200",
		"HTTP_ADDRESS":               p.httpAddr,
		"LOG_LEVEL":                  "INFO",
	}
	for k, v := range env {
		base[k] = v
	}
	cmd := exec.Command(binary(s.t), "run", config)
	cmd.Env = os.Environ()
	for k, v := range base {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	proc, err := process.Start(cmd, filepath.Join(s.t.TempDir(), "ingestor.log"))
	if err != nil {
		s.t.Fatalf("the ingestor: %v", err)
	}
	p.proc = proc
	s.t.Cleanup(func() {
		p.kill()
		if s.t.Failed() {
			p.dumpLog(60)
		}
	})
	return p
}

func (p *ingestor) running() bool { return p.proc.Running() }

// kill sends SIGKILL: no flush, no commit, the crash the fault suite simulates.
func (p *ingestor) kill() { p.proc.Kill() }

// terminate sends SIGTERM and returns how long the process took to exit.
func (p *ingestor) terminate(limit time.Duration) time.Duration {
	p.t.Helper()
	start := time.Now()
	if !p.proc.Stop(limit) {
		p.t.Errorf("the ingestor did not exit within %v of SIGTERM", limit)
	}
	return time.Since(start)
}

func (p *ingestor) dumpLog(lines int) {
	b, err := os.ReadFile(p.proc.LogPath())
	if err != nil {
		return
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	p.t.Logf("last %d lines of the ingestor log (%s):\n%s", len(all), p.proc.LogPath(), strings.Join(all, "\n"))
}

// logContains reports whether the ingestor's log has a line containing s.
func (p *ingestor) logContains(s string) bool {
	f, err := os.Open(p.proc.LogPath())
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			return true
		}
	}
	return false
}

// status is the HTTP status of GET path on the ingestor's server, 0 when unreachable.
func (p *ingestor) status(path string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + p.httpAddr + path)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// waitStatus waits until GET path answers code.
func (p *ingestor) waitStatus(path string, code int, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	last := 0
	for time.Now().Before(deadline) {
		if last = p.status(path); last == code {
			return
		}
		if !p.running() {
			p.t.Fatalf("the ingestor exited (%v) while waiting for %s to answer %d", p.proc.ExitErr(), path, code)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.t.Fatalf("%s answered %d, not %d, for %v", path, last, code, timeout)
}

// waitConsuming waits until the instance has received messages from Kafka: it has joined the
// group and owns partitions.
func (p *ingestor) waitConsuming(timeout time.Duration) {
	p.t.Helper()
	p.waitStatus("/ping", 200, 30*time.Second)
	deadline := time.Now().Add(timeout)
	for metricTotal(p.metrics(), "input_received") == 0 {
		if time.Now().After(deadline) {
			p.dumpLog(20)
			p.t.Fatalf("the ingestor received no message within %v", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// metrics scrapes /metrics and parses it as Prometheus text.
func (p *ingestor) metrics() map[string]*dto {
	p.t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + p.httpAddr + "/metrics")
	if err != nil {
		p.t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		p.t.Fatalf("/metrics is not Prometheus text: %v", err)
	}
	out := map[string]*dto{}
	for name, f := range fams {
		d := &dto{byLabel: map[string]float64{}}
		for _, m := range f.GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
			d.total += v
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			d.byLabel[strings.Join(labels, ",")] += v
		}
		out[name] = d
	}
	return out
}

// scrapeOf is the /metrics text lines of the named families, for a test's log.
func (p *ingestor) scrapeOf(names ...string) string {
	p.t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + p.httpAddr + "/metrics")
	if err != nil {
		p.t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out []string
	for _, line := range strings.Split(string(body), "\n") {
		for _, n := range names {
			if strings.HasPrefix(line, n+" ") || strings.HasPrefix(line, n+"{") {
				out = append(out, line)
			}
		}
	}
	return strings.Join(out, "\n")
}

// dto is one metric family: its total over every series and the value of each label set.
type dto struct {
	total   float64
	byLabel map[string]float64
}

// metricTotal is the total of a family, 0 when absent.
func metricTotal(ms map[string]*dto, name string) float64 {
	if d, ok := ms[name]; ok {
		return d.total
	}
	return 0
}

// metricWith is the sum of the series of a family whose labels include label=value.
func metricWith(ms map[string]*dto, name, label, value string) float64 {
	d, ok := ms[name]
	if !ok {
		return 0
	}
	var sum float64
	for labels, v := range d.byLabel {
		for _, l := range strings.Split(labels, ",") {
			if l == label+"="+value {
				sum += v
			}
		}
	}
	return sum
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
