package metrics

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/push"
	"github.com/redpanda-data/benthos/v4/public/service"
)

// Field names of the prometheus exporter. They are the ones Redpanda Connect's
// `metrics.prometheus` uses, so a pipeline moves between the two unchanged.
const (
	pmFieldUseHistogramTiming = "use_histogram_timing"
	pmFieldHistogramBuckets   = "histogram_buckets"
	pmFieldSummaryObjectives  = "summary_quantiles_objectives"
	pmFieldObjQuantile        = "quantile"
	pmFieldObjError           = "error"
	pmFieldAddProcessMetrics  = "add_process_metrics"
	pmFieldAddGoMetrics       = "add_go_metrics"
	pmFieldPushURL            = "push_url"
	pmFieldPushInterval       = "push_interval"
	pmFieldPushJobName        = "push_job_name"
	pmFieldPushBasicAuth      = "push_basic_auth"
	pmFieldPushUsername       = "username"
	pmFieldPushPassword       = "password"
	pmFieldFileOutputPath     = "file_output_path"
)

func prometheusMetricsSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Stable().
		Summary("Serves the service's metrics at `/metrics` (and `/stats`) on the HTTP server for Prometheus to scrape.").
		Description(`
Every metric the engine and this project's components emit is exported from a registry owned by
this exporter (nothing global), in the Prometheus text format negotiated by the scraper.

### Names and labels

Metric names and label names are rewritten to Prometheus' classic rules: every character
other than a letter, a digit or `+"`_`"+` becomes `+"`_`"+` (so `+"`kafka.lag`"+` becomes
`+"`kafka_lag`"+`), and a name starting with a digit gets a leading `+"`_`"+`. Label names
starting with `+"`__`"+` (reserved by Prometheus) lose the extra underscores. Label values are
kept as they are, with invalid UTF-8 replaced. A name registered twice with a different kind or
label set keeps its first registration; the second is dropped with a warning in the log rather
than crashing the service.

### Types

Counters are Prometheus counters (a negative increment is ignored: a counter cannot go down),
gauges are gauges. Timings are summaries by default, observed in nanoseconds as the engine
reports them (the names end in `+"`_ns`"+`), with the quantiles of `+"`"+pmFieldSummaryObjectives+"`"+`.
With `+"`"+pmFieldUseHistogramTiming+"`"+` they are histograms instead, observed in **seconds**
so that the usual bucket boundaries fit, and can be aggregated across instances. A timing whose
name ends in `+"`_seconds`"+` (`+"`iot_store_delay_seconds`"+`) says its unit in its name: it is always a
histogram observed in seconds, with `+"`"+pmFieldHistogramBuckets+"`"+` or, when that is empty, buckets from
5 ms to 1 h (a delay can grow to minutes during an outage).

### Readiness

`+"`ingestor_ready`"+` is 1 when `+"`GET /ready`"+` would answer 200 at the moment of the scrape (every input
and every output connected) and 0 when it would answer 503, so that an alert on readiness needs
only the scrape of `+"`/metrics`"+`. It is 0 until the stream has started, and in a process other than
the ingestor binary (which is what tells the exporter how to read the stream's readiness).

### Push and file output

With `+"`"+pmFieldPushURL+"`"+` the metrics are also pushed to a Prometheus Pushgateway (a PUT
replacing the group of `+"`"+pmFieldPushJobName+"`"+`) every `+"`"+pmFieldPushInterval+"`"+`, and
once more at shutdown; without an interval they are pushed only at shutdown, which suits a
short batch run. With `+"`"+pmFieldFileOutputPath+"`"+` the final metrics are written to that
file in the text format at shutdown.`).
		Fields(
			service.NewBoolField(pmFieldUseHistogramTiming).
				Description("Export timings as histograms (observed in seconds) instead of summaries (observed in nanoseconds).").
				Default(false).
				Advanced(),
			service.NewFloatListField(pmFieldHistogramBuckets).
				Description("Upper bounds, in seconds and increasing, of the timing histogram buckets. Empty means the client library's defaults (0.005 to 10 s). Used only with `"+pmFieldUseHistogramTiming+"`.").
				Default([]any{}).
				Example([]any{0.001, 0.01, 0.1, 1.0, 10.0}).
				Advanced(),
			service.NewObjectListField(pmFieldSummaryObjectives,
				service.NewFloatField(pmFieldObjQuantile).
					Description("The quantile, between 0 and 1.").
					Example(0.5),
				service.NewFloatField(pmFieldObjError).
					Description("The absolute error allowed on that quantile.").
					Example(0.05),
			).
				Description("The quantiles (and their allowed error) that timing summaries report. Used only when `"+pmFieldUseHistogramTiming+"` is false.").
				Default([]any{
					map[string]any{pmFieldObjQuantile: 0.5, pmFieldObjError: 0.05},
					map[string]any{pmFieldObjQuantile: 0.9, pmFieldObjError: 0.01},
					map[string]any{pmFieldObjQuantile: 0.99, pmFieldObjError: 0.001},
				}).
				Advanced(),
			service.NewBoolField(pmFieldAddProcessMetrics).
				Description("Also export the process' own metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`, open files, ...).").
				Default(false).
				Advanced(),
			service.NewBoolField(pmFieldAddGoMetrics).
				Description("Also export the Go runtime's metrics (`go_goroutines`, `go_memstats_*`, GC pauses, ...).").
				Default(false).
				Advanced(),
			service.NewStringField(pmFieldPushURL).
				Description("A Prometheus Pushgateway URL to push the metrics to, in addition to serving them.").
				Example("http://pushgateway:9091").
				Optional().
				Advanced(),
			service.NewStringField(pmFieldPushInterval).
				Description("How often to push to `"+pmFieldPushURL+"` (a duration). Empty means push only once, at shutdown.").
				Example("10s").
				Optional().
				Advanced(),
			service.NewStringField(pmFieldPushJobName).
				Description("The `job` grouping label of the pushed metrics.").
				Default("benthos_push").
				Advanced(),
			service.NewObjectField(pmFieldPushBasicAuth,
				service.NewStringField(pmFieldPushUsername).
					Description("The user name for the Pushgateway.").
					Default(""),
				service.NewStringField(pmFieldPushPassword).
					Description("The password for the Pushgateway.").
					Default("").
					Secret(),
			).
				Description("HTTP basic authentication for the Pushgateway; unused when the user name is empty.").
				Advanced(),
			service.NewStringField(pmFieldFileOutputPath).
				Description("A file to write all metrics to, in the Prometheus text format, when the service shuts down. Empty means none.").
				Default("").
				Example("/var/lib/ingestor/final-metrics.prom").
				Advanced(),
		).
		LintRule(`let b = this.`+pmFieldHistogramBuckets+`.or([])
root = [
  if this.`+pmFieldPushInterval+`.or("") != "" && this.`+pmFieldPushURL+`.or("") == "" { "`+pmFieldPushInterval+` is set but `+pmFieldPushURL+` is not: there is nowhere to push to" },
  if $b.enumerated().any(e -> e.index > 0 && e.value <= $b.index(e.index - 1)) { "`+pmFieldHistogramBuckets+` must be strictly increasing" },
  if this.`+pmFieldSummaryObjectives+`.or([]).any(o -> o.`+pmFieldObjQuantile+` < 0 || o.`+pmFieldObjQuantile+` > 1) { "every `+pmFieldSummaryObjectives+` quantile must be between 0 and 1" },
].filter(e -> e != null)`).
		Example("Scraped by Prometheus", "The default: `/metrics` on the HTTP server (port 4195 unless `http.address` says otherwise).", `
http:
  address: 0.0.0.0:4195
metrics:
  prometheus: {}
`).
		Example("Histograms and runtime metrics", "Histogram timings that aggregate across instances, with the process and Go runtime metrics.", `
metrics:
  prometheus:
    use_histogram_timing: true
    histogram_buckets: [ 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5 ]
    add_process_metrics: true
    add_go_metrics: true
`)
}

func init() {
	service.MustRegisterMetricsExporter("prometheus", prometheusMetricsSpec(),
		func(conf *service.ParsedConfig, log *service.Logger) (service.MetricsExporter, error) {
			return newPrometheusExporterFromConfig(conf, log)
		})
}

//------------------------------------------------------------------------------

// promExporterConfig is the parsed and validated configuration of the exporter.
type promExporterConfig struct {
	useHistogram   bool
	buckets        []float64
	objectives     map[float64]float64
	processMetrics bool
	goMetrics      bool
	pushURL        string
	pushInterval   time.Duration
	pushJob        string
	pushUser       string
	pushPassword   string
	filePath       string
}

// finalPushTimeout bounds the push made at shutdown (a variable for tests).
var finalPushTimeout = 10 * time.Second

func defaultPromExporterConfig() promExporterConfig {
	return promExporterConfig{
		objectives: map[float64]float64{0.5: 0.05, 0.9: 0.01, 0.99: 0.001},
		pushJob:    "benthos_push",
	}
}

func parsePromExporterConfig(conf *service.ParsedConfig) (c promExporterConfig, err error) {
	c = defaultPromExporterConfig()
	if c.useHistogram, err = conf.FieldBool(pmFieldUseHistogramTiming); err != nil {
		return
	}
	if c.buckets, err = conf.FieldFloatList(pmFieldHistogramBuckets); err != nil {
		return
	}
	for i := 1; i < len(c.buckets); i++ {
		if c.buckets[i] <= c.buckets[i-1] {
			return c, fmt.Errorf("%s: bucket %v follows %v: bounds must be strictly increasing", pmFieldHistogramBuckets, c.buckets[i], c.buckets[i-1])
		}
	}
	objConfs, err := conf.FieldObjectList(pmFieldSummaryObjectives)
	if err != nil {
		return
	}
	c.objectives = make(map[float64]float64, len(objConfs))
	for i, oc := range objConfs {
		q, qerr := oc.FieldFloat(pmFieldObjQuantile)
		if qerr != nil {
			return c, qerr
		}
		e, eerr := oc.FieldFloat(pmFieldObjError)
		if eerr != nil {
			return c, eerr
		}
		if q < 0 || q > 1 {
			return c, fmt.Errorf("%s[%d].%s: %v is not between 0 and 1", pmFieldSummaryObjectives, i, pmFieldObjQuantile, q)
		}
		if e < 0 || e > 1 {
			return c, fmt.Errorf("%s[%d].%s: %v is not between 0 and 1", pmFieldSummaryObjectives, i, pmFieldObjError, e)
		}
		c.objectives[q] = e
	}
	if c.processMetrics, err = conf.FieldBool(pmFieldAddProcessMetrics); err != nil {
		return
	}
	if c.goMetrics, err = conf.FieldBool(pmFieldAddGoMetrics); err != nil {
		return
	}
	if conf.Contains(pmFieldPushURL) {
		if c.pushURL, err = conf.FieldString(pmFieldPushURL); err != nil {
			return
		}
	}
	if c.pushURL != "" {
		u, perr := url.Parse(c.pushURL)
		if perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return c, fmt.Errorf("%s: %q is not an http(s) URL with a host", pmFieldPushURL, c.pushURL)
		}
	}
	if conf.Contains(pmFieldPushInterval) {
		s, serr := conf.FieldString(pmFieldPushInterval)
		if serr != nil {
			return c, serr
		}
		if s != "" {
			if c.pushInterval, err = time.ParseDuration(s); err != nil {
				return c, fmt.Errorf("%s: %q is not a duration: %w", pmFieldPushInterval, s, err)
			}
			if c.pushInterval <= 0 {
				return c, fmt.Errorf("%s: %q must be positive", pmFieldPushInterval, s)
			}
			if c.pushURL == "" {
				return c, fmt.Errorf("%s is set but %s is not: there is nowhere to push to", pmFieldPushInterval, pmFieldPushURL)
			}
		}
	}
	if c.pushJob, err = conf.FieldString(pmFieldPushJobName); err != nil {
		return
	}
	if c.pushURL != "" && c.pushJob == "" {
		return c, fmt.Errorf("%s must not be empty when %s is set", pmFieldPushJobName, pmFieldPushURL)
	}
	if conf.Contains(pmFieldPushBasicAuth) {
		auth := conf.Namespace(pmFieldPushBasicAuth)
		if c.pushUser, err = auth.FieldString(pmFieldPushUsername); err != nil {
			return
		}
		if c.pushPassword, err = auth.FieldString(pmFieldPushPassword); err != nil {
			return
		}
	}
	if c.filePath, err = conf.FieldString(pmFieldFileOutputPath); err != nil {
		return
	}
	return c, nil
}

//------------------------------------------------------------------------------

type promMetricKind string

const (
	promKindCounter promMetricKind = "counter"
	promKindGauge   promMetricKind = "gauge"
	promKindTimer   promMetricKind = "timer"
)

// promFamily is one registered metric name: its kind and label names, which
// Prometheus requires to be the same for every series of the name.
type promFamily struct {
	kind      promMetricKind
	labelKeys []string
	counter   *prometheus.CounterVec
	gauge     *prometheus.GaugeVec
	timer     prometheus.ObserverVec
}

// prometheusExporter implements service.MetricsExporter on a registry of its
// own, so that two streams in one process (tests, the stream builder) never
// collide in the client library's global registry.
type prometheusExporter struct {
	conf promExporterConfig
	log  *service.Logger
	reg  *prometheus.Registry

	mu       sync.Mutex
	families map[string]*promFamily
	warned   map[string]bool

	pusher   *push.Pusher
	stopPush chan struct{}
	pushDone chan struct{}
	closeMu  sync.Mutex
	closed   bool
}

func newPrometheusExporterFromConfig(conf *service.ParsedConfig, log *service.Logger) (*prometheusExporter, error) {
	c, err := parsePromExporterConfig(conf)
	if err != nil {
		return nil, fmt.Errorf("metrics prometheus: %w", err)
	}
	return newPrometheusExporter(c, log)
}

func newPrometheusExporter(c promExporterConfig, log *service.Logger) (*prometheusExporter, error) {
	e := &prometheusExporter{
		conf:     c,
		log:      log,
		reg:      prometheus.NewRegistry(),
		families: map[string]*promFamily{},
		warned:   map[string]bool{},
	}
	if err := e.reg.Register(newReadyGauge()); err != nil {
		return nil, fmt.Errorf("metrics prometheus: registering %s: %w", ReadyMetricName, err)
	}
	if c.processMetrics {
		if err := e.reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
			return nil, fmt.Errorf("metrics prometheus: registering process metrics: %w", err)
		}
	}
	if c.goMetrics {
		if err := e.reg.Register(collectors.NewGoCollector()); err != nil {
			return nil, fmt.Errorf("metrics prometheus: registering Go runtime metrics: %w", err)
		}
	}
	if c.pushURL != "" {
		e.pusher = push.New(c.pushURL, c.pushJob).Gatherer(e.reg)
		if c.pushUser != "" {
			e.pusher = e.pusher.BasicAuth(c.pushUser, c.pushPassword)
		}
		if c.pushInterval > 0 {
			e.stopPush = make(chan struct{})
			e.pushDone = make(chan struct{})
			go e.pushLoop()
		}
	}
	return e, nil
}

func (e *prometheusExporter) pushLoop() {
	defer close(e.pushDone)
	ticker := time.NewTicker(e.conf.pushInterval)
	defer ticker.Stop()
	for {
		select {
		case <-e.stopPush:
			return
		case <-ticker.C:
			ctx, cancel := context.WithTimeout(context.Background(), e.conf.pushInterval)
			if err := e.pusher.PushContext(ctx); err != nil && e.log != nil {
				e.log.Warnf("metrics prometheus: push to %s failed: %v", redactURL(e.conf.pushURL), err)
			}
			cancel()
		}
	}
}

// redactURL drops any user info from a URL so that a password embedded in
// push_url never reaches the log.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	u.User = nil
	return u.String()
}

// family returns the registered family for name, registering it on first use.
// It returns nil when the name is already taken by another kind or label set:
// Prometheus cannot export both, and a metrics clash must never stop the
// pipeline, so the late registration is dropped with one warning.
func (e *prometheusExporter) family(rawName string, kind promMetricKind, rawKeys []string) (*promFamily, string) {
	name := SanitisePrometheusName(rawName)
	keys := make([]string, len(rawKeys))
	for i, k := range rawKeys {
		keys[i] = SanitisePrometheusLabelName(k)
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	if f, ok := e.families[name]; ok {
		if f.kind == kind && slices.Equal(f.labelKeys, keys) {
			return f, name
		}
		e.warnOnce(name, fmt.Sprintf("metrics prometheus: %s %q with labels %v clashes with the %s registered under that name with labels %v; it is not exported", kind, name, keys, f.kind, f.labelKeys))
		return nil, name
	}
	if dup := firstDuplicate(keys); dup != "" {
		e.warnOnce(name, fmt.Sprintf("metrics prometheus: %s %q has label %q twice (after sanitising %v); it is not exported", kind, name, dup, rawKeys))
		return nil, name
	}

	f := &promFamily{kind: kind, labelKeys: keys}
	help := "Benthos " + string(kind) + " " + rawName
	var collector prometheus.Collector
	switch kind {
	case promKindCounter:
		f.counter = prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, keys)
		collector = f.counter
	case promKindGauge:
		f.gauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, keys)
		collector = f.gauge
	case promKindTimer:
		if secondsTimer(name) || e.conf.useHistogram {
			buckets := e.conf.buckets
			if len(buckets) == 0 && secondsTimer(name) {
				buckets = secondsTimerBuckets
			}
			if len(buckets) == 0 {
				buckets = prometheus.DefBuckets
			}
			hv := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help + " (seconds)", Buckets: buckets}, keys)
			f.timer, collector = hv, hv
		} else {
			sv := prometheus.NewSummaryVec(prometheus.SummaryOpts{Name: name, Help: help + " (nanoseconds)", Objectives: e.conf.objectives}, keys)
			f.timer, collector = sv, sv
		}
	}
	if err := e.reg.Register(collector); err != nil {
		// Reachable when a sanitised name collides with a collector added by
		// add_go_metrics or add_process_metrics (go_goroutines, ...).
		e.warnOnce(name, fmt.Sprintf("metrics prometheus: %s %q cannot be registered: %v; it is not exported", kind, name, err))
		return nil, name
	}
	e.families[name] = f
	return f, name
}

func (e *prometheusExporter) warnOnce(name, msg string) {
	if e.warned[name] {
		return
	}
	e.warned[name] = true
	if e.log != nil {
		e.log.Warn(msg)
	}
}

func firstDuplicate(keys []string) string {
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if keys[i] == keys[j] {
				return keys[i]
			}
		}
	}
	return ""
}

// labelValues makes label values acceptable to the client library, which
// panics on invalid UTF-8, and reports a count that does not match the keys.
// It answers false for a nil family too (one family refused), so that every
// constructor drops a metric it cannot export in this one place.
func (e *prometheusExporter) labelValues(name string, f *promFamily, values []string) ([]string, bool) {
	if f == nil {
		return nil, false
	}
	if len(values) != len(f.labelKeys) {
		e.mu.Lock()
		e.warnOnce(name+"\x00arity", fmt.Sprintf("metrics prometheus: %q has labels %v but was given %d values %v; those series are not exported", name, f.labelKeys, len(values), values))
		e.mu.Unlock()
		return nil, false
	}
	out := values
	cloned := false
	for i, v := range values {
		if !utf8.ValidString(v) {
			if !cloned {
				out, cloned = slices.Clone(values), true
			}
			out[i] = strings.ToValidUTF8(v, "\uFFFD")
		}
	}
	return out, true
}

// NewCounterCtor implements service.MetricsExporter.
func (e *prometheusExporter) NewCounterCtor(name string, labelKeys ...string) service.MetricsExporterCounterCtor {
	f, sname := e.family(name, promKindCounter, labelKeys)
	return func(labelValues ...string) service.MetricsExporterCounter {
		lv, ok := e.labelValues(sname, f, labelValues)
		if !ok {
			return noopMetric{}
		}
		return promCounter{c: f.counter.WithLabelValues(lv...)}
	}
}

// NewGaugeCtor implements service.MetricsExporter.
func (e *prometheusExporter) NewGaugeCtor(name string, labelKeys ...string) service.MetricsExporterGaugeCtor {
	f, sname := e.family(name, promKindGauge, labelKeys)
	return func(labelValues ...string) service.MetricsExporterGauge {
		lv, ok := e.labelValues(sname, f, labelValues)
		if !ok {
			return noopMetric{}
		}
		return promGauge{g: f.gauge.WithLabelValues(lv...)}
	}
}

// NewTimerCtor implements service.MetricsExporter.
func (e *prometheusExporter) NewTimerCtor(name string, labelKeys ...string) service.MetricsExporterTimerCtor {
	f, sname := e.family(name, promKindTimer, labelKeys)
	return func(labelValues ...string) service.MetricsExporterTimer {
		lv, ok := e.labelValues(sname, f, labelValues)
		if !ok {
			return noopMetric{}
		}
		return promTimer{o: f.timer.WithLabelValues(lv...), seconds: e.conf.useHistogram || secondsTimer(sname)}
	}
}

// HandlerFunc is picked up by the engine, which serves it at /metrics and
// /stats on its HTTP server.
func (e *prometheusExporter) HandlerFunc() http.HandlerFunc {
	// ContinueOnError: one failing collector (a process metric the OS denies)
	// must not blank the whole page operators alert on.
	h := promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return h.ServeHTTP
}

// Close implements service.MetricsExporter: it stops the push loop, pushes and
// writes the file one last time so that a short run's final counts are kept.
func (e *prometheusExporter) Close(ctx context.Context) error {
	e.closeMu.Lock()
	defer e.closeMu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true

	var errs []error
	if e.stopPush != nil {
		close(e.stopPush)
		select {
		case <-e.pushDone:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if e.pusher != nil {
		// The engine closes with a context that has no deadline, and the
		// client library's HTTP client has no timeout: bound the last push so
		// an unreachable Pushgateway cannot hang the shutdown.
		pushCtx, cancel := context.WithTimeout(ctx, finalPushTimeout)
		err := e.pusher.PushContext(pushCtx)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("metrics prometheus: final push to %s failed: %w", redactURL(e.conf.pushURL), err))
		}
	}
	if e.conf.filePath != "" {
		if err := prometheus.WriteToTextfile(e.conf.filePath, e.reg); err != nil {
			errs = append(errs, fmt.Errorf("metrics prometheus: writing %s failed: %w", e.conf.filePath, err))
		}
	}
	return errors.Join(errs...)
}

//------------------------------------------------------------------------------

type promCounter struct{ c prometheus.Counter }

func (p promCounter) Incr(count int64) {
	if count > 0 {
		p.c.Add(float64(count))
	}
}

func (p promCounter) IncrFloat64(count float64) {
	// Add panics on a negative value (and NaN would poison the series).
	if count > 0 {
		p.c.Add(count)
	}
}

type promGauge struct{ g prometheus.Gauge }

func (p promGauge) Set(value int64)          { p.g.Set(float64(value)) }
func (p promGauge) SetFloat64(value float64) { p.g.Set(value) }

// secondsTimer reports whether a timer's name says it is in seconds: such a timer is always a
// histogram observed in seconds, whatever use_histogram_timing says, so that its name holds.
func secondsTimer(name string) bool { return strings.HasSuffix(name, "_seconds") }

// secondsTimerBuckets are the default buckets of a _seconds timer: from the sub-second delays of
// a healthy pipeline to the minutes of an outage.
var secondsTimerBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}

type promTimer struct {
	o       prometheus.Observer
	seconds bool
}

func (p promTimer) Timing(delta int64) {
	if p.seconds {
		p.o.Observe(float64(delta) / float64(time.Second))
		return
	}
	p.o.Observe(float64(delta))
}

type noopMetric struct{}

func (noopMetric) Incr(int64)          {}
func (noopMetric) IncrFloat64(float64) {}
func (noopMetric) Set(int64)           {}
func (noopMetric) SetFloat64(float64)  {}
func (noopMetric) Timing(int64)        {}

//------------------------------------------------------------------------------

// SanitisePrometheusName rewrites a metric name to Prometheus' classic rules,
// [a-zA-Z_][a-zA-Z0-9_]*. Colons, though legal, are reserved for recording
// rules, so they are replaced too.
func SanitisePrometheusName(name string) string {
	return sanitisePromIdent(name)
}

// SanitisePrometheusLabelName rewrites a label name to [a-zA-Z_][a-zA-Z0-9_]*
// without the leading "__" that Prometheus reserves for itself.
func SanitisePrometheusLabelName(name string) string {
	s := sanitisePromIdent(name)
	if strings.HasPrefix(s, "__") {
		s = "_" + strings.TrimLeft(s, "_")
		if s == "_" {
			s = "_label"
		}
	}
	return s
}

func sanitisePromIdent(name string) string {
	if name == "" {
		return "_"
	}
	var b strings.Builder
	b.Grow(len(name) + 1)
	for i, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '_':
			b.WriteRune(r)
		case r >= '0' && r <= '9':
			if i == 0 {
				b.WriteByte('_')
			}
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}
