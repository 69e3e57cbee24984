package outputs

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// BenchmarkRouting measures the routing alone, children that drop what they get: the engine's
// fallback (its first tier fails the messages carrying an error, as influxdb_v2 does) against
// store_or_report, on batches of 100 with none, 3% (the generator's share) or 20% (a flood) bad.
// cpu-ns/msg is the number to compare: the process's CPU time per message, which other load
// on the machine does not inflate as it does ns/msg. Building the batches is counted in both
// (the same for every route); a StopTimer around it would toggle the one timer that all the
// parallel senders share.
func BenchmarkRouting(b *testing.B) {
	routes := map[string]string{
		"fallback": `
fallback:
  - reject_errored:
      drop: {}
  - drop: {}
`,
		"store_or_report": `
store_or_report:
  store:
    drop: {}
  report:
    drop: {}
`,
	}
	for _, bad := range []int{0, 3, 20} {
		for _, name := range []string{"fallback", "store_or_report"} {
			b.Run(fmt.Sprintf("%s/bad%d%%", name, bad), func(b *testing.B) {
				sb := service.NewStreamBuilder()
				if err := sb.SetLoggerYAML("level: none"); err != nil {
					b.Fatal(err)
				}
				send, err := sb.AddBatchProducerFunc()
				if err != nil {
					b.Fatal(err)
				}
				if err := sb.AddOutputYAML(routes[name]); err != nil {
					b.Fatal(err)
				}
				s, err := sb.Build()
				if err != nil {
					b.Fatal(err)
				}
				go func() { _ = s.Run(context.Background()) }()
				defer func() {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					_ = s.Stop(ctx)
				}()
				mkBatch := func() service.MessageBatch {
					batch := make(service.MessageBatch, 100)
					for i := range batch {
						batch[i] = service.NewMessage([]byte(`{"device_id":"d","values":[1.5]}`))
						if i%100 < bad {
							batch[i].SetError(errors.New("validation: bad"))
						}
					}
					return batch
				}
				ctx := context.Background()
				b.ResetTimer()
				cpu0 := processCPU(b)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						batch := mkBatch()
						if err := send(ctx, batch); err != nil {
							b.Error(err)
							return
						}
					}
				})
				cpu := processCPU(b) - cpu0
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/msg")
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*100), "cpu-ns/msg")
			})
		}
	}
}

// processCPU is the CPU time this process has used (user and system, all its threads): the
// routing's cost as the issue states it, CPU per message, which the wall clock of a machine
// shared with other builds does not show.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
