package outputs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The write request and what its answer means. Only InfluxDB's own answers count: a stored
// write is 204 and nothing else, and a 400/422 is a rejection of points only when it is
// InfluxDB's error (its error shape, a reason from ifoPointRejections). Whatever else comes
// back (a redirect, a maintenance page's 200, a proxy's HTML 400, a WAF's 403) was said by
// something between the ingestor and InfluxDB, or by InfluxDB about the request rather than
// its points: nothing was stored and no point is at fault, so it is an outage of the path.

// ifoMaxAnswerBytes bounds how much of an answer's body is read: InfluxDB's errors are a
// line or a list of lines, and a proxy's page or an endless body must not fill memory. A
// JSON error cut at the bound still yields its code and message (they come first).
const ifoMaxAnswerBytes = 64 << 10

// ifoPointRejections are the reasons by which InfluxDB says that points of the request are
// wrong, as the real servers word them (lower case, matched as substrings):
//   - 1.8 (seen here): "unable to parse '...': ...", "field type conflict", "partial write:
//     field type conflict: ...", "partial write: invalid field name: ...", "partial write:
//     points beyond retention policy dropped=1", "partial write: max-series-per-database
//     limit exceeded: (N) dropped=N"; "partial write: max-values-per-tag limit exceeded".
//   - 2.x: the same texts behind "failure writing points to database: ", code "invalid" (400)
//     or "unprocessable entity" (422); 2.0.x reported type conflicts as 500.
//   - Cloud and 3.x: "failed to parse line protocol: errors encountered on line(s): ...",
//     "parsing failed for write_lp endpoint", "partial write of line protocol occurred".
//
// A 400 with any other reason (2.x's "Please provide either orgID or org", 1.8's "unexpected
// EOF" of a broken gzip body, "invalid precision") is about the request: no point is at fault.
var ifoPointRejections = []string{
	"unable to parse",
	"failed to parse line protocol",
	"parsing failed",
	"partial write",
	"field type conflict",
	"points beyond retention policy",
	"invalid field name",
	"max-series-per-database limit exceeded",
	"max-values-per-tag limit exceeded",
}

// ifoProbeWritable is 2.x's answer to a write without lines after the token and bucket checks.
const ifoProbeWritable = "writing requires points"

// writeOutcome is how one write request ended, from the ingestor's view.
type writeOutcome int

const (
	outcomeStored        writeOutcome = iota // 204: every point stored
	outcomeRejected                          // InfluxDB says some point of the request is bad
	outcomeTooLarge                          // 413: the request, not a line, is the problem
	outcomeOutage                            // unreachable, throttled, unavailable: retry in place
	outcomeDeployment                        // token, bucket, or an answer that is not InfluxDB's
	outcomeBucketMissing                     // 404 for a bucket that messages chose: theirs to fail
)

// influxAnswer is one request's result.
type influxAnswer struct {
	outcome writeOutcome
	status  int
	// message is InfluxDB's reason, or a description of the answer that was not InfluxDB's,
	// on one bounded line.
	message    string
	retryAfter time.Duration
	// influx is true when the answer has InfluxDB's error shape (JSON code and message, JSON
	// error, or the X-Influxdb-Error header).
	influx bool
	// location is a redirect's Location.
	location string
}

// post sends one write request (an empty body is the probe) and reads its answer, bounded.
func (w *influxWriter) post(ctx context.Context, writeURL string, body []byte, gz bool) influxAnswer {
	rctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, writeURL, bytes.NewReader(body))
	if err != nil {
		return transportAnswer(err)
	}
	return w.do(req, body, gz)
}

// probeHealth asks InfluxDB's GET /health (1.8 and 2.x), which answers 200 with a JSON
// "status": "pass" when it serves writes.
func (w *influxWriter) probeHealth(ctx context.Context) influxAnswer {
	rctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, strings.TrimRight(w.serverURL, "/")+"/health", nil)
	if err != nil {
		return transportAnswer(err)
	}
	a, body := w.doRaw(req, nil, false)
	if a.status == http.StatusOK {
		var h struct {
			Status string `json:"status"`
		}
		if json.Unmarshal(body, &h) == nil && h.Status == "pass" {
			a.outcome = outcomeStored
		}
	}
	return a
}

// do sends a request and classifies its answer.
func (w *influxWriter) do(req *http.Request, body []byte, gz bool) influxAnswer {
	a, _ := w.doRaw(req, body, gz)
	return a
}

// doRaw sends a request with the output's headers and returns the answer and its body, read
// up to ifoMaxAnswerBytes.
func (w *influxWriter) doRaw(req *http.Request, body []byte, gz bool) (influxAnswer, []byte) {
	for k, v := range w.headers {
		req.Header.Set(k, v)
	}
	if w.authorization != "" {
		req.Header.Set("Authorization", w.authorization)
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	if w.userAgent != "" {
		req.Header.Set("User-Agent", w.userAgent)
	}
	if gz {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := w.httpClient.Do(req)
	if err != nil {
		return transportAnswer(err), nil
	}
	defer resp.Body.Close()
	// Read one byte past the bound: a body that ends within it is drained, so the connection
	// is reused; a longer one is cut and its connection closed.
	raw, err := io.ReadAll(io.LimitReader(resp.Body, ifoMaxAnswerBytes+1))
	if err != nil && resp.StatusCode == http.StatusNoContent {
		// The answer arrived; a broken connection after it changes nothing.
		err = nil
	}
	if err != nil {
		return transportAnswer(fmt.Errorf("reading the answer (%d): %w", resp.StatusCode, err)), nil
	}
	if len(raw) > ifoMaxAnswerBytes {
		raw = raw[:ifoMaxAnswerBytes]
	}
	return classifyAnswer(resp.StatusCode, resp.Header, raw), raw
}

// bucketNotFound reports whether an answer is InfluxDB's 404 for a missing bucket (2.x:
// bucket "x" not found; 1.8: database not found), not for a missing organization.
func bucketNotFound(a influxAnswer) bool {
	if a.status != http.StatusNotFound || !a.influx {
		return false
	}
	lower := strings.ToLower(a.message)
	return !strings.Contains(lower, "organization") &&
		(strings.Contains(lower, "bucket") || strings.Contains(lower, "database not found"))
}

// transportAnswer is a request that got no HTTP answer: refused, reset, timed out. A
// timed-out write may have been applied; rewriting it is harmless.
func transportAnswer(err error) influxAnswer {
	return influxAnswer{outcome: outcomeOutage, message: oneLine(err.Error())}
}

// classifyAnswer says what an HTTP answer to a write means.
func classifyAnswer(status int, header http.Header, body []byte) influxAnswer {
	a := influxAnswer{status: status, retryAfter: parseRetryAfter(header)}
	msg, isInflux := influxErrorMessage(header, body)
	a.influx = isInflux
	if isInflux {
		a.message = oneLine(msg)
	} else {
		a.message = foreignAnswerText(status, header, body)
	}
	lower := strings.ToLower(a.message)
	switch {
	case status == http.StatusNoContent:
		a.outcome = outcomeStored
	case status >= 200 && status < 300:
		// InfluxDB 2.x, 1.8 and 3.x all answer a stored write with 204: a 200 is a
		// maintenance page or a login page, and nothing was stored.
		a.outcome = outcomeDeployment
	case status >= 300 && status < 400:
		// Redirects are never followed (CheckRedirect): an SSO proxy or a load balancer
		// sends the write elsewhere, where it would be lost as a GET.
		a.outcome = outcomeDeployment
		a.location = oneLine(header.Get("Location"))
	case status == http.StatusRequestEntityTooLarge:
		// Whoever said it (InfluxDB's max-body-size, a proxy's body limit), the request is
		// too large for the path: split it.
		a.outcome = outcomeTooLarge
	case status == http.StatusBadRequest, status == http.StatusUnprocessableEntity:
		if isInflux && pointRejection(lower) {
			a.outcome = outcomeRejected
		} else {
			a.outcome = outcomeDeployment
		}
	case status == http.StatusInternalServerError && isInflux &&
		(strings.Contains(lower, "partial write") || strings.Contains(lower, "field type conflict")):
		// InfluxDB 2.0.x reported type conflicts as 500.
		a.outcome = outcomeRejected
	case status == http.StatusTooManyRequests, status >= 500:
		a.outcome = outcomeOutage
	default:
		// 401, 403, 404, 405 ...: token, bucket, or a proxy's refusal. Never the data's fault.
		a.outcome = outcomeDeployment
	}
	return a
}

// classifyProbe says what the answer to a write without lines means: writable on 204 (1.8,
// 3.x) or 2.x's 400 "writing requires points", which comes after its token and bucket checks.
// Any other 400 or a 413 to an empty body says the request cannot be written.
func classifyProbe(a influxAnswer) influxAnswer {
	if a.status == http.StatusBadRequest && a.influx && strings.Contains(strings.ToLower(a.message), ifoProbeWritable) {
		a.outcome = outcomeStored
		return a
	}
	if a.outcome == outcomeRejected || a.outcome == outcomeTooLarge {
		a.outcome = outcomeDeployment
	}
	return a
}

func pointRejection(lowerMsg string) bool {
	for _, r := range ifoPointRejections {
		if strings.Contains(lowerMsg, r) {
			return true
		}
	}
	return false
}

// influxErrorMessage is InfluxDB's reason when the answer has InfluxDB's error shape: 1.8's
// X-Influxdb-Error header, a JSON body with 2.x's "code" and "message", or with 1.8's and
// 3.x's "error". A proxy's HTML page, plain text or other JSON is not InfluxDB's answer.
func influxErrorMessage(header http.Header, body []byte) (string, bool) {
	if v := strings.TrimSpace(header.Get("X-Influxdb-Error")); v != "" {
		return v, true
	}
	ctype, _, _ := mime.ParseMediaType(header.Get("Content-Type"))
	if ctype != "application/json" {
		return "", false
	}
	code, message, errText := jsonErrorFields(body)
	switch {
	case code != "" && message != "":
		return message, true
	case errText != "":
		return errText, true
	}
	return "", false
}

// jsonErrorFields reads the top-level string fields code, message and error of a JSON object,
// token by token, so that a body cut at ifoMaxAnswerBytes still yields the fields before the
// cut.
func jsonErrorFields(body []byte) (code, message, errText string) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return "", "", ""
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return
		}
		key, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return
		}
		var s string
		if json.Unmarshal(v, &s) != nil {
			continue
		}
		switch key {
		case "code":
			code = s
		case "message":
			message = s
		case "error":
			errText = s
		}
	}
	return
}

// foreignAnswerText describes an answer that is not InfluxDB's error: its status, content type
// and the start of its body, enough to recognise the proxy or page that sent it.
func foreignAnswerText(status int, header http.Header, body []byte) string {
	var b strings.Builder
	b.WriteString(http.StatusText(status))
	if b.Len() == 0 {
		b.WriteString("status " + strconv.Itoa(status))
	}
	if ct := header.Get("Content-Type"); ct != "" {
		b.WriteString(", " + ct)
	}
	if text := strings.Join(strings.Fields(string(body)), " "); text != "" {
		const maxBody = 200
		if len(text) > maxBody {
			text = strings.ToValidUTF8(text[:maxBody], "") + "..."
		}
		b.WriteString(": " + text)
	}
	return oneLine(b.String())
}

// oneLine folds whitespace runs (newlines included) to single spaces and bounds the length,
// so a server's reason fits one log line and error record.
func oneLine(msg string) string {
	msg = strings.Join(strings.Fields(msg), " ")
	const maxLen = 1024
	if len(msg) > maxLen {
		msg = strings.ToValidUTF8(msg[:maxLen], "") + "..."
	}
	return msg
}

// parseRetryAfter reads Retry-After as seconds or as an HTTP date.
func parseRetryAfter(header http.Header) time.Duration {
	v := strings.TrimSpace(header.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s > 0 {
			return time.Duration(min(s, 1<<20)) * time.Second
		}
		return 0
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// describeAnswer is the answer for a log line or an error.
func describeAnswer(a influxAnswer) string {
	switch {
	case a.status == 0:
		return a.message
	case a.location != "":
		return fmt.Sprintf("%d redirect to %s", a.status, a.location)
	case !a.influx && a.outcome == outcomeDeployment:
		return fmt.Sprintf("%d, not InfluxDB's answer: %s", a.status, a.message)
	}
	return fmt.Sprintf("%d: %s", a.status, a.message)
}

// errNoRedirect keeps the HTTP client from following redirects: the client would resend a
// write as a GET to a login page, whose 200 must never count as stored.
func errNoRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
