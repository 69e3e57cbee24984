package influxtest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Fault is what the FaultInjector does with one write request.
type Fault struct {
	// Delay holds the answer back (a slow server, past the client's timeout).
	Delay time.Duration
	// Status, with Header and Body, answers directly instead of passing on.
	Status int
	Header map[string]string
	Body   string
	// Reset sends the start of a response, then drops the connection with a
	// TCP reset: a connection reset mid-response.
	Reset bool
}

// Pass is the zero Fault: the request goes through.
var Pass = Fault{}

// WriteRequest is a write the FaultInjector received, body decompressed.
type WriteRequest struct {
	Query         url.Values
	Authorization string
	Gzip          bool
	Lines         []string
	Fault         Fault
	// At is when the request arrived: tests bound the rate of writes with it.
	At time.Time
	// Header is the request's headers.
	Header http.Header
}

// FaultInjector is a fault-injecting HTTP stub for what InfluxDB 1.8 cannot
// produce (429 with Retry-After, 500 partial write, resets mid-response, slow
// answers, the 2.x buckets API), and the proxy that plays the middle boxes
// found in front of InfluxDB (an SSO proxy's redirect and login page, a load
// balancer's maintenance page, a proxy's HTML 400, a WAF's 403). It is never a stand-in for the real server's
// data behaviour: with a target it proxies every request it does not fault to
// the real InfluxDB; without one it accepts (204) and records the lines.
type FaultInjector struct {
	t      testing.TB
	srv    *httptest.Server
	target *url.URL
	proxy  *http.Client

	mu       sync.Mutex
	plan     func(n int, req WriteRequest) Fault
	writes   []WriteRequest
	accepted []string
	// toV1 sends proxied writes to 1.8's /write (RouteWritesToV1).
	toV1 bool
	// buckets API state (EnableBucketsAPI)
	bucketsOn bool
	org       string
	buckets   map[string]int64 // name -> retention seconds
	// pages are fixed answers for paths other than the write endpoint (Page).
	pages map[string]Fault
	// requests counts every request by path, the write endpoint's included.
	requests map[string]int
}

// NewFaultInjector starts the stub; target is a real server's URL to proxy
// to, or "" to accept and record writes itself.
func NewFaultInjector(t testing.TB, target string) *FaultInjector {
	t.Helper()
	f := &FaultInjector{t: t, proxy: &http.Client{Timeout: 30 * time.Second}, buckets: map[string]int64{},
		pages: map[string]Fault{}, requests: map[string]int{}}
	if target != "" {
		u, err := url.Parse(target)
		if err != nil {
			t.Fatalf("influxtest: fault injector target %q: %v", target, err)
		}
		f.target = u
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// URL is the stub's base URL.
func (f *FaultInjector) URL() string { return f.srv.URL }

// Plan sets the function deciding the fault of the n-th write (0-based).
func (f *FaultInjector) Plan(fn func(n int, req WriteRequest) Fault) {
	f.mu.Lock()
	f.plan = fn
	f.mu.Unlock()
}

// Writes returns every write request seen so far (probes included).
func (f *FaultInjector) Writes() []WriteRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]WriteRequest(nil), f.writes...)
}

// Accepted returns the lines the stub itself accepted (without a target).
func (f *FaultInjector) Accepted() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.accepted...)
}

// Page makes the stub answer every request to path (not the write endpoint) with the fault's
// status, headers and body: the login page an SSO proxy redirects to, say.
func (f *FaultInjector) Page(path string, answer Fault) {
	f.mu.Lock()
	f.pages[path] = answer
	f.mu.Unlock()
}

// Requests is how many requests reached path so far.
func (f *FaultInjector) Requests(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[path]
}

// RouteWritesToV1 makes the proxy pass 2.x writes to the real server's 1.x
// /write endpoint (bucket -> db/rp, precision ns -> n, us -> u, token
// "user:password" -> u/p). 1.8 applies its write throttling
// (max-concurrent-write-limit ...) to /write only, not to /api/v2/write, so
// this is how a test meets the real server's 503 "request throttled".
func (f *FaultInjector) RouteWritesToV1() {
	f.mu.Lock()
	f.toV1 = true
	f.mu.Unlock()
}

// EnableBucketsAPI serves a minimal 2.x buckets/orgs API for org; writes to
// a bucket not created through it answer 404 (stub mode only).
func (f *FaultInjector) EnableBucketsAPI(org string) {
	f.mu.Lock()
	f.bucketsOn, f.org = true, org
	f.mu.Unlock()
}

// Bucket returns the retention (seconds) of a bucket created through the
// buckets API and whether it exists.
func (f *FaultInjector) Bucket(name string) (int64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.buckets[name]
	return r, ok
}

func (f *FaultInjector) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests[r.URL.Path]++
	page, isPage := f.pages[r.URL.Path]
	f.mu.Unlock()
	switch {
	case isPage && r.URL.Path != "/api/v2/write":
		answer(w, page)
	case r.URL.Path == "/api/v2/write":
		f.serveWrite(w, r)
	case f.bucketsOn && strings.HasPrefix(r.URL.Path, "/api/v2/"):
		f.serveBucketsAPI(w, r)
	case f.target != nil:
		body, _ := io.ReadAll(r.Body)
		f.forward(w, r, body)
	default:
		http.NotFound(w, r)
	}
}

func (f *FaultInjector) serveWrite(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	text := raw
	if r.Header.Get("Content-Encoding") == "gzip" && len(raw) > 0 {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			http.Error(w, "fault injector: bad gzip: "+err.Error(), http.StatusBadRequest)
			return
		}
		text, _ = io.ReadAll(zr)
	}
	req := WriteRequest{Query: r.URL.Query(), Authorization: r.Header.Get("Authorization"),
		Gzip: r.Header.Get("Content-Encoding") == "gzip", At: time.Now(), Header: r.Header.Clone()}
	for _, l := range strings.Split(string(text), "\n") {
		if strings.TrimSpace(l) != "" {
			req.Lines = append(req.Lines, l)
		}
	}
	f.mu.Lock()
	n := len(f.writes)
	plan := f.plan
	f.mu.Unlock()
	fault := Pass
	if plan != nil {
		fault = plan(n, req)
	}
	req.Fault = fault
	f.mu.Lock()
	f.writes = append(f.writes, req)
	f.mu.Unlock()

	if fault.Delay > 0 {
		select {
		case <-time.After(fault.Delay):
		case <-r.Context().Done():
			return
		}
	}
	switch {
	case fault.Reset:
		hj, ok := w.(http.Hijacker)
		if !ok {
			f.t.Errorf("influxtest: fault injector cannot hijack the connection")
			return
		}
		conn, buf, err := hj.Hijack()
		if err != nil {
			return
		}
		_, _ = buf.WriteString("HTTP/1.1 204 No Content\r\nContent-Ty")
		_ = buf.Flush()
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // close with RST, not FIN
		}
		_ = conn.Close()
	case fault.Status != 0:
		answer(w, fault)
	case f.target != nil:
		f.forward(w, r, raw)
	default:
		f.mu.Lock()
		bucket := r.URL.Query().Get("bucket")
		_, exists := f.buckets[bucket]
		if f.bucketsOn && !exists {
			f.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = fmt.Fprintf(w, `{"code":"not found","message":"bucket \"%s\" not found"}`, bucket)
			return
		}
		f.accepted = append(f.accepted, req.Lines...)
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}
}

// answer writes the fault's status, headers and body (JSON unless a Content-Type is given).
func answer(w http.ResponseWriter, fault Fault) {
	for k, v := range fault.Header {
		w.Header().Set(k, v)
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(fault.Status)
	_, _ = io.WriteString(w, fault.Body)
}

func (f *FaultInjector) forward(w http.ResponseWriter, r *http.Request, body []byte) {
	u := *f.target
	u.Path = r.URL.Path
	u.RawQuery = r.URL.RawQuery
	f.mu.Lock()
	toV1 := f.toV1
	f.mu.Unlock()
	if toV1 && r.URL.Path == "/api/v2/write" {
		u.Path = "/write"
		u.RawQuery = v1WriteQuery(r).Encode()
	}
	preq, err := http.NewRequestWithContext(r.Context(), r.Method, u.String(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	preq.Header = r.Header.Clone()
	resp, err := f.proxy.Do(preq)
	if err != nil {
		http.Error(w, "fault injector: proxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

func v1WriteQuery(r *http.Request) url.Values {
	in := r.URL.Query()
	q := url.Values{}
	db, rp, _ := strings.Cut(in.Get("bucket"), "/")
	q.Set("db", db)
	if rp != "" {
		q.Set("rp", rp)
	}
	switch p := in.Get("precision"); p {
	case "ns", "":
		q.Set("precision", "n")
	case "us":
		q.Set("precision", "u")
	default:
		q.Set("precision", p)
	}
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Token "); ok {
		if user, pass, ok := strings.Cut(tok, ":"); ok {
			q.Set("u", user)
			q.Set("p", pass)
		}
	}
	return q
}

func (f *FaultInjector) serveBucketsAPI(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	orgJSON := map[string]any{"id": "0000000000000001", "name": f.org}
	switch {
	case r.URL.Path == "/api/v2/orgs" && r.Method == http.MethodGet:
		var orgs []any
		if name := r.URL.Query().Get("org"); name == "" || name == f.org {
			orgs = append(orgs, orgJSON)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"orgs": orgs})
	case r.URL.Path == "/api/v2/buckets" && r.Method == http.MethodGet:
		var out []any
		name := r.URL.Query().Get("name")
		if ret, ok := f.buckets[name]; ok {
			out = append(out, bucketJSON(name, ret))
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"buckets": out})
	case r.URL.Path == "/api/v2/buckets" && r.Method == http.MethodPost:
		var req struct {
			OrgID          string `json:"orgID"`
			Name           string `json:"name"`
			RetentionRules []struct {
				EverySeconds int64 `json:"everySeconds"`
			} `json:"retentionRules"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Name == "" || req.OrgID != "0000000000000001" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = fmt.Fprintf(w, `{"code":"invalid","message":"bad bucket request (%v, org %q)"}`, err, req.OrgID)
			return
		}
		var ret int64
		if len(req.RetentionRules) > 0 {
			ret = req.RetentionRules[0].EverySeconds
		}
		f.buckets[req.Name] = ret
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(bucketJSON(req.Name, ret))
	default:
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"code":"not found","message":"fault injector: no such API"}`)
	}
}

func bucketJSON(name string, retention int64) map[string]any {
	return map[string]any{
		"id": "00000000000000b1", "name": name, "orgID": "0000000000000001",
		"retentionRules": []any{map[string]any{"type": "expire", "everySeconds": retention}},
	}
}
