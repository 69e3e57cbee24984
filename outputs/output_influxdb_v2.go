package outputs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/influxdata/influxdb-client-go/v2/domain"
	"github.com/klauspost/compress/gzip"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/preservarium/iot-ingestor/internal/backoff"
	"github.com/preservarium/iot-ingestor/internal/batchpolicy"
	"github.com/preservarium/iot-ingestor/internal/speclint"
)

const (
	ifoFieldURL             = "url"
	ifoFieldToken           = "token"
	ifoFieldOrg             = "org"
	ifoFieldBucket          = "bucket"
	ifoFieldPrecision       = "precision"
	ifoFieldTimeout         = "timeout"
	ifoFieldGzip            = "gzip"
	ifoFieldTLS             = "tls"
	ifoFieldMaxInFlight     = "max_in_flight"
	ifoFieldMaxRequestBytes = "max_request_bytes"
	ifoFieldBatching        = "batching"
	ifoFieldCreateBucket    = "create_bucket"
	ifoFieldRetention       = "retention"
	ifoFieldHTTPHeaders     = "http_headers"
	ifoFieldUserAgent       = "user_agent"
	ifoFieldProxyURL        = "proxy_url"

	ifoFieldRetry                = "retry"
	ifoFieldRetryMaxRetries      = "max_retries"
	ifoFieldRetryInitialInterval = "initial_interval"
	ifoFieldRetryMaxInterval     = "max_interval"
	ifoFieldRetryMaxRetryAfter   = "max_retry_after"
)

// ifoDefaultMaxRequestBytes is the default cap on a write request's line protocol: 10 MiB.
// InfluxDB 1.8 refuses bodies over 25 MB (max-body-size), InfluxDB Cloud over 50 MB, and a
// batch of 5,000 realistic readings (a few hundred bytes each) is 1-2 MiB: the cap is never
// met by realistic batches, and bounds the memory and the server's work of one request.
const ifoDefaultMaxRequestBytes = 10 << 20

// ifoDefaultUserAgent names the ingestor in InfluxDB's and proxies' logs.
const ifoDefaultUserAgent = "iot-ingestor"

// Metric names, exported through the engine's metrics (res.Metrics()).
const (
	ifoMetricPointsWritten  = "influxdb_points_written"
	ifoMetricPointsRejected = "influxdb_points_rejected"
	ifoMetricBatchesSplit   = "influxdb_batches_split"
	ifoMetricWriteRetries   = "influxdb_write_retries"
	ifoMetricWriteLatency   = "influxdb_write_latency_ns"
	ifoMetricBatchSize      = "influxdb_batch_size"
	ifoMetricUp             = "influxdb_up"
	// ifoMetricStoreDelay is a timer whose name ends in _seconds: the project's Prometheus
	// exporter (metrics/) exports such timers as histograms observed in seconds.
	ifoMetricStoreDelay = "iot_store_delay_seconds"
)

func influxdbV2OutputSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Stable().
		Categories("Services").
		Summary("Writes line-protocol messages to InfluxDB 2.x (or 1.8's 2.x compatibility API) and acknowledges a message only once InfluxDB has stored it.").
		Description(`
Each message holds one or more line-protocol lines (as the `+"`influx_point`"+` mapping produces
them). The messages of a batch, with those of other batches waiting at the same time, are sent in
one `+"`POST /api/v2/write`"+` request, or in several when their lines exceed `+"`"+ifoFieldMaxRequestBytes+"`"+`.

### Which answers count

Only InfluxDB's own answer counts. Between the ingestor and InfluxDB there may be a proxy, a load
balancer, an SSO gateway or a WAF, and what they say is not InfluxDB's word:

- **Stored**: 204 and nothing else (InfluxDB 2.x, 1.8 and 3.x all answer a stored write with 204).
  A 200 (a maintenance page) or any other 2xx stored nothing.
- **Rejected points**: a 400 or 422 (or 2.0.x's 500) whose body has InfluxDB's error shape (JSON
  `+"`code`"+` and `+"`message`"+`, JSON `+"`error`"+`, or 1.8's `+"`X-Influxdb-Error`"+` header) and whose
  reason is one InfluxDB gives for bad points: `+"`unable to parse`"+`, `+"`failed to parse line protocol`"+`,
  `+"`parsing failed`"+`, `+"`partial write`"+`, `+"`field type conflict`"+`, `+"`points beyond retention policy`"+`,
  `+"`invalid field name`"+`, `+"`max-series-per-database limit exceeded`"+`, `+"`max-values-per-tag limit exceeded`"+`.
- **Too large**: 413, whoever says it: the request is split.
- **Everything else is an outage of the path to InfluxDB**: redirects (never followed; logged with
  their `+"`Location`"+`), a 2xx other than 204, a 4xx that is not InfluxDB's error or whose reason is
  about the request rather than its points (2.x's `+"`Please provide either orgID or org`"+`), 401,
  403, 404, 429, 5xx, no answer at all. Nothing is acknowledged, nothing goes to an error branch,
  the output reports itself disconnected (`+"`/ready`"+` answers 503), the cause is logged, and the
  write is retried with a back-off. Error bodies are read up to 64 KiB.

### Delivery

A message is acknowledged only after InfluxDB answered 204 for it. Otherwise:

- **Rejected points**: the batch is split in halves and resent until the rejected messages stand
  alone; exactly those fail, with the error `+"`write: rejected by InfluxDB (<status>): <server message>`"+`,
  and every other message is stored (resending a stored point is harmless: same series and
  timestamp overwrite). A failed message reaches a `+"`fallback`"+` tier or `+"`catch`"+` on its own.
- **Messages that failed an earlier step** (they carry an error, see `+"`errored()`"+`, such as a
  reading the mapping rejected): never written; each fails with its own error at once, so a
  `+"`fallback`"+` tier routes it with the reason it was given. While InfluxDB is unreachable, those
  in a batch that also holds messages to write wait with it.
- **Size**: a batch whose lines exceed `+"`"+ifoFieldMaxRequestBytes+"`"+` is split before it is sent; a
  single message over it fails as `+"`write: message of N bytes exceeds max_request_bytes (M)`"+`. On a 413
  the batch is split and resent; only a message too large on its own fails
  (`+"`write: too large for InfluxDB (413): ...`"+`).
- **A bucket chosen per message** (`+"`bucket`"+` an interpolation) that InfluxDB does not have: its
  messages fail as `+"`write: bucket \"x\" not found in InfluxDB (404): ...`"+`, the others are stored.
  A fixed bucket's 404 is a deployment problem, as below.
- **Outages that are likely short** (no answer, 429, 5xx): retried in place with jittered exponential
  back-off, waiting at least `+"`Retry-After`"+` (capped by `+"`retry.max_retry_after`"+`); after
  `+"`retry.max_retries`"+` the output reports itself disconnected.
- **Everything else** (token, bucket, a middle box's answer): reported disconnected at once.

While disconnected, `+"`Connect`"+` first waits a back-off that grows with every failed attempt, then
checks with a write of no lines (204, or 2.x's 400 `+"`writing requires points`"+`, mean writable). The
back-off only resets once a write with points has been stored: a WAF that lets the empty check
through but refuses real writes is retried at the back-off's pace, not at once. With
`+"`create_bucket`"+` a missing bucket is created through the buckets API. On shutdown in-flight writes
either complete or stay unacknowledged, to be redelivered.

### Metrics

- `+"`"+ifoMetricUp+"`"+` (gauge): 0 from a failed write or check (unreachable, token refused, throttled
  beyond the retries, an answer that is not InfluxDB's) until a write with points is stored again;
  at start 1 once the check passes.
- `+"`"+ifoMetricWriteRetries+"`"+` (counter): every failed attempt of a write, and every failed check
  while data waits, so it keeps rising through an outage. Rejected points and 413 splits are not
  retries.
- `+"`"+ifoMetricStoreDelay+"`"+` (histogram, seconds): per message, from its Kafka record's timestamp to
  InfluxDB's 204 for it: how fresh the stored data is.
- `+"`"+ifoMetricPointsWritten+"`"+`, `+"`"+ifoMetricPointsRejected+"`"+` (lines: rejected by InfluxDB or over
  `+"`"+ifoFieldMaxRequestBytes+"`"+`), `+"`"+ifoMetricBatchesSplit+"`"+` (counters), `+"`"+ifoMetricWriteLatency+"`"+` (timer,
  per stored request) and `+"`"+ifoMetricBatchSize+"`"+` (gauge, lines in the last batch).

### Performance

At most `+"`max_in_flight`"+` write requests are in flight, and the engine may hand the output eight
batches per request; the batches that queue while every request is in flight are merged into the
next request (group commit: up to `+"`"+ifoFieldMaxRequestBytes+"`"+` together, never waiting for more to
arrive). InfluxDB's cost is mostly per request, so small batches (one per partition) still make
large requests. Each message keeps its own verdict in a merged request: a rejected point fails
only its message, an outage fails every batch of the request (left unacknowledged, retried). Batch where failures stay per message
(at the input, per partition), not with this output's own `+"`batching`"+` policy when a `+"`fallback`"+`
follows: the engine reduces a merged batch's errors to one error per upstream transaction.`).
		Fields(
			service.NewStringField(ifoFieldURL).
				Description("Base URL of the InfluxDB server, `http://` or `https://`.").
				Example("http://localhost:8086").
				Example("${INFLUXDB_URL}"),
			service.NewStringField(ifoFieldToken).
				Description("API token with write permission on the bucket (InfluxDB 1.8: `user:password`, any value without auth). Sent only in the Authorization header, never logged.").
				Secret().
				Default("").
				Example("${INFLUXDB_TOKEN}"),
			service.NewStringField(ifoFieldOrg).
				Description("Organization name (required by InfluxDB 2.x, ignored by 1.8; omitted from the request when empty).").
				Default("").
				Example("preservarium"),
			service.NewInterpolatedStringField(ifoFieldBucket).
				Description("Bucket to write to (InfluxDB 1.8: `database` or `database/retention-policy`). An interpolation chooses it per message (Telegraf's `bucket_tag`): a batch is then written per bucket, a message whose bucket InfluxDB does not have (404) fails as `write: bucket \"x\" not found ...` (so it reaches the error topic and can be redriven once the bucket exists), and the connection check asks InfluxDB's `/health` instead of writing to a bucket. A fixed bucket's 404 is a deployment problem: not ready, nothing acknowledged.").
				Example("iot_data").
				Example(`${! meta("tenant").or("default") }_data`),
			service.NewStringEnumField(ifoFieldPrecision, "ns", "us", "ms", "s").
				Description("Precision of the timestamps in the messages; the point mapper emits nanoseconds.").
				Default("ns").
				Example("ns"),
			service.NewDurationField(ifoFieldTimeout).
				Description("Time limit of one HTTP write request; a request that exceeds it is an outage and is retried (it may or may not have been applied: rewriting is harmless).").
				Default("10s").
				Example("30s"),
			service.NewBoolField(ifoFieldGzip).
				Description("Compress request bodies with gzip.").
				Default(true).
				Example(false),
			service.NewTLSToggledField(ifoFieldTLS),
			service.NewIntField(ifoFieldMaxInFlight).
				Description("Maximum number of write requests to InfluxDB at the same time. The engine may hand the output eight times as many batches at once: those that wait while every request is in flight are merged into the next request.").
				Default(8).
				Example(16),
			service.NewIntField(ifoFieldMaxRequestBytes).
				Description("Cap on the line protocol of one write request, in bytes before compression. A batch over it is split into requests under it before it is sent; a single message over it fails as a `write` error naming this setting. The default (10 MiB) is under InfluxDB 1.8's 25 MB and Cloud's 50 MB request limits and far above a realistic batch.").
				Default(ifoDefaultMaxRequestBytes).
				Example(1<<20).
				Advanced(),
			service.NewBatchPolicyField(ifoFieldBatching),
			service.NewBoolField(ifoFieldCreateBucket).
				Description("Create the bucket through the buckets API (InfluxDB 2.x) when it is missing, in organization `org`.").
				Default(false).
				Example(true),
			service.NewDurationField(ifoFieldRetention).
				Description("Retention of a bucket created by `create_bucket`; `0s` keeps data forever.").
				Default("0s").
				Example("720h"),
			service.NewStringMapField(ifoFieldHTTPHeaders).
				Description("Extra HTTP headers of every request (Telegraf's `http_headers`), e.g. for a proxy in front of InfluxDB. `Authorization`, `Content-Type` and `Content-Encoding` are the output's own and cannot be set here.").
				Default(map[string]any{}).
				Example(map[string]any{"X-Tenant": "plant-7"}).
				Advanced(),
			service.NewStringField(ifoFieldUserAgent).
				Description("User-Agent header of every request.").
				Default(ifoDefaultUserAgent).
				Example("ingestor-paris").
				Advanced(),
			service.NewStringField(ifoFieldProxyURL).
				Description("HTTP proxy to reach InfluxDB through (`http://host:port`). Empty uses the environment (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`).").
				Default("").
				Example("http://proxy.internal:3128").
				Advanced(),
			service.NewObjectField(ifoFieldRetry,
				service.NewIntField(ifoFieldRetryMaxRetries).
					Description("Retries of an outage (no answer, 429, 5xx) inside one write before the output reports itself disconnected and the engine takes over reconnecting.").
					Default(3).
					Example(10),
				service.NewDurationField(ifoFieldRetryInitialInterval).
					Description("First back-off after a failure; doubles on each further failure, with jitter (each wait is between half and all of it).").
					Default("500ms").
					Example("1s"),
				service.NewDurationField(ifoFieldRetryMaxInterval).
					Description("Longest back-off between retries, and between connection checks while InfluxDB refuses writes.").
					Default("30s").
					Example("1m"),
				service.NewDurationField(ifoFieldRetryMaxRetryAfter).
					Description("Cap on a `Retry-After` asked by InfluxDB (429, 503).").
					Default("60s").
					Example("30s"),
			).Description("Back-off and retries of outages.").Advanced(),
		).
		LintRule(`root = [
  if this.retention.or("0s") != "0s" && !this.create_bucket.or(false) { "retention only applies to a bucket created with create_bucket: true" },
  if !this.url.or("").re_match("^https?://[^/]") { "url must start with http:// or https:// and name a host, got %q".format(this.url.or("")) },
  if this.proxy_url.or("") != "" && !this.proxy_url.re_match("^https?://[^/]") { "proxy_url must start with http:// or https:// and name a host" },
  if this.max_request_bytes.or(1) < 1 { "max_request_bytes must be at least 1" },
].filter(e -> e != null).concat(`+speclint.Rule(append(append(
			speclint.Durations(ifoFieldTimeout, ifoFieldRetention, ifoFieldRetry+"."+ifoFieldRetryInitialInterval,
				ifoFieldRetry+"."+ifoFieldRetryMaxInterval, ifoFieldRetry+"."+ifoFieldRetryMaxRetryAfter),
			speclint.Batching(ifoFieldBatching)...), speclint.NonNegative(ifoFieldRetry+"."+ifoFieldRetryMaxRetries)...)...)[len("root = "):]+`)`).
		Example("Readings to InfluxDB",
			"Writes the point mapper's line protocol to the bucket `iot_data`, batches formed upstream.",
			`
output:
  influxdb_v2:
    url: ${INFLUXDB_URL:http://localhost:8086}
    token: ${INFLUXDB_TOKEN}
    org: ${INFLUXDB_ORG:preservarium}
    bucket: ${INFLUXDB_BUCKET:iot_data}
    precision: ns
    timeout: 10s
    max_in_flight: 8
`).
		Example("Own batching",
			"For a pipeline without a `fallback` after the output (a merged batch's errors reach it as one error per upstream transaction): the output forms its own batches.",
			`
output:
  influxdb_v2:
    url: ${INFLUXDB_URL:http://localhost:8086}
    token: ${INFLUXDB_TOKEN}
    org: ${INFLUXDB_ORG:preservarium}
    bucket: ${INFLUXDB_BUCKET:iot_data}
    batching:
      count: ${INFLUXDB_BATCH_SIZE:5000}
      period: ${INFLUXDB_FLUSH_INTERVAL_MS:1000}ms
`)
}

func init() {
	service.MustRegisterBatchOutput("influxdb_v2", influxdbV2OutputSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchOutput, service.BatchPolicy, int, error) {
			w, err := newInfluxWriterFromConfig(conf, mgr)
			if err != nil {
				return nil, service.BatchPolicy{}, 0, err
			}
			pol, err := batchpolicy.Field(conf, ifoFieldBatching)
			if err != nil {
				return nil, service.BatchPolicy{}, 0, err
			}
			return w, pol, w.maxInFlight * ifoBatchesPerRequest, nil
		})
}

// influxRetry is the outage back-off policy.
type influxRetry struct {
	maxRetries    int
	policy        backoff.Policy
	maxRetryAfter time.Duration
}

// wait is the wait before retry number n (0-based), at least a Retry-After asked for
// (capped by max_retry_after).
func (r influxRetry) wait(n int, retryAfter time.Duration) time.Duration {
	d := r.policy.Delay(n)
	if retryAfter > d {
		d = max(d, min(retryAfter, r.maxRetryAfter))
	}
	return d
}

// influxCounts are the output's counters as plain numbers.
type influxCounts struct {
	written, rejected, split, retries atomic.Int64
	// requests counts the write requests with points that InfluxDB stored.
	requests atomic.Int64
}

// influxHealth is what the writer knows of the path to InfluxDB between calls: whether data
// waits (a write failed and none has been stored since), how many attempts failed in a row
// (the back-off), and whether Connect owes the engine a back-off before the next attempt.
type influxHealth struct {
	mu sync.Mutex
	// waiting: a write failed and no write with points has been stored since.
	waiting bool
	// failures counts failed attempts (writes and checks) since the last stored write, or
	// the last passing check while nothing waited.
	failures int
	// backOffDue: a write reported not connected since the last Connect, which must then
	// wait before the next attempt (the engine retries at once after a passing Connect).
	backOffDue bool
	// suspended: a write gave up and Connect has not passed since. The engine's idle writers
	// still call WriteBatch once per new batch (only its reconnect loop waits for Connect),
	// so while suspended no request is sent: the batches are handed back not connected, and
	// the server sees attempts only at the pace of Connect's back-off.
	suspended  bool
	retryAfter time.Duration
	cause      string
}

// influxWriter is the influxdb_v2 output.
type influxWriter struct {
	log *service.Logger

	serverURL string
	org       string
	// bucket is the fixed bucket, or empty when bucketRoute chooses one per message.
	bucket      string
	bucketRoute *service.InterpolatedString
	writeURL    string
	// routedURLs caches the write URL of each routed bucket (bucket -> string).
	routedURLs      sync.Map
	query           url.Values
	authorization   string
	userAgent       string
	headers         map[string]string
	gzip            bool
	timeout         time.Duration
	maxInFlight     int
	maxRequestBytes int
	createBucket    bool
	retention       time.Duration
	retry           influxRetry

	// httpClient sends the writes (built here: the answers need InfluxDB's error shape, a
	// bounded read and no redirects); client, over the same transport, serves the buckets
	// API of create_bucket.
	httpClient *http.Client
	client     influxdb2.Client

	// closeCtx is cancelled by Close so that back-off sleeps and requests of
	// writes still running end at once, leaving their messages unacknowledged.
	closeCtx context.Context
	closeFn  context.CancelFunc

	// sleep waits between retries; a field so tests can see the waits asked
	// for (Retry-After, back-off) without measuring time.
	sleep func(ctx context.Context, d time.Duration) error
	// now is the clock of the store delay; a field for tests.
	now func() time.Time

	connMu    sync.Mutex
	health    influxHealth
	problemMu sync.Mutex
	problem   string

	// commit merges the batches of concurrent WriteBatch calls into requests.
	commit *groupCommit

	bufPool sync.Pool
	gzPool  sync.Pool

	// counts mirrors the counters for tests and the shutdown summary.
	counts influxCounts

	mWritten  *service.MetricCounter
	mRejected *service.MetricCounter
	mSplit    *service.MetricCounter
	mRetries  *service.MetricCounter
	mLatency  *service.MetricTimer
	mBatch    *service.MetricGauge
	mUp       *service.MetricGauge
	mDelay    *service.MetricTimer
}

// reservedHeaders are set by the output itself; http_headers may not replace them.
var reservedHeaders = []string{"Authorization", "Content-Type", "Content-Encoding", "Content-Length", "Host"}

func parseHTTPURL(field, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("influxdb_v2: %s %q is not an http(s) URL with a host", field, raw)
	}
	return u, nil
}

func newInfluxWriterFromConfig(conf *service.ParsedConfig, mgr *service.Resources) (*influxWriter, error) {
	w := &influxWriter{log: mgr.Logger(), sleep: sleepCtx, now: time.Now}
	var err error
	if w.serverURL, err = conf.FieldString(ifoFieldURL); err != nil {
		return nil, err
	}
	u, err := parseHTTPURL(ifoFieldURL, w.serverURL)
	if err != nil {
		return nil, err
	}
	if u.User != nil {
		return nil, errors.New("influxdb_v2: url must not carry credentials: put the token in the token field")
	}
	token, err := conf.FieldString(ifoFieldToken)
	if err != nil {
		return nil, err
	}
	if token != "" {
		w.authorization = "Token " + token
	}
	if w.org, err = conf.FieldString(ifoFieldOrg); err != nil {
		return nil, err
	}
	bucketI, err := conf.FieldInterpolatedString(ifoFieldBucket)
	if err != nil {
		return nil, err
	}
	if static, ok := bucketI.Static(); ok {
		if strings.TrimSpace(static) == "" {
			return nil, errors.New("influxdb_v2: bucket is empty")
		}
		w.bucket = static
	} else {
		w.bucketRoute = bucketI
	}
	precision, err := conf.FieldString(ifoFieldPrecision)
	if err != nil {
		return nil, err
	}
	switch precision {
	case "ns", "us", "ms", "s":
	default:
		return nil, fmt.Errorf("influxdb_v2: precision %q is not one of ns, us, ms, s", precision)
	}
	if w.timeout, err = conf.FieldDuration(ifoFieldTimeout); err != nil {
		return nil, err
	}
	if w.timeout <= 0 {
		return nil, fmt.Errorf("influxdb_v2: timeout must be positive, got %v", w.timeout)
	}
	if w.gzip, err = conf.FieldBool(ifoFieldGzip); err != nil {
		return nil, err
	}
	if w.maxInFlight, err = conf.FieldInt(ifoFieldMaxInFlight); err != nil {
		return nil, err
	}
	if w.maxInFlight < 1 {
		return nil, fmt.Errorf("influxdb_v2: max_in_flight must be at least 1, got %d", w.maxInFlight)
	}
	if w.maxRequestBytes, err = conf.FieldInt(ifoFieldMaxRequestBytes); err != nil {
		return nil, err
	}
	if w.maxRequestBytes < 1 {
		return nil, fmt.Errorf("influxdb_v2: %s must be at least 1, got %d", ifoFieldMaxRequestBytes, w.maxRequestBytes)
	}
	if w.createBucket, err = conf.FieldBool(ifoFieldCreateBucket); err != nil {
		return nil, err
	}
	if w.retention, err = conf.FieldDuration(ifoFieldRetention); err != nil {
		return nil, err
	}
	if w.retention < 0 {
		return nil, fmt.Errorf("influxdb_v2: retention must not be negative, got %v", w.retention)
	}
	if w.headers, err = conf.FieldStringMap(ifoFieldHTTPHeaders); err != nil {
		return nil, err
	}
	for k := range w.headers {
		for _, r := range reservedHeaders {
			if strings.EqualFold(k, r) {
				return nil, fmt.Errorf("influxdb_v2: %s may not set %s: the output sets it itself", ifoFieldHTTPHeaders, r)
			}
		}
	}
	if w.userAgent, err = conf.FieldString(ifoFieldUserAgent); err != nil {
		return nil, err
	}
	proxyRaw, err := conf.FieldString(ifoFieldProxyURL)
	if err != nil {
		return nil, err
	}
	proxy := http.ProxyFromEnvironment
	if proxyRaw != "" {
		pu, err := parseHTTPURL(ifoFieldProxyURL, proxyRaw)
		if err != nil {
			return nil, err
		}
		proxy = http.ProxyURL(pu)
	}
	rc := conf.Namespace(ifoFieldRetry)
	if w.retry.maxRetries, err = rc.FieldInt(ifoFieldRetryMaxRetries); err != nil {
		return nil, err
	}
	if w.retry.policy.Initial, err = rc.FieldDuration(ifoFieldRetryInitialInterval); err != nil {
		return nil, err
	}
	if w.retry.policy.Max, err = rc.FieldDuration(ifoFieldRetryMaxInterval); err != nil {
		return nil, err
	}
	if w.retry.maxRetryAfter, err = rc.FieldDuration(ifoFieldRetryMaxRetryAfter); err != nil {
		return nil, err
	}
	w.retry.policy.Jitter = backoff.DefaultJitter
	if w.retry.maxRetries < 0 || w.retry.policy.Initial <= 0 || w.retry.policy.Max < w.retry.policy.Initial || w.retry.maxRetryAfter < 0 {
		return nil, fmt.Errorf("influxdb_v2: retry needs max_retries >= 0 and 0 < initial_interval <= max_interval (got %d, %v, %v)",
			w.retry.maxRetries, w.retry.policy.Initial, w.retry.policy.Max)
	}
	tlsConf, tlsOn, err := conf.FieldTLSToggled(ifoFieldTLS)
	if err != nil {
		return nil, err
	}

	w.query = url.Values{}
	if w.org != "" {
		w.query.Set("org", w.org)
	}
	w.query.Set("precision", precision)
	if w.bucketRoute == nil {
		w.writeURL = w.bucketWriteURL(w.bucket)
	} else if w.createBucket {
		return nil, errors.New("influxdb_v2: create_bucket needs a fixed bucket, not an interpolation")
	}

	transport := &http.Transport{
		Proxy:               proxy,
		DialContext:         (&net.Dialer{Timeout: w.timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: w.timeout,
		// One idle connection per concurrent writer (and the split
		// requests they make) so connections are reused, not re-dialled.
		MaxIdleConns:        2 * w.maxInFlight,
		MaxIdleConnsPerHost: 2 * w.maxInFlight,
		IdleConnTimeout:     90 * time.Second,
		// The body is compressed by us when gzip is on; the answers are tiny.
		DisableCompression: true,
	}
	if tlsOn {
		transport.TLSClientConfig = tlsConf
	}
	// No client-wide timeout: each request gets its own context deadline, which also
	// bounds the buckets API calls. No redirects, ever (see errNoRedirect).
	w.httpClient = &http.Client{Transport: transport, CheckRedirect: errNoRedirect}
	opts := influxdb2.DefaultOptions().SetHTTPClient(w.httpClient)
	w.client = influxdb2.NewClientWithOptions(w.serverURL, token, opts)
	w.closeCtx, w.closeFn = context.WithCancel(context.Background())
	w.commit = newGroupCommit(w, w.maxInFlight)
	w.bufPool.New = func() any { return new(bytes.Buffer) }
	w.gzPool.New = func() any {
		// klauspost's gzip at BestSpeed: about twice the speed of the
		// standard library's, and line protocol compresses well even at the
		// fastest level. Compression runs on the ingestor's CPU, which on a
		// small host InfluxDB shares.
		zw, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
		return zw
	}

	m := mgr.Metrics()
	w.mWritten = m.NewCounter(ifoMetricPointsWritten)
	w.mRejected = m.NewCounter(ifoMetricPointsRejected)
	w.mSplit = m.NewCounter(ifoMetricBatchesSplit)
	w.mRetries = m.NewCounter(ifoMetricWriteRetries)
	w.mLatency = m.NewTimer(ifoMetricWriteLatency)
	w.mBatch = m.NewGauge(ifoMetricBatchSize)
	w.mUp = m.NewGauge(ifoMetricUp)
	w.mUp.Set(0)
	w.mDelay = m.NewTimer(ifoMetricStoreDelay)
	return w, nil
}

// bucketWriteURL is the write endpoint of one bucket.
func (w *influxWriter) bucketWriteURL(bucket string) string {
	q := url.Values{}
	for k, v := range w.query {
		q[k] = v
	}
	q.Set("bucket", bucket)
	return strings.TrimRight(w.serverURL, "/") + "/api/v2/write?" + q.Encode()
}

// routedWriteURL is the write endpoint of a bucket a message chose, cached.
func (w *influxWriter) routedWriteURL(bucket string) string {
	if u, ok := w.routedURLs.Load(bucket); ok {
		return u.(string)
	}
	u := w.bucketWriteURL(bucket)
	w.routedURLs.Store(bucket, u)
	return u
}

// bucketName is the bucket for logs: the fixed one, or that buckets are routed.
func (w *influxWriter) bucketName() string {
	if w.bucketRoute != nil {
		return "(routed per message)"
	}
	return w.bucket
}

// Connect makes the engine wait before each new attempt while writes fail, then checks that
// the token may write to the bucket with a write of no lines. While it may not, Connect
// returns a back-off error so the engine retries slowly instead of flooding the log.
func (w *influxWriter) Connect(ctx context.Context) error {
	if w.closeCtx.Err() != nil {
		return service.ErrEndOfInput
	}
	w.connMu.Lock()
	defer w.connMu.Unlock()

	if err := w.owedBackOff(); err != nil {
		return err
	}
	a := w.probe(ctx)
	if a.outcome == outcomeDeployment && a.status == http.StatusNotFound && a.influx && w.createBucket {
		if err := w.ensureBucket(ctx); err != nil {
			return w.probeFailed(fmt.Errorf("influxdb_v2: bucket %q missing at %s and creating it failed: %w", w.bucket, w.serverURL, err), 0)
		}
		a = w.probe(ctx)
	}
	switch a.outcome {
	case outcomeStored:
		w.probePassed()
		return nil
	case outcomeDeployment:
		err := errors.New(w.deploymentText(a))
		w.noteProblem(err.Error())
		return w.probeFailed(err, a.retryAfter)
	default:
		return w.probeFailed(fmt.Errorf("influxdb_v2: InfluxDB at %s is not accepting writes (%s)", w.serverURL, describeAnswer(a)), a.retryAfter)
	}
}

// owedBackOff is the back-off a failed write left for Connect to answer, once.
func (w *influxWriter) owedBackOff() error {
	h := &w.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.backOffDue {
		return nil
	}
	h.backOffDue = false
	wait := w.retry.wait(max(h.failures-1, 0), h.retryAfter)
	return service.NewErrBackOff(fmt.Errorf("influxdb_v2: writing to InfluxDB at %s failed (%s); next attempt in %v", w.serverURL, h.cause, wait.Round(time.Millisecond)), wait)
}

// probePassed records a passing check: it says the server is up again only when nothing
// waits; while a write waits, only that write stored can.
func (w *influxWriter) probePassed() {
	h := &w.health
	h.mu.Lock()
	waiting := h.waiting
	if !waiting {
		h.failures = 0
	}
	h.suspended = false
	h.mu.Unlock()
	if !waiting {
		w.mUp.Set(1)
		w.clearProblem()
	}
}

func (w *influxWriter) probeFailed(err error, retryAfter time.Duration) error {
	h := &w.health
	h.mu.Lock()
	h.failures++
	n := h.failures
	waiting := h.waiting
	h.mu.Unlock()
	w.mUp.Set(0)
	if waiting {
		w.countRetry()
	}
	return service.NewErrBackOff(err, w.retry.wait(n-1, retryAfter))
}

// attemptFailed records a failed attempt of a write with points.
func (w *influxWriter) attemptFailed() {
	h := &w.health
	h.mu.Lock()
	h.failures++
	h.mu.Unlock()
	w.countRetry()
}

// writeGaveUp records a write reported not connected: data waits, and Connect owes a back-off.
func (w *influxWriter) writeGaveUp(a influxAnswer) {
	h := &w.health
	h.mu.Lock()
	h.waiting = true
	h.backOffDue = true
	h.suspended = true
	h.retryAfter = a.retryAfter
	h.cause = describeAnswer(a)
	h.mu.Unlock()
	w.mUp.Set(0)
}

// writeStored records a write with points that InfluxDB stored.
func (w *influxWriter) writeStored() {
	h := &w.health
	h.mu.Lock()
	h.waiting = false
	h.failures = 0
	h.backOffDue = false
	h.suspended = false
	h.mu.Unlock()
	w.mUp.Set(1)
	w.clearProblem()
}

// isSuspended tells whether writes wait for a passing Connect (see influxHealth.suspended).
func (w *influxWriter) isSuspended() bool {
	h := &w.health
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.suspended
}

func (w *influxWriter) countRetry() {
	w.mRetries.Incr(1)
	w.counts.retries.Add(1)
}

// probe sends a write without lines: 204 (1.8, 3.x) or 400 "writing requires points" (2.x)
// both come after the token and bucket checks, so both mean writable. With buckets routed per
// message there is no bucket to check: InfluxDB's /health must pass.
func (w *influxWriter) probe(ctx context.Context) influxAnswer {
	if w.bucketRoute != nil {
		return w.probeHealth(ctx)
	}
	return classifyProbe(w.post(ctx, w.writeURL, nil, false))
}

// ensureBucket creates the bucket through the buckets API unless it exists.
func (w *influxWriter) ensureBucket(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	buckets := w.client.BucketsAPI()
	if b, err := buckets.FindBucketByName(rctx, w.bucket); err == nil && b != nil {
		return nil
	}
	if w.org == "" {
		return errors.New("org is empty: create_bucket needs the organization")
	}
	org, err := w.client.OrganizationsAPI().FindOrganizationByName(rctx, w.org)
	if err != nil {
		return fmt.Errorf("finding organization %q: %w", w.org, err)
	}
	if org.Id == nil {
		return fmt.Errorf("organization %q has no id in the answer", w.org)
	}
	var rules []domain.RetentionRule
	if w.retention > 0 {
		rules = append(rules, domain.RetentionRule{EverySeconds: int64(w.retention / time.Second)})
	}
	if _, err := buckets.CreateBucketWithNameWithID(rctx, *org.Id, w.bucket, rules...); err != nil {
		return fmt.Errorf("creating bucket: %w", err)
	}
	w.log.Infof("influxdb_v2: created bucket %q in organization %q (retention %v)", w.bucket, w.org, w.retention)
	return nil
}

// deploymentText names the cause of an answer that stops writes until someone acts.
func (w *influxWriter) deploymentText(a influxAnswer) string {
	cause := "check the deployment"
	switch {
	case a.status >= 300 && a.status < 400:
		cause = "something in front of InfluxDB (an SSO proxy, a load balancer) redirects writes; redirects are never followed: point url at InfluxDB itself"
	case a.status >= 200 && a.status < 300:
		cause = "only InfluxDB's 204 means stored: something in front of InfluxDB (a load balancer's maintenance page, a proxy) answered instead"
	case !a.influx:
		cause = "the answer is not InfluxDB's: a proxy, load balancer or WAF between the ingestor and InfluxDB refused the request"
	case a.status == http.StatusUnauthorized:
		cause = "the token is missing or invalid"
	case a.status == http.StatusForbidden:
		cause = "the token may not write to this bucket"
	case a.status == http.StatusNotFound:
		cause = "the bucket or organization does not exist"
	case a.status == http.StatusBadRequest, a.status == http.StatusUnprocessableEntity:
		cause = "InfluxDB refused the request itself, not its points: check org, bucket and precision"
	}
	return fmt.Sprintf("influxdb_v2: InfluxDB at %s refuses writes to bucket %q (%s): %s; nothing is acknowledged until this is fixed",
		w.serverURL, w.bucketName(), describeAnswer(a), cause)
}

// noteProblem logs a deployment problem when it first appears or changes,
// so a long outage does not repeat the same line at every write.
func (w *influxWriter) noteProblem(text string) {
	w.problemMu.Lock()
	defer w.problemMu.Unlock()
	if w.problem != text {
		w.problem = text
		w.log.Error(text)
	}
}

func (w *influxWriter) clearProblem() {
	w.problemMu.Lock()
	defer w.problemMu.Unlock()
	if w.problem != "" {
		w.problem = ""
		w.log.Infof("influxdb_v2: InfluxDB at %s accepts writes to bucket %q again", w.serverURL, w.bucketName())
	}
}

// sleepCtx waits d or until ctx ends, whichever comes first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close ends back-off waits of writes still running and releases idle
// connections; it never blocks, so it honours any context.
func (w *influxWriter) Close(ctx context.Context) error {
	w.closeFn()
	w.log.Debugf("influxdb_v2: closing; %d points written, %d rejected, %d splits, %d retries",
		w.counts.written.Load(), w.counts.rejected.Load(), w.counts.split.Load(), w.counts.retries.Load())
	w.client.Close()
	w.httpClient.CloseIdleConnections()
	return nil
}

// mergeCancel returns a context ended when either a or b ends.
func mergeCancel(a, b context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(a)
	stop := context.AfterFunc(b, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}
