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

// bucketGroup is the messages of a batch bound for one bucket, in batch order.
type bucketGroup struct {
	bucket   string
	writeURL string
	idx      []int
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
	for _, g := range w.groupByBucket(idx, buckets) {
		if err := w.writeGroup(ctx, &b, g); err != nil {
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

// groupByBucket splits the messages to write by bucket: one group with the fixed bucket, or a
// group per routed bucket in the order of first appearance.
func (w *influxWriter) groupByBucket(idx []int, buckets []string) []bucketGroup {
	if buckets == nil {
		if len(idx) == 0 {
			return nil
		}
		return []bucketGroup{{bucket: w.bucket, writeURL: w.writeURL, idx: idx}}
	}
	var groups []bucketGroup
	at := map[string]int{}
	for _, i := range idx {
		g, ok := at[buckets[i]]
		if !ok {
			g = len(groups)
			at[buckets[i]] = g
			groups = append(groups, bucketGroup{bucket: buckets[i], writeURL: w.routedWriteURL(buckets[i])})
		}
		groups[g].idx = append(groups[g].idx, i)
	}
	return groups
}

// writeGroup writes one bucket's messages in requests under max_request_bytes, in batch order.
func (w *influxWriter) writeGroup(ctx context.Context, b *influxBatch, g bucketGroup) error {
	idx := g.idx
	for start := 0; start < len(idx); {
		end, size := start, 0
		for end < len(idx) && size+len(b.lines[idx[end]])+1 <= w.maxRequestBytes {
			size += len(b.lines[idx[end]]) + 1
			end++
		}
		if start > 0 || end < len(idx) {
			w.mSplit.Incr(1)
			w.counts.split.Add(1)
		}
		if err := w.writeRange(ctx, b, g, idx[start:end]); err != nil {
			return err
		}
		start = end
	}
	return nil
}

// writeRange writes the messages idx; on rejected points or a 413 it halves the
// range until the rejected messages stand alone and records their errors.
func (w *influxWriter) writeRange(ctx context.Context, b *influxBatch, g bucketGroup, idx []int) error {
	a, err := w.send(ctx, b, g, idx)
	if err != nil {
		return err
	}
	switch a.outcome {
	case outcomeStored:
		return nil
	case outcomeBucketMissing:
		// The messages name a bucket InfluxDB does not have: theirs to fail, so they reach
		// the error topic and can be redriven once it exists.
		for _, i := range idx {
			b.fails[i] = meta.WriteError(fmt.Sprintf("bucket %q not found in InfluxDB (404): %s; create it, then redrive", g.bucket, a.message))
			n := int64(bytes.Count(b.lines[i], []byte{'\n'}) + 1)
			w.mRejected.Incr(n)
			w.counts.rejected.Add(n)
		}
		return nil
	case outcomeRejected, outcomeTooLarge:
		if len(idx) == 1 {
			i := idx[0]
			if a.outcome == outcomeTooLarge {
				b.fails[i] = meta.WriteError(fmt.Sprintf("too large for InfluxDB (413): message of %d bytes exceeds the server's request size limit (%s)", len(b.lines[i]), a.message))
			} else {
				b.fails[i] = meta.WriteError(fmt.Sprintf("rejected by InfluxDB (%d): %s", a.status, a.message))
			}
			n := int64(bytes.Count(b.lines[i], []byte{'\n'}) + 1)
			w.mRejected.Incr(n)
			w.counts.rejected.Add(n)
			return nil
		}
		w.mSplit.Incr(1)
		w.counts.split.Add(1)
		half := len(idx) / 2
		if err := w.writeRange(ctx, b, g, idx[:half]); err != nil {
			return err
		}
		return w.writeRange(ctx, b, g, idx[half:])
	}
	return service.ErrNotConnected
}

// send posts the messages idx in one request, retrying outages in place.
// It returns service.ErrNotConnected when the outage outlasts the retries,
// on a deployment problem, or when ctx ends (shutdown: left unacknowledged).
func (w *influxWriter) send(ctx context.Context, b *influxBatch, g bucketGroup, idx []int) (influxAnswer, error) {
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
	for _, i := range idx {
		raw.Write(b.lines[i])
		raw.WriteByte('\n')
		points += bytes.Count(b.lines[i], []byte{'\n'}) + 1
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
			w.observeStoreDelay(b, idx)
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
func (w *influxWriter) observeStoreDelay(b *influxBatch, idx []int) {
	now := w.now().UnixMilli()
	for _, i := range idx {
		if ms := b.recordMs[i]; ms > 0 {
			// A record stamped ahead of this host's clock counts as no delay.
			w.mDelay.Timing(max(now-ms, 0) * int64(time.Millisecond))
		}
	}
}
