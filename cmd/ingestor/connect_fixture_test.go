package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/preservarium/iot-ingestor/internal/dev/devbroker"
	"github.com/preservarium/iot-ingestor/internal/testkit/devbrokertest"
	"github.com/preservarium/iot-ingestor/internal/testkit/streamtest"
)

// connectFixture is a Redpanda Connect 4.93 user's kafka_franz input and output, every field at
// Connect's defaults (see the file's header).
var connectFixture = filepath.Join("..", "..", "tests", "testdata", "connect", "kafka_franz.yaml")

// A Connect user's blocks pass `ingestor lint` unchanged; the same blocks with a combination
// the client refuses do not, so the check can fail.
func TestConnectBlocksLint(t *testing.T) {
	out, code := runCLI(t, "lint", connectFixture)
	if code != 0 {
		t.Fatalf("ingestor lint %s exited %d:\n%s", connectFixture, code, out)
	}
	body, err := os.ReadFile(connectFixture)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte(strings.Replace(string(body), "    acks: all\n", "    acks: leader\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code = runCLIStderr(t, "lint", bad)
	if code == 0 || !strings.Contains(out, "field acks: leader needs idempotent_write: false") {
		t.Fatalf("lint of acks: leader with idempotent_write: true exited %d:\n%s", code, out)
	}
}

// runCLIStderr is runCLI returning what the CLI printed on stderr, where lint reports.
func runCLIStderr(t *testing.T, args ...string) (string, int) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = w
	copied := make(chan string)
	go func() { b, _ := io.ReadAll(r); copied <- string(b) }()
	_, code := runCLI(t, args...)
	os.Stderr = stderr
	_ = w.Close()
	return <-copied, code
}

// The Connect blocks run end to end against the embedded broker: every record of the input
// topic is on the output topic with its key and value, and the group's offsets are committed
// to the end of every partition.
func TestConnectBlocksRunEndToEnd(t *testing.T) {
	const records = 60
	b := devbrokertest.Start(t, devbroker.Options{Topics: []string{"connect_in", "connect_out"}, Partitions: 3})
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var want []string
	var in []*kgo.Record
	for i := 0; i < records; i++ {
		r := &kgo.Record{Topic: "connect_in", Key: []byte(fmt.Sprintf("k%02d", i)), Value: []byte(fmt.Sprintf(`{"n":%d}`, i))}
		in = append(in, r)
		want = append(want, string(r.Key)+"="+string(r.Value))
	}
	if err := cl.ProduceSync(ctx, in...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	body, err := os.ReadFile(connectFixture)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"CONNECT_SEED_BROKERS":   b.Addr(),
		"CONNECT_INPUT_TOPIC":    "connect_in",
		"CONNECT_OUTPUT_TOPIC":   "connect_out",
		"CONNECT_CONSUMER_GROUP": "connect_group",
	}
	sb := service.NewStreamBuilder()
	sb.SetEnvVarLookupFunc(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	// The test's own settings: no HTTP server on the engine's fixed port, a quiet log.
	if err := sb.SetYAML("http:\n  enabled: false\nlogger:\n  level: warn\n" + string(body)); err != nil {
		t.Fatalf("the Connect blocks were refused: %v", err)
	}
	streamtest.Run(t, sb, 10*time.Second)

	out, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ConsumeTopics("connect_out"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	var got []string
	for len(got) < records {
		fs := out.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records from connect_out before giving up", len(got), records)
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Key)+"="+string(r.Value)) })
	}
	sort.Strings(got)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("records on connect_out:\n got %v\nwant %v", got, want)
	}

	// commit_period is 5 s: the group's offsets reach the end of each partition soon after.
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, "connect_in")
	if err != nil {
		t.Fatal(err)
	}
	for {
		committed, err := adm.FetchOffsets(ctx, "connect_group")
		if err == nil {
			behind := 0
			ends.Each(func(e kadm.ListedOffset) {
				if c, ok := committed.Lookup(e.Topic, e.Partition); !ok || c.At < e.Offset {
					behind++
				}
			})
			if behind == 0 {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the group's offsets did not reach the end of connect_in: committed %v, ends %v (%v)", committed, ends, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
