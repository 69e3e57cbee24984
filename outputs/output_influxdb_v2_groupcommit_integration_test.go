package outputs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/preservarium/iot-ingestor/internal/testkit/influxtest"
)

// Group commit against the real InfluxDB 1.8, behind the fault injector as a recording proxy
// (and, for the outage, as the part of the path that fails).

// gcSlots is the tests' max_in_flight: the requests in flight at once.
const gcSlots = 2

// gcConf is the writer's configuration in these tests, through proxy.
func gcConf(proxy *influxtest.FaultInjector, srv *influxtest.Server, extra string) string {
	return itWriterConf(proxy.URL(), srv.Token(), itDB, fmt.Sprintf("max_in_flight: %d\n%s", gcSlots, extra))
}

// mergeBatches is n batches of perBatch lines of measurement gc, batch b's lines tagged b=b<b>.
func mergeBatches(n, perBatch int) []service.MessageBatch {
	out := make([]service.MessageBatch, n)
	for b := range out {
		lines := make([]string, perBatch)
		for i := range lines {
			lines[i] = fmt.Sprintf("gc,b=b%d,i=i%d v=%d %d", b, i, b*perBatch+i, 1000+b*perBatch+i)
		}
		out[b] = lpBatch(lines...)
	}
	return out
}

// writeMerged calls WriteBatch once per batch, concurrently, so that the batches after the
// first two queue while those two are held in flight by the proxy (held: how long), and
// returns each call's error. The proxy's plan must delay the first two writes.
func writeMerged(t *testing.T, w *influxWriter, proxy *influxtest.FaultInjector, batches []service.MessageBatch) []error {
	t.Helper()
	errs := make([]error, len(batches))
	var wg sync.WaitGroup
	call := func(b int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[b] = w.WriteBatch(context.Background(), batches[b])
		}()
	}
	// The first two take the request slots; wait until the proxy holds each.
	for b := 0; b < gcSlots; b++ {
		call(b)
		waitFor(t, fmt.Sprintf("write %d in flight", b), func() bool { return len(proxy.Writes()) == b+1 })
	}
	for b := gcSlots; b < len(batches); b++ {
		call(b)
	}
	waitFor(t, "the other batches queued", func() bool {
		w.commit.mu.Lock()
		defer w.commit.mu.Unlock()
		return len(w.commit.queue) == len(batches)-gcSlots
	})
	wg.Wait()
	return errs
}

// holdFirstTwo delays the first two writes long enough for the rest to queue behind them.
func holdFirstTwo(n int, _ influxtest.WriteRequest) influxtest.Fault {
	if n < gcSlots {
		return influxtest.Fault{Delay: 300 * time.Millisecond}
	}
	return influxtest.Pass
}

// batchesIn is how many distinct batches (tag b) a request's lines come from.
func batchesIn(r influxtest.WriteRequest) int {
	seen := map[string]bool{}
	for _, l := range r.Lines {
		tags := strings.SplitN(strings.SplitN(l, " ", 2)[0], ",", 3)
		seen[tags[1]] = true
	}
	return len(seen)
}

func TestInfluxIntegrationGroupCommitMergesQueuedBatches(t *testing.T) {
	srv := influxtest.Start(t, influxtest.Options{})
	srv.CreateDatabase(itDB)
	proxy := influxtest.NewFaultInjector(t, srv.URL())
	proxy.Plan(holdFirstTwo)
	w := newTestInfluxWriter(t, gcConf(proxy, srv, "gzip: false"))
	const n, per = 6, 50
	for b, err := range writeMerged(t, w, proxy, mergeBatches(n, per)) {
		if err != nil {
			t.Errorf("batch %d: %v", b, err)
		}
	}
	writes := proxy.Writes()
	if len(writes) != gcSlots+1 {
		t.Fatalf("%d requests for %d batches, want %d: the %d queued batches in one", len(writes), n, gcSlots+1, n-gcSlots)
	}
	if got := batchesIn(writes[gcSlots]); got != n-gcSlots {
		t.Errorf("the merged request holds lines of %d batches, want %d", got, n-gcSlots)
	}
	if c := srv.Count(itDB, "gc", "v"); c != n*per {
		t.Errorf("stored %d points, want %d", c, n*per)
	}
	if w.counts.written.Load() != n*per || w.counts.requests.Load() != int64(len(writes)) || w.counts.split.Load() != 0 {
		t.Errorf("counters written=%d requests=%d split=%d, want %d, %d, 0",
			w.counts.written.Load(), w.counts.requests.Load(), w.counts.split.Load(), n*per, len(writes))
	}
}

func TestInfluxIntegrationGroupCommitRejectedPointFailsOnlyItsMessage(t *testing.T) {
	srv := influxtest.Start(t, influxtest.Options{})
	srv.CreateDatabase(itDB)
	proxy := influxtest.NewFaultInjector(t, srv.URL())
	proxy.Plan(holdFirstTwo)
	w := newTestInfluxWriter(t, gcConf(proxy, srv, ""))
	const n, per = 5, 40
	batches := mergeBatches(n, per)
	const badBatch, badMsg = 3, 17 // queued, so written in the merged request
	batches[badBatch][badMsg] = service.NewMessage([]byte("gc,b=b3 v=1 not-a-time"))
	errs := writeMerged(t, w, proxy, batches)
	for b, err := range errs {
		if b == badBatch {
			continue
		}
		if err != nil {
			t.Errorf("batch %d: %v, want stored: the bad point is another batch's", b, err)
		}
	}
	failed := failedMessages(t, errs[badBatch])
	if len(failed) != 1 || !strings.HasPrefix(failed[badMsg], "write: rejected by InfluxDB (400): unable to parse") {
		t.Fatalf("batch %d failed %v, want only message %d, unable to parse", badBatch, failed, badMsg)
	}
	merged := proxy.Writes()[gcSlots]
	if batchesIn(merged) != n-gcSlots {
		t.Fatalf("the bad point's request held %d batches, want the %d queued", batchesIn(merged), n-gcSlots)
	}
	if c := srv.Count(itDB, "gc", "v"); c != n*per-1 {
		t.Errorf("stored %d points, want every one but the bad: %d", c, n*per-1)
	}
	if w.counts.rejected.Load() != 1 || w.counts.written.Load() < n*per-1 {
		t.Errorf("counters rejected=%d written=%d", w.counts.rejected.Load(), w.counts.written.Load())
	}
}

func TestInfluxIntegrationGroupCommitOutageFailsEveryMergedBatch(t *testing.T) {
	srv := influxtest.Start(t, influxtest.Options{})
	srv.CreateDatabase(itDB)
	proxy := influxtest.NewFaultInjector(t, srv.URL())
	var down atomic.Bool
	down.Store(true)
	proxy.Plan(func(n int, req influxtest.WriteRequest) influxtest.Fault {
		if n < gcSlots {
			return influxtest.Fault{Delay: 300 * time.Millisecond}
		}
		if down.Load() {
			return influxtest.Fault{Status: 503, Header: map[string]string{"Content-Type": "application/json"}, Body: `{"error":"unavailable"}`}
		}
		return influxtest.Pass
	})
	w := newTestInfluxWriter(t, gcConf(proxy, srv, ""))
	recordWaits(w)
	const n, per = 5, 30
	batches := mergeBatches(n, per)
	errs := writeMerged(t, w, proxy, batches)
	for b, err := range errs {
		if b < gcSlots {
			if err != nil {
				t.Errorf("batch %d, written before the outage: %v", b, err)
			}
			continue
		}
		if !errors.Is(err, service.ErrNotConnected) {
			t.Errorf("batch %d, in the merged request: %v, want not connected", b, err)
		}
	}
	// One merged request tried 1 + max_retries times: each failed attempt is one retry.
	if r := w.counts.retries.Load(); r != 3 {
		t.Errorf("%d retries counted, want 3 (one request, max_retries 2)", r)
	}
	if writes := proxy.Writes(); len(writes) != gcSlots+3 || batchesIn(writes[gcSlots]) != n-gcSlots {
		t.Errorf("%d requests, want the 2 held and the merged one tried 3 times", len(writes))
	}
	if c := srv.Count(itDB, "gc", "v"); c != gcSlots*per {
		t.Errorf("stored %d points during the outage, want only the first %d batches' %d", c, gcSlots, gcSlots*per)
	}
	// As the engine does: reconnect, resend what failed.
	down.Store(false)
	// A Connect may first answer the back-off the failed write left (unless a held write
	// stored after it cleared that), the next one checks.
	connected := false
	for try := 0; try < 3 && !connected; try++ {
		connected = w.Connect(context.Background()) == nil
	}
	if !connected {
		t.Fatal("no connect passed after the outage")
	}
	for b := gcSlots; b < n; b++ {
		if err := w.WriteBatch(context.Background(), batches[b]); err != nil {
			t.Errorf("batch %d after the outage: %v", b, err)
		}
	}
	if c := srv.Count(itDB, "gc", "v"); c != n*per {
		t.Errorf("stored %d points after the outage, want %d", c, n*per)
	}
	if w.counts.rejected.Load() != 0 {
		t.Errorf("%d points rejected by an outage", w.counts.rejected.Load())
	}
}
