package tests

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/preservarium/iot-ingestor/internal/dev/readinggen"
	"github.com/preservarium/iot-ingestor/internal/testkit/influxtest"
)

// The fault suite: each scenario produces a known stream, disturbs the stack while it flows,
// then checks InfluxDB value by value and the error topic record by record (verify). Redelivery
// duplicates are acceptable only where harmless: points collapse onto the same series and
// timestamp, error records for one source count once.

// streamer produces readings in chunks over time, like a live stage 2, in the background.
type streamer struct {
	done chan struct{}
}

func (s *stack) stream(readings []readinggen.Reading, chunks int, every time.Duration) *streamer {
	st := &streamer{done: make(chan struct{})}
	size := (len(readings) + chunks - 1) / chunks
	go func() {
		defer close(st.done)
		for i := 0; i < len(readings); i += size {
			end := min(i+size, len(readings))
			s.produce(readings[i:end])
			time.Sleep(every)
		}
	}()
	return st
}

func (st *streamer) wait() { <-st.done }

// Scenario 1: the ingestor is killed with SIGKILL three times mid-stream and restarted. Each
// instance is killed once it is consuming, with batches in flight: it then owns partitions, so
// the kill loses it work that its successor must redeliver.
//
// Killing an instance while its JoinGroup is still waiting at the broker is not done: the
// in-process broker (kfake) arms a member's session timer only when its join reply is
// delivered, so a member that dies at that moment stays in the group for good, owning
// partitions nobody consumes (seen here: the last instance waited forever with a third of the
// partitions). A real broker expires such a member after the session timeout.
// cmd/dev/joinrepro reproduces it with plain franz-go clients, without the ingestor
// (stuck in 2 of 8 runs); in the other runs that kill costs an extra plateau of up to a
// rebalance timeout or two (FAILOVER_KILL_JOINING=1 below: 58 s with nobody consuming).
//
// Failover is bounded: after the last crash every partition is owned by the last instance and
// consumed again (the group's commits reach the end of the topic) within session timeout plus
// two rebalance timeouts (20 s + 2 x 20 s as shipped): the dead member is expired after its
// session, and at most two rebalances follow. That bound is a failure deadline, not a
// performance figure; scripts/soak-failover.sh repeats the scenario and prints the failover
// time of each run. FAILOVER_READINGS and FAILOVER_CHUNKS change the stream (the soak runs
// 80,000 readings in four chunks).
func TestFaultKilledThreeTimes(t *testing.T) {
	start := time.Now()
	const partitions = 6
	s := newStack(t, stackOptions{partitions: partitions})
	n, chunks := envInt(t, "FAILOVER_READINGS", 3000), envInt(t, "FAILOVER_CHUNKS", 60)
	readings := generate(t, 11, n, 0.05)
	watch := s.watchGroup()
	var events []string
	event := func(what string) {
		events = append(events, fmt.Sprintf("%6.1fs %s", time.Since(watch.start).Seconds(), what))
	}
	defer func() {
		timeline := watch.close()
		t.Logf("instances:\n%s\ngroup at the broker:\n%s", strings.Join(events, "\n"), strings.Join(timeline, "\n"))
	}()
	p := s.startIngestor(nil)
	event("instance 1 started")
	// About 30 s of stream: each successor waits out its predecessor's session (20 s) before
	// it is given partitions, so the later kills land in the middle of the stream too.
	st := s.stream(readings, chunks, 30*time.Second/time.Duration(chunks))
	var (
		lastKill time.Time
		before   map[string]bool // members the group had up to the last crash
	)
	// FAILOVER_KILL_JOINING=1 kills the second instance 2 s after its start instead, while its
	// join waits at the broker for the first one's session to expire (the broker quirk above).
	killJoining := os.Getenv("FAILOVER_KILL_JOINING") == "1"
	for i := 0; i < 3; i++ {
		if killJoining && i == 1 {
			time.Sleep(2 * time.Second)
			event(fmt.Sprintf("instance %d still joining", i+1))
		} else {
			p.waitConsuming(90 * time.Second)
			event(fmt.Sprintf("instance %d consuming", i+1))
			time.Sleep(300 * time.Millisecond)
		}
		before = watch.members() // the instance killed is among them: it owns partitions
		p.kill()
		lastKill = time.Now()
		event(fmt.Sprintf("instance %d killed", i+1))
		p = s.startIngestor(nil)
		event(fmt.Sprintf("instance %d started", i+2))
	}
	const session, rebalance = 20 * time.Second, 20 * time.Second // the shipped defaults
	bound := lastKill.Add(session + 2*rebalance)
	owned, ok := watch.waitSoleOwner(partitions, before, bound)
	if !ok {
		t.Fatalf("the last instance did not own every partition within %v of the last crash (session timeout + 2 x rebalance timeout)", session+2*rebalance)
	}
	event("last instance owns every partition")
	st.wait()
	s.waitDrained(time.Until(bound))
	event("every partition consumed again and committed to its end")
	t.Logf("FAILOVER owned=%.1fs drained=%.1fs after the last crash (bound %v)",
		owned.Sub(lastKill).Seconds(), time.Since(lastKill).Seconds(), session+2*rebalance)
	report(t, "sigkill-x3", s.verify(readings, nil), time.Since(start))
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive whole number", name, v)
	}
	return n
}

// Scenario 2: InfluxDB is stopped for 20 s while messages keep arriving.
func TestFaultInfluxDBOutage(t *testing.T) {
	start := time.Now()
	s := newStack(t, stackOptions{partitions: 4})
	readings := generate(t, 12, 2000, 0.05)
	p := s.startIngestor(nil)
	p.waitStatus("/ready", 200, 30*time.Second)
	st := s.stream(readings, 40, 700*time.Millisecond)
	time.Sleep(3 * time.Second)
	s.influx.Stop()
	p.waitStatus("/ready", 503, 30*time.Second)
	retriesBefore := metricTotal(p.metrics(), "influxdb_write_retries")
	time.Sleep(20 * time.Second)
	if got := p.status("/ready"); got != 503 {
		t.Errorf("/ready answered %d after 20 s of outage", got)
	}
	// The instruments during the outage: what an operator's scrape shows.
	ms := p.metrics()
	t.Logf("scrape after 20 s of outage:\n%s", p.scrapeOf("ingestor_ready", "influxdb_up", "influxdb_write_retries", "kafka_consumer_lag", "kafka_partition_stalled_seconds", "error_topic_up", "iot_error_records"))
	if up := metricTotal(ms, "influxdb_up"); up != 0 {
		t.Errorf("influxdb_up = %v during the outage, want 0", up)
	}
	if ready := metricTotal(ms, "ingestor_ready"); ready != 0 {
		t.Errorf("ingestor_ready = %v during the outage, want 0", ready)
	}
	if r := metricTotal(ms, "influxdb_write_retries"); r <= retriesBefore {
		t.Errorf("influxdb_write_retries did not rise through 20 s of outage: %v then %v", retriesBefore, r)
	}
	if lag := metricTotal(ms, "kafka_consumer_lag"); lag <= 0 || lag > float64(len(readings)) {
		t.Errorf("kafka_consumer_lag = %v during the outage, want what waits: more than 0, at most the %d sent", lag, len(readings))
	}
	s.influx.Restart()
	p.waitStatus("/ready", 200, 60*time.Second)
	st.wait()
	s.waitDrained(120 * time.Second)
	// After recovery: up again, and the lag (refreshed every 5 s) back to 0.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ms = p.metrics()
		lag, up := metricTotal(ms, "kafka_consumer_lag"), metricTotal(ms, "influxdb_up")
		if lag == 0 && up == 1 && metricTotal(ms, "ingestor_ready") == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("after recovery: kafka_consumer_lag %v (want 0), influxdb_up %v (want 1), ingestor_ready %v (want 1)", lag, up, metricTotal(ms, "ingestor_ready"))
			break
		}
		time.Sleep(time.Second)
	}
	o := s.verify(readings, nil) // no extra error records allowed: the outage is not a data error
	// Counted at the broker's acknowledgement: equal to what the error topic holds.
	if got, want := metricTotal(p.metrics(), "iot_error_records"), float64(len(s.errorRecords())); got != want {
		t.Errorf("iot_error_records = %v after the outage, the error topic holds %v records", got, want)
	}
	report(t, "influxdb-outage-20s", o, time.Since(start))
}

// Scenario 3: the Kafka broker (persisted to a directory) restarts mid-stream.
func TestFaultBrokerRestart(t *testing.T) {
	start := time.Now()
	s := newStack(t, stackOptions{partitions: 4, persistBroker: true})
	readings := generate(t, 13, 2000, 0.05)
	p := s.startIngestor(nil)
	p.waitStatus("/ready", 200, 30*time.Second)
	s.produce(readings[:1000])
	time.Sleep(time.Second)
	s.restartBroker(3 * time.Second)
	s.produce(readings[1000:])
	s.waitDrained(120 * time.Second)
	p.waitStatus("/ready", 200, 30*time.Second)
	report(t, "broker-restart", s.verify(readings, nil), time.Since(start))
}

// Scenario 4: three instances in one consumer group over twelve partitions; one is killed
// mid-stream and its partitions move to the other two.
func TestFaultScaleOutOneKilled(t *testing.T) {
	start := time.Now()
	s := newStack(t, stackOptions{partitions: 12})
	readings := generate(t, 14, 3000, 0.05)
	env := map[string]string{"INFLUXDB_BATCH_SIZE": "20"}
	ps := []*ingestor{s.startIngestor(env), s.startIngestor(env), s.startIngestor(env)}
	for _, p := range ps {
		p.waitStatus("/ready", 200, 30*time.Second)
	}
	st := s.stream(readings, 30, 150*time.Millisecond)
	time.Sleep(2 * time.Second)
	ps[1].kill()
	st.wait()
	s.waitDrained(120 * time.Second)
	consumed := 0.0
	for _, p := range []*ingestor{ps[0], ps[2]} {
		c := metricTotal(p.metrics(), "input_received")
		if c == 0 {
			t.Errorf("a surviving instance consumed nothing: the group did not spread the work")
		}
		consumed += c
	}
	t.Logf("survivors consumed %v messages", consumed)
	report(t, "scale-out-3x12-one-killed", s.verify(readings, nil), time.Since(start))
}

// Scenario 5: a fifth of the stream is bad input of every kind.
func TestFaultPoisonFlood(t *testing.T) {
	start := time.Now()
	s := newStack(t, stackOptions{partitions: 4})
	readings := generate(t, 15, 3000, 0.20)
	kinds := map[readinggen.BadKind]int{}
	for _, r := range readings {
		if r.Expect.Outcome == readinggen.OutcomeError {
			kinds[r.Expect.BadKind]++
		}
	}
	if len(kinds) != len(readinggen.BadKinds) {
		t.Fatalf("the flood has %d of the %d bad kinds", len(kinds), len(readinggen.BadKinds))
	}
	p := s.startIngestor(nil)
	p.waitStatus("/ready", 200, 30*time.Second)
	s.produce(readings)
	s.waitDrained(120 * time.Second)
	report(t, "poison-flood-20pct", s.verify(readings, nil), time.Since(start))
}

// Scenario 6: the error topic refuses writes. The affected messages are not acknowledged (the
// committed offset stays before them) and their records arrive once it accepts writes again.
func TestFaultErrorTopicRefused(t *testing.T) {
	start := time.Now()
	s := newStack(t, stackOptions{partitions: 2})
	readings := generate(t, 16, 800, 0.10)

	ctx := context.Background()
	refusal, err := s.broker.RefuseProduce(ctx, kadm.NewClient(s.client()), errorTopic)
	if err != nil {
		t.Fatal(err)
	}

	p := s.startIngestor(nil)
	p.waitStatus("/ready", 200, 30*time.Second)
	s.produce(readings)
	time.Sleep(8 * time.Second)
	if refusal.Refused() == 0 {
		t.Fatalf("no produce to the error topic was refused: the scenario did not happen")
	}
	// While refused, no bad message may be committed: each partition's committed offset is
	// at most the offset of its first bad message.
	firstBad := map[int32]int64{}
	for _, r := range readings {
		if r.Expect.Outcome != readinggen.OutcomeError {
			continue
		}
		src := r.Expect.Source
		if at, ok := firstBad[src.Partition]; !ok || src.Offset < at {
			firstBad[src.Partition] = src.Offset
		}
	}
	committed, err := kadm.NewClient(s.client()).FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	for part, bad := range firstBad {
		if c, ok := committed.Lookup(inputTopic, part); ok && c.At > bad {
			t.Errorf("partition %d committed to %d past the unreported bad message at %d", part, c.At, bad)
		}
	}
	if n := len(s.errorRecords()); n != 0 {
		t.Errorf("%d error records while the topic refused writes", n)
	}
	checkRefusalInstruments(t, p, 8*time.Second)
	refusal.Lift()
	s.waitDrained(120 * time.Second)
	o := s.verify(readings, nil)
	ms := p.metrics()
	if got := metricTotal(ms, "iot_error_records"); got != float64(len(s.errorRecords())) {
		t.Errorf("iot_error_records = %v, the error topic holds %d records", got, len(s.errorRecords()))
	}
	if v := metricTotal(ms, "error_topic_up"); v != 1 {
		t.Errorf("error_topic_up = %v after the topic accepted again, want 1", v)
	}
	report(t, "error-topic-refused", o, time.Since(start))
}

// Scenario 7: InfluxDB throttles (429 and 503 with Retry-After) through a fault-injecting
// proxy in front of the real server; the ingestor waits as told and loses nothing, and its
// memory stays bounded.
func TestFaultThrottled(t *testing.T) {
	start := time.Now()
	s := newStack(t, stackOptions{partitions: 4})
	proxy := influxtest.NewFaultInjector(t, s.influx.URL())
	var throttled atomic.Int64
	proxy.Plan(func(n int, req influxtest.WriteRequest) influxtest.Fault {
		if len(req.Lines) == 0 || n%3 != 1 { // let probes and two writes in three through
			return influxtest.Pass
		}
		throttled.Add(1)
		status := 429
		if n%2 == 0 {
			status = 503
		}
		return influxtest.Fault{Status: status, Header: map[string]string{"Retry-After": "1"},
			Body: `{"code":"too many requests","message":"throttled by the fault injector"}`}
	})
	readings := generate(t, 17, 2000, 0.05)
	p := s.startIngestor(map[string]string{"INFLUXDB_URL": proxy.URL()})
	p.waitStatus("/ready", 200, 30*time.Second)
	s.produce(readings)
	s.waitDrained(180 * time.Second)
	if throttled.Load() == 0 {
		t.Fatalf("no write was throttled: the scenario did not happen")
	}
	ms := p.metrics()
	if metricTotal(ms, "influxdb_write_retries") == 0 {
		t.Errorf("influxdb_write_retries is 0 after %d throttled writes", throttled.Load())
	}
	if hwm := peakRSS(t, p); hwm > 300<<20 {
		t.Errorf("peak RSS %d MiB under throttling: memory is not bounded", hwm>>20)
	}
	t.Logf("%d writes throttled", throttled.Load())
	report(t, "throttled-429-503", s.verify(readings, nil), time.Since(start))
}

// Scenario 8: SIGTERM under load. The process exits within the shutdown timeout; every offset
// it committed belongs to a stored or reported message; a restart finishes the rest.
func TestFaultSIGTERMUnderLoad(t *testing.T) {
	start := time.Now()
	s := newStack(t, stackOptions{partitions: 4})
	readings := generate(t, 18, 4000, 0.05)
	env := map[string]string{"SHUTDOWN_TIMEOUT": "10s"}
	p := s.startIngestor(env)
	p.waitStatus("/ready", 200, 30*time.Second)
	st := s.stream(readings, 20, 100*time.Millisecond)
	time.Sleep(1500 * time.Millisecond)
	took := p.terminate(20 * time.Second)
	t.Logf("exited %v after SIGTERM", took)
	if p.proc.ExitErr() != nil {
		t.Errorf("exit after SIGTERM: %v", p.proc.ExitErr())
	}
	st.wait()

	// Everything committed must already be stored (or filtered, or reported).
	committed, err := kadm.NewClient(s.client()).FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	var done []readinggen.Reading
	total := int64(0)
	for _, r := range readings {
		src := r.Expect.Source
		if c, ok := committed.Lookup(inputTopic, src.Partition); ok && src.Offset < c.At {
			done = append(done, r)
		}
	}
	committed.Each(func(o kadm.OffsetResponse) { total += o.At })
	if total == 0 {
		t.Errorf("nothing was committed on SIGTERM")
	}
	t.Logf("committed before the restart: %d of %d messages", len(done), len(readings))
	s.verifyStored(storedOnly(done), false)

	p = s.startIngestor(env)
	s.waitDrained(120 * time.Second)
	report(t, "sigterm-under-load", s.verify(readings, nil), time.Since(start))
}

// Scenario 9: a backlog waiting at start drains with every value stored.
func TestFaultBacklog(t *testing.T) {
	start := time.Now()
	s := newStack(t, stackOptions{partitions: 6})
	readings := generate(t, 19, 6000, 0.05)
	s.produce(readings)
	p := s.startIngestor(map[string]string{"INFLUXDB_BATCH_SIZE": "500"})
	p.waitStatus("/ready", 200, 30*time.Second)
	s.waitDrained(180 * time.Second)
	report(t, "backlog", s.verify(readings, nil), time.Since(start))
}

func storedOnly(rs []readinggen.Reading) map[string][]readinggen.Expectation {
	out := map[string][]readinggen.Expectation{}
	for _, r := range rs {
		if r.Expect.Outcome == readinggen.OutcomeStored {
			out[r.Expect.Measurement] = append(out[r.Expect.Measurement], r.Expect)
		}
	}
	return out
}

// peakRSS is the process's peak resident set size (VmHWM), in bytes.
func peakRSS(t *testing.T, p *ingestor) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.proc.Pid()) + "/status")
	if err != nil {
		t.Fatalf("reading the ingestor's /proc status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}
