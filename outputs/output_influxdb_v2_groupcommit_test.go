package outputs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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

// After a write gives up, the engine's idle writers still call WriteBatch once for each new
// batch (only its reconnect loop waits for Connect). None of those calls may reach the server
// until Connect has waited out its back-off and its check passed: with max_in_flight x 8
// callers, each sending once, a WAF in front of InfluxDB would see a burst per outage.
func TestInfluxNoWriteAfterGiveUpUntilConnectPasses(t *testing.T) {
	fi := influxtest.NewFaultInjector(t, "")
	fi.Plan(func(n int, req influxtest.WriteRequest) influxtest.Fault {
		if len(req.Lines) == 0 {
			return influxtest.Pass // the connection check passes: only writes are blocked
		}
		return influxtest.Fault{Status: http.StatusForbidden, Header: map[string]string{"Content-Type": "text/html"}, Body: "<html>Request blocked</html>"}
	})
	w := newTestInfluxWriter(t, stubConf(fi.URL(), "max_in_flight: 4\n"))
	recordWaits(w)
	withLines := func() int {
		n := 0
		for _, r := range fi.Writes() {
			if len(r.Lines) > 0 {
				n++
			}
		}
		return n
	}
	if err := w.WriteBatch(context.Background(), lpBatch("m v=1 1")); !errors.Is(err, service.ErrNotConnected) {
		t.Fatalf("first write: want ErrNotConnected, got %v", err)
	}
	if n := withLines(); n != 1 {
		t.Fatalf("%d writes reached the server, want 1", n)
	}
	retries := w.counts.retries.Load()

	concurrentWrites := func() {
		t.Helper()
		var wg sync.WaitGroup
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := w.WriteBatch(context.Background(), lpBatch(fmt.Sprintf("m v=%d 1", i))); !errors.Is(err, service.ErrNotConnected) {
					t.Errorf("write while suspended: want ErrNotConnected, got %v", err)
				}
			}()
		}
		wg.Wait()
	}
	concurrentWrites()
	if n := withLines(); n != 1 {
		t.Errorf("after a give-up, %d writes reached the server before Connect, want 1", n)
	}
	if got := w.counts.retries.Load(); got != retries {
		t.Errorf("influxdb_write_retries rose from %d to %d for writes never sent", retries, got)
	}

	// The first Connect answers the owed back-off without checking: still suspended.
	var bo *service.ErrBackOff
	if err := w.Connect(context.Background()); !errors.As(err, &bo) {
		t.Fatalf("Connect after a give-up: want the owed back-off, got %v", err)
	}
	concurrentWrites()
	if n := withLines(); n != 1 {
		t.Errorf("during the back-off, %d writes reached the server, want 1", n)
	}

	// The check passes: the next write is sent again (and fails again).
	if err := w.Connect(context.Background()); err != nil {
		t.Fatalf("Connect with the check passing: %v", err)
	}
	if err := w.WriteBatch(context.Background(), lpBatch("m v=99 1")); !errors.Is(err, service.ErrNotConnected) {
		t.Fatalf("write after Connect: want ErrNotConnected, got %v", err)
	}
	if n := withLines(); n != 2 {
		t.Errorf("after Connect passed, %d writes reached the server, want 2", n)
	}
}
