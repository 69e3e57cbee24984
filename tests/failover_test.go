package tests

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// groupWatch samples the consumer group's state at the broker while a fault scenario runs, so
// a failover can be timed and, when it is slow, read: which members the coordinator still
// holds, in which state, owning what.
type groupWatch struct {
	s     *stack
	start time.Time
	stop  chan struct{}
	done  chan struct{}

	mu       sync.Mutex
	timeline []string // one line per change of the group's description
	last     string
	snap     groupSnapshot
	seen     map[string]bool // every member id seen so far
}

type groupSnapshot struct {
	state   string
	members int
	// owners is how many members own at least one partition, assigned the partitions assigned,
	// owner the last member seen owning some.
	owners   int
	assigned int
	owner    string
}

func (s *stack) watchGroup() *groupWatch {
	w := &groupWatch{s: s, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{}), seen: map[string]bool{}}
	adm := kadm.NewClient(s.client())
	go func() {
		defer close(w.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			groups, err := adm.DescribeGroups(ctx, group)
			cancel()
			if err != nil {
				continue
			}
			g, ok := groups[group]
			if !ok || g.Err != nil {
				continue
			}
			var snap groupSnapshot
			snap.state, snap.members = g.State, len(g.Members)
			var parts []string
			for _, m := range g.Members {
				n := 0
				if c, ok := m.Assigned.AsConsumer(); ok {
					for _, tp := range c.Topics {
						n += len(tp.Partitions)
					}
				}
				if n > 0 {
					snap.owners++
					snap.owner = m.MemberID
				}
				snap.assigned += n
				parts = append(parts, fmt.Sprintf("%s:%d", shortID(m.MemberID), n))
			}
			slices.Sort(parts)
			line := fmt.Sprintf("%s members=[%s]", g.State, strings.Join(parts, " "))
			w.mu.Lock()
			w.snap = snap
			for _, m := range g.Members {
				w.seen[m.MemberID] = true
			}
			if line != w.last {
				w.last = line
				w.timeline = append(w.timeline, fmt.Sprintf("%6.1fs %s", time.Since(w.start).Seconds(), line))
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[len(id)-8:]
	}
	return id
}

// members returns every member id seen so far.
func (w *groupWatch) members() map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]bool, len(w.seen))
	for id := range w.seen {
		out[id] = true
	}
	return out
}

// waitSoleOwner waits until the group is stable with one member, none of before, owning every
// partition, and returns when it saw that; false when it did not happen by deadline.
func (w *groupWatch) waitSoleOwner(partitions int, before map[string]bool, deadline time.Time) (time.Time, bool) {
	for time.Now().Before(deadline) {
		w.mu.Lock()
		snap := w.snap
		w.mu.Unlock()
		if snap.state == "Stable" && snap.members == 1 && snap.assigned == partitions && !before[snap.owner] {
			return time.Now(), true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Time{}, false
}

// close stops sampling and returns the timeline.
func (w *groupWatch) close() []string {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.timeline...)
}
