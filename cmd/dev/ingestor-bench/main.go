// Command ingestor-bench measures the ingestor against the limits of the stack it runs on, in
// one run, on the embedded stack: the in-process Kafka-protocol broker (this process) and a real
// InfluxDB 1.8 (a child process), both on loopback.
//
// It pre-loads realistic streams from internal/dev/readinggen (the demo's generator), then measures:
//
//  1. the raw limits: a bare franz-go consumer reading the clean topic (records/s), and
//     InfluxDB taking the same readings, mapped in-process by reading_to_point and posted as
//     line protocol by plain concurrent HTTP at each run's batch size (points/s), each into a
//     fresh database;
//  2. the ingestor binary with config/ingestor.yaml as shipped (batch 100, flush 5 s);
//  3. the ingestor with the shipped pipeline and the tuned values of config/ingestor-high-volume.env;
//  4. the poison flood: the same size of stream with a fifth bad, against the clean rate;
//  5. a backlog (one million messages by default) waiting at start: its rate and peak RSS.
//
// Every ingestor run gets a fresh consumer group and database and ends when the group's
// committed offsets reach the end of the topic. It prints messages/s, the ratio to the raw
// write rate at the same batch size, CPU seconds per million messages (utime+stime of the
// ingestor from /proc), and peak RSS (VmHWM). scripts/bench.sh builds and runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/preservarium/iot-ingestor/internal/dev/readinggen"
	_ "github.com/preservarium/iot-ingestor/processors"
)

type options struct {
	bin, influxd             string
	shippedConf, tunedEnv    string
	messages, backlog        int
	floodShare               float64
	partitions               int
	devices                  int
	shippedBatch, tunedBatch int
	shippedFlush, tunedFlush int
	rawConcurrency           []int
	runs                     string
	profile                  string
	profileSeconds           int
	workDir                  string
	seed                     int64
	only                     string
	scenario                 string
	stuckPartitions          int
	stuckTuned               bool
	stuckRounds              int
	whole                    wholeOptions // the whole-run drains: drain.go
	huge                     hugeOptions  // the huge scenario: huge.go
}

func main() {
	var o options
	var conc string
	flag.StringVar(&o.bin, "bin", "bin/ingestor", "ingestor binary to measure")
	flag.StringVar(&o.influxd, "influxd", ".tools/bin/influxd", "InfluxDB 1.8 binary (scripts/install-influxdb.sh builds it)")
	flag.StringVar(&o.shippedConf, "shipped-config", "config/ingestor.yaml", "the shipped pipeline")
	flag.StringVar(&o.tunedEnv, "tuned-env", "config/ingestor-high-volume.env", "the tuned values of the shipped pipeline (KEY=VALUE lines); its INFLUXDB_BATCH_SIZE and INFLUXDB_FLUSH_INTERVAL_MS give the tuned batch unless -tuned-batch/-tuned-flush-ms are set")
	flag.IntVar(&o.messages, "messages", 200000, "messages in the clean and the flood streams")
	flag.IntVar(&o.backlog, "backlog", 1000000, "messages in the backlog stream (0: no backlog runs)")
	flag.Float64Var(&o.floodShare, "flood-share", 0.2, "share of bad messages in the poison flood")
	flag.IntVar(&o.partitions, "partitions", 12, "partitions of each topic")
	flag.IntVar(&o.devices, "devices", readinggen.DefaultOptions().Devices, "distinct devices (series) in the generated streams; a message's key is its device, so devices spread over the partitions")
	flag.IntVar(&o.shippedBatch, "shipped-batch", 100, "INFLUXDB_BATCH_SIZE of the shipped runs (the shipped default)")
	flag.IntVar(&o.shippedFlush, "shipped-flush-ms", 5000, "INFLUXDB_FLUSH_INTERVAL_MS of the shipped runs (the shipped default)")
	flag.IntVar(&o.tunedBatch, "tuned-batch", 500, "INFLUXDB_BATCH_SIZE of the tuned runs (the tuned config's default)")
	flag.IntVar(&o.tunedFlush, "tuned-flush-ms", 1000, "INFLUXDB_FLUSH_INTERVAL_MS of the tuned runs (the tuned config's default)")
	flag.StringVar(&conc, "raw-concurrency", "4,8", "concurrent writers tried for the raw write limit; the best is the limit")
	flag.StringVar(&o.runs, "runs", "raw,shipped,tuned,flood,backlog,whole6,whole12", "what to measure, comma separated: raw, shipped, tuned, flood, backlog, wholeN (the whole-run drains of -whole-runs on N partitions)")
	flag.StringVar(&o.profile, "profile", "", "directory to save CPU and heap profiles of the shipped and tuned runs (empty: no profiling)")
	flag.IntVar(&o.profileSeconds, "profile-seconds", 8, "length of each CPU profile")
	flag.StringVar(&o.workDir, "work", "", "directory for logs and InfluxDB data (default: a new temporary directory)")
	flag.Int64Var(&o.seed, "seed", 1, "generator seed")
	flag.StringVar(&o.only, "only", "", "run only these ingestor runs, comma separated (shipped, tuned, shipped-flood, tuned-flood, shipped-backlog, tuned-backlog); empty: all that -runs selects")
	flag.StringVar(&o.scenario, "scenario", "", "a scenario instead of the usual runs: stuck (one message on partition 0 that the error topic refuses forever, against the same stream clean; see stuck.go), huge (1,000 readings of 1 MB through the shipped pipeline: peak RSS; see huge.go)")
	flag.IntVar(&o.stuckPartitions, "stuck-partitions", 6, "partitions of the stuck scenario's topics")
	flag.IntVar(&o.stuckRounds, "stuck-rounds", 2, "clean and stuck runs of the stuck scenario, alternating; the figure compares their means")
	flag.BoolVar(&o.stuckTuned, "stuck-tuned", false, "run the stuck scenario with the tuned values of -tuned-env instead of the shipped defaults")
	registerWholeFlags(&o.whole)
	registerHugeFlags(&o.huge)
	flag.Parse()
	for _, s := range strings.Split(conc, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(s), &n); err != nil || n < 1 {
			fatalf("-raw-concurrency: %q is not a positive integer", s)
		}
		o.rawConcurrency = append(o.rawConcurrency, n)
	}
	var err error
	switch o.scenario {
	case "":
		err = run(context.Background(), o)
	case "stuck":
		err = runStuck(context.Background(), o)
	case "huge":
		err = runHuge(context.Background(), o)
	default:
		err = fmt.Errorf("-scenario: %q is not one of stuck, huge", o.scenario)
	}
	if err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "ingestor-bench: "+format+"\n", args...)
	os.Exit(1)
}

func run(ctx context.Context, o options) error {
	runs := map[string]bool{}
	for _, r := range strings.Split(o.runs, ",") {
		runs[strings.TrimSpace(r)] = true
	}
	if err := prepare(&o); err != nil {
		return err
	}
	fmt.Printf("ingestor-bench: %d messages (flood %.0f%% bad), backlog %d, %d partitions, %d devices; logs in %s\n",
		o.messages, o.floodShare*100, o.backlog, o.partitions, o.devices, o.workDir)

	topics := []string{"bench_clean", "bench_flood", "bench_backlog", "iot_errors"}
	st, err := startStack(o, int32(o.partitions), topics)
	if err != nil {
		return err
	}
	defer st.close()
	influx, brokers, adm := st.influx, st.brokers, st.adm

	mapper, err := newMapper()
	if err != nil {
		return err
	}
	fmt.Println("== pre-loading")
	t := time.Now()
	clean, err := preload(ctx, brokers, "bench_clean", o.messages, 0, o.seed, o.devices, mapper)
	if err != nil {
		return err
	}
	fmt.Printf("  %s: %d messages (%.1f MB, %d stored, %d filtered) in %v\n", clean.topic, clean.messages,
		float64(clean.bytes)/1e6, clean.stored, clean.filtered, time.Since(t).Round(time.Millisecond))
	var flood, backlog *stream
	if runs["flood"] {
		t = time.Now()
		if flood, err = preload(ctx, brokers, "bench_flood", o.messages, o.floodShare, o.seed+1, o.devices, nil); err != nil {
			return err
		}
		fmt.Printf("  %s: %d messages (%d stored, %d filtered, %d bad) in %v\n", flood.topic, flood.messages,
			flood.stored, flood.filtered, flood.errors, time.Since(t).Round(time.Millisecond))
	}
	if runs["backlog"] && o.backlog > 0 {
		t = time.Now()
		if backlog, err = preload(ctx, brokers, "bench_backlog", o.backlog, 0, o.seed+2, o.devices, nil); err != nil {
			return err
		}
		fmt.Printf("  %s: %d messages (%.1f MB) in %v\n", backlog.topic, backlog.messages,
			float64(backlog.bytes)/1e6, time.Since(t).Round(time.Millisecond))
	}

	// Raw limits.
	rawLimit := map[int]rawResult{}
	rawN := 0
	var consumeRate float64
	if runs["raw"] {
		fmt.Println("== raw limits")
		rate, took, err := bareConsume(ctx, brokers, clean.topic, clean.messages)
		if err != nil {
			return err
		}
		consumeRate = rate
		fmt.Printf("  bare franz-go consumer: %d records in %v: %.0f records/s\n", clean.messages, took.Round(time.Millisecond), rate)
		batches := []int{o.shippedBatch}
		if o.tunedBatch != o.shippedBatch {
			batches = append(batches, o.tunedBatch)
		}
		for _, b := range batches {
			for _, gz := range []bool{false, true} {
				for _, c := range o.rawConcurrency {
					rawN++
					db := fmt.Sprintf("raw_%d", rawN)
					r, err := rawWrite(ctx, influx, db, clean.lines, b, c, gz)
					if err != nil {
						return err
					}
					fmt.Printf("  InfluxDB raw write: batch %5d, %2d writers, gzip %-5v: %d points in %v: %.0f points/s (InfluxDB CPU %.1f s)\n",
						b, c, gz, r.points, r.took.Round(time.Millisecond), r.rate(), r.influxCPU.Seconds())
					if best, ok := rawLimit[b]; !ok || r.rate() > best.rate() {
						rawLimit[b] = r
					}
					_ = influx.dropDatabase(db)
				}
			}
		}
	}

	// Ingestor runs. The disk InfluxDB writes its WAL to is shared and its speed drifts, so
	// the raw write limit of a run's batch size is measured again right before and right after
	// the run, with the best writer settings found above, and the run is compared to their mean.
	type plan struct {
		key  string
		spec runSpec
	}
	shipped := func(name string, s *stream) runSpec {
		return runSpec{name: name, config: o.shippedConf, stream: s, batch: o.shippedBatch, flushMS: o.shippedFlush, held: -1}
	}
	tunedEnv, err := loadEnvFile(o.tunedEnv)
	if err != nil {
		return err
	}
	explicit := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	for key, target := range map[string]*int{"INFLUXDB_BATCH_SIZE": &o.tunedBatch, "INFLUXDB_FLUSH_INTERVAL_MS": &o.tunedFlush} {
		v, ok := tunedEnv[key]
		delete(tunedEnv, key) // the run's batch and flush are set from o below
		if !ok || explicit["tuned-batch"] && key == "INFLUXDB_BATCH_SIZE" || explicit["tuned-flush-ms"] && key == "INFLUXDB_FLUSH_INTERVAL_MS" {
			continue
		}
		if err := envInt(map[string]string{key: v}, key, target); err != nil {
			return fmt.Errorf("%s: %w", o.tunedEnv, err)
		}
	}
	tuned := func(name string, s *stream) runSpec {
		return runSpec{name: name, config: o.shippedConf, env: tunedEnv, stream: s, batch: o.tunedBatch, flushMS: o.tunedFlush, held: -1}
	}
	var plans []plan
	if runs["shipped"] {
		plans = append(plans, plan{"shipped", shipped("shipped", clean)})
	}
	if runs["tuned"] {
		plans = append(plans, plan{"tuned", tuned("tuned", clean)})
	}
	if flood != nil {
		plans = append(plans, plan{"flood", shipped("shipped-flood", flood)}, plan{"flood", tuned("tuned-flood", flood)})
	}
	if backlog != nil {
		plans = append(plans, plan{"backlog", shipped("shipped-backlog", backlog)}, plan{"backlog", tuned("tuned-backlog", backlog)})
	}
	if o.only != "" {
		keep := plans[:0]
		for _, p := range plans {
			if slices.Contains(strings.Split(o.only, ","), p.spec.name) {
				keep = append(keep, p)
			}
		}
		plans = keep
	}
	type measured struct {
		runResult
		raw float64 // raw write limit at the run's batch size around the run, points/s
	}
	var results []measured
	rawAround := func(batch int) (float64, error) {
		best, ok := rawLimit[batch]
		if !ok {
			return 0, nil
		}
		rawN++
		db := fmt.Sprintf("raw_%d", rawN)
		r, err := rawWrite(ctx, influx, db, clean.lines, batch, best.concurrency, best.gzip)
		_ = influx.dropDatabase(db)
		return r.rate(), err
	}
	for i, p := range plans {
		rs := p.spec
		rs.group = fmt.Sprintf("bench_%s_%d", strings.ReplaceAll(rs.name, "-", "_"), time.Now().UnixNano())
		rs.db = fmt.Sprintf("bench_%d", i)
		if o.profile != "" {
			rs.profile, rs.profileS = o.profile, o.profileSeconds
		}
		fmt.Printf("== %s: %s, batch %d, flush %d ms, %d messages\n", rs.name, filepath.Base(rs.config), rs.batch, rs.flushMS, rs.stream.messages)
		before, err := rawAround(rs.batch)
		if err != nil {
			return err
		}
		r, err := runIngestor(ctx, o.bin, o.workDir, brokers, influx, adm, rs)
		if err != nil {
			return err
		}
		_ = influx.dropDatabase(rs.db)
		after, err := rawAround(rs.batch)
		if err != nil {
			return err
		}
		m := measured{runResult: r, raw: (before + after) / 2}
		fmt.Printf("  steady %.0f messages/s, drained at %.0f messages/s (drained in %v, all written by %v, start-up %v)\n",
			r.steady, r.rate(), r.took.Round(time.Millisecond), r.written.Round(time.Millisecond), r.startup.Round(time.Millisecond))
		if m.raw > 0 {
			fmt.Printf("  raw write limit at batch %d: %.0f points/s before, %.0f after\n", rs.batch, before, after)
		}
		fmt.Printf("  %.1f CPU s per million, peak RSS %.0f MB\n", r.cpuPerMillion(), float64(r.peakRSS)/(1<<20))
		fmt.Printf("  CPU over the run: ingestor %.1f s, InfluxDB %.1f s, broker+harness %.1f s (of %.1f s on %d cores); %d writes, mean latency %.1f ms\n",
			r.cpu.Seconds(), r.influxCPU.Seconds(), r.brokerCPU.Seconds(), r.took.Seconds()*float64(runtime.NumCPU()), runtime.NumCPU(), r.requests, r.latency*1000)
		if r.points != int64(rs.stream.stored) || r.errRecs != int64(rs.stream.errors) || r.filtered != int64(rs.stream.filtered) {
			fmt.Printf("  MISMATCH: points written %d (expected %d), error records %d (expected %d), filtered %d (expected %d)\n",
				r.points, rs.stream.stored, r.errRecs, rs.stream.errors, r.filtered, rs.stream.filtered)
		}
		results = append(results, m)
	}

	// Summary.
	fmt.Println()
	fmt.Println("== summary")
	if consumeRate > 0 {
		fmt.Printf("bare franz-go consumer: %.0f records/s\n", consumeRate)
	}
	bs := make([]int, 0, len(rawLimit))
	for b := range rawLimit {
		bs = append(bs, b)
	}
	slices.Sort(bs)
	for _, b := range bs {
		r := rawLimit[b]
		fmt.Printf("raw InfluxDB write limit at batch %d: %.0f points/s (%d writers, gzip %v)\n", b, r.rate(), r.concurrency, r.gzip)
	}
	fmt.Println()
	fmt.Println("steady: messages/s between 10% and 90% of the stream stored; drained: messages/s from the first")
	fmt.Println("message received to the group's commits reaching the end of the topic (includes the batch")
	fmt.Println("period of the last partial batches and the commit period). raw: InfluxDB write limit at the")
	fmt.Println("run's batch size, measured right before and after the run (mean).")
	fmt.Printf("%-16s %5s %8s %8s %8s %7s %8s %7s %9s %7s %7s\n", "run", "batch", "messages", "steady", "raw", "st/raw", "drained", "dr/raw", "CPU s/1M", "peakRSS", "drain s")
	cleanRate := map[string]measured{}
	pct := func(a, b float64) string {
		if b <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f%%", 100*a/b)
	}
	for _, r := range results {
		fmt.Printf("%-16s %5d %8d %8.0f %8.0f %7s %8.0f %7s %9.1f %5.0fMB %7.1f\n", r.spec.name, r.spec.batch, r.spec.stream.messages,
			r.steady, r.raw, pct(r.steady, r.raw), r.rate(), pct(r.rate(), r.raw), r.cpuPerMillion(), float64(r.peakRSS)/(1<<20), r.took.Seconds())
		if r.spec.name == "shipped" || r.spec.name == "tuned" {
			cleanRate[r.spec.name] = r
		}
	}
	for _, r := range results {
		base, ok := strings.CutSuffix(r.spec.name, "-flood")
		if c, found := cleanRate[base]; ok && found {
			fmt.Printf("poison flood (%s config): clean/flood %.2fx steady, %.2fx drained (target: within 2x)\n",
				base, c.steady/r.steady, c.rate()/r.rate())
		}
	}
	return runWholeDrains(ctx, wholeEnv{o: o, influx: influx, brokers: brokers, adm: adm, backlog: backlog, runs: runs, tunedEnv: o.tunedEnv})
}

// prepare makes the work directory and the paths of o absolute, and checks the binary exists.
func prepare(o *options) error {
	if o.workDir == "" {
		d, err := os.MkdirTemp("", "ingestor-bench-")
		if err != nil {
			return err
		}
		o.workDir = d
	}
	if err := os.MkdirAll(o.workDir, 0o755); err != nil {
		return err
	}
	for _, p := range []*string{&o.bin, &o.shippedConf, &o.tunedEnv, &o.influxd} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	if _, err := os.Stat(o.bin); err != nil {
		return fmt.Errorf("ingestor binary %s: %w (go build -o bin/ingestor ./cmd/ingestor)", o.bin, err)
	}
	return nil
}

// envInt sets *dst from env[key] when it is there.
func envInt(env map[string]string, key string, dst *int) error {
	v, ok := env[key]
	if !ok {
		return nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return fmt.Errorf("%s=%q is not a whole number", key, v)
	}
	*dst = n
	return nil
}

// loadEnvFile reads KEY=VALUE lines (blank lines and # comments skipped), the format of the
// engine's --env-file.
func loadEnvFile(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	env := map[string]string{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("%s:%d: not KEY=VALUE: %q", path, i+1, line)
		}
		env[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return env, nil
}
