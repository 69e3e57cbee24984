package devbroker

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"github.com/urfave/cli/v2"

	"github.com/preservarium/iot-ingestor/internal/testkit/testtier"
)

func topicPartitions(t *testing.T, seeds []string, opts ...kgo.Opt) map[string]int {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("metadata request: %v", err)
	}
	out := map[string]int{}
	for _, tp := range resp.Topics {
		out[*tp.Topic] = len(tp.Partitions)
	}
	return out
}

func TestStartCreatesTopicsAndPersists(t *testing.T) {
	testtier.Integration(t, "the embedded Kafka broker serving")
	dir := t.TempDir()
	b, err := Start(Options{Topics: DefaultTopics, Partitions: 4, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	addr := b.Addr()
	if got := topicPartitions(t, b.SeedBrokers()); got["iot_validated_data"] != 4 || got["iot_errors"] != 4 {
		t.Fatalf("topics %v, want iot_validated_data and iot_errors with 4 partitions", got)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "iot_errors", Value: []byte("kept")}).FirstErr(); err != nil {
		t.Fatalf("producing: %v", err)
	}
	cl.Close()
	b.Close()

	// Same address and directory: the record is still there.
	b2, err := Start(Options{Addr: addr, DataDir: dir})
	if err != nil {
		t.Fatalf("restarting on %s: %v", addr, err)
	}
	defer b2.Close()
	cons, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("iot_errors"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []string
	for len(got) == 0 && ctx.Err() == nil {
		cons.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	if len(got) != 1 || got[0] != "kept" {
		t.Fatalf("after restart read %v, want the record produced before", got)
	}
}

func TestStartSASLAndTLS(t *testing.T) {
	testtier.Integration(t, "the embedded Kafka broker serving")
	mat, err := SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := mat.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Start(Options{Topics: []string{"t"}, Partitions: 1, SASLUser: "u", SASLPass: "p", TLS: srv})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ok := topicPartitions(t, b.SeedBrokers(), kgo.DialTLSConfig(mat.ClientConfig()),
		kgo.SASL(scram.Auth{User: "u", Pass: "p"}.AsSha512Mechanism()))
	if ok["t"] != 1 {
		t.Fatalf("with TLS and SCRAM: topics %v, want t", ok)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.DialTLSConfig(mat.ClientConfig()),
		kgo.SASL(scram.Auth{User: "u", Pass: "wrong"}.AsSha256Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cl.Ping(ctx); err == nil {
		t.Fatalf("a wrong password was accepted")
	}
}

func TestStartRejectsBadOptions(t *testing.T) {
	for _, o := range []Options{
		{Addr: "no-port"},
		{SASLUser: "u"},
		{Partitions: -1},
	} {
		if b, err := Start(o); err == nil {
			b.Close()
			t.Errorf("options %+v accepted, want an error", o)
		}
	}
}

// syncBuffer is a writer the command and the test can share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestCommandServesUntilSIGTERM(t *testing.T) {
	testtier.Integration(t, "the embedded Kafka broker serving")
	out := &syncBuffer{}
	app := &cli.App{Name: "ingestor", Commands: []*cli.Command{Command()}, Writer: out}
	done := make(chan error, 1)
	go func() {
		done <- app.Run([]string{"ingestor", "kafka-broker", "--addr", "127.0.0.1:0", "--partitions", "3", "--topics", "a,b"})
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "broker ready on ") {
		if time.Now().After(deadline) {
			t.Fatalf("no readiness line; output so far: %q", out.String())
		}
		select {
		case err := <-done:
			t.Fatalf("command exited before becoming ready: %v; output: %q", err, out.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	addr := strings.Fields(strings.SplitN(out.String(), "broker ready on ", 2)[1])[0]
	if got := topicPartitions(t, []string{addr}); got["a"] != 3 || got["b"] != 3 {
		t.Fatalf("topics %v, want a and b with 3 partitions", got)
	}
	// The command has registered for SIGTERM before printing its
	// readiness line, so the signal reaches it, not the test process.
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("command returned %v after SIGTERM, want a clean exit", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("command still running 30s after SIGTERM")
	}
	if !strings.Contains(out.String(), "stopped") {
		t.Errorf("no stop line in output %q", out.String())
	}
}

// A refused topic rejects writes with TOPIC_AUTHORIZATION_FAILED and counts them, while another
// topic is written as usual; after Lift the topic takes writes again.
func TestRefuseProduceUntilLifted(t *testing.T) {
	testtier.Integration(t, "the embedded Kafka broker serving")
	b, err := Start(Options{Topics: DefaultTopics, Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.RecordRetries(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := b.RefuseProduce(ctx, kadm.NewClient(cl), "iot_errors")
	if err != nil {
		t.Fatal(err)
	}
	produce := func(topic string) error {
		return cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("x")}).FirstErr()
	}
	if err := produce("iot_errors"); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("write to the refused topic: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
	if r.Refused() == 0 {
		t.Fatal("the refused write was not counted")
	}
	if err := produce("iot_validated_data"); err != nil {
		t.Fatalf("write to another topic: %v", err)
	}
	before := r.Refused()
	r.Lift()
	if err := produce("iot_errors"); err != nil {
		t.Fatalf("write after Lift: %v", err)
	}
	if n := r.Refused(); n != before {
		t.Fatalf("%d more writes refused after Lift", n-before)
	}
}
