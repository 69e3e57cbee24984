package kafka

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// timelyNacks rejects a batch that has been neither acknowledged nor rejected within wait
// (timely_nacks_maximum_wait): it wraps the input outermost, above the nack replayer, so that
// the rejection is what a rejection from the output would be, and the replayer delivers the
// batch again. The answer that comes late for the batch is then ignored: the batch has already
// been answered once.
type timelyNacks struct {
	service.BatchInput
	wait time.Duration
}

func withTimelyNacks(in service.BatchInput, wait time.Duration) service.BatchInput {
	if wait <= 0 {
		return in
	}
	return &timelyNacks{BatchInput: in, wait: wait}
}

func (t *timelyNacks) ReadBatch(ctx context.Context) (service.MessageBatch, service.AckFunc, error) {
	batch, ack, err := t.BatchInput.ReadBatch(ctx)
	if err != nil || ack == nil {
		return batch, ack, err
	}
	var once sync.Once
	answer := func(ctx context.Context, err error) (aerr error) {
		once.Do(func() { aerr = ack(ctx, err) })
		return aerr
	}
	timer := time.AfterFunc(t.wait, func() {
		_ = answer(context.Background(), fmt.Errorf("kafka_franz: batch of %d messages neither acknowledged nor rejected within %s %v", len(batch), fieldTimelyNacks, t.wait))
	})
	return batch, func(ctx context.Context, err error) error {
		timer.Stop()
		return answer(ctx, err)
	}, nil
}
