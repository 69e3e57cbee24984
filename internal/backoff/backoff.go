// Package backoff is the one back-off policy of the ingestor's retries: exponential from an
// initial delay to a cap, with jitter, so that batches that failed together (eight in flight
// when InfluxDB went down, the messages of one rejected batch) do not retry in lockstep.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Policy is exponential back-off with jitter. The zero Jitter waits exactly Initial·2^n.
type Policy struct {
	// Initial is the delay before the first retry; each further retry doubles it.
	Initial time.Duration
	// Max caps every delay.
	Max time.Duration
	// Jitter is the share of each delay drawn at random, in [0, 1]: with 0.5 a delay d is
	// between d/2 and d. The capped delay is never exceeded.
	Jitter float64
}

// DefaultJitter spreads retries over the upper half of each delay: enough to break lockstep,
// while a delay is never less than half of what the policy says.
const DefaultJitter = 0.5

// Delay is the wait before retry number attempt (0 for the first).
func (p Policy) Delay(attempt int) time.Duration {
	d := p.Initial
	if d <= 0 {
		return 0
	}
	for i := 0; i < attempt && d < p.Max; i++ {
		d *= 2
	}
	if p.Max > 0 && d > p.Max {
		d = p.Max
	}
	if j := min(max(p.Jitter, 0), 1); j > 0 {
		random := time.Duration(float64(d) * j)
		d = d - random + time.Duration(rand.Int64N(int64(random)+1))
	}
	return d
}
