package outputs

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/preservarium/iot-ingestor/internal/meta"
)

// influxBatch is one WriteBatch call's messages as the requests see them.
type influxBatch struct {
	// lines is each message's line protocol, trailing newlines cut; nil when not written.
	lines [][]byte
	// recordMs is each message's Kafka record time (ms), 0 when unknown: the store delay.
	recordMs []int64
	// fails is the error of each message that is not stored.
	fails map[int]error
}

// lineRef is one message's lines in a request: message i of a WriteBatch call's batch b.
// A merged request holds the messages of several calls (see groupCommit).
type lineRef struct {
	b *influxBatch
	i int
}

func (r lineRef) lines() []byte { return r.b.lines[r.i] }

// bucketGroup is the messages bound for one bucket, in the order of their calls and batches.
type bucketGroup struct {
	bucket   string
	writeURL string
	refs     []lineRef
}

// WriteBatch stores every message of the batch or says which failed. It
// returns nil (all stored), a *service.BatchError naming exactly the messages
// InfluxDB rejected (the others are stored), or service.ErrNotConnected when
// InfluxDB is unreachable, throttling or refusing the token: never a plain
// error, which a fallback would take as a failure of every message.
func (w *influxWriter) WriteBatch(ctx context.Context, batch service.MessageBatch) error {
	ctx, cancel := mergeCancel(ctx, w.closeCtx)
	defer cancel()

	b := influxBatch{lines: make([][]byte, len(batch)), recordMs: make([]int64, len(batch)), fails: map[int]error{}}
	idx := make([]int, 0, len(batch))
	var buckets []string // per message, when routed
	if w.bucketRoute != nil {
		buckets = make([]string, len(batch))
	}
	points, carried := 0, 0
	for i, m := range batch {
		if err := m.GetError(); err != nil {
			// A message that failed an earlier step is never written: it fails with that
			// error, which a fallback then routes (the shipped pipeline's error topic).
			b.fails[i] = err
			carried++
			continue
		}
		raw, err := m.AsBytes()
		if err != nil {
			b.fails[i] = meta.WriteError("reading message: " + err.Error())
			continue
		}
		// Trailing newlines would become empty lines between messages.
		raw = bytes.TrimRight(raw, "\r\n\t ")
		if len(raw) == 0 {
			// Nothing to store: a message without lines is done.
			continue
		}
		n := bytes.Count(raw, []byte{'\n'}) + 1
		if len(raw)+1 > w.maxRequestBytes {
			b.fails[i] = meta.WriteError(fmt.Sprintf("message of %d bytes exceeds %s (%d): it can never be written in one request; raise %s or make the reading smaller",
				len(raw)+1, ifoFieldMaxRequestBytes, w.maxRequestBytes, ifoFieldMaxRequestBytes))
			w.mRejected.Incr(int64(n))
			w.counts.rejected.Add(int64(n))
			continue
		}
		if buckets != nil {
			bucket, err := w.bucketRoute.TryString(m)
			if err == nil && bucket == "" {
				err = fmt.Errorf("resolves to an empty name")
			}
			if err != nil {
				b.fails[i] = meta.WriteError(fmt.Sprintf("choosing the bucket: %s %v", ifoFieldBucket, err))
				w.mRejected.Incr(int64(n))
				w.counts.rejected.Add(int64(n))
				continue
			}
			buckets[i] = bucket
		}
		b.lines[i] = raw
		if ms, ok := meta.RecordTimeMs(m); ok {
			b.recordMs[i] = ms
		}
		idx = append(idx, i)
		points += n
	}
	w.mBatch.Set(int64(points))
	if len(idx) > 0 {
		size := 0
		for _, i := range idx {
			size += len(b.lines[i]) + 1
		}
		if err := w.commit.write(ctx, &writeJob{b: &b, idx: idx, buckets: buckets, size: size}); err != nil {
			return err
		}
	}
	if len(b.fails) == 0 {
		return nil
	}
	var first, firstRejected error
	for i := range batch {
		if e, ok := b.fails[i]; ok {
			if first == nil {
				first = e
			}
			if firstRejected == nil && batch[i].GetError() == nil {
				firstRejected = e
			}
		}
	}
	if rejected := len(b.fails) - carried; rejected > 0 {
		w.log.Warnf("influxdb_v2: %d of %d messages not written; first: %v", rejected, len(batch), firstRejected)
	}
	// The engine's fallback output reports the batch-level text, not the message's own, when
	// it was handed a single message: that text must then be the message's reason exactly.
	summary := first
	if len(batch) > 1 {
		summary = fmt.Errorf("write: %d of %d messages not stored; first: %w", len(b.fails), len(batch), first)
	}
	bErr := service.NewBatchError(batch, summary)
	for i := range batch {
		if e, ok := b.fails[i]; ok {
			bErr = bErr.Failed(i, e)
		}
	}
	return bErr
}

// writeJobs writes the lines of the jobs taken together, per bucket, in requests under
// max_request_bytes. Rejected messages fail in their own batch's fails; an outage that
// outlasts the retries returns service.ErrNotConnected for all the jobs (lines stored
// before it are rewritten on redelivery, which is harmless).
func (w *influxWriter) writeJobs(ctx context.Context, jobs []*writeJob) error {
	for _, g := range w.groupByBucket(jobs) {
		if err := w.writeGroup(ctx, g); err != nil {
			return err
		}
	}
	return nil
}

// groupByBucket splits the jobs' messages by bucket: one group with the fixed bucket, or a
// group per routed bucket in the order of first appearance.
func (w *influxWriter) groupByBucket(jobs []*writeJob) []bucketGroup {
	if w.bucketRoute == nil {
		g := bucketGroup{bucket: w.bucket, writeURL: w.writeURL}
		for _, j := range jobs {
			for _, i := range j.idx {
				g.refs = append(g.refs, lineRef{j.b, i})
			}
		}
		return []bucketGroup{g}
	}
	var groups []bucketGroup
	at := map[string]int{}
	for _, j := range jobs {
		for _, i := range j.idx {
			g, ok := at[j.buckets[i]]
			if !ok {
				g = len(groups)
				at[j.buckets[i]] = g
				groups = append(groups, bucketGroup{bucket: j.buckets[i], writeURL: w.routedWriteURL(j.buckets[i])})
			}
			groups[g].refs = append(groups[g].refs, lineRef{j.b, i})
		}
	}
	return groups
}

// writeGroup writes one bucket's messages in requests under max_request_bytes, in order.
func (w *influxWriter) writeGroup(ctx context.Context, g bucketGroup) error {
	refs := g.refs
	for start := 0; start < len(refs); {
		end, size := start, 0
		for end < len(refs) && size+len(refs[end].lines())+1 <= w.maxRequestBytes {
			size += len(refs[end].lines()) + 1
			end++
		}
		if start > 0 || end < len(refs) {
			w.mSplit.Incr(1)
			w.counts.split.Add(1)
		}
		if err := w.writeRange(ctx, g, refs[start:end]); err != nil {
			return err
		}
		start = end
	}
	return nil
}

// writeRange writes the messages refs; on rejected points or a 413 it halves the
// range until the rejected messages stand alone and records their errors.
func (w *influxWriter) writeRange(ctx context.Context, g bucketGroup, refs []lineRef) error {
	a, err := w.send(ctx, g, refs)
	if err != nil {
		return err
	}
	switch a.outcome {
	case outcomeStored:
		return nil
	case outcomeBucketMissing:
		// The messages name a bucket InfluxDB does not have: theirs to fail, so they reach
		// the error topic and can be redriven once it exists.
		for _, r := range refs {
			r.b.fails[r.i] = meta.WriteError(fmt.Sprintf("bucket %q not found in InfluxDB (404): %s; create it, then redrive", g.bucket, a.message))
			n := int64(bytes.Count(r.lines(), []byte{'\n'}) + 1)
			w.mRejected.Incr(n)
			w.counts.rejected.Add(n)
		}
		return nil
	case outcomeRejected, outcomeTooLarge:
		if len(refs) == 1 {
			r := refs[0]
			if a.outcome == outcomeTooLarge {
				r.b.fails[r.i] = meta.WriteError(fmt.Sprintf("too large for InfluxDB (413): message of %d bytes exceeds the server's request size limit (%s)", len(r.lines()), a.message))
			} else {
				r.b.fails[r.i] = meta.WriteError(fmt.Sprintf("rejected by InfluxDB (%d): %s", a.status, a.message))
			}
			n := int64(bytes.Count(r.lines(), []byte{'\n'}) + 1)
			w.mRejected.Incr(n)
			w.counts.rejected.Add(n)
			return nil
		}
		w.mSplit.Incr(1)
		w.counts.split.Add(1)
		half := len(refs) / 2
		if err := w.writeRange(ctx, g, refs[:half]); err != nil {
			return err
		}
		return w.writeRange(ctx, g, refs[half:])
	}
	return service.ErrNotConnected
}

// send posts the messages refs in one request, retrying outages in place.
// It returns service.ErrNotConnected when the outage outlasts the retries,
// on a deployment problem, or when ctx ends (shutdown: left unacknowledged).
func (w *influxWriter) send(ctx context.Context, g bucketGroup, refs []lineRef) (influxAnswer, error) {
	body := w.bufPool.Get().(*bytes.Buffer)
	defer w.bufPool.Put(body)
	body.Reset()
	points := 0
	var raw *bytes.Buffer
	if w.gzip {
		raw = w.bufPool.Get().(*bytes.Buffer)
		defer w.bufPool.Put(raw)
		raw.Reset()
	} else {
		raw = body
	}
	for _, r := range refs {
		raw.Write(r.lines())
		raw.WriteByte('\n')
		points += bytes.Count(r.lines(), []byte{'\n'}) + 1
	}
	if w.gzip {
		zw := w.gzPool.Get().(*gzip.Writer)
		zw.Reset(body)
		_, _ = zw.Write(raw.Bytes())
		_ = zw.Close()
		w.gzPool.Put(zw)
	}

	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			return influxAnswer{}, service.ErrNotConnected
		}
		start := time.Now()
		a := w.post(ctx, g.writeURL, body.Bytes(), w.gzip)
		if w.bucketRoute != nil && bucketNotFound(a) {
			a.outcome = outcomeBucketMissing
		}
		switch a.outcome {
		case outcomeStored:
			w.mLatency.Timing(time.Since(start).Nanoseconds())
			w.mWritten.Incr(int64(points))
			w.counts.written.Add(int64(points))
			w.counts.requests.Add(1)
			w.observeStoreDelay(refs)
			w.writeStored()
			return a, nil
		case outcomeRejected, outcomeTooLarge, outcomeBucketMissing:
			return a, nil
		case outcomeDeployment:
			w.attemptFailed()
			w.noteProblem(w.deploymentText(a))
			w.writeGaveUp(a)
			return a, service.ErrNotConnected
		}
		// Outage.
		w.attemptFailed()
		if ctx.Err() != nil {
			// Shutdown: the write is left unacknowledged, not a failure of the path.
			return a, service.ErrNotConnected
		}
		if attempt >= w.retry.maxRetries {
			w.log.Warnf("influxdb_v2: writing to InfluxDB at %s failed %d times (%s); reporting disconnected until it recovers",
				w.serverURL, attempt+1, describeAnswer(a))
			w.writeGaveUp(a)
			return a, service.ErrNotConnected
		}
		wait := w.retry.wait(attempt, a.retryAfter)
		w.log.Debugf("influxdb_v2: write to %s failed (%s), retry %d in %v", w.serverURL, describeAnswer(a), attempt+1, wait)
		if w.sleep(ctx, wait) != nil {
			return a, service.ErrNotConnected
		}
	}
}

// observeStoreDelay records, per message just stored, the time from its Kafka record to now.
func (w *influxWriter) observeStoreDelay(refs []lineRef) {
	now := w.now().UnixMilli()
	for _, r := range refs {
		if ms := r.b.recordMs[r.i]; ms > 0 {
			// A record stamped ahead of this host's clock counts as no delay.
			w.mDelay.Timing(max(now-ms, 0) * int64(time.Millisecond))
		}
	}
}
