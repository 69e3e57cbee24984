package metrics

import (
	"sync/atomic"
	"testing"
)

// TestReadyGaugeFollowsReadinessAtScrape: ingestor_ready is 0 with no readiness source, then
// each scrape reports what the source answers at that moment.
func TestReadyGaugeFollowsReadinessAtScrape(t *testing.T) {
	t.Cleanup(func() { SetReadiness(nil) })
	e, err := newPrometheusExporter(defaultPromExporterConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	value := func() float64 {
		t.Helper()
		return series(t, scrape(t, e.HandlerFunc()), ReadyMetricName, map[string]string{}).GetGauge().GetValue()
	}
	if v := value(); v != 0 {
		t.Fatalf("%s = %v before any readiness source, want 0", ReadyMetricName, v)
	}
	var ready atomic.Bool
	SetReadiness(ready.Load)
	for _, want := range []bool{false, true, false, true} {
		ready.Store(want)
		wantV := map[bool]float64{false: 0, true: 1}[want]
		if v := value(); v != wantV {
			t.Fatalf("%s = %v while ready is %v, want %v", ReadyMetricName, v, want, wantV)
		}
	}
	SetReadiness(nil)
	if v := value(); v != 0 {
		t.Fatalf("%s = %v after the source is removed, want 0", ReadyMetricName, v)
	}
}
