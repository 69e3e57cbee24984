// Command readings-gen produces a realistic, deterministic stream of stage-2
// readings (internal/dev/readinggen) to Kafka: many devices, every message variant
// of the contract, a share of bad messages of every kind. Each record's key is
// its device_id. It prints progress on stderr and a summary of what the
// ingestor must make of the stream on stdout, and can write the expectation of
// every acknowledged record, with its partition and offset, as JSON lines for
// end-to-end tests and the bench harness.
//
//	readings-gen --brokers 127.0.0.1:9092 --count 10000 --rate 500 --expect-out expect.jsonl
//
// The same --seed and flags give the same records. Each record's time is the
// reading's time (messages without a timestamp are stored at it); the default
// --start is a fixed date in 2025, so against a Kafka whose time-based
// retention is shorter than the age of those times, pass --start now.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/preservarium/iot-ingestor/internal/dev/readinggen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "readings-gen: %v\n", err)
		os.Exit(1)
	}
}

type config struct {
	brokers   []string
	topic     string
	count     int
	rate      float64
	opts      readinggen.Options
	seed      int64
	expectOut string
	variants  bool
	progress  time.Duration
	timeout   time.Duration
}

var precisions = map[string]time.Duration{"ns": time.Nanosecond, "us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	c := config{opts: readinggen.DefaultOptions()}
	fs := flag.NewFlagSet("readings-gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokers := fs.String("brokers", "127.0.0.1:9092", "Kafka seed brokers, comma-separated host:port")
	fs.StringVar(&c.topic, "topic", "iot_validated_data", "topic to produce to")
	fs.IntVar(&c.count, "count", 1000, "number of messages to produce")
	fs.Float64Var(&c.rate, "rate", 0, "messages per second; 0 produces as fast as the broker takes them")
	fs.Float64Var(&c.opts.BadShare, "bad-share", c.opts.BadShare, "share of bad messages, 0 to 1")
	fs.Int64Var(&c.seed, "seed", 1, "seed: the same seed and flags give the same stream")
	fs.IntVar(&c.opts.Devices, "devices", c.opts.Devices, "number of distinct devices")
	precision := fs.String("precision", "us", "the ingestor's timestamp precision (ns, us, ms, s): expected timestamps are truncated to it")
	start := fs.String("start", c.opts.Start.Format(time.RFC3339), `time of the first readings (RFC 3339), or "now" for one hour ago`)
	fs.StringVar(&c.expectOut, "expect-out", "", "write the expectation of every acknowledged record to this file, one JSON object a line (in acknowledgement order; seq gives the order produced)")
	fs.BoolVar(&c.variants, "expect-variants", false, "include each message's variant names in --expect-out lines (about 300 bytes more a line)")
	fs.DurationVar(&c.progress, "progress", time.Second, "interval between progress lines on stderr; 0 for none")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "how long to wait for a broker to answer at start, and for any acknowledgement while records are outstanding, before giving up")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: readings-gen [flags]\n\nProduces realistic stage-2 readings to Kafka, keyed by device_id.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q: every setting is a flag", fs.Args())
	}
	for _, b := range strings.Split(*brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.brokers = append(c.brokers, b)
		}
	}
	if len(c.brokers) == 0 {
		return c, errors.New("--brokers is empty: give at least one host:port")
	}
	if c.topic == "" {
		return c, errors.New("--topic is empty")
	}
	if c.count < 0 {
		return c, fmt.Errorf("--count %d is negative", c.count)
	}
	if c.rate < 0 {
		return c, fmt.Errorf("--rate %v is negative (0 means as fast as possible)", c.rate)
	}
	if c.timeout <= 0 {
		return c, fmt.Errorf("--timeout %v must be positive", c.timeout)
	}
	p, ok := precisions[*precision]
	if !ok {
		return c, fmt.Errorf("--precision %q is not one of ns, us, ms, s", *precision)
	}
	c.opts.Precision = p
	if *start == "now" {
		c.opts.Start = time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	} else {
		t, err := time.Parse(time.RFC3339, *start)
		if err != nil {
			return c, fmt.Errorf("--start %q is neither RFC 3339 nor \"now\": %w", *start, err)
		}
		c.opts.Start = t.UTC()
	}
	return c, nil
}

// expectWriter writes expectation lines from the producer's callbacks, which
// can run concurrently for different partitions.
type expectWriter struct {
	mu    sync.Mutex
	f     *os.File
	w     *bufio.Writer
	lines int
	err   error
}

func (x *expectWriter) write(e readinggen.Expectation) {
	line, err := e.MarshalJSONLine()
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.err != nil {
		return
	}
	if err != nil {
		x.err = fmt.Errorf("encoding expectation %d: %w", e.Seq, err)
		return
	}
	line = append(line, '\n')
	if _, err := x.w.Write(line); err != nil {
		x.err = fmt.Errorf("writing %s: %w", x.f.Name(), err)
		return
	}
	x.lines++
}

func (x *expectWriter) close() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.w.Flush(); err != nil && x.err == nil {
		x.err = fmt.Errorf("writing %s: %w", x.f.Name(), err)
	}
	if err := x.f.Close(); err != nil && x.err == nil {
		x.err = fmt.Errorf("closing %s: %w", x.f.Name(), err)
	}
	return x.err
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	gen, err := readinggen.New(c.seed, c.opts)
	if err != nil {
		return err
	}

	var expect *expectWriter
	if c.expectOut != "" {
		f, err := os.Create(c.expectOut)
		if err != nil {
			return fmt.Errorf("creating --expect-out file: %w", err)
		}
		expect = &expectWriter{f: f, w: bufio.NewWriterSize(f, 1<<20)}
	}

	cl, err := kgo.NewClient(
		kgo.SeedBrokers(c.brokers...),
		kgo.DefaultProduceTopic(c.topic),
		// No RecordDeliveryTimeout: franz-go measures it from the record's
		// timestamp, which here is the reading's time, often long past. The
		// stall watchdog below bounds delivery instead.
		kgo.ProducerLinger(5*time.Millisecond),
		// Lets the generator feed a broker that creates topics on demand;
		// a broker that does not answers UNKNOWN_TOPIC_OR_PARTITION.
		kgo.AllowAutoTopicCreation(),
	)
	if err != nil {
		if expect != nil {
			_ = expect.close()
		}
		return fmt.Errorf("creating Kafka client for %v: %w", c.brokers, err)
	}
	defer cl.Close()

	pingCtx, cancel := context.WithTimeout(ctx, c.timeout)
	err = cl.Ping(pingCtx)
	cancel()
	if err != nil {
		if expect != nil {
			_ = expect.close()
		}
		return fmt.Errorf("no Kafka broker answered at %v within %v: %w", c.brokers, c.timeout, err)
	}

	var (
		produced, acked, failed atomic.Int64
		firstErr                atomic.Pointer[error]
		tallyMu                 sync.Mutex
		tally                   readinggen.Tally
	)
	began := time.Now()

	// Records are produced under prodCtx, cancelled when the broker stops
	// acknowledging for --timeout: what is still buffered then fails, and
	// Produce calls blocked on a full buffer return, instead of hanging.
	prodCtx, cancelProd := context.WithCancel(context.Background())
	defer cancelProd()
	var stalled atomic.Bool
	watchDone := make(chan struct{})
	go func() {
		tick := time.NewTicker(max(c.timeout/20, 10*time.Millisecond))
		defer tick.Stop()
		last, lastAt := int64(-1), time.Now()
		for {
			select {
			case <-watchDone:
				return
			case <-tick.C:
			}
			done := acked.Load() + failed.Load()
			if done != last || done == produced.Load() {
				last, lastAt = done, time.Now()
				continue
			}
			if time.Since(lastAt) > c.timeout {
				stalled.Store(true)
				cancelProd()
				return
			}
		}
	}()
	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		if c.progress <= 0 {
			return
		}
		t := time.NewTicker(c.progress)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				el := time.Since(began).Seconds()
				fmt.Fprintf(stderr, "readings-gen: %d/%d produced, %d acknowledged, %d failed, %.0f/s\n",
					produced.Load(), c.count, acked.Load(), failed.Load(), float64(acked.Load())/el)
			}
		}
	}()

	interrupted := false
	for i := 0; i < c.count; i++ {
		if c.rate > 0 {
			due := began.Add(time.Duration(float64(i) / c.rate * float64(time.Second)))
			if wait := time.Until(due); wait > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(wait):
				}
			}
		}
		if ctx.Err() != nil {
			interrupted = true
			break
		}
		r := gen.Next()
		e := r.Expect
		// The record time is the reading's: messages without a timestamp are
		// stored at it, and a rerun of the same seed is the same stream.
		rec := &kgo.Record{Key: r.Key, Value: r.Value, Timestamp: r.Timestamp}
		produced.Add(1)
		// prodCtx, not ctx: after Ctrl-C what is already handed over is still
		// delivered.
		cl.Produce(prodCtx, rec, func(rec *kgo.Record, err error) {
			if err != nil {
				failed.Add(1)
				err = fmt.Errorf("record %d (key %q) to %s: %w", e.Seq, rec.Key, c.topic, err)
				firstErr.CompareAndSwap(nil, &err)
				return
			}
			acked.Add(1)
			e.Source = &readinggen.Source{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, TimestampMS: rec.Timestamp.UnixMilli()}
			tallyMu.Lock()
			tally.Add(e)
			tallyMu.Unlock()
			if expect != nil {
				if !c.variants {
					e.Variants = nil
				}
				expect.write(e)
			}
		})
	}
	// Deliver what is buffered even after Ctrl-C, but not forever.
	flushErr := cl.Flush(prodCtx)
	close(watchDone)
	close(stopProgress)
	<-progressDone
	elapsed := time.Since(began)

	var expectErr error
	if expect != nil {
		expectErr = expect.close()
	}

	fmt.Fprintf(stdout, "readings-gen: %d of %d messages acknowledged by %v on %s in %v (%.0f/s), seed %d, %d devices, %.1f%% bad asked\n",
		acked.Load(), c.count, c.brokers, c.topic, elapsed.Round(time.Millisecond), float64(acked.Load())/elapsed.Seconds(),
		c.seed, c.opts.Devices, c.opts.BadShare*100)
	if err := tally.WriteText(stdout); err != nil {
		return err
	}
	if expect != nil && expectErr == nil {
		fmt.Fprintf(stdout, "  expectations: %s (%d lines)\n", c.expectOut, expect.lines)
	}

	switch {
	case stalled.Load():
		return fmt.Errorf("no acknowledgement from %v for %v with %d records outstanding: gave up (%d failed)", c.brokers, c.timeout, produced.Load()-acked.Load(), failed.Load())
	case failed.Load() > 0:
		return fmt.Errorf("%d records were not acknowledged; first: %w", failed.Load(), *firstErr.Load())
	case flushErr != nil:
		return fmt.Errorf("flushing records to %v: %w", c.brokers, flushErr)
	case expectErr != nil:
		return expectErr
	case interrupted:
		return fmt.Errorf("interrupted after %d of %d messages", produced.Load(), c.count)
	}
	return nil
}
