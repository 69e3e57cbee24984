// Command joinrepro reproduces, without the ingestor, a quirk of the embedded broker (kfake): a
// consumer-group member that dies while its JoinGroup waits at the broker can stay in the group
// for good, owning partitions nobody consumes. Three plain franz-go members of one group
// (session and rebalance timeouts 6 s): A owns every partition and dies; B joins, and dies
// while its join waits for A's session to expire; C joins. Kafka arms the session timer of
// every member when a join completes, so B expires one session after that and C owns every
// partition about two sessions (12 s) after B died. kfake arms it only when the join reply
// reaches the member; in some runs (which member the broker makes leader and what the
// balancer hands B) B then keeps its partitions forever.
//
//	go run ./cmd/dev/joinrepro            five runs
//	go run ./cmd/dev/joinrepro -runs 10
//
// Each run prints the group's timeline at the broker and how long after B's death C owned every
// partition, or that it did not within the limit. Exits 1 if any run hit the limit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/preservarium/iot-ingestor/internal/dev/devbroker"
)

// killableDialer hands out connections it can cut at once, refusing every later dial: a client
// behind it is, for the broker, a process that died (no LeaveGroup, no heartbeat).
type killableDialer struct {
	mu    sync.Mutex
	dead  bool
	conns []net.Conn
}

func (d *killableDialer) dial(ctx context.Context, network, host string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dead {
		return nil, errors.New("killed")
	}
	c, err := (&net.Dialer{}).DialContext(ctx, network, host)
	if err == nil {
		d.conns = append(d.conns, c)
	}
	return c, err
}

func (d *killableDialer) kill() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dead = true
	for _, c := range d.conns {
		_ = c.Close()
	}
}

// groupMember is one plain franz-go consumer-group client polling in the background.
type groupMember struct {
	dialer   *killableDialer
	cl       *kgo.Client
	mu       sync.Mutex
	assigned int
}

func (m *groupMember) owned() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.assigned
}

func main() {
	runs := flag.Int("runs", 5, "repetitions")
	limit := flag.Duration("limit", 60*time.Second, "how long C may wait after B's death before the run counts as stuck (Kafka: about two session timeouts)")
	flag.Parse()
	stuck := 0
	for i := 1; i <= *runs; i++ {
		took, ok, timeline, err := run(*limit)
		if err != nil {
			fmt.Fprintln(os.Stderr, "joinrepro:", err)
			os.Exit(2)
		}
		fmt.Printf("== run %d\n%s\n", i, strings.Join(timeline, "\n"))
		if ok {
			fmt.Printf("run %d: C owned every partition %.1fs after B died while joining\n", i, took.Seconds())
		} else {
			stuck++
			fmt.Printf("run %d: STUCK: C did not own every partition within %v of B's death; the dead member B keeps its partitions\n", i, *limit)
		}
	}
	fmt.Printf("%d of %d runs stuck\n", stuck, *runs)
	if stuck > 0 {
		os.Exit(1)
	}
}

func run(limit time.Duration) (took time.Duration, ok bool, timeline []string, err error) {
	const (
		topic     = "quirk"
		parts     = 6
		group     = "g-quirk"
		session   = 6 * time.Second // kfake's minimum
		rebalance = 6 * time.Second
	)
	b, err := devbroker.Start(devbroker.Options{Topics: []string{topic}, Partitions: parts})
	if err != nil {
		return 0, false, nil, err
	}
	defer b.Close()
	admCl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		return 0, false, nil, err
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)

	start := time.Now()
	var (
		tlMu  sync.Mutex
		notes []string
		names = map[string]string{} // client id -> A, B, C
	)
	note := func(s string) {
		tlMu.Lock()
		notes = append(notes, fmt.Sprintf("%5.1fs %s", time.Since(start).Seconds(), s))
		tlMu.Unlock()
	}
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		last := ""
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(100 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			gs, err := adm.DescribeGroups(ctx, group)
			cancel()
			if err != nil || gs[group].Err != nil {
				continue
			}
			g := gs[group]
			var ms []string
			tlMu.Lock()
			for _, m := range g.Members {
				name, ok := names[m.ClientID]
				if !ok {
					name = m.ClientID
				}
				n := 0
				if c, ok := m.Assigned.AsConsumer(); ok {
					for _, tp := range c.Topics {
						n += len(tp.Partitions)
					}
				}
				ms = append(ms, fmt.Sprintf("%s:%d", name, n))
			}
			tlMu.Unlock()
			line := fmt.Sprintf("broker: %s [%s]", g.State, strings.Join(ms, " "))
			if line != last {
				last = line
				note(line)
			}
		}
	}()

	var members []*groupMember
	join := func(name string) (*groupMember, error) {
		m := &groupMember{dialer: &killableDialer{}}
		tlMu.Lock()
		names["client-"+name] = name
		tlMu.Unlock()
		cl, err := kgo.NewClient(
			kgo.SeedBrokers(b.Addr()),
			kgo.ClientID("client-"+name),
			kgo.Dialer(m.dialer.dial),
			kgo.ConsumerGroup(group),
			kgo.ConsumeTopics(topic),
			kgo.SessionTimeout(session),
			kgo.RebalanceTimeout(rebalance),
			kgo.HeartbeatInterval(time.Second),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, tps map[string][]int32) {
				m.mu.Lock()
				m.assigned += len(tps[topic])
				n := m.assigned
				m.mu.Unlock()
				note(fmt.Sprintf("%s assigned, owns %d", name, n))
			}),
			kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, tps map[string][]int32) {
				m.mu.Lock()
				m.assigned -= len(tps[topic])
				m.mu.Unlock()
			}),
			kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, tps map[string][]int32) {
				m.mu.Lock()
				m.assigned -= len(tps[topic])
				m.mu.Unlock()
				note(name + " lost its partitions")
			}),
		)
		if err != nil {
			return nil, err
		}
		m.cl = cl
		members = append(members, m)
		go func() {
			for {
				if f := cl.PollFetches(context.Background()); f.IsClientClosed() {
					return
				}
			}
		}()
		note(name + " started")
		return m, nil
	}
	waitOwns := func(m *groupMember, n int, limit time.Duration) bool {
		deadline := time.Now().Add(limit)
		for time.Now().Before(deadline) {
			if m.owned() == n {
				return true
			}
			time.Sleep(20 * time.Millisecond)
		}
		return false
	}
	// The result's timeline is taken once the watcher has stopped noting.
	defer func() {
		close(stopWatch)
		<-watched
		tlMu.Lock()
		timeline = append([]string(nil), notes...)
		tlMu.Unlock()
		for _, m := range members {
			go m.cl.Close() // A and B cannot leave: their LeaveGroup never reaches the broker
		}
	}()

	a, err := join("A")
	if err != nil {
		return 0, false, nil, err
	}
	if !waitOwns(a, parts, 30*time.Second) {
		return 0, false, nil, errors.New("A alone in the group was not assigned every partition")
	}
	a.dialer.kill()
	note("A died")
	bm, err := join("B")
	if err != nil {
		return 0, false, nil, err
	}
	time.Sleep(time.Second) // B's join now waits at the broker for A's session to expire
	bm.dialer.kill()
	note("B died while joining")
	died := time.Now()
	c, err := join("C")
	if err != nil {
		return 0, false, nil, err
	}
	if !waitOwns(c, parts, limit) {
		return 0, false, nil, nil
	}
	return time.Since(died), true, nil, nil
}
