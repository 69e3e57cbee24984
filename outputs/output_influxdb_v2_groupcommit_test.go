package outputs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/preservarium/iot-ingestor/internal/testkit/influxtest"
)

// A batch queued behind a request in flight whose caller gives up (shutdown) is withdrawn:
// never written, not connected, and the slot it was given goes on to the next caller.
func TestInfluxGroupCommitWithdrawsCancelledQueuedBatch(t *testing.T) {
	fi := influxtest.NewFaultInjector(t, "") // the stub accepts and records
	started, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(free) // before the stub's own cleanup, which waits for its handlers
	fi.Plan(func(n int, _ influxtest.WriteRequest) influxtest.Fault {
		if n == 0 {
			close(started)
			<-release
		}
		return influxtest.Pass
	})
	w := newTestInfluxWriter(t, stubConf(fi.URL(), "max_in_flight: 1"))
	first := make(chan error, 1)
	go func() { first <- w.WriteBatch(context.Background(), lpBatch("gc,b=a v=1 1")) }()
	<-started // the first write is in flight, held by the stub

	ctx, cancel := context.WithCancel(context.Background())
	queued := make(chan error, 1)
	go func() { queued <- w.WriteBatch(ctx, lpBatch("gc,b=cancelled v=2 2")) }()
	waitFor(t, "the second batch queued", func() bool {
		w.commit.mu.Lock()
		defer w.commit.mu.Unlock()
		return len(w.commit.queue) == 1
	})
	cancel()
	if err := <-queued; !errors.Is(err, service.ErrNotConnected) {
		t.Fatalf("cancelled queued batch: %v, want not connected", err)
	}
	free()
	if err := <-first; err != nil {
		t.Fatalf("first batch: %v", err)
	}
	if err := w.WriteBatch(context.Background(), lpBatch("gc,b=c v=3 3")); err != nil {
		t.Fatalf("a batch after: %v", err)
	}
	got := strings.Join(fi.Accepted(), "|")
	if got != "gc,b=a v=1 1|gc,b=c v=3 3" {
		t.Errorf("stored %q, want the first and the last batch, never the cancelled one", got)
	}
	w.commit.mu.Lock()
	defer w.commit.mu.Unlock()
	if w.commit.writers != 0 || len(w.commit.queue) != 0 {
		t.Errorf("after every call: %d slots held, %d queued, want none", w.commit.writers, len(w.commit.queue))
	}
}

// Many concurrent callers against a slow stub: every line is stored exactly once, in fewer
// requests than batches, and no slot is left held (a lost slot would hang later calls).
func TestInfluxGroupCommitManyCallers(t *testing.T) {
	fi := influxtest.NewFaultInjector(t, "")
	fi.Plan(func(int, influxtest.WriteRequest) influxtest.Fault {
		return influxtest.Fault{Delay: 5 * time.Millisecond}
	})
	w := newTestInfluxWriter(t, stubConf(fi.URL(), "max_in_flight: 2"))
	const callers, rounds, per = 16, 10, 5
	var wg sync.WaitGroup
	errs := make(chan error, callers*rounds)
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				lines := make([]string, per)
				for i := range lines {
					lines[i] = fmt.Sprintf("gc,c=%d,r=%d,i=%d v=1 1", c, r, i)
				}
				if err := w.WriteBatch(context.Background(), lpBatch(lines...)); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	seen := map[string]int{}
	for _, l := range fi.Accepted() {
		seen[l]++
	}
	if len(seen) != callers*rounds*per {
		t.Errorf("%d distinct lines stored, want %d", len(seen), callers*rounds*per)
	}
	for l, n := range seen {
		if n != 1 {
			t.Errorf("%q stored %d times", l, n)
		}
	}
	if r := len(fi.Writes()); r >= callers*rounds {
		t.Errorf("%d requests for %d batches: nothing merged", r, callers*rounds)
	}
	if w.commit.writers != 0 {
		t.Errorf("%d slots still held", w.commit.writers)
	}
}
