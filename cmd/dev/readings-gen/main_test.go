package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/preservarium/iot-ingestor/internal/dev/readinggen"
	"github.com/preservarium/iot-ingestor/internal/testkit/devbrokertest"
)

const testTopic = "iot_validated_data"

// consumeAll reads every record of topic from the start until n have arrived.
func consumeAll(t *testing.T, brokers []string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(testTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		t.Fatalf("consumer client: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read back %d of %d records before giving up: %v", len(recs), n, ctx.Err())
		}
		fetches.EachError(func(topic string, p int32, err error) {
			t.Fatalf("fetching %s/%d: %v", topic, p, err)
		})
		recs = append(recs, fetches.Records()...)
	}
	return recs
}

func TestProduceToInProcessBroker(t *testing.T) {
	devbrokertest.Gate(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, testTopic))
	if err != nil {
		t.Fatalf("starting in-process Kafka broker (kfake): %v", err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()

	const count = 600
	expectPath := filepath.Join(t.TempDir(), "expect.jsonl")
	var stdout, stderr bytes.Buffer
	err = run(context.Background(), []string{
		"--brokers", strings.Join(brokers, ","),
		"--topic", testTopic,
		"--count", fmt.Sprint(count),
		"--bad-share", "0.1",
		"--seed", "5",
		"--devices", "20",
		"--expect-out", expectPath,
		"--progress", "0",
	}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\nstderr: %s", err, stderr.String())
	}

	// The same stream, generated here, is what must be on the topic.
	gen, err := readinggen.New(5, func() readinggen.Options {
		o := readinggen.DefaultOptions()
		o.BadShare, o.Devices = 0.1, 20
		return o
	}())
	if err != nil {
		t.Fatal(err)
	}
	var tally readinggen.Tally
	bySeq := make([]readinggen.Reading, count)
	for i := range bySeq {
		bySeq[i] = gen.Next()
		tally.Add(bySeq[i].Expect)
	}

	recs := consumeAll(t, brokers, count)
	if len(recs) != count {
		t.Fatalf("read back %d records, want %d", len(recs), count)
	}

	// Expectation lines: one per record, each pointing at its record.
	f, err := os.Open(expectPath)
	if err != nil {
		t.Fatalf("opening --expect-out file: %v", err)
	}
	defer f.Close()
	type place struct {
		p int32
		o int64
	}
	bySource := map[place]readinggen.Expectation{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		e, err := readinggen.ParseExpectation(sc.Bytes())
		if err != nil {
			t.Fatalf("expectation line: %v", err)
		}
		if e.Source == nil || e.Source.Topic != testTopic {
			t.Fatalf("expectation %d has no source on %s: %+v", e.Seq, testTopic, e.Source)
		}
		if len(e.Variants) != 0 {
			t.Fatalf("expectation %d carries variants without --expect-variants", e.Seq)
		}
		bySource[place{e.Source.Partition, e.Source.Offset}] = e
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading expectations: %v", err)
	}
	if len(bySource) != count {
		t.Fatalf("%d distinct expectation sources, want %d", len(bySource), count)
	}
	partitions := map[int32]bool{}
	for _, r := range recs {
		partitions[r.Partition] = true
		e, ok := bySource[place{r.Partition, r.Offset}]
		if !ok {
			t.Fatalf("record %d/%d has no expectation line", r.Partition, r.Offset)
		}
		orig := bySeq[e.Seq]
		if !bytes.Equal(r.Key, orig.Key) || !bytes.Equal(r.Value, orig.Value) {
			t.Fatalf("record %d/%d (seq %d) differs from the generated message:\n got %q %s\nwant %q %s", r.Partition, r.Offset, e.Seq, r.Key, r.Value, orig.Key, orig.Value)
		}
		if !r.Timestamp.Equal(orig.Timestamp) || e.Source.TimestampMS != orig.Timestamp.UnixMilli() {
			t.Fatalf("record %d/%d (seq %d) has time %v (expectation says %d ms), want %v", r.Partition, r.Offset, e.Seq, r.Timestamp, e.Source.TimestampMS, orig.Timestamp)
		}
		if e.Key != string(r.Key) || e.Outcome != orig.Expect.Outcome || len(e.Fields) != len(orig.Expect.Fields) {
			t.Fatalf("expectation line for seq %d differs from the generator's: %+v", e.Seq, e)
		}
	}
	if len(partitions) < 2 {
		t.Errorf("records landed on %d partition(s) of 4: keys are not spreading", len(partitions))
	}

	out := stdout.String()
	t.Logf("summary:\n%s", out)
	for _, line := range []string{
		fmt.Sprintf("%d of %d messages acknowledged", count, count),
		fmt.Sprintf("stored:   %d messages, %d values", tally.Stored, tally.Values),
		fmt.Sprintf("errors:   %d messages (decode %d, validation %d)", tally.Errors, tally.ByErrorKind["decode"], tally.ByErrorKind["validation"]),
		fmt.Sprintf("expectations: %s (%d lines)", expectPath, count),
	} {
		if !strings.Contains(out, line) {
			t.Errorf("summary lacks %q:\n%s", line, out)
		}
	}
}

func TestUnreachableBrokerFails(t *testing.T) {
	// A port that was just free: nothing listens there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var stdout, stderr bytes.Buffer
	err = run(context.Background(), []string{"--brokers", addr, "--count", "5", "--timeout", "2s", "--progress", "0"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "no Kafka broker answered") {
		t.Fatalf("run against %s: error %v, want one saying no broker answered", addr, err)
	}
}

func TestFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--count", "-1"}, "negative"},
		{[]string{"--rate", "-5"}, "negative"},
		{[]string{"--bad-share", "2"}, "not between 0 and 1"},
		{[]string{"--precision", "h"}, "not one of"},
		{[]string{"--start", "yesterday"}, "neither RFC 3339"},
		{[]string{"--brokers", " , "}, "empty"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), append(tc.args, "--timeout", "1s"), &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("args %v: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

// TestBrokerGoneMidStream: when the broker disappears, the command gives up
// after --timeout without acknowledgements and says so, rather than hanging or
// reporting success.
func TestBrokerGoneMidStream(t *testing.T) {
	devbrokertest.Gate(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, testTopic))
	if err != nil {
		t.Fatalf("starting in-process Kafka broker (kfake): %v", err)
	}
	brokers := cluster.ListenAddrs()
	done := make(chan error, 1)
	var stdout, stderr bytes.Buffer
	go func() {
		done <- run(context.Background(), []string{
			"--brokers", strings.Join(brokers, ","), "--count", "3000", "--rate", "1000",
			"--timeout", "1s", "--progress", "0",
		}, &stdout, &stderr)
	}()
	time.Sleep(300 * time.Millisecond)
	cluster.Close()
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("run did not return within 60s after the broker went away")
	}
	if err == nil || !strings.Contains(err.Error(), "no acknowledgement") {
		t.Fatalf("run with the broker gone: %v, want a 'no acknowledgement' error\n%s", err, stdout.String())
	}
	if strings.Contains(stdout.String(), "3000 of 3000 messages acknowledged") {
		t.Errorf("summary claims every message was acknowledged:\n%s", stdout.String())
	}
}
