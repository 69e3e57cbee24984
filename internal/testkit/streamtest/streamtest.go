// Package streamtest runs a stream built by a test until the test ends: the one way the
// component tests start a pipeline of the engine and stop it again.
package streamtest

import (
	"context"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// Run builds the stream, runs it in the background and registers its stop with t.Cleanup: the
// stream is given stopWithin to stop (a stream whose output never connected stops only at that
// deadline), and Run's cleanup waits for it.
func Run(t testing.TB, sb *service.StreamBuilder, stopWithin time.Duration) {
	t.Helper()
	s, err := sb.Build()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stopWithin)
		defer cancel()
		_ = s.Stop(ctx)
		<-done
	})
}
