package tests

import (
	"bufio"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/preservarium/iot-ingestor/internal/dev/readinggen"
)

// The log lines an operator needs when a partition cannot move as it should (issue 15): the
// WARN when a partition is held back behind a batch that cannot be placed, and the ERROR that
// names the records an offset reset skipped. Each test checks the line's level and text as the
// binary writes them (logfmt, config/ingestor.yaml).

// TestLogWarnsWhenAPartitionIsHeldBack: an undecodable record leads partition 0 and the error
// topic refuses every write, so its batch is rejected again and again; once partition 0 holds
// checkpoint_limit records behind it, the input pauses that partition and must say so at WARN,
// naming the partition and the limit, and kafka_partition_stalled_seconds must count the stall.
// Partition 1 goes on meanwhile.
func TestLogWarnsWhenAPartitionIsHeldBack(t *testing.T) {
	s := newStack(t, stackOptions{partitions: 2})
	readings := generate(t, 41, 600, 0)
	ctx := context.Background()
	poison := &kgo.Record{Topic: inputTopic, Partition: 0, Key: []byte("poison"), Value: []byte("not a reading"), Timestamp: time.Now()}
	if err := s.client(kgo.RecordPartitioner(kgo.ManualPartitioner())).ProduceSync(ctx, poison).FirstErr(); err != nil {
		t.Fatalf("producing the undecodable record: %v", err)
	}
	for i := 0; i < len(readings); i += 30 { // small record batches: partition 0 fills early
		s.produce(readings[i:min(i+30, len(readings))])
	}
	refusal, err := s.broker.RefuseProduce(context.Background(), kadm.NewClient(s.client()), errorTopic)
	if err != nil {
		t.Fatal(err)
	}

	p := s.startIngestor(map[string]string{"KAFKA_CHECKPOINT_LIMIT": "50", "KAFKA_FETCH_MAX_PARTITION_BYTES": "4KiB"})
	const text = "partition 0 holds checkpoint_limit (50) records behind a batch that is being retried"
	deadline := time.Now().Add(60 * time.Second)
	for len(p.logLinesWith(text)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no log line %q within 60 s (%d writes to the error topic refused)", text, refusal.Refused())
		}
		time.Sleep(250 * time.Millisecond)
	}
	for _, line := range p.logLinesWith(text) {
		if !strings.Contains(line, "level=warn") {
			t.Errorf("the held-back partition is logged at another level than WARN: %s", line)
		}
		if !strings.Contains(line, "fetching of the partition is paused") {
			t.Errorf("the held-back line does not say the partition is paused: %s", line)
		}
	}
	if n := len(p.logLinesWith("partition 1 holds checkpoint_limit")); n != 0 {
		t.Errorf("partition 1, which nothing holds, was logged as held back %d times", n)
	}
	if refusal.Refused() == 0 {
		t.Fatal("no write to the error topic was refused: the scenario did not happen")
	}
	// The same stall on /metrics: partition 0's commit stands still while it has lag; partition
	// 1, which nothing holds, is consumed to its end and never stalls for long.
	stalled := func(partition string) float64 {
		return metricWith(p.metrics(), "kafka_partition_stalled_seconds", "partition", partition)
	}
	deadline = time.Now().Add(30 * time.Second)
	for stalled("0") < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("kafka_partition_stalled_seconds{partition=\"0\"} = %v after the hold, want it rising (5 s or more)", stalled("0"))
		}
		time.Sleep(time.Second)
	}
	// Until partition 0 is known to be held (the WARN above), the input's global gate held
	// partition 1 too, so its stall may read a few seconds here; once partition 0 is paused on
	// its own, partition 1 must be consumed and committed to its end while partition 0 stays
	// stalled (the stall gauges are refreshed with the lag, every 5 s).
	if d, ok := p.metrics()["kafka_consumer_lag"]; !ok || !hasLabel(d, "partition=1") {
		t.Fatal("kafka_consumer_lag is not reported for partition 1")
	}
	deadline = time.Now().Add(30 * time.Second)
	for stalled("1") != 0 || metricWith(p.metrics(), "kafka_consumer_lag", "partition", "1") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("partition 1, which nothing holds, still stalled %v s with lag %v 30 s after partition 0 was paused",
				stalled("1"), metricWith(p.metrics(), "kafka_consumer_lag", "partition", "1"))
		}
		time.Sleep(time.Second)
	}
	if v := stalled("0"); v < 5 {
		t.Errorf("kafka_partition_stalled_seconds{partition=\"0\"} = %v while partition 1 drained, want partition 0 still stalled", v)
	}

	refusal.Lift()
	s.waitDrained(120 * time.Second)
	deadline = time.Now().Add(15 * time.Second) // the lag refresh runs every 5 s
	for stalled("0") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("kafka_partition_stalled_seconds{partition=\"0\"} = %v once everything is committed, want 0", stalled("0"))
		}
		time.Sleep(time.Second)
	}
	extra := map[string]string{sourceKey(&readinggen.Source{Topic: inputTopic, Partition: 0, Offset: poison.Offset}): "decode"}
	report(t, "held-back-log", s.verify(readings, extra), 0)
}

// TestLogErrorNamesTheRangeAnOffsetResetSkipped: the group committed offset 30 of partition 0,
// then retention deleted the records before 60 (as during a long outage). The ingestor resumes
// at 60; the 30 records in between are lost to the pipeline, and it must say so at ERROR with
// the range, and count one kafka_offset_resets.
func TestLogErrorNamesTheRangeAnOffsetResetSkipped(t *testing.T) {
	s := newStack(t, stackOptions{partitions: 1})
	readings := generate(t, 42, 100, 0)
	s.produce(readings)
	ctx := context.Background()
	adm := kadm.NewClient(s.client())
	commit := kadm.Offsets{}
	commit.Add(kadm.Offset{Topic: inputTopic, Partition: 0, At: 30, LeaderEpoch: -1})
	if err := adm.CommitAllOffsets(ctx, group, commit); err != nil {
		t.Fatalf("committing offset 30 for %s: %v", group, err)
	}
	del := kadm.Offsets{}
	del.Add(kadm.Offset{Topic: inputTopic, Partition: 0, At: 60, LeaderEpoch: -1})
	resp, err := adm.DeleteRecords(ctx, del)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("deleting the records before offset 60: %v", err)
	}

	p := s.startIngestor(nil)
	s.waitDrained(60 * time.Second)
	const text = "offsets 30 to 59 (30 records) were deleted by retention before group"
	deadline := time.Now().Add(10 * time.Second) // the check runs on the lag refresh (5 s)
	for len(p.logLinesWith(text)) == 0 && time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
	}
	lines := p.logLinesWith(text)
	if len(lines) != 1 {
		t.Fatalf("%d log lines %q, want exactly 1 for one reset", len(lines), text)
	}
	if !strings.Contains(lines[0], "level=error") {
		t.Errorf("the offset reset is logged at another level than ERROR: %s", lines[0])
	}
	if !strings.Contains(lines[0], "consumption resumed at offset 60") || !strings.Contains(lines[0], "partition 0") {
		t.Errorf("the offset reset line does not name the partition and where consumption resumed: %s", lines[0])
	}
	if r := metricWith(p.metrics(), "kafka_offset_resets", "partition", "0"); r != 1 {
		t.Errorf("kafka_offset_resets{partition=\"0\"} = %v, want 1", r)
	}

	var kept []readinggen.Reading // what retention left: offsets 60 on
	for _, r := range readings {
		if r.Expect.Source.Offset >= 60 {
			kept = append(kept, r)
		}
	}
	want := storedOnly(kept)
	values := 0
	for _, es := range want {
		for _, e := range es {
			values += len(e.Fields)
		}
	}
	if got := s.verifyStored(want, true); got != values {
		t.Errorf("%d of the %d values from offset 60 on stored", got, values)
	}
}

// logLinesWith is the lines of the ingestor's log that contain s.
func (p *ingestor) logLinesWith(s string) []string {
	f, err := os.Open(p.proc.LogPath())
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			out = append(out, sc.Text())
		}
	}
	return out
}

// hasLabel tells whether a metric has a series carrying the label pair (name=value).
func hasLabel(d *dto, pair string) bool {
	for labels := range d.byLabel {
		for _, l := range strings.Split(labels, ",") {
			if l == pair {
				return true
			}
		}
	}
	return false
}
