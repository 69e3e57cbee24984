package kafka

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/preservarium/iot-ingestor/internal/backoff"
	"github.com/preservarium/iot-ingestor/internal/kafkaclient"
	"github.com/preservarium/iot-ingestor/internal/nackreplay"
)

// How often the input checks that a broker is reachable while no records
// arrive, and how long it waits for an answer.
const (
	healthInterval = time.Second
	pingTimeout    = 3 * time.Second
)

// reconnectBackoff spaces the engine's reconnect attempts while no broker answers (the engine
// logs each failed one; its cap is also the longest the input takes to notice a broker is
// back), and pollRetryBackoff the polls that fail at once (no committed offset with
// start_offset: committed, an authorization error), so neither spins nor floods the log.
var (
	reconnectBackoff = backoff.Policy{Initial: time.Second, Max: 10 * time.Second, Jitter: backoff.DefaultJitter}
	pollRetryBackoff = backoff.Policy{Initial: time.Second, Max: 5 * time.Second, Jitter: backoff.DefaultJitter}
)

func init() {
	service.MustRegisterBatchInput("kafka_franz", kafkaFranzInputSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchInput, error) {
			in, err := newFranzInput(conf, mgr)
			if err != nil {
				return nil, err
			}
			if !in.replayNacks {
				return withTimelyNacks(in, in.timelyNacks), nil
			}
			// Not the engine's AutoRetryNacksBatched: after a partial
			// rejection it can map a later rejection onto the wrong
			// messages and acknowledge some never delivered (see
			// internal/nackreplay).
			return withTimelyNacks(nackreplay.Wrap(in), in.timelyNacks), nil
		})
}

// franzInput is a consumer-group member. A poll loop hands each partition's
// records to that partition's partitionConsumer, which cuts batches and
// sends them to ReadBatch; acknowledgements flow back into the partition's
// checkpointer, and a committer commits what the checkpointers allow.
type franzInput struct {
	inputConfig
	clientOpts []kgo.Opt

	res      *service.Resources
	log      *service.Logger
	progress *lagTracker
	ctx      context.Context // lives until Close
	stop     context.CancelFunc

	batches     chan readyBatch
	unreachable chan struct{} // signalled when the health check fails

	connMu    sync.Mutex
	client    *kgo.Client
	connFails int       // consecutive failed Connect calls; guarded by connMu
	failSince time.Time // when they began

	// Space the lines of a cause that repeats during an outage.
	fetchRepeats, commitRepeats kafkaclient.Repeats

	mu    sync.Mutex
	parts map[topicPartition]*partitionConsumer
	room  chan struct{} // signalled when a partition drops below its limits or is dropped
	// atBuffer is set while the partitions not held back hold buffer_bytes or more: the poll
	// loop takes no fetch and the partitions cut the batches they are filling (see full).
	atBuffer atomic.Bool

	commitMu     sync.Mutex
	reachable    atomic.Bool
	lastProgress atomic.Int64 // unix nanos of the last fetch with records

	bg        sync.WaitGroup
	closeOnce sync.Once
	closed    chan struct{} // closed once Close's helper has left the group
	started   bool          // guarded by connMu

	// Backfill state; see start_offsets and end_timestamp.
	hasCommit map[topicPartition]bool // from the last offset fetch of the group
	ends      map[topicPartition]endBound
	ended     chan struct{}
	endOnce   sync.Once
}

// endBound is where a partition's backfill range stops: records from off on
// are not consumed; logStart tells an empty range.
type endBound struct {
	off      int64
	logStart int64
}

type topicPartition struct {
	topic     string
	partition int32
}

// eachPartition calls fn with each partition of tps, as the group's callbacks name them.
func eachPartition(tps map[string][]int32, fn func(topicPartition)) {
	for topic, ps := range tps {
		for _, p := range ps {
			fn(topicPartition{topic, p})
		}
	}
}

type readyBatch struct {
	batch   service.MessageBatch
	records recordBatch // the record of each message; nil when batching processors ran
	ack     service.AckFunc
}

func newFranzInput(conf *service.ParsedConfig, res *service.Resources) (*franzInput, error) {
	cfg, err := parseConfig(conf)
	if err != nil {
		return nil, err
	}
	in := &franzInput{
		inputConfig: cfg,
		res:         res,
		log:         res.Logger(),
		batches:     make(chan readyBatch),
		unreachable: make(chan struct{}, 1),
		parts:       map[topicPartition]*partitionConsumer{},
		room:        make(chan struct{}, 1),
		ended:       make(chan struct{}),
		closed:      make(chan struct{}),
	}
	in.ctx, in.stop = context.WithCancel(context.Background())
	in.progress = newLagTracker(res, cfg.group, cfg.startOffset == startEarliest)
	in.clientOpts = append(cfg.conn.Opts(), kgo.WithLogger(kafkaclient.Logger(in.log)))
	if cfg.group != "" {
		in.clientOpts = append(in.clientOpts, in.groupOpts()...)
	}
	in.clientOpts = append(in.clientOpts, cfg.consumeOpts()...)
	in.reachable.Store(true)
	return in, nil
}

// Connect creates the client once and from then on only checks that a
// broker answers: the client, its group membership and its positions
// survive an outage, so reconnecting never loses the input's place.
func (in *franzInput) Connect(ctx context.Context) error {
	in.connMu.Lock()
	defer in.connMu.Unlock()
	if in.ctx.Err() != nil {
		return service.ErrEndOfInput
	}
	if in.client == nil {
		cl, err := kgo.NewClient(in.clientOpts...)
		if err != nil {
			return fmt.Errorf("kafka_franz: creating the Kafka client: %w", err)
		}
		in.client = cl
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := kafkaclient.PingError(pctx, in.client, in.conn.SeedBrokers); err != nil {
		in.reachable.Store(false)
		return in.connectFailed(err)
	}
	in.connFails = 0
	if !in.started {
		if err := in.checkExplicit(pctx, in.client); err != nil {
			return err
		}
		// The cut-off offsets must be known before the first record is
		// handed on, so consuming starts only once they are resolved.
		if in.endMs > 0 && in.ends == nil {
			ends, err := in.resolveEnds(pctx, in.client)
			if err != nil {
				return err
			}
			in.ends = ends
		}
		in.started = true
		in.lastProgress.Store(time.Now().UnixNano())
		in.bg.Add(4)
		go in.pollLoop(in.client)
		go in.commitLoop(in.client)
		go in.healthLoop(in.client)
		go in.lagLoop(in.client)
		if in.ends != nil {
			in.bg.Add(1)
			go in.endLoop(in.client)
		}
	}
	in.reachable.Store(true)
	return nil
}

// connectFailed spaces the engine's next attempt by reconnectBackoff (the engine logs every failed
// one) and, for a repeat, says how long the cause has lasted. in.connMu is held.
func (in *franzInput) connectFailed(err error) error {
	now := time.Now()
	if in.connFails == 0 {
		in.failSince = now
	}
	wait := reconnectBackoff.Delay(in.connFails)
	in.connFails++
	if in.connFails > 1 {
		err = fmt.Errorf("%w (failing since %s, attempt %d, next in %v)", err, in.failSince.UTC().Format(time.RFC3339), in.connFails, wait.Round(100*time.Millisecond))
	}
	return service.NewErrBackOff(err, wait)
}

// ReadBatch hands on the next batch from any partition.
func (in *franzInput) ReadBatch(ctx context.Context) (service.MessageBatch, service.AckFunc, error) {
	b, err := in.next(ctx)
	return b.batch, b.ack, err
}

// ReadRebuildable is ReadBatch with the batch's records, from which the nack replayer builds
// again what it must redeliver instead of copying every batch (see internal/nackreplay).
func (in *franzInput) ReadRebuildable(ctx context.Context) (service.MessageBatch, nackreplay.Originals, service.AckFunc, error) {
	b, err := in.next(ctx)
	if b.records == nil {
		return b.batch, nil, b.ack, err
	}
	return b.batch, b.records, b.ack, err
}

// next returns the next ready batch. Ready batches are returned even while the brokers are
// unreachable; only when there is none does an outage surface as ErrNotConnected.
func (in *franzInput) next(ctx context.Context) (readyBatch, error) {
	select {
	case b := <-in.batches:
		return b, nil
	default:
	}
	for {
		if !in.reachable.Load() {
			return readyBatch{}, service.ErrNotConnected
		}
		select {
		case b := <-in.batches:
			return b, nil
		case <-in.unreachable:
		case <-in.ended:
			return readyBatch{}, service.ErrEndOfInput
		case <-ctx.Done():
			return readyBatch{}, ctx.Err()
		case <-in.ctx.Done():
			return readyBatch{}, service.ErrEndOfInput
		}
	}
}

// Close stops fetching, commits what has been acknowledged (the engine waits
// for pending acknowledgements before closing an input) and leaves the group.
func (in *franzInput) Close(ctx context.Context) error {
	var err error
	in.closeOnce.Do(func() {
		in.stop()
		in.connMu.Lock()
		cl := in.client
		in.connMu.Unlock()
		if cl == nil {
			close(in.closed)
			return
		}
		// The helper reports on a channel, never in a variable: it may still be running when
		// Close has returned on the context's deadline.
		done := make(chan error, 1)
		go func() {
			defer close(in.closed)
			in.bg.Wait()
			cerr := in.commit(ctx, cl, in.owned())
			// Leaving the group revokes every partition, which runs
			// dropPartitions and its final commit once more (a no-op
			// when nothing moved since).
			cl.CloseAllowingRebalance()
			done <- cerr
		}()
		select {
		case err = <-done:
		case <-ctx.Done():
			err = fmt.Errorf("kafka_franz: closing the consumer: %w", ctx.Err())
		}
	})
	return err
}

// every runs fn every d, on the caller's goroutine, until the input closes or fn returns
// false: the ticker of each background loop. The caller was counted in in.bg.
func (in *franzInput) every(d time.Duration, fn func() bool) {
	defer in.bg.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-in.ctx.Done():
			return
		case <-t.C:
		}
		if !fn() {
			return
		}
	}
}

// healthLoop checks, while no records arrive, that some broker answers, so
// an outage shows as disconnected rather than as an idle topic.
func (in *franzInput) healthLoop(cl *kgo.Client) {
	in.every(healthInterval, func() bool {
		if time.Since(time.Unix(0, in.lastProgress.Load())) < 2*healthInterval {
			return true
		}
		pctx, cancel := context.WithTimeout(in.ctx, pingTimeout)
		err := cl.Ping(pctx)
		cancel()
		if in.ctx.Err() != nil {
			return false
		}
		if err != nil {
			if in.reachable.Swap(false) {
				in.log.Warnf("kafka_franz: no Kafka broker reachable at %v, input disconnected until one answers: %v", in.conn.SeedBrokers, err)
				select {
				case in.unreachable <- struct{}{}:
				default:
				}
			}
			return true
		}
		in.reachable.Store(true)
		return true
	})
}
