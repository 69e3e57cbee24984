package outputs

import (
	"context"
	"sync"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// Group commit. The engine calls WriteBatch from up to max_in_flight goroutines, each with one
// partition's batch (100 readings as shipped). InfluxDB's cost is mostly per request, so the
// batches that queue while requests are in flight are merged into one request: a caller that
// finds a request slot free writes at once (with whatever else queued), a caller that finds
// every slot taken queues its batch and waits. Nothing ever waits for a count or a period: a
// lone caller (after an outage the engine lets one writer through at a time) writes at once.
//
// Each caller keeps its own verdicts: the lines of a merged request stay tied to their
// caller's messages, so a rejected point fails only its own message, and an outage fails
// every caller of the request with service.ErrNotConnected.

// ifoBatchesPerRequest is how many batches the engine may hand the output per request slot
// (max_in_flight): the engine's own bound on concurrent WriteBatch calls is then
// max_in_flight x this. Handing over more batches than requests is what lets them merge: with
// as many batches as requests, what is outstanding at InfluxDB would stay as small as before
// and the larger requests would only be fewer. The memory is the input's: it holds these
// batches until they are acknowledged either way (KAFKA_CHECKPOINT_LIMIT per partition).
const ifoBatchesPerRequest = 8

// writeJob is one WriteBatch call's lines waiting to be written.
type writeJob struct {
	b       *influxBatch
	idx     []int    // the messages to write, in batch order
	buckets []string // per message when routed, else nil
	size    int      // bytes of line protocol of idx, newlines included

	// err is the job's outcome (nil: every line stored or failed in b.fails); set by the
	// writer of its request before done is closed.
	err  error
	done chan struct{}
	// lead hands a free request slot to this job's caller (see promoteLocked).
	lead chan struct{}
	// Under groupCommit.mu: taken by a writer; holding a request slot (given or in use).
	taken, holding bool
}

// groupCommit queues the jobs of concurrent WriteBatch calls and merges them into requests.
type groupCommit struct {
	w     *influxWriter
	limit int

	mu      sync.Mutex
	queue   []*writeJob
	writers int // callers holding a request slot
}

func newGroupCommit(w *influxWriter, limit int) *groupCommit {
	return &groupCommit{w: w, limit: max(limit, 1)}
}

// write stores the job's lines, alone or merged with others, and returns the job's outcome.
func (g *groupCommit) write(ctx context.Context, j *writeJob) error {
	j.done = make(chan struct{})
	j.lead = make(chan struct{}, 1)
	g.mu.Lock()
	g.queue = append(g.queue, j)
	lead := g.writers < g.limit
	if lead {
		g.writers++
		j.holding = true
	}
	g.mu.Unlock()

	cancelled := ctx.Done()
	for {
		if lead {
			lead = false
			g.writeQueued(ctx, j)
		}
		select {
		case <-j.done:
			// A slot given while the job queued, and another writer took the job first:
			// the slot is still this caller's to use.
			select {
			case <-j.lead:
				g.writeQueued(ctx, j)
			default:
			}
			return j.err
		case <-j.lead:
			lead = true
		case <-cancelled:
			// Shutdown: a job not yet taken is left unacknowledged; one in a request in
			// flight waits for that request, which ends with the same shutdown.
			if g.withdraw(j) {
				return service.ErrNotConnected
			}
			cancelled = nil
		}
	}
}

// writeQueued writes, with the slot own holds, the jobs queued now (up to max_request_bytes
// together), then gives the slot to the next caller waiting.
func (g *groupCommit) writeQueued(ctx context.Context, own *writeJob) {
	var jobs []*writeJob
	g.mu.Lock()
	if ctx.Err() == nil {
		jobs = g.takeLocked()
	}
	g.mu.Unlock()
	if len(jobs) > 0 {
		// Checked per request, not per call: jobs queued behind a request that gave up
		// are handed back at once instead of each trying the server again.
		err := service.ErrNotConnected
		if !g.w.isSuspended() {
			err = g.w.writeJobs(ctx, jobs)
		}
		for _, j := range jobs {
			j.err = err
			close(j.done)
		}
	}
	g.mu.Lock()
	g.writers--
	own.holding = false
	g.promoteLocked()
	g.mu.Unlock()
}

// takeLocked removes from the queue's front the jobs that fit in one request together: at
// least one, so a job over max_request_bytes is written (split) alone. Bounding the merge
// keeps the split counter meaning what it did: a batch too large for one request.
func (g *groupCommit) takeLocked() []*writeJob {
	n, size := 0, 0
	for n < len(g.queue) && (n == 0 || size+g.queue[n].size <= g.w.maxRequestBytes) {
		size += g.queue[n].size
		g.queue[n].taken = true
		n++
	}
	jobs := append([]*writeJob(nil), g.queue[:n]...)
	g.queue = append(g.queue[:0], g.queue[n:]...)
	return jobs
}

// promoteLocked gives the free request slots to the callers of the first queued jobs that
// hold none, so a queue is never left without a writer.
func (g *groupCommit) promoteLocked() {
	for _, j := range g.queue {
		if g.writers >= g.limit {
			return
		}
		if !j.holding {
			j.holding = true
			g.writers++
			j.lead <- struct{}{}
		}
	}
}

// withdraw removes a job not yet taken from the queue; false when a writer has it.
func (g *groupCommit) withdraw(j *writeJob) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if j.taken {
		return false
	}
	for i, q := range g.queue {
		if q == j {
			g.queue = append(g.queue[:i], g.queue[i+1:]...)
			break
		}
	}
	if j.holding {
		// The caller waits in write, so its slot was given and never used: the next
		// caller gets it.
		<-j.lead
		j.holding = false
		g.writers--
		g.promoteLocked()
	}
	return true
}
