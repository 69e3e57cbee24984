package backoff

import (
	"testing"
	"time"
)

func TestDelayWithoutJitterDoublesUpToTheCap(t *testing.T) {
	p := Policy{Initial: 100 * time.Millisecond, Max: time.Second}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for n, w := range want {
		if got := p.Delay(n); got != w*time.Millisecond {
			t.Errorf("Delay(%d) = %v, want %v", n, got, w*time.Millisecond)
		}
	}
	if got := p.Delay(1 << 20); got != time.Second {
		t.Errorf("Delay(huge) = %v, want the cap", got)
	}
}

func TestDelayWithJitterStaysInItsBandAndSpreads(t *testing.T) {
	p := Policy{Initial: 100 * time.Millisecond, Max: time.Second, Jitter: DefaultJitter}
	for n, full := range []time.Duration{100, 200, 400, 800, 1000} {
		full *= time.Millisecond
		seen := map[time.Duration]bool{}
		for range 200 {
			d := p.Delay(n)
			if d < full/2 || d > full {
				t.Fatalf("Delay(%d) = %v, outside [%v, %v]", n, d, full/2, full)
			}
			seen[d] = true
		}
		// Eight writers that failed together must not retry together.
		if len(seen) < 50 {
			t.Errorf("Delay(%d) took only %d distinct values in 200 draws", n, len(seen))
		}
	}
}

func TestZeroPolicyDoesNotWait(t *testing.T) {
	if d := (Policy{}).Delay(3); d != 0 {
		t.Errorf("zero policy Delay = %v", d)
	}
}
