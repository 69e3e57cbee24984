// Package readinggen generates a deterministic stream of stage-2 messages for
// the topic iot_validated_data, exactly as ../shared/docs/contract.md
// describes them (every variant, Python's json.dumps bytes included), with a
// chosen share of bad messages of every kind. Each message carries the outcome
// the ingestor must produce, computed from the contract's rules while the
// message is built: the point it stores, or the error record it sends.
//
// Field types stay consistent per field name across the whole stream (a label
// is always a float, always an integer, ...), so a correct ingestor never hits
// an InfluxDB field type conflict, and timestamps strictly increase per device
// so no two messages collapse onto one point.
package readinggen

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// Options shape the stream.
type Options struct {
	// Devices is the number of distinct device ids (at least 1).
	Devices int
	// BadShare is the probability, from 0 to 1, that a message is bad.
	BadShare float64
	// Start is the time of the first readings; each device starts within an
	// hour after it.
	Start time.Time
	// Precision is the ingestor's timestamp precision (ns, us, ms or s);
	// expected timestamps are truncated to it.
	Precision time.Duration
}

// DefaultOptions: 50 devices, 5% bad, readings from 2025-06-01 UTC, precision us.
func DefaultOptions() Options {
	return Options{
		Devices:   50,
		BadShare:  0.05,
		Start:     time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC),
		Precision: time.Microsecond,
	}
}

// Reading is one Kafka record and what the ingestor must make of it.
type Reading struct {
	Key   []byte
	Value []byte
	// Timestamp is the record time the producer must set: the reading's time
	// in milliseconds. Messages without a usable timestamp are stored at it.
	Timestamp time.Time
	Expect    Expectation
}

type device struct {
	id   string
	last time.Time
}

// Generator produces the stream; it is not safe for concurrent use.
type Generator struct {
	opts    Options
	rng     *rand.Rand
	devices []*device
	seq     int
	badSeq  int
	badPerm []BadKind
}

// New returns a generator whose stream depends only on seed and opts.
func New(seed int64, opts Options) (*Generator, error) {
	if opts.Devices < 1 {
		return nil, fmt.Errorf("readinggen: %d devices: need at least 1", opts.Devices)
	}
	if opts.BadShare < 0 || opts.BadShare > 1 || math.IsNaN(opts.BadShare) {
		return nil, fmt.Errorf("readinggen: bad share %v is not between 0 and 1", opts.BadShare)
	}
	switch opts.Precision {
	case time.Nanosecond, time.Microsecond, time.Millisecond, time.Second:
	case 0:
		opts.Precision = time.Microsecond
	default:
		return nil, fmt.Errorf("readinggen: precision %v is not one of 1ns, 1µs, 1ms, 1s", opts.Precision)
	}
	if opts.Start.IsZero() {
		opts.Start = DefaultOptions().Start
	}
	g := &Generator{
		opts: opts,
		rng:  rand.New(rand.NewPCG(uint64(seed), uint64(seed)^0x9e3779b97f4a7c15)),
	}
	g.devices = g.makeDevices(opts.Devices)
	return g, nil
}

// DeviceIDs returns the device ids of the stream, in a fixed order.
func (g *Generator) DeviceIDs() []string {
	ids := make([]string, len(g.devices))
	for i, d := range g.devices {
		ids[i] = d.id
	}
	return ids
}

// fixedDevices come first so that even a small stream has ids line protocol
// must escape (space, comma) or that look odd (=, non-ASCII).
var fixedDevices = []string{"282c02424eed", "2261001", "sensor 12", "gw,north-3", "probe=7", "capteur-é2"}

func (g *Generator) makeDevices(n int) []*device {
	seen := map[string]bool{}
	var out []*device
	add := func(id string) {
		if seen[id] {
			return
		}
		seen[id] = true
		start := g.opts.Start.Add(time.Duration(g.rng.Int64N(int64(time.Hour))))
		out = append(out, &device{id: id, last: start})
	}
	for _, id := range fixedDevices {
		if len(out) == n {
			break
		}
		add(id)
	}
	for len(out) < n {
		if g.rng.IntN(4) == 0 {
			add(strconv.Itoa(2200000 + g.rng.IntN(100000)))
		} else {
			add(fmt.Sprintf("%012x", g.rng.Uint64()&0xffffffffffff))
		}
	}
	return out
}

// Next returns the next message of the stream.
func (g *Generator) Next() Reading {
	dev := g.devices[g.rng.IntN(len(g.devices))]
	var r Reading
	if g.opts.BadShare > 0 && g.rng.Float64() < g.opts.BadShare {
		r = g.bad(dev, g.nextBadKind())
	} else {
		r = g.good(dev)
	}
	r.Expect.Seq = g.seq
	r.Expect.Key = string(r.Key)
	g.seq++
	return r
}

// nextBadKind cycles through every kind in a fresh random order each round,
// so each kind gets its share even in a short stream.
func (g *Generator) nextBadKind() BadKind {
	i := g.badSeq % len(BadKinds)
	if i == 0 {
		g.badPerm = append(g.badPerm[:0], BadKinds...)
		g.rng.Shuffle(len(g.badPerm), func(a, b int) { g.badPerm[a], g.badPerm[b] = g.badPerm[b], g.badPerm[a] })
	}
	g.badSeq++
	return g.badPerm[i]
}

//------------------------------------------------------------------------------

func (g *Generator) chance(p float64) bool { return g.rng.Float64() < p }

func (g *Generator) uuid4() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], g.rng.Uint64())
	binary.LittleEndian.PutUint64(b[8:], g.rng.Uint64())
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:36], b[10:16])
	return string(out[:])
}

// nextTime advances the device's clock by at least one second, so readings of
// one device never share a timestamp at any precision up to 1s.
func (g *Generator) nextTime(dev *device, wholeSecond bool) time.Time {
	t := dev.last.Add(time.Second + time.Duration(g.rng.Int64N(int64(20*time.Second))))
	t = t.Truncate(time.Microsecond) // Python datetimes hold microseconds
	if wholeSecond {
		if t.Nanosecond() != 0 {
			t = t.Truncate(time.Second).Add(time.Second)
		}
	} else if t.Nanosecond() == 0 {
		// isoformat() would drop a zero fraction: keep this style honest.
		t = t.Add(time.Microsecond)
	}
	dev.last = t
	return t
}

// isoformat is Python's datetime.isoformat() for a UTC time, naive (no
// offset) or aware (+00:00); the fraction is left out when it is zero.
func isoformat(t time.Time, withOffset bool) string {
	s := t.UTC().Format("2006-01-02T15:04:05")
	if us := t.Nanosecond() / 1000; us != 0 {
		s += fmt.Sprintf(".%06d", us)
	}
	if withOffset {
		s += "+00:00"
	}
	return s
}

func (g *Generator) expectedNS(t time.Time) int64 {
	p := int64(g.opts.Precision)
	return t.UnixNano() / p * p
}

// share is one variant of a message's field and how often, in percent, it is chosen.
type share struct {
	pct     int
	variant string
}

// choose draws one of shares (whose percentages sum to 100) with one roll of the generator,
// so a stream depends only on its seed.
func (g *Generator) choose(shares ...share) string {
	r := g.rng.IntN(100)
	for _, s := range shares {
		if r < s.pct {
			return s.variant
		}
		r -= s.pct
	}
	return shares[len(shares)-1].variant
}
