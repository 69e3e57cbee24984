package nackreplay

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// scriptedInput hands out the batches it is given once each and records the acks it gets.
type scriptedInput struct {
	mu      sync.Mutex
	batches []service.MessageBatch
	acks    map[string]error // first message of a batch -> ack error
}

func newScripted(batches ...[]string) *scriptedInput {
	s := &scriptedInput{acks: map[string]error{}}
	for _, b := range batches {
		var mb service.MessageBatch
		for _, m := range b {
			mb = append(mb, service.NewMessage([]byte(m)))
		}
		s.batches = append(s.batches, mb)
	}
	return s
}

func (s *scriptedInput) Connect(context.Context) error { return nil }
func (s *scriptedInput) Close(context.Context) error   { return nil }
func (s *scriptedInput) ReadBatch(ctx context.Context) (service.MessageBatch, service.AckFunc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.batches) == 0 {
		return nil, nil, service.ErrEndOfInput
	}
	b := s.batches[0]
	s.batches = s.batches[1:]
	first, _ := b[0].AsBytes()
	return b, func(_ context.Context, err error) error {
		s.mu.Lock()
		s.acks[string(first)] = err
		s.mu.Unlock()
		return nil
	}, nil
}

func contents(t *testing.T, b service.MessageBatch) string {
	t.Helper()
	var out []string
	for _, m := range b {
		c, err := m.AsBytes()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(c))
	}
	return strings.Join(out, ",")
}

func read(t *testing.T, r *Input) (service.MessageBatch, service.AckFunc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, ack, err := r.ReadBatch(ctx)
	if err != nil {
		t.Fatalf("ReadBatch: %v", err)
	}
	return b, ack
}

// A partial rejection redelivers exactly the rejected messages, again and again, each time
// mapped onto the batch actually sent: the case the engine's own replay gets wrong.
func TestPartialRejectionsRedeliverExactlyTheFailed(t *testing.T) {
	child := newScripted([]string{"a", "b", "c", "d", "e", "f"})
	r := Wrap(child)
	ctx := context.Background()

	b, ack := read(t, r)
	if got := contents(t, b); got != "a,b,c,d,e,f" {
		t.Fatalf("first delivery %q", got)
	}
	// Downstream processing replaces content, as the pipeline does; the rejection names the
	// processed messages, which still trace back to the batch sent.
	processed := b.Copy()
	for _, m := range processed {
		c, _ := m.AsBytes()
		m.SetBytes([]byte("processed-" + string(c)))
	}
	boom := errors.New("refused")
	_ = ack(ctx, service.NewBatchError(processed, boom).Failed(1, boom).Failed(3, boom).Failed(5, boom))

	b, ack = read(t, r)
	if got := contents(t, b); got != "b,d,f" {
		t.Fatalf("second delivery %q, want the three rejected, unprocessed", got)
	}
	_ = ack(ctx, service.NewBatchError(b, boom).Failed(2, boom))

	b, ack = read(t, r)
	if got := contents(t, b); got != "f" {
		t.Fatalf("third delivery %q, want f", got)
	}
	if _, done := child.acks["a"]; done {
		t.Fatal("the child was acknowledged before every message was delivered")
	}
	_ = ack(ctx, nil)
	if err, done := child.acks["a"]; !done || err != nil {
		t.Fatalf("child ack after full delivery: done=%v err=%v", done, err)
	}
}

// A plain error, or a rejection that cannot be traced to the messages sent, redelivers the
// whole batch.
func TestUntraceableRejectionRedeliversAll(t *testing.T) {
	child := newScripted([]string{"a", "b", "c"})
	r := Wrap(child)
	ctx := context.Background()

	b, ack := read(t, r)
	_ = ack(ctx, errors.New("plain failure"))
	b, ack = read(t, r)
	if got := contents(t, b); got != "a,b,c" {
		t.Fatalf("after a plain error: %q", got)
	}
	orphans := service.MessageBatch{service.NewMessage([]byte("x")), service.NewMessage([]byte("y"))}
	boom := errors.New("refused")
	_ = ack(ctx, service.NewBatchError(orphans, boom).Failed(0, boom))
	b, _ = read(t, r)
	if got := contents(t, b); got != "a,b,c" {
		t.Fatalf("after an untraceable rejection: %q", got)
	}
}

// A redelivery is handed out even while the child has nothing to read, and the end of input
// waits until every batch is acknowledged.
func TestRedeliveryDoesNotWaitForTheChildAndEndWaitsForAcks(t *testing.T) {
	child := newScripted([]string{"a"})
	r := Wrap(child)
	ctx := context.Background()

	_, ack := read(t, r)
	_ = ack(ctx, errors.New("refused"))
	b, ack := read(t, r)
	if got := contents(t, b); got != "a" {
		t.Fatalf("redelivery %q", got)
	}
	_ = ack(ctx, nil)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, _, err := r.ReadBatch(cctx); !errors.Is(err, service.ErrEndOfInput) {
		t.Fatalf("after the last ack: %v, want end of input", err)
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	r := Wrap(newScripted())
	if r.delay(1) != 0 || r.delay(2) != 0 {
		t.Fatal("the first redeliveries must be immediate")
	}
	first, max := retryBackoff.Initial, retryBackoff.Max
	if d := r.delay(3); d < first/2 || d > first {
		t.Fatalf("delay(3)=%v, want within [%v, %v]", d, first/2, first)
	}
	if d := r.delay(4); d < first || d > 2*first {
		t.Fatalf("delay(4)=%v, want within [%v, %v]", d, first, 2*first)
	}
	if d := r.delay(100); d < max/2 || d > max {
		t.Fatalf("delay(100)=%v, want within [%v, %v] (the cap, jittered)", d, max/2, max)
	}
}

// A batch in back-off blocks nothing: while it waits, ReadBatch hands out the child's fresh
// batches and other redeliveries that are due, and the waiting one comes back once its own
// back-off has elapsed. (It used to sleep inside ReadBatch, which the engine calls from one
// goroutine: one batch that kept failing throttled every partition.)
func TestBatchInBackoffDoesNotBlockOthers(t *testing.T) {
	r := Wrap(newScripted([]string{"stuck"}, []string{"fresh-1"}, []string{"fresh-2"}, []string{"other"}))
	ctx := context.Background()
	boom := errors.New("refused")

	// "stuck" is rejected past its immediate tries: its next delivery waits an hour.
	r.backoff.Initial, r.backoff.Max = time.Hour, time.Hour
	b, ack := read(t, r)
	for i := 0; i <= immediateTries; i++ {
		if got := contents(t, b); got != "stuck" {
			t.Fatalf("delivery %d: %q, want stuck", i, got)
		}
		_ = ack(ctx, boom)
		if i < immediateTries {
			b, ack = read(t, r)
		}
	}
	b, ack = read(t, r)
	if got := contents(t, b); got != "fresh-1" {
		t.Fatalf("with stuck in back-off ReadBatch returned %q, want the fresh batch", got)
	}
	_ = ack(ctx, nil)

	// Another batch rejected once is redelivered at once, ahead of the one still waiting.
	b, _ = read(t, r)
	if got := contents(t, b); got != "fresh-2" {
		t.Fatalf("got %q, want fresh-2", got)
	}
	b, ack = read(t, r)
	if got := contents(t, b); got != "other" {
		t.Fatalf("got %q, want other", got)
	}
	_ = ack(ctx, boom)
	b, ack = read(t, r)
	if got := contents(t, b); got != "other" {
		t.Fatalf("with stuck in back-off the redelivery due now is %q, want other", got)
	}
	_ = ack(ctx, nil)

	// Its back-off elapsed, the waiting batch is delivered again.
	r.mu.Lock()
	for _, d := range r.retries {
		d.due = time.Now().Add(50 * time.Millisecond)
	}
	r.mu.Unlock()
	r.signal()
	b, ack = read(t, r)
	if got := contents(t, b); got != "stuck" {
		t.Fatalf("after its back-off: %q, want stuck", got)
	}
	_ = ack(ctx, nil)
}

// observedInput counts the rejections the replayer reports to a Rebuildable child.
type observedInput struct {
	*rebuildableInput
	mu       sync.Mutex
	rejected []string // first source of each rejected batch, once per rejection
}

func (o *observedInput) Rejected(orig Originals) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.rejected = append(o.rejected, orig.(sourceBatch).src[0])
}

// A child that observes rejections is told of each one, with the originals of the batch.
func TestRejectionObserverIsToldOfEachRejection(t *testing.T) {
	child := &observedInput{rebuildableInput: newRebuildable([]string{"a", "b"}, []string{"c"})}
	r := Wrap(child)
	ctx := context.Background()
	boom := errors.New("refused")
	b, ack := read(t, r)
	_ = ack(ctx, service.NewBatchError(b, boom).Failed(1, boom))
	b, ack = read(t, r)
	if got := contents(t, b); got != "b" {
		t.Fatalf("redelivery %q, want b", got)
	}
	_ = ack(ctx, boom)
	b, ack = read(t, r)
	_ = ack(ctx, nil)
	b, ack = read(t, r)
	if got := contents(t, b); got != "c" {
		t.Fatalf("got %q, want c", got)
	}
	_ = ack(ctx, nil)
	child.mu.Lock()
	defer child.mu.Unlock()
	if strings.Join(child.rejected, ",") != "a,a" {
		t.Fatalf("rejections reported: %q, want a,a (the batch starting at a, twice)", child.rejected)
	}
}

// The engine's AutoRetryNacksBatched, given this sequence, redelivers "d" and loses "b"
// (checked against benthos v4.60.0 while writing this package).
func TestSecondRejectionMapsOntoTheSubsetSent(t *testing.T) {
	r := Wrap(newScripted([]string{"a", "b", "c", "d", "e", "f"}))
	ctx := context.Background()
	boom := errors.New("refused")
	b, ack := read(t, r)
	_ = ack(ctx, service.NewBatchError(b, boom).Failed(1, boom).Failed(3, boom).Failed(5, boom))
	b, ack = read(t, r)
	_ = ack(ctx, service.NewBatchError(b, boom).Failed(0, boom))
	b, _ = read(t, r)
	if got := contents(t, b); got != "b" {
		t.Fatalf("after rejecting b of b,d,f the redelivery is %q, want b", got)
	}
}

// rebuildableInput is a child that builds its messages from source strings, as the Kafka input
// builds them from its records: each message carries its source position as metadata.
type rebuildableInput struct {
	scriptedInput
	sources [][]string
	built   int // messages built by Message, i.e. for redeliveries
}

func newRebuildable(batches ...[]string) *rebuildableInput {
	return &rebuildableInput{scriptedInput: *newScripted(batches...), sources: batches}
}

type sourceBatch struct {
	child *rebuildableInput
	src   []string
}

func (s sourceBatch) Message(i int) *service.Message {
	s.child.built++
	m := service.NewMessage([]byte(s.src[i]))
	m.MetaSetMut("position", i)
	return m
}

func (s sourceBatch) IndexOf(m *service.Message) (int, bool) {
	v, _ := m.MetaGetMut("position")
	i, ok := v.(int)
	return i, ok
}

func (c *rebuildableInput) ReadRebuildable(ctx context.Context) (service.MessageBatch, Originals, service.AckFunc, error) {
	b, ack, err := c.ReadBatch(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	src := c.sources[0]
	c.sources = c.sources[1:]
	for i, m := range b {
		m.MetaSetMut("position", i)
	}
	return b, sourceBatch{c, src}, ack, nil
}

// A child that can build its messages again has them handed on as they are, without a copy;
// a rejection is traced through what the pipeline derived from them, and only the rejected
// messages are built again, unprocessed.
func TestRebuildableChildIsHandedOnAndRebuiltOnRejection(t *testing.T) {
	child := newRebuildable([]string{"a", "b", "c", "d"})
	child.mu.Lock()
	own := append(service.MessageBatch(nil), child.batches[0]...)
	child.mu.Unlock()
	r := Wrap(child)
	ctx := context.Background()

	b, ack := read(t, r)
	for i := range b {
		if b[i] != own[i] {
			t.Fatalf("message %d of the first delivery is not the child's own message", i)
		}
	}
	// The pipeline mutates what it is given, and the output rejects error records derived
	// from two of the messages.
	derived := service.MessageBatch{}
	for _, m := range b {
		c, _ := m.AsBytes()
		m.SetBytes([]byte("processed-" + string(c)))
		derived = append(derived, m.Copy())
	}
	boom := errors.New("refused")
	_ = ack(ctx, service.NewBatchError(derived, boom).Failed(0, boom).Failed(2, boom))

	b, ack = read(t, r)
	if got := contents(t, b); got != "a,c" {
		t.Fatalf("redelivery %q, want a,c unprocessed", got)
	}
	if child.built != 2 {
		t.Fatalf("%d messages built for the redelivery, want 2", child.built)
	}
	_ = ack(ctx, service.NewBatchError(b, boom).Failed(1, boom))
	b, ack = read(t, r)
	if got := contents(t, b); got != "c" {
		t.Fatalf("second redelivery %q, want c", got)
	}
	_ = ack(ctx, nil)
	if err, done := child.acks["a"]; !done || err != nil {
		t.Fatalf("child ack after full delivery: done=%v err=%v", done, err)
	}
}

// A rejection naming a message that was not in the delivery it rejects (here one delivered
// and acknowledged before) cannot be traced: everything sent is delivered again.
func TestRejectionOfAMessageNotSentRedeliversWhatWasSent(t *testing.T) {
	r := Wrap(newRebuildable([]string{"a", "b", "c"}))
	ctx := context.Background()
	boom := errors.New("refused")
	first, ack := read(t, r)
	_ = ack(ctx, service.NewBatchError(first, boom).Failed(1, boom).Failed(2, boom))
	b, ack := read(t, r)
	if got := contents(t, b); got != "b,c" {
		t.Fatalf("redelivery %q, want b,c", got)
	}
	_ = ack(ctx, service.NewBatchError(first, boom).Failed(0, boom))
	b, _ = read(t, r)
	if got := contents(t, b); got != "b,c" {
		t.Fatalf("after a rejection naming a, which was not sent: %q, want b,c", got)
	}
}
