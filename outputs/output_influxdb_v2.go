package outputs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	ihttp "github.com/influxdata/influxdb-client-go/v2/api/http"
	"github.com/influxdata/influxdb-client-go/v2/domain"
	"github.com/klauspost/compress/gzip"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/preservarium/iot-ingestor/internal/batchpolicy"
)

const (
	ifoFieldURL          = "url"
	ifoFieldToken        = "token"
	ifoFieldOrg          = "org"
	ifoFieldBucket       = "bucket"
	ifoFieldPrecision    = "precision"
	ifoFieldTimeout      = "timeout"
	ifoFieldGzip         = "gzip"
	ifoFieldTLS          = "tls"
	ifoFieldMaxInFlight  = "max_in_flight"
	ifoFieldBatching     = "batching"
	ifoFieldCreateBucket = "create_bucket"
	ifoFieldRetention    = "retention"

	ifoFieldRetry                = "retry"
	ifoFieldRetryMaxRetries      = "max_retries"
	ifoFieldRetryInitialInterval = "initial_interval"
	ifoFieldRetryMaxInterval     = "max_interval"
	ifoFieldRetryMaxRetryAfter   = "max_retry_after"
)

// Metric names, exported through the engine's metrics (res.Metrics()).
const (
	ifoMetricPointsWritten  = "influxdb_points_written"
	ifoMetricPointsRejected = "influxdb_points_rejected"
	ifoMetricBatchesSplit   = "influxdb_batches_split"
	ifoMetricWriteRetries   = "influxdb_write_retries"
	ifoMetricWriteLatency   = "influxdb_write_latency_ns"
	ifoMetricBatchSize      = "influxdb_batch_size"
)

func influxdbV2OutputSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Stable().
		Categories("Services").
		Summary("Writes line-protocol messages to InfluxDB 2.x (or 1.8's 2.x compatibility API) and acknowledges a message only once InfluxDB has stored it.").
		Description(`
Each message holds one or more line-protocol lines (as the `+"`influx_point`"+` mapping produces
them). The messages of a batch are sent in one `+"`POST /api/v2/write`"+` request through the
influxdb-client-go HTTP service.

### Delivery

A message is acknowledged only after InfluxDB answered that it stored it. What happens otherwise
depends on why the write failed:

- **Data errors** (400, 422, or a 500 that reports a partial write or a field type conflict): the
  batch is split in halves and resent until the rejected messages stand alone; exactly those fail,
  with the error `+"`write: rejected by InfluxDB (<status>): <server message>`"+`, and every other
  message is stored (resending a stored point is harmless: same series and timestamp overwrite).
  A failed message reaches a `+"`fallback`"+` tier or `+"`catch`"+` on its own.
- **Messages that failed an earlier step** (they carry an error, see `+"`errored()`"+`, such as a
  reading the mapping rejected): never written; each fails with its own error at once, so a
  `+"`fallback`"+` tier routes it with the reason it was given. While InfluxDB is unreachable, those
  in a batch that also holds messages to write wait with it.
- **413 Request Entity Too Large**: the batch is split and resent; only a message too large on its
  own fails (`+"`write: too large for InfluxDB (413): ...`"+`).
- **Outages** (connection refused or reset, timeouts, 429, 502, 503, 504, a 500 that is not a
  partial write): retried in place with exponential back-off, waiting at least `+"`Retry-After`"+`
  (capped by `+"`retry.max_retry_after`"+`); after `+"`retry.max_retries`"+` the output reports itself
  disconnected (`+"`/ready`"+` answers 503) and the engine reconnects and resends the batch. Nothing
  is acknowledged and nothing goes to an error branch.
- **Deployment problems** (401, 403: token; 404: bucket or org): logged as an error naming the
  cause, the output reports itself disconnected and keeps checking, slowly, until it is fixed.

`+"`Connect`"+` checks for real with a write of no lines: 204 (InfluxDB 1.8) or 400 `+"`writing requires points`"+`
(2.x) mean the token may write to the bucket. With `+"`create_bucket`"+` a missing bucket is created
through the buckets API. On shutdown in-flight writes either complete or stay unacknowledged, to be
redelivered.

### Metrics

`+"`"+ifoMetricPointsWritten+"`"+`, `+"`"+ifoMetricPointsRejected+"`"+` (lines), `+"`"+ifoMetricBatchesSplit+"`"+`, `+"`"+ifoMetricWriteRetries+"`"+`
(counters), `+"`"+ifoMetricWriteLatency+"`"+` (timer, per accepted request) and `+"`"+ifoMetricBatchSize+"`"+` (gauge, lines in
the last batch).

### Performance

Batches are written concurrently up to `+"`max_in_flight`"+`. Batch where failures stay per message
(at the input, per partition), not with this output's own `+"`batching`"+` policy when a `+"`fallback`"+`
follows: the engine reduces a merged batch's errors to one error per upstream transaction.`).
		Fields(
			service.NewStringField(ifoFieldURL).
				Description("Base URL of the InfluxDB server.").
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
			service.NewStringField(ifoFieldBucket).
				Description("Bucket to write to (InfluxDB 1.8: `database` or `database/retention-policy`).").
				Example("iot_data"),
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
				Description("Maximum number of batches written at the same time.").
				Default(8).
				Example(16),
			service.NewBatchPolicyField(ifoFieldBatching),
			service.NewBoolField(ifoFieldCreateBucket).
				Description("Create the bucket through the buckets API (InfluxDB 2.x) when it is missing, in organization `org`.").
				Default(false).
				Example(true),
			service.NewDurationField(ifoFieldRetention).
				Description("Retention of a bucket created by `create_bucket`; `0s` keeps data forever.").
				Default("0s").
				Example("720h"),
			service.NewObjectField(ifoFieldRetry,
				service.NewIntField(ifoFieldRetryMaxRetries).
					Description("Retries of an outage inside one write before the output reports itself disconnected and the engine takes over reconnecting.").
					Default(3).
					Example(10),
				service.NewDurationField(ifoFieldRetryInitialInterval).
					Description("First back-off after an outage; doubles on each further failure.").
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
		LintRule(`root = if this.retention.or("0s") != "0s" && !this.create_bucket.or(false) { "retention only applies to a bucket created with create_bucket: true" }`).
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
			return w, pol, w.maxInFlight, nil
		})
}

// influxRetry is the outage back-off policy.
type influxRetry struct {
	maxRetries    int
	initial       time.Duration
	max           time.Duration
	maxRetryAfter time.Duration
}

// backoff returns the wait before retry number n (0-based), doubling from
// initial up to max.
func (r influxRetry) backoff(n int) time.Duration {
	d := r.initial
	for i := 0; i < n && d < r.max; i++ {
		d *= 2
	}
	if d > r.max {
		d = r.max
	}
	return d
}

// influxCounts are the output's counters as plain numbers.
type influxCounts struct {
	written, rejected, split, retries atomic.Int64
}

// influxWriter is the influxdb_v2 output.
type influxWriter struct {
	log *service.Logger

	serverURL    string
	org          string
	bucket       string
	writeURL     string
	gzip         bool
	timeout      time.Duration
	maxInFlight  int
	createBucket bool
	retention    time.Duration
	retry        influxRetry

	httpClient *http.Client
	client     influxdb2.Client
	// svc is the client's HTTP service rather than its WriteAPIBlocking: the
	// blocking API takes strings (a copy of every batch) and compresses with
	// an unpooled writer; the service gives the same Authorization header and
	// error parsing (status, code, message, Retry-After) over bodies built
	// here, which the batch splitting needs anyway.
	svc ihttp.Service

	// closeCtx is cancelled by Close so that back-off sleeps and requests of
	// writes still running end at once, leaving their messages unacknowledged.
	closeCtx context.Context
	closeFn  context.CancelFunc

	// sleep waits between retries; a field so tests can see the waits asked
	// for (Retry-After, back-off) without measuring time.
	sleep func(ctx context.Context, d time.Duration) error

	connMu       sync.Mutex
	connFailures int
	problemMu    sync.Mutex
	problem      string

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
}

func newInfluxWriterFromConfig(conf *service.ParsedConfig, mgr *service.Resources) (*influxWriter, error) {
	w := &influxWriter{log: mgr.Logger(), sleep: sleepCtx}
	var err error
	if w.serverURL, err = conf.FieldString(ifoFieldURL); err != nil {
		return nil, err
	}
	u, err := url.Parse(w.serverURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("influxdb_v2: url %q is not an http(s) URL with a host", w.serverURL)
	}
	if u.User != nil {
		return nil, errors.New("influxdb_v2: url must not carry credentials: put the token in the token field")
	}
	token, err := conf.FieldString(ifoFieldToken)
	if err != nil {
		return nil, err
	}
	if w.org, err = conf.FieldString(ifoFieldOrg); err != nil {
		return nil, err
	}
	if w.bucket, err = conf.FieldString(ifoFieldBucket); err != nil {
		return nil, err
	}
	if strings.TrimSpace(w.bucket) == "" {
		return nil, errors.New("influxdb_v2: bucket is empty")
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
	if w.createBucket, err = conf.FieldBool(ifoFieldCreateBucket); err != nil {
		return nil, err
	}
	if w.retention, err = conf.FieldDuration(ifoFieldRetention); err != nil {
		return nil, err
	}
	if w.retention < 0 {
		return nil, fmt.Errorf("influxdb_v2: retention must not be negative, got %v", w.retention)
	}
	rc := conf.Namespace(ifoFieldRetry)
	if w.retry.maxRetries, err = rc.FieldInt(ifoFieldRetryMaxRetries); err != nil {
		return nil, err
	}
	if w.retry.initial, err = rc.FieldDuration(ifoFieldRetryInitialInterval); err != nil {
		return nil, err
	}
	if w.retry.max, err = rc.FieldDuration(ifoFieldRetryMaxInterval); err != nil {
		return nil, err
	}
	if w.retry.maxRetryAfter, err = rc.FieldDuration(ifoFieldRetryMaxRetryAfter); err != nil {
		return nil, err
	}
	if w.retry.maxRetries < 0 || w.retry.initial <= 0 || w.retry.max < w.retry.initial || w.retry.maxRetryAfter < 0 {
		return nil, fmt.Errorf("influxdb_v2: retry needs max_retries >= 0 and 0 < initial_interval <= max_interval (got %d, %v, %v)",
			w.retry.maxRetries, w.retry.initial, w.retry.max)
	}
	tlsConf, tlsOn, err := conf.FieldTLSToggled(ifoFieldTLS)
	if err != nil {
		return nil, err
	}

	q := url.Values{}
	if w.org != "" {
		q.Set("org", w.org)
	}
	q.Set("bucket", w.bucket)
	q.Set("precision", precision)
	w.writeURL = strings.TrimRight(w.serverURL, "/") + "/api/v2/write?" + q.Encode()

	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
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
	// No client-wide timeout: each request gets its own context deadline,
	// which also bounds the buckets API calls.
	w.httpClient = &http.Client{Transport: transport}
	opts := influxdb2.DefaultOptions().SetHTTPClient(w.httpClient)
	w.client = influxdb2.NewClientWithOptions(w.serverURL, token, opts)
	w.svc = w.client.HTTPService()
	w.closeCtx, w.closeFn = context.WithCancel(context.Background())
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
	return w, nil
}

// writeOutcome is how one write request ended, from the ingestor's view.
type writeOutcome int

const (
	outcomeStored     writeOutcome = iota
	outcomeRejected                // data error: some line of the request is bad
	outcomeTooLarge                // 413: the request, not a line, is the problem
	outcomeOutage                  // transient: retry later
	outcomeDeployment              // 401/403/404: token or bucket wrong
)

// influxAnswer classifies one request's result.
type influxAnswer struct {
	outcome    writeOutcome
	status     int
	message    string
	retryAfter time.Duration
	err        error
}

func classifyInfluxError(herr *ihttp.Error) influxAnswer {
	if herr == nil {
		return influxAnswer{outcome: outcomeStored, status: http.StatusNoContent}
	}
	a := influxAnswer{status: herr.StatusCode, err: herr}
	if herr.StatusCode == 0 {
		// No HTTP answer: refused, reset, timed out. A timed-out write may have
		// been applied; rewriting it is harmless.
		a.outcome = outcomeOutage
		a.message = oneLine(herr.Error())
		return a
	}
	a.message = serverMessage(herr)
	a.retryAfter = parseRetryAfter(herr)
	lower := strings.ToLower(a.message)
	switch {
	case herr.StatusCode == http.StatusBadRequest, herr.StatusCode == http.StatusUnprocessableEntity:
		a.outcome = outcomeRejected
	case herr.StatusCode == http.StatusInternalServerError &&
		(strings.Contains(lower, "partial write") || strings.Contains(lower, "field type conflict")):
		// InfluxDB 2.0.x reported type conflicts as 500.
		a.outcome = outcomeRejected
	case herr.StatusCode == http.StatusRequestEntityTooLarge:
		a.outcome = outcomeTooLarge
	case herr.StatusCode == http.StatusUnauthorized, herr.StatusCode == http.StatusForbidden,
		herr.StatusCode == http.StatusNotFound:
		a.outcome = outcomeDeployment
	case herr.StatusCode == http.StatusTooManyRequests, herr.StatusCode >= 500:
		a.outcome = outcomeOutage
	default:
		// Another 4xx says nothing about the data (405 from a proxy, ...):
		// treat it as a deployment problem rather than fail messages for it.
		a.outcome = outcomeDeployment
	}
	return a
}

// serverMessage is InfluxDB's own reason: the JSON "message" of 2.x, the
// X-Influxdb-Error header of 1.8 (the client copies it into Message), or the
// body text, on one line.
func serverMessage(herr *ihttp.Error) string {
	msg := herr.Message
	if msg == "" && herr.Header != nil {
		msg = herr.Header.Get("X-Influxdb-Error")
	}
	if msg == "" && !strings.HasPrefix(herr.Code, strconv.Itoa(herr.StatusCode)) {
		// 2.x's error code ("invalid", "unauthorized"), not the client's
		// copy of the status line, which the status already says.
		msg = herr.Code
	}
	if msg == "" {
		msg = http.StatusText(herr.StatusCode)
	}
	return oneLine(msg)
}

// oneLine folds whitespace runs (newlines included) to single spaces and
// bounds the length, so a server's reason fits one log line and error record.
func oneLine(msg string) string {
	msg = strings.Join(strings.Fields(msg), " ")
	const maxLen = 1024
	if len(msg) > maxLen {
		msg = strings.ToValidUTF8(msg[:maxLen], "") + "..."
	}
	return msg
}

// parseRetryAfter reads Retry-After as seconds or as an HTTP date.
func parseRetryAfter(herr *ihttp.Error) time.Duration {
	if herr.RetryAfter > 0 {
		return time.Duration(herr.RetryAfter) * time.Second
	}
	if herr.Header == nil {
		return 0
	}
	v := strings.TrimSpace(herr.Header.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// Connect checks that the token may write to the bucket with a write of no
// lines. While it may not, Connect returns a back-off error so the engine
// retries slowly instead of flooding the log.
func (w *influxWriter) Connect(ctx context.Context) error {
	if w.closeCtx.Err() != nil {
		return service.ErrEndOfInput
	}
	w.connMu.Lock()
	defer w.connMu.Unlock()

	a := w.probe(ctx)
	if a.outcome == outcomeDeployment && a.status == http.StatusNotFound && w.createBucket {
		if err := w.ensureBucket(ctx); err != nil {
			return w.connectFailed(fmt.Errorf("influxdb_v2: bucket %q missing at %s and creating it failed: %w", w.bucket, w.serverURL, err), 0)
		}
		a = w.probe(ctx)
	}
	switch a.outcome {
	case outcomeStored:
		w.connFailures = 0
		w.clearProblem()
		return nil
	case outcomeDeployment:
		err := errors.New(w.deploymentText(a))
		w.noteProblem(err.Error())
		return w.connectFailed(err, 0)
	default:
		return w.connectFailed(fmt.Errorf("influxdb_v2: InfluxDB at %s is not accepting writes (%s)", w.serverURL, describeAnswer(a)), a.retryAfter)
	}
}

func (w *influxWriter) connectFailed(err error, retryAfter time.Duration) error {
	wait := w.retry.backoff(w.connFailures)
	w.connFailures++
	if retryAfter > wait {
		wait = min(retryAfter, w.retry.maxRetryAfter)
	}
	return service.NewErrBackOff(err, wait)
}

// probe sends an empty write: 204 (1.8) or 400 "writing requires points"
// (2.x) both come after the token and bucket checks, so both mean writable.
func (w *influxWriter) probe(ctx context.Context) influxAnswer {
	rctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	herr := w.svc.DoPostRequest(rctx, w.writeURL, bytes.NewReader(nil), w.setWriteHeaders(false), drainBody)
	a := classifyInfluxError(herr)
	if a.outcome == outcomeRejected && a.status == http.StatusBadRequest {
		a.outcome = outcomeStored
	}
	return a
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

func (w *influxWriter) deploymentText(a influxAnswer) string {
	cause := "check the deployment"
	switch a.status {
	case http.StatusUnauthorized:
		cause = "the token is missing or invalid"
	case http.StatusForbidden:
		cause = "the token may not write to this bucket"
	case http.StatusNotFound:
		cause = "the bucket or organization does not exist"
	}
	return fmt.Sprintf("influxdb_v2: InfluxDB at %s refuses writes to bucket %q (%d: %s): %s; nothing is acknowledged until this is fixed",
		w.serverURL, w.bucket, a.status, a.message, cause)
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
		w.log.Infof("influxdb_v2: InfluxDB at %s accepts writes to bucket %q again", w.serverURL, w.bucket)
	}
}

func describeAnswer(a influxAnswer) string {
	if a.status == 0 {
		return a.message
	}
	return fmt.Sprintf("%d: %s", a.status, a.message)
}

// drainBody is the response callback of every write: the client's HTTP
// service leaves a 2xx body open, and an unread, unclosed body keeps the
// connection from being reused (each write would dial anew).
func drainBody(resp *http.Response) error {
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

func (w *influxWriter) setWriteHeaders(gz bool) ihttp.RequestCallback {
	return func(req *http.Request) {
		req.Header.Set("Content-Type", "text/plain; charset=utf-8")
		if gz {
			req.Header.Set("Content-Encoding", "gzip")
		}
	}
}

// WriteBatch stores every message of the batch or says which failed. It
// returns nil (all stored), a *service.BatchError naming exactly the messages
// InfluxDB rejected (the others are stored), or service.ErrNotConnected when
// InfluxDB is unreachable, throttling or refusing the token: never a plain
// error, which a fallback would take as a failure of every message.
func (w *influxWriter) WriteBatch(ctx context.Context, batch service.MessageBatch) error {
	ctx, cancel := mergeCancel(ctx, w.closeCtx)
	defer cancel()

	lines := make([][]byte, len(batch))
	idx := make([]int, 0, len(batch))
	fails := map[int]error{}
	points, carried := 0, 0
	for i, m := range batch {
		if err := m.GetError(); err != nil {
			// A message that failed an earlier step is never written: it fails with that
			// error, which a fallback then routes (the shipped pipeline's error topic).
			fails[i] = err
			carried++
			continue
		}
		b, err := m.AsBytes()
		if err != nil {
			fails[i] = fmt.Errorf("write: reading message: %w", err)
			continue
		}
		// Trailing newlines would become empty lines between messages.
		b = bytes.TrimRight(b, "\r\n\t ")
		if len(b) == 0 {
			// Nothing to store: a message without lines is done.
			continue
		}
		lines[i] = b
		idx = append(idx, i)
		points += bytes.Count(b, []byte{'\n'}) + 1
	}
	w.mBatch.Set(int64(points))
	if len(idx) > 0 {
		if err := w.writeRange(ctx, lines, idx, fails); err != nil {
			return err
		}
	}
	if len(fails) == 0 {
		return nil
	}
	var first, firstRejected error
	for i := range batch {
		if e, ok := fails[i]; ok {
			if first == nil {
				first = e
			}
			if firstRejected == nil && batch[i].GetError() == nil {
				firstRejected = e
			}
		}
	}
	if rejected := len(fails) - carried; rejected > 0 {
		w.log.Warnf("influxdb_v2: InfluxDB rejected %d of %d messages; first: %v", rejected, len(batch), firstRejected)
	}
	// The engine's fallback output reports the batch-level text, not the message's own, when
	// it was handed a single message: that text must then be the message's reason exactly.
	summary := first
	if len(batch) > 1 {
		summary = fmt.Errorf("write: %d of %d messages not stored; first: %w", len(fails), len(batch), first)
	}
	bErr := service.NewBatchError(batch, summary)
	for i := range batch {
		if e, ok := fails[i]; ok {
			bErr = bErr.Failed(i, e)
		}
	}
	return bErr
}

// writeRange writes the messages idx; on a data error or 413 it halves the
// range until the rejected messages stand alone and records their errors.
func (w *influxWriter) writeRange(ctx context.Context, lines [][]byte, idx []int, fails map[int]error) error {
	a, err := w.send(ctx, lines, idx)
	if err != nil {
		return err
	}
	switch a.outcome {
	case outcomeStored:
		return nil
	case outcomeRejected, outcomeTooLarge:
		if len(idx) == 1 {
			i := idx[0]
			if a.outcome == outcomeTooLarge {
				fails[i] = fmt.Errorf("write: too large for InfluxDB (413): message of %d bytes exceeds the server's request size limit (%s)", len(lines[i]), a.message)
			} else {
				fails[i] = fmt.Errorf("write: rejected by InfluxDB (%d): %s", a.status, a.message)
			}
			n := int64(bytes.Count(lines[i], []byte{'\n'}) + 1)
			w.mRejected.Incr(n)
			w.counts.rejected.Add(n)
			return nil
		}
		w.mSplit.Incr(1)
		w.counts.split.Add(1)
		half := len(idx) / 2
		if err := w.writeRange(ctx, lines, idx[:half], fails); err != nil {
			return err
		}
		return w.writeRange(ctx, lines, idx[half:], fails)
	}
	return service.ErrNotConnected
}

// send posts the messages idx in one request, retrying outages in place.
// It returns service.ErrNotConnected when the outage outlasts the retries,
// on a deployment problem, or when ctx ends (shutdown: left unacknowledged).
func (w *influxWriter) send(ctx context.Context, lines [][]byte, idx []int) (influxAnswer, error) {
	body := w.bufPool.Get().(*bytes.Buffer)
	defer w.bufPool.Put(body)
	body.Reset()
	points := 0
	var raw *bytes.Buffer
	if w.gzip {
		raw = w.bufPool.Get().(*bytes.Buffer)
		defer w.bufPool.Put(raw)
		raw.Reset()
	} else {
		raw = body
	}
	for _, i := range idx {
		raw.Write(lines[i])
		raw.WriteByte('\n')
		points += bytes.Count(lines[i], []byte{'\n'}) + 1
	}
	if w.gzip {
		zw := w.gzPool.Get().(*gzip.Writer)
		zw.Reset(body)
		_, _ = zw.Write(raw.Bytes())
		_ = zw.Close()
		w.gzPool.Put(zw)
	}

	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			return influxAnswer{}, service.ErrNotConnected
		}
		start := time.Now()
		rctx, cancel := context.WithTimeout(ctx, w.timeout)
		herr := w.svc.DoPostRequest(rctx, w.writeURL, bytes.NewReader(body.Bytes()), w.setWriteHeaders(w.gzip), drainBody)
		cancel()
		a := classifyInfluxError(herr)
		switch a.outcome {
		case outcomeStored:
			w.mLatency.Timing(time.Since(start).Nanoseconds())
			w.mWritten.Incr(int64(points))
			w.counts.written.Add(int64(points))
			w.clearProblem()
			return a, nil
		case outcomeRejected, outcomeTooLarge:
			w.clearProblem()
			return a, nil
		case outcomeDeployment:
			w.noteProblem(w.deploymentText(a))
			return a, service.ErrNotConnected
		}
		// Outage.
		if ctx.Err() != nil {
			return a, service.ErrNotConnected
		}
		if attempt >= w.retry.maxRetries {
			w.log.Warnf("influxdb_v2: writing to InfluxDB at %s failed %d times (%s); reporting disconnected until it recovers",
				w.serverURL, attempt+1, describeAnswer(a))
			return a, service.ErrNotConnected
		}
		wait := w.retry.backoff(attempt)
		if a.retryAfter > wait {
			wait = min(a.retryAfter, w.retry.maxRetryAfter)
		}
		w.log.Debugf("influxdb_v2: write to %s failed (%s), retry %d in %v", w.serverURL, describeAnswer(a), attempt+1, wait)
		w.mRetries.Incr(1)
		w.counts.retries.Add(1)
		if w.sleep(ctx, wait) != nil {
			return a, service.ErrNotConnected
		}
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
