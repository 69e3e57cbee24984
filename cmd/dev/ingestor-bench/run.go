package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// runSpec is one end-to-end run of the ingestor binary.
type runSpec struct {
	name     string
	config   string
	stream   *stream
	group    string
	db       string
	batch    int
	flushMS  int
	env      map[string]string // added to or overriding the settings below
	profile  string            // directory for CPU and heap profiles; empty: none
	profileS int               // seconds of CPU profile
	// held, when not negative, is a partition that is never drained (the stuck scenario): the
	// run ends when every other partition is committed to its end, and want counts only their
	// messages.
	held int32
	want int64 // messages the run accounts for; 0: the whole stream
}

// runResult is what one run measured.
type runResult struct {
	spec runSpec
	// took runs from the first message received (input_received > 0 on /metrics) to the
	// group's committed offsets reaching the end of the topic.
	took time.Duration
	// written is when every message was accounted for on /metrics (points written + filtered
	// + error records), before the last commit.
	written time.Duration
	startup time.Duration // process start to first message received
	cpu     time.Duration // utime+stime of the ingestor over took
	// influxCPU and brokerCPU are what InfluxDB and this process (the in-process broker and
	// the harness's polling) used over took: with the ingestor's, where the cores went.
	influxCPU time.Duration
	brokerCPU time.Duration
	latency   float64 // mean InfluxDB write latency seen by the output, seconds
	requests  int64   // write requests InfluxDB accepted
	// steady is the rate between 10% and 90% of the stream accounted for on /metrics: the
	// throughput without the start and the tail (the last partial batches wait for the batch
	// period, the last offsets for the commit period).
	steady   float64
	peakRSS  int64 // VmHWM, bytes
	points   int64
	filtered int64
	errRecs  int64
	rejected int64
}

func (r runResult) rate() float64 { return float64(r.spec.messages()) / r.took.Seconds() }

// messages is how many messages of the stream the run drains.
func (rs runSpec) messages() int64 {
	if rs.want > 0 {
		return rs.want
	}
	return int64(rs.stream.messages)
}

func (r runResult) cpuPerMillion() float64 {
	return r.cpu.Seconds() / float64(r.spec.messages()) * 1e6
}

// runIngestor starts the binary on the pre-loaded stream with a fresh group and database,
// waits until the group has committed the whole topic, and measures.
func runIngestor(ctx context.Context, bin, workDir, brokers string, influx *influxServer, adm *kadm.Client, rs runSpec) (runResult, error) {
	res := runResult{spec: rs}
	if err := influx.createDatabase(rs.db); err != nil {
		return res, err
	}
	port, err := freePort()
	if err != nil {
		return res, err
	}
	httpAddr := fmt.Sprintf("127.0.0.1:%d", port)
	env := map[string]string{
		"KAFKA_BOOTSTRAP_SERVERS":    brokers,
		"KAFKA_VALIDATED_DATA_TOPIC": rs.stream.topic,
		"KAFKA_CONSUMER_GROUP_ID":    rs.group,
		"KAFKA_ERROR_TOPIC":          "iot_errors",
		"INFLUXDB_URL":               influx.url,
		"INFLUXDB_BUCKET":            rs.db,
		"INFLUXDB_BATCH_SIZE":        strconv.Itoa(rs.batch),
		"INFLUXDB_FLUSH_INTERVAL_MS": strconv.Itoa(rs.flushMS),
		"HTTP_ADDRESS":               httpAddr,
	}
	for k, v := range rs.env {
		env[k] = v
	}
	logPath := filepath.Join(workDir, rs.name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return res, err
	}
	defer logf.Close()
	args := []string{"run"}
	if rs.profile != "" {
		args = append(args, "--set", "http.debug_endpoints=true")
	}
	args = append(args, rs.config)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("starting %s: %w", bin, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	exited := false
	defer func() {
		if !exited {
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	pid := cmd.Process.Pid
	metricsURL := "http://" + httpAddr + "/metrics"
	hc := &http.Client{Timeout: 5 * time.Second}

	// The clock starts at the first message received: the group join and connection checks
	// before it are start-up, reported apart.
	var t0 time.Time
	var cpu0, icpu0, bcpu0 time.Duration
	deadline := started.Add(2 * time.Minute)
	for {
		select {
		case err := <-done:
			exited = true
			return res, fmt.Errorf("%s: the ingestor exited before consuming (%v); log in %s", rs.name, err, logPath)
		default:
		}
		if m, err := scrape(hc, metricsURL); err == nil && m["input_received"] > 0 {
			t0 = time.Now()
			cpu0, _ = procCPU(pid)
			icpu0, _ = procCPU(influx.pid())
			bcpu0, _ = procCPU(os.Getpid())
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("%s: nothing consumed within 2 minutes; log in %s", rs.name, logPath)
		}
		time.Sleep(10 * time.Millisecond)
	}
	res.startup = t0.Sub(started)

	profDone := make(chan error, 1)
	if rs.profile != "" {
		go func() { profDone <- fetchProfiles("http://"+httpAddr, rs.profile, rs.name, rs.profileS) }()
		// InfluxDB 1.8 serves pprof too: its profile shows what a write costs the server.
		go func() {
			if err := fetchProfiles(influx.url, rs.profile, rs.name+".influxd", rs.profileS); err != nil {
				fmt.Printf("  InfluxDB profile: %v\n", err)
			}
		}()
	} else {
		profDone <- nil
	}

	want := int64(rs.stream.messages)
	if rs.want > 0 {
		want = rs.want
	}
	limit := time.Duration(rs.stream.messages/200+300) * time.Second
	lastMetrics := time.Time{}
	var samples []sample
	for {
		select {
		case err := <-done:
			exited = true
			return res, fmt.Errorf("%s: the ingestor exited mid-run (%v); log in %s", rs.name, err, logPath)
		default:
		}
		if res.written == 0 && time.Since(lastMetrics) >= 100*time.Millisecond {
			lastMetrics = time.Now()
			if m, err := scrape(hc, metricsURL); err == nil {
				done := int64(m["influxdb_points_written"] + m["iot_messages_filtered"] + m["iot_error_records"])
				samples = append(samples, sample{time.Since(t0), done})
				if done >= want {
					res.written = time.Since(t0)
				}
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := behind(cctx, adm, rs.stream.topic, rs.group, rs.held)
		cancel()
		if err == nil && n == 0 {
			res.took = time.Since(t0)
			cpu1, _ := procCPU(pid)
			res.cpu = cpu1 - cpu0
			icpu1, _ := procCPU(influx.pid())
			res.influxCPU = icpu1 - icpu0
			bcpu1, _ := procCPU(os.Getpid())
			res.brokerCPU = bcpu1 - bcpu0
			break
		}
		if time.Since(t0) > limit {
			return res, fmt.Errorf("%s: not drained within %v (%d records uncommitted); log in %s", rs.name, limit, n, logPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if res.written == 0 {
		res.written = res.took
	}
	res.steady = steadyRate(samples, want)
	res.peakRSS, _ = procHWM(pid)
	if m, err := scrape(hc, metricsURL); err == nil {
		res.points = int64(m["influxdb_points_written"])
		res.filtered = int64(m["iot_messages_filtered"])
		res.errRecs = int64(m["iot_error_records"])
		res.rejected = int64(m["influxdb_points_rejected"])
		if n := m["influxdb_write_latency_ns_count"]; n > 0 {
			res.latency = m["influxdb_write_latency_ns_sum"] / n / 1e9
			res.requests = int64(n)
		}
	}
	if err := <-profDone; err != nil {
		fmt.Printf("  profile: %v\n", err)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
	exited = true
	return res, nil
}

type sample struct {
	at   time.Duration
	done int64
}

// steadyRate is the rate between the samples where 10% and 90% of want were accounted for.
func steadyRate(samples []sample, want int64) float64 {
	var lo, hi *sample
	for i := range samples {
		s := &samples[i]
		if lo == nil && s.done >= want/10 {
			lo = s
		}
		if hi == nil && s.done >= want*9/10 {
			hi = s
		}
	}
	if lo == nil || hi == nil || hi.at <= lo.at {
		return 0
	}
	return float64(hi.done-lo.done) / (hi.at - lo.at).Seconds()
}

// fetchProfiles saves, from the server at base, a CPU profile of the next seconds, three
// goroutine dumps a second apart and a heap profile mid-run.
func fetchProfiles(base, dir, name string, seconds int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	get := func(path, file string) error {
		c := &http.Client{Timeout: time.Duration(seconds+30) * time.Second}
		resp, err := c.Get(base + path)
		if err != nil {
			return fmt.Errorf("GET %s: %w", path, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s answered %d (debug endpoints off?)", path, resp.StatusCode)
		}
		f, err := os.Create(filepath.Join(dir, file))
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(f, resp.Body)
		return err
	}
	// Where the goroutines wait tells what bounds a run that does not use its CPU; the heap
	// is taken mid-run, where the peak is.
	snaps := make(chan error, 1)
	go func() {
		for i := 1; i <= 3; i++ {
			time.Sleep(time.Second)
			if err := get("/debug/pprof/goroutine?debug=1", fmt.Sprintf("%s.goroutines-%d.txt", name, i)); err != nil {
				snaps <- err
				return
			}
			if i == 2 {
				if err := get("/debug/pprof/heap", name+".heap.pprof"); err != nil {
					snaps <- err
					return
				}
			}
		}
		snaps <- nil
	}()
	err := get(fmt.Sprintf("/debug/pprof/profile?seconds=%d", seconds), name+".cpu.pprof")
	if serr := <-snaps; err == nil {
		err = serr
	}
	return err
}

// scrape reads /metrics and sums every series of each family (Prometheus text format).
func scrape(c *http.Client, url string) (map[string]float64, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		name := line[:sp]
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		out[strings.TrimSpace(name)] += v
	}
	return out, nil
}

// procCPU is the process's user+system CPU time from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count fields after its closing ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks, nil
}

// procHWM is the process's peak resident set size (VmHWM) in bytes.
func procHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb * 1024, err
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmHWM", pid)
}
