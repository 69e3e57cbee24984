package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// ReadyMetricName is the gauge that reports, at each scrape, what the engine's GET /ready
// would answer then: 1 for 200, 0 for 503. It lets the not-ready alert work from the plain
// scrape of /metrics, without a blackbox exporter probing /ready.
const ReadyMetricName = "ingestor_ready"

// readiness is the source of ReadyMetricName, set by the binary once its stream runs. It is
// process-wide because the engine builds the exporter before the stream and hands neither to
// the other; only the value is global, each exporter still owns its registry.
var readiness atomic.Pointer[func() bool]

// SetReadiness sets the function ingestor_ready is read from at each scrape. cmd/ingestor calls
// it when the engine starts the stream, with the same test /ready makes (every input and every
// output connected). Before that, or in a process that never calls it (a stream built with
// service.NewStreamBuilder), ingestor_ready is 0: not known to be ready.
func SetReadiness(ready func() bool) {
	if ready == nil {
		readiness.Store(nil)
		return
	}
	readiness.Store(&ready)
}

// readyValue is the gauge's value: evaluated at scrape time, so it is never older than the
// scrape (a gauge set on a timer would lag /ready by up to its period).
func readyValue() float64 {
	if f := readiness.Load(); f != nil && (*f)() {
		return 1
	}
	return 0
}

func newReadyGauge() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: ReadyMetricName,
		Help: "1 when GET /ready answers 200 (every input and output connected), 0 when it answers 503",
	}, readyValue)
}
