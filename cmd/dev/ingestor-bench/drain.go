package main

// The whole-run drain (issue 16): what an operator sees draining a backlog. A backlog waits on
// the topic; each run starts a process (the ingestor in some configuration, or Telegraf) with a
// fresh group and database, and is timed from the process's start to the last value stored in
// InfluxDB, read from InfluxDB itself: its field-value count, polled at most once a second so
// the polling costs InfluxDB little. The raw write limit of the same backlog (pre-encoded line
// protocol, plain concurrent HTTP) is the ceiling the runs are compared to.

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// wholeOptions are the flags of the whole-run drains.
type wholeOptions struct {
	backlog        int
	runs           string
	moreRuns       string
	timeout        time.Duration
	stall          time.Duration
	rawConcurrency int
	telegraf       string
	telegrafConf   string
	starlark       string
	logLevel       string
	// baseBin is another ingestor binary (an earlier commit's) for the NAME@base runs.
	baseBin string
	// baseEnv is another high-volume env file for the NAME@base runs: a change of its values
	// measured against the shipped file, in one run.
	baseEnv string
	// moreDevices is the distinct devices of the backlogs after the first partition count (0: -devices).
	moreDevices int
	// rounds is how many times each ingestor configuration runs (the raw runs and Telegraf once).
	rounds int
}

// The configurations a whole-run drain can measure, in the order they run. Telegraf runs before
// the ingestor runs so that its database can be compared with the first of them.
var wholeRunOrder = []string{"raw5000", "raw100", "telegraf", "shipped", "batch100", "batch500", "batch1000", "batch5000", "batch10000", "high-volume"}

// wholeRunGroups name sets of configurations in -whole-runs.
var wholeRunGroups = map[string][]string{
	"raw":   {"raw5000", "raw100"},
	"batch": {"batch100", "batch500", "batch1000", "batch5000", "batch10000"},
	"all":   wholeRunOrder,
}

const wholeDefaultRuns = "raw,telegraf,shipped,high-volume"

func registerWholeFlags(w *wholeOptions) {
	flag.IntVar(&w.backlog, "whole-backlog", 1000000, "messages pre-loaded for the whole-run drains (-runs wholeN: N partitions, e.g. whole6,whole12)")
	flag.StringVar(&w.runs, "whole-runs", wholeDefaultRuns, "configurations of each whole-run drain, comma separated: "+strings.Join(wholeRunOrder, ", ")+
		"; groups: raw (raw5000,raw100), batch (INFLUXDB_BATCH_SIZE alone at 100 to 10000), all. The raw runs are measured on the first partition count only (partitions do not matter to a raw write)")
	flag.StringVar(&w.moreRuns, "whole-more-runs", "", "configurations of the whole-run drains on the partition counts after the first (whole6,whole48: on 48), as -whole-runs; empty: the same as -whole-runs")
	flag.DurationVar(&w.timeout, "whole-timeout", 3*time.Minute, "a whole-run drain not complete by then is reported with its share stored")
	flag.DurationVar(&w.stall, "whole-stall", 30*time.Second, "a whole-run drain whose count stays the same this long (after its first value) is reported as stalled")
	flag.IntVar(&w.rawConcurrency, "whole-raw-concurrency", 4, "concurrent posts of the raw whole-run writes")
	flag.StringVar(&w.telegraf, "telegraf", ".tools/bin/telegraf", "Telegraf binary for the telegraf run (scripts/install-telegraf.sh builds it)")
	flag.StringVar(&w.telegrafConf, "telegraf-config", "bench/telegraf/telegraf.conf", "Telegraf's configuration for the telegraf run")
	flag.StringVar(&w.starlark, "telegraf-mapping", "bench/telegraf/mapping.star", "the Starlark mapping telegraf.conf loads")
	flag.StringVar(&w.baseBin, "whole-base-bin", "", "an earlier build of the ingestor for the runs named NAME@base in -whole-runs (shipped@base, high-volume@base, batch500@base ...): the same configuration with that binary, in the same run, so a change is measured against its base")
	flag.StringVar(&w.baseEnv, "whole-base-env", "", "another env file for the runs named NAME@base in -whole-runs, in place of -tuned-env (high-volume@base): a change of the high-volume values measured against the shipped ones in one run; with -whole-base-bin too, both differ")
	flag.IntVar(&w.moreDevices, "whole-more-devices", 0, "distinct devices of the whole-run backlogs on the partition counts after the first (whole6,whole48 -whole-more-devices 5000: 48 partitions and 5,000 devices against 6 partitions and -devices); 0: -devices")
	flag.IntVar(&w.rounds, "whole-rounds", 1, "times each ingestor configuration of the whole-run drains runs, one round after the other; in every second round a configuration's @base run goes first; the summary adds each configuration's median: the run-to-run spread, in one invocation")
	flag.StringVar(&w.logLevel, "whole-log-level", "", "LOG_LEVEL of the ingestor in the whole-run drains (empty: the pipeline's default); DEBUG/TRACE show what start-up does, and cost time")
}

// wholeEnv is what the whole-run drains share with the rest of the harness.
type wholeEnv struct {
	o        options
	influx   *influxServer
	brokers  string
	adm      *kadm.Client
	backlog  *stream // the -backlog stream, reused when its partitions and size match
	runs     map[string]bool
	tunedEnv string // the high-volume env file, passed with -e as an operator would
}

// wholeResult is one whole-run drain.
type wholeResult struct {
	name       string
	partitions int
	batch      string
	messages   int
	// took is from the process's start (the first post for a raw run) to the last value stored;
	// first to the first one. For an incomplete run took is when it was given up.
	took, first time.Duration
	cpu         time.Duration // utime+stime of the process over took (0: not a process)
	// used is what InfluxDB and the bench used over the run (end minus start): on two shared
	// cores the rate is set by every process's CPU per message. end is taken when the run ends,
	// before the values are counted.
	used, end  usage
	points     int64 // points of the backlog
	peakRSS    int64
	stored     int64 // field values stored at the end
	want       int64
	incomplete string // why the run did not complete; empty when it did
	note       string
}

func (r wholeResult) rate() float64 {
	if r.took <= 0 {
		return 0
	}
	return float64(r.messages) * r.share() / r.took.Seconds()
}

// afterFirst is the rate from the first stored value to the last: the drain without start-up.
func (r wholeResult) afterFirst() float64 {
	if r.first <= 0 || r.took <= r.first {
		return 0
	}
	return float64(r.messages) * r.share() / (r.took - r.first).Seconds()
}

func (r wholeResult) share() float64 {
	if r.want == 0 {
		return 0
	}
	return min(1, float64(r.stored)/float64(r.want))
}

func (r wholeResult) cpuPerMillion() float64 {
	stored := float64(r.messages) * r.share()
	if stored == 0 {
		return 0
	}
	return r.cpu.Seconds() / stored * 1e6
}

// selectWholeRuns expands -whole-runs into the configurations to run, in run order.
func selectWholeRuns(spec string) ([]string, error) {
	want := map[string]bool{}
	for _, name := range strings.Split(spec, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if g, ok := wholeRunGroups[name]; ok {
			for _, n := range g {
				want[n] = true
			}
			continue
		}
		conf, base := strings.CutSuffix(name, baseSuffix)
		known := false
		for _, n := range wholeRunOrder {
			known = known || n == conf
		}
		if !known || (base && (conf == "telegraf" || strings.HasPrefix(conf, "raw"))) {
			return nil, fmt.Errorf("-whole-runs: %q is not one of %s, a group (raw, batch, all), or an ingestor run with %s", name, strings.Join(wholeRunOrder, ", "), baseSuffix)
		}
		want[name] = true
	}
	// Each base run right after its own configuration, so that the two see the same load.
	var out []string
	for _, n := range wholeRunOrder {
		for _, v := range []string{n, n + baseSuffix} {
			if want[v] {
				out = append(out, v)
			}
		}
	}
	return out, nil
}

// inRounds repeats the ingestor runs of names rounds times, after the raw runs and Telegraf
// (once each: they are the references). In every second round a run and its base swap places,
// so that neither always follows the same run.
func inRounds(names []string, rounds int) []string {
	var once, each []string
	for _, n := range names {
		if n == "telegraf" || strings.HasPrefix(n, "raw") {
			once = append(once, n)
		} else {
			each = append(each, n)
		}
	}
	out := once
	for r := 0; r < max(1, rounds); r++ {
		round := slices.Clone(each)
		if r%2 == 1 {
			for i := 0; i+1 < len(round); i++ {
				if round[i+1] == round[i]+baseSuffix {
					round[i], round[i+1] = round[i+1], round[i]
					i++
				}
			}
		}
		out = append(out, round...)
	}
	return out
}

// baseSuffix marks a run of -whole-base-bin instead of the binary measured.
const baseSuffix = "@base"

// wholePartitions reads the wholeN entries of -runs.
func wholePartitions(runs map[string]bool) ([]int, error) {
	var out []int
	for r := range runs {
		rest, ok := strings.CutPrefix(r, "whole")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(rest)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-runs: %q: whole runs are named wholeN, N the partitions (whole6, whole12)", r)
		}
		out = append(out, n)
	}
	// 6 first: it is the reference of the targets, and the raw runs are measured on it.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out, nil
}

// runWholeDrains measures every selected whole-run drain and prints their table.
func runWholeDrains(ctx context.Context, env wholeEnv) error {
	w := env.o.whole
	parts, err := wholePartitions(env.runs)
	if err != nil || len(parts) == 0 || w.backlog <= 0 {
		return err
	}
	names, err := selectWholeRuns(w.runs)
	if err != nil {
		return err
	}
	moreNames := names
	if w.moreRuns != "" {
		if moreNames, err = selectWholeRuns(w.moreRuns); err != nil {
			return err
		}
	}
	names, moreNames = inRounds(names, w.rounds), inRounds(moreNames, w.rounds)
	for _, p := range []*string{&w.telegraf, &w.telegrafConf, &w.starlark} {
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
	}
	wantTelegraf := false
	for _, n := range append(names, moreNames...) {
		wantTelegraf = wantTelegraf || n == "telegraf"
	}
	if wantTelegraf {
		for _, p := range []string{w.telegraf, w.telegrafConf, w.starlark} {
			if _, err := os.Stat(p); err != nil {
				return fmt.Errorf("telegraf run: %w (scripts/install-telegraf.sh builds Telegraf; or leave telegraf out of -whole-runs)", err)
			}
		}
	}
	mapper, err := newMapper()
	if err != nil {
		return err
	}

	var results []wholeResult
	rawDone := false
	for pi, n := range parts {
		if pi > 0 {
			names = moreNames
		}
		needLines := !rawDone && (contains(names, "raw5000") || contains(names, "raw100"))
		devices := env.o.devices
		if pi > 0 && w.moreDevices > 0 {
			devices = w.moreDevices
		}
		s := env.backlog
		if s == nil || n != env.o.partitions || s.messages != w.backlog || needLines || devices != env.o.devices {
			topic := fmt.Sprintf("bench_whole_%d", n)
			if _, err := env.adm.CreateTopic(ctx, int32(n), 1, nil, topic); err != nil {
				return fmt.Errorf("creating %s with %d partitions: %w", topic, n, err)
			}
			t := time.Now()
			var m = mapper
			if !needLines {
				m = nil
			}
			if s, err = preload(ctx, env.brokers, topic, w.backlog, 0, env.o.seed+2, devices, m); err != nil {
				return err
			}
			fmt.Printf("== whole-run drains, %d partitions: pre-loaded %s: %d messages from %d devices (%.1f MB, %d points, %d field values) in %v\n",
				n, topic, s.messages, devices, float64(s.bytes)/1e6, s.stored, s.values, time.Since(t).Round(time.Millisecond))
		} else {
			fmt.Printf("== whole-run drains, %d partitions: the backlog topic %s (%d messages, %d points, %d field values)\n",
				n, s.topic, s.messages, s.stored, s.values)
		}
		var telegrafDB string
		telegrafCompared := false
		compare := func(refName, refDB string) {
			if telegrafDB == "" || telegrafCompared {
				return
			}
			telegrafCompared = true
			if err := compareStored(env.influx, refDB, telegrafDB); err != nil {
				fmt.Printf("  VALUES DIFFER: telegraf against %s: %v\n", refName, err)
			} else {
				fmt.Printf("  values check: telegraf stored the same field values as %s (every measurement's count per field, and a sample compared value by value)\n", refName)
			}
			_ = env.influx.dropDatabase(telegrafDB)
		}
		var rawDB string
		for ri, name := range names {
			raw := strings.HasPrefix(name, "raw")
			if raw && rawDone {
				continue
			}
			db := fmt.Sprintf("whole_%d_%d", n, ri)
			var r wholeResult
			start, err := usageOf(env.influx)
			if err != nil {
				return err
			}
			if raw {
				batch, _ := strconv.Atoi(strings.TrimPrefix(name, "raw"))
				fmt.Printf("== whole %d: %s: pre-encoded line protocol, batch %d, %d posts at once\n", n, name, batch, w.rawConcurrency)
				rr, err := rawWrite(ctx, env.influx, db, s.lines, batch, w.rawConcurrency, false)
				if err != nil {
					return err
				}
				r = wholeResult{name: fmt.Sprintf("%s x%d", name, w.rawConcurrency), batch: strconv.Itoa(batch), took: rr.took,
					stored: int64(s.values), want: int64(s.values)}
				if r.end, err = usageOf(env.influx); err != nil {
					return err
				}
				// A 204 means stored; the count confirms it.
				if got, err := fieldValueCount(env.influx, db); err != nil {
					return err
				} else if got != int64(s.values) {
					r.stored = got
					r.incomplete = fmt.Sprintf("InfluxDB counts %d field values, %d expected", got, s.values)
				}
			} else {
				ps, err := wholeProcess(env, w, name, s, db)
				if err != nil {
					return err
				}
				fmt.Printf("== whole %d: %s: %s\n", n, name, ps.describe)
				if r, err = measureWhole(ctx, env.influx, ps, int64(s.stored), int64(s.values), w); err != nil {
					return err
				}
			}
			r.used = r.end.since(start)
			r.partitions, r.messages, r.points = n, s.messages, int64(s.stored)
			if r.batch == "" {
				r.batch = wholeBatch(name, env.o, w.baseEnv)
			}
			printWhole(r)
			results = append(results, r)
			switch {
			case name == "raw5000" && r.incomplete == "":
				rawDB = db // the reference when no ingestor run follows telegraf
			case name == "telegraf" && r.incomplete == "":
				telegrafDB = db
			case !raw && name != "telegraf" && r.incomplete == "" && telegrafDB != "" && !telegrafCompared:
				compare("the ingestor ("+name+")", db)
				_ = env.influx.dropDatabase(db)
			default:
				_ = env.influx.dropDatabase(db)
			}
		}
		if telegrafDB != "" && !telegrafCompared {
			if rawDB != "" {
				compare("raw5000 (reading_to_point's line protocol)", rawDB)
			} else {
				fmt.Println("  values check: no complete ingestor or raw run to compare telegraf with")
				_ = env.influx.dropDatabase(telegrafDB)
			}
		}
		if rawDB != "" {
			_ = env.influx.dropDatabase(rawDB)
		}
		if contains(names, "raw5000") || contains(names, "raw100") {
			rawDone = true
		}
		s.lines = nil // the raw runs are done: let the memory go
	}
	printWholeSummary(results, w)
	return nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// wholeBatch is the points per write of a configuration, for the table: a high-volume@base run
// with -whole-base-env takes that file's INFLUXDB_BATCH_SIZE.
func wholeBatch(name string, o options, baseEnv string) string {
	name, base := strings.CutSuffix(name, baseSuffix)
	if base && name == "high-volume" && baseEnv != "" {
		if env, err := loadEnvFile(baseEnv); err == nil && env["INFLUXDB_BATCH_SIZE"] != "" {
			return env["INFLUXDB_BATCH_SIZE"]
		}
	}
	switch {
	case name == "telegraf":
		return "5000"
	case name == "shipped":
		return strconv.Itoa(o.shippedBatch)
	case name == "high-volume":
		return strconv.Itoa(o.tunedBatch)
	case strings.HasPrefix(name, "batch"):
		return strings.TrimPrefix(name, "batch")
	}
	return "-"
}

// wholeProc is a process to measure and the database it writes to.
type wholeProc struct {
	name     string
	cmd      *exec.Cmd
	db       string
	log      string
	describe string
}

// wholeProcess builds the command of one configuration: the ingestor with the shipped pipeline
// and only the configuration's settings in its environment, or Telegraf.
func wholeProcess(env wholeEnv, w wholeOptions, name string, s *stream, db string) (wholeProc, error) {
	o := env.o
	group := fmt.Sprintf("whole_%s_%d", strings.ReplaceAll(name, "-", "_"), time.Now().UnixNano())
	p := wholeProc{name: name, db: db, log: filepath.Join(o.workDir, fmt.Sprintf("whole-%s-%s.log", s.topic, name))}
	vars := map[string]string{}
	var args []string
	bin := o.bin
	tunedEnv := env.tunedEnv
	name, base := strings.CutSuffix(name, baseSuffix)
	if base {
		if w.baseBin == "" && w.baseEnv == "" {
			return p, fmt.Errorf("-whole-runs %s%s needs -whole-base-bin or -whole-base-env", name, baseSuffix)
		}
		if w.baseBin != "" {
			bin = w.baseBin
		}
		if w.baseEnv != "" {
			tunedEnv = w.baseEnv
		}
	}
	switch {
	case name == "telegraf":
		bin = w.telegraf
		args = []string{"--config", w.telegrafConf}
		vars = map[string]string{
			"BENCH_KAFKA_BROKERS":   env.brokers,
			"BENCH_KAFKA_TOPIC":     s.topic,
			"BENCH_KAFKA_GROUP":     group,
			"BENCH_STARLARK_SCRIPT": w.starlark,
			"BENCH_INFLUXDB_URL":    env.influx.url,
			"BENCH_INFLUXDB_BUCKET": db,
		}
		p.describe = "Telegraf, " + filepath.Base(w.telegrafConf) + " and " + filepath.Base(w.starlark)
	default:
		port, err := freePort()
		if err != nil {
			return p, err
		}
		vars = map[string]string{
			"KAFKA_BOOTSTRAP_SERVERS":    env.brokers,
			"KAFKA_VALIDATED_DATA_TOPIC": s.topic,
			"KAFKA_CONSUMER_GROUP_ID":    group,
			"KAFKA_ERROR_TOPIC":          "iot_errors",
			"INFLUXDB_URL":               env.influx.url,
			"INFLUXDB_BUCKET":            db,
			"HTTP_ADDRESS":               fmt.Sprintf("127.0.0.1:%d", port),
		}
		if w.logLevel != "" {
			vars["LOG_LEVEL"] = w.logLevel
		}
		args = []string{"run"}
		switch {
		case name == "shipped":
			p.describe = "the ingestor, " + filepath.Base(o.shippedConf) + " as shipped"
		case name == "high-volume":
			args = append(args, "-e", tunedEnv)
			p.describe = "the ingestor, " + filepath.Base(o.shippedConf) + " -e " + filepath.Base(tunedEnv)
		case strings.HasPrefix(name, "batch"):
			vars["INFLUXDB_BATCH_SIZE"] = strings.TrimPrefix(name, "batch")
			p.describe = "the ingestor, " + filepath.Base(o.shippedConf) + " with INFLUXDB_BATCH_SIZE=" + vars["INFLUXDB_BATCH_SIZE"] + " and nothing else changed"
		default:
			return p, fmt.Errorf("no whole-run configuration %q", name)
		}
		args = append(args, o.shippedConf)
	}
	if base {
		p.describe += ", with the base build " + bin
	}
	if err := env.influx.createDatabase(db); err != nil {
		return p, err
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = o.workDir
	p.cmd.Env = os.Environ()
	// The run's settings are the only ones it gets: a variable of the harness's own environment
	// (INFLUXDB_BATCH_SIZE=... in the shell) must not change a configuration unseen.
	p.cmd.Env = dropVars(p.cmd.Env, "KAFKA_", "INFLUXDB_", "LOG_LEVEL", "HTTP_ADDRESS", "GOGC", "GOMEMLIMIT", "BENCH_")
	for k, v := range vars {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	return p, nil
}

func dropVars(env []string, prefixes ...string) []string {
	out := env[:0:0]
	for _, kv := range env {
		keep := true
		for _, p := range prefixes {
			if strings.HasPrefix(kv, p) {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

// measureWhole starts the process and times it to its first and its last stored value: wantPoints
// points holding want field values.
func measureWhole(ctx context.Context, influx *influxServer, p wholeProc, wantPoints, want int64, w wholeOptions) (wholeResult, error) {
	res := wholeResult{name: p.name, want: want}
	logf, err := os.Create(p.log)
	if err != nil {
		return res, err
	}
	defer logf.Close()
	started := time.Now()
	lw := &elapsedWriter{w: logf, start: started}
	p.cmd.Stdout, p.cmd.Stderr = lw, lw
	if err := p.cmd.Start(); err != nil {
		return res, fmt.Errorf("%s: starting %s: %w", p.name, p.cmd.Path, err)
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	exited := false
	defer func() {
		if !exited {
			_ = p.cmd.Process.Kill()
			<-done
		}
	}()
	pid := p.cmd.Process.Pid
	finish := func(reason string) {
		res.took = time.Since(started)
		res.cpu, _ = procCPU(pid)
		res.end, _ = usageOf(influx)
		res.peakRSS, _ = procHWM(pid)
		res.incomplete = reason
	}

	// Until the first value the database is empty and asking is cheap: every 50 ms, so the
	// start-up is measured more finely than the drain.
	for res.first == 0 {
		select {
		case err := <-done:
			exited = true
			return res, fmt.Errorf("%s exited before storing anything (%v); log in %s", p.name, err, p.log)
		case <-ctx.Done():
			return res, ctx.Err()
		default:
		}
		if found, err := hasMeasurement(influx, p.db); err == nil && found {
			res.first = time.Since(started)
			lw.mark("first value stored in InfluxDB (seen by polling)")
			break
		}
		if limit := min(w.timeout, w.stall); time.Since(started) > limit {
			finish("nothing stored within " + limit.String())
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Then the progress, at most once a second, from InfluxDB's own count of the points its shards
	// accepted (pointsWritten: cheap however many series the run writes). The run ends at the
	// first answer that counts every point (so took is late by up to a second plus the query's
	// time), confirmed by counting the field values once. A point written twice counts twice, so
	// a run that redelivered reaches the point count early: the value count then falls short and
	// the polling goes on by values.
	lastChange, last := time.Now(), int64(-1)
	byValues := false
	for res.incomplete == "" {
		select {
		case err := <-done:
			exited = true
			return res, fmt.Errorf("%s exited mid-run (%v); log in %s", p.name, err, p.log)
		default:
		}
		asked := time.Now()
		count, target, unit := pointsWritten, wantPoints, "points"
		if byValues {
			count, target, unit = fieldValueCount, want, "field values"
		}
		n, err := count(influx, p.db)
		if err != nil {
			return res, fmt.Errorf("%s: %w", p.name, err)
		}
		if n >= target {
			finish("")
			values, err := fieldValueCount(influx, p.db)
			if err != nil {
				return res, fmt.Errorf("%s: %w", p.name, err)
			}
			res.stored = values
			if values >= want {
				lw.mark("every value stored in InfluxDB (%d %s, %d field values)", n, unit, values)
				if values > want {
					res.note = fmt.Sprintf("%d field values stored, %d expected", values, want)
				}
				break
			}
			// Points written twice: from now on only the values tell.
			res.incomplete, byValues = "", true
			lw.mark("%d points written but %d of %d field values stored: counting values from now on", n, values, want)
			continue
		}
		if n != last {
			last, lastChange = n, time.Now()
		}
		switch {
		case time.Since(lastChange) > w.stall:
			finish(fmt.Sprintf("stalled: %d of %d %s stored, none for %v", n, target, unit, w.stall))
		case time.Since(started) > w.timeout:
			finish(fmt.Sprintf("timeout: %d of %d %s stored in %v", n, target, unit, w.timeout))
		default:
			time.Sleep(time.Until(asked.Add(time.Second)))
		}
	}
	if res.incomplete != "" {
		// An incomplete run's rate is its share stored: the share of the values.
		if v, err := fieldValueCount(influx, p.db); err == nil {
			res.stored = v
		}
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
	exited = true
	return res, nil
}

func printWhole(r wholeResult) {
	status := "all stored"
	if r.incomplete != "" {
		status = "INCOMPLETE: " + r.incomplete
	}
	fmt.Printf("  %.0f messages/s over the whole run (%v, first value at %v, %.0f messages/s after it); %s\n",
		r.rate(), r.took.Round(time.Millisecond), r.first.Round(time.Millisecond), r.afterFirst(), status)
	if r.cpu > 0 {
		fmt.Printf("  %.1f CPU s per million, peak RSS %.0f MB\n", r.cpuPerMillion(), float64(r.peakRSS)/(1<<20))
	}
	if r.used.writes > 0 && r.share() > 0 {
		perM := func(d time.Duration) float64 { return d.Seconds() / (float64(r.messages) * r.share()) * 1e6 }
		fmt.Printf("  InfluxDB: %.1f CPU s per million, %d write requests (%.0f points each); the bench (broker): %.1f CPU s per million; all three: %.0f%% of %d cores\n",
			perM(r.used.influxCPU), r.used.writes, float64(r.points)*r.share()/float64(r.used.writes), perM(r.used.benchCPU),
			(r.cpu+r.used.influxCPU+r.used.benchCPU).Seconds()/r.took.Seconds()/float64(runtime.NumCPU())*100, runtime.NumCPU())
	}
	if r.note != "" {
		fmt.Printf("  MISMATCH: %s\n", r.note)
	}
}

func printWholeSummary(results []wholeResult, w wholeOptions) {
	if len(results) == 0 {
		return
	}
	fmt.Println()
	fmt.Printf("== whole-run drain: a backlog of %d messages waiting at start; each run timed from the process's\n", w.backlog)
	fmt.Println("start (raw: the first post) to the last value stored, read from InfluxDB's count of points written")
	fmt.Println("polled once a second (about a second of resolution) and confirmed by counting the field values;")
	fmt.Println("first: the first value stored (polled every")
	fmt.Println("50 ms); after first: the rate from then on; CPU and peak RSS of the process over the run;")
	fmt.Println("x telegraf and x raw: the run's rate against Telegraf's and the raw limit's (batch 5000) on the same")
	fmt.Println("partitions (raw: on the first partition count measured). An incomplete run's rate is its share stored.")
	fmt.Printf("%5s %-14s %5s %8s %7s %7s %9s %9s %7s %8s %6s\n", "parts", "run", "batch", "msg/s", "first s", "total s", "after 1st", "CPU s/1M", "peakRSS", "x telegr", "x raw")
	var raw5000 float64
	telegraf := map[int]float64{}
	for _, r := range results {
		if strings.HasPrefix(r.name, "raw5000") && r.incomplete == "" {
			raw5000 = r.rate()
		}
		if r.name == "telegraf" && r.incomplete == "" {
			telegraf[r.partitions] = r.rate()
		}
	}
	ratio := func(a, b float64) string {
		if b <= 0 || a <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	for _, r := range results {
		cpu, rss, first, after := "-", "-", "-", "-"
		if r.cpu > 0 {
			cpu, rss = fmt.Sprintf("%.1f", r.cpuPerMillion()), fmt.Sprintf("%.0fMB", float64(r.peakRSS)/(1<<20))
		}
		if r.first > 0 {
			first, after = fmt.Sprintf("%.2f", r.first.Seconds()), fmt.Sprintf("%.0f", r.afterFirst())
		}
		rate := fmt.Sprintf("%.0f", r.rate())
		if r.incomplete != "" {
			rate = fmt.Sprintf("%.0f*", r.rate())
		}
		fmt.Printf("%5d %-14s %5s %8s %7s %7.1f %9s %9s %7s %8s %6s\n", r.partitions, r.name, r.batch, rate, first, r.took.Seconds(),
			after, cpu, rss, ratio(r.rate(), telegraf[r.partitions]), ratio(r.rate(), raw5000))
	}
	for _, r := range results {
		if r.incomplete != "" {
			fmt.Printf("* %d partitions, %s: %s\n", r.partitions, r.name, r.incomplete)
		}
	}
	printMedians(results)
}

// printMedians gives each configuration's median rate, CPU and peak RSS over its complete runs,
// and each @base run's ratio to its configuration, when some configuration ran more than once.
func printMedians(results []wholeResult) {
	type key struct {
		parts int
		name  string
	}
	var order []key
	runs := map[key][]wholeResult{}
	repeated := false
	for _, r := range results {
		k := key{r.partitions, r.name}
		if _, seen := runs[k]; !seen {
			order = append(order, k)
		}
		if r.incomplete == "" {
			runs[k] = append(runs[k], r)
		}
		repeated = repeated || len(runs[k]) > 1
	}
	if !repeated {
		return
	}
	rate := func(r wholeResult) float64 { return r.rate() }
	cpu := func(r wholeResult) float64 { return r.cpuPerMillion() }
	rss := func(r wholeResult) float64 { return float64(r.peakRSS) / (1 << 20) }
	fmt.Println()
	fmt.Println("== medians over the complete runs of each configuration [min-max]; @base: the build measured against its base (rate, CPU per message)")
	fmt.Printf("%5s %-16s %4s %20s %16s %16s %16s\n", "parts", "run", "runs", "msg/s", "CPU s/1M", "peak RSS MB", "@base: rate, CPU")
	for _, k := range order {
		rs := runs[k]
		if len(rs) == 0 {
			continue
		}
		vs := "-"
		if conf, ok := strings.CutSuffix(k.name, baseSuffix); ok {
			if own := runs[key{k.parts, conf}]; len(own) > 0 {
				vs = fmt.Sprintf("%.2fx, %.2fx", median(own, rate)/median(rs, rate), median(own, cpu)/median(rs, cpu))
			}
		}
		fmt.Printf("%5d %-16s %4d %s %s %s %16s\n", k.parts, k.name, len(rs),
			spread(rs, rate, "%6.0f"), spread(rs, cpu, "%4.1f"), spread(rs, rss, "%4.0f"), vs)
	}
}

// median is the median of of over rs (not empty).
func median(rs []wholeResult, of func(wholeResult) float64) float64 {
	v := valuesOf(rs, of)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// spread prints the median of of over rs and its range, each number in format.
func spread(rs []wholeResult, of func(wholeResult) float64, format string) string {
	v := valuesOf(rs, of)
	return fmt.Sprintf(format+" ["+format+"-"+format+"]", median(rs, of), slices.Min(v), slices.Max(v))
}

func valuesOf(rs []wholeResult, of func(wholeResult) float64) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = of(r)
	}
	return out
}

// elapsedWriter prefixes each line a process logs with the time since its start, to the
// millisecond: the engine's and Telegraf's own timestamps are whole seconds, too coarse to tell
// where a start-up's second goes.
type elapsedWriter struct {
	mu      sync.Mutex // the process's output and the harness's marks share the file
	w       io.Writer
	start   time.Time
	partial bool // the last write ended mid-line
}

func (e *elapsedWriter) Write(b []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := len(b)
	for len(b) > 0 {
		if !e.partial {
			if _, err := fmt.Fprintf(e.w, "+%07.3fs ", time.Since(e.start).Seconds()); err != nil {
				return 0, err
			}
		}
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i+1], b[i+1:]
			e.partial = false
		} else {
			b = nil
			e.partial = true
		}
		if _, err := e.w.Write(line); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// mark logs what the harness saw, on a line of its own.
func (e *elapsedWriter) mark(format string, args ...any) {
	line := "[ingestor-bench] " + fmt.Sprintf(format, args...) + "\n"
	if e.partial {
		line = "\n" + line
	}
	_, _ = e.Write([]byte(line))
}

// usage is what InfluxDB and the bench have used so far.
type usage struct {
	influxCPU time.Duration
	writes    int64 // the write requests InfluxDB answered
	// benchCPU is this process's: the embedded broker serving the fetches, the raw posts, the
	// polling.
	benchCPU time.Duration
}

func (u usage) since(start usage) usage {
	return usage{influxCPU: u.influxCPU - start.influxCPU, writes: u.writes - start.writes, benchCPU: u.benchCPU - start.benchCPU}
}

func usageOf(s *influxServer) (usage, error) {
	var st usage
	var err error
	if st.influxCPU, err = procCPU(s.pid()); err != nil {
		return st, fmt.Errorf("InfluxDB's CPU time: %w", err)
	}
	if st.benchCPU, err = procCPU(os.Getpid()); err != nil {
		return st, fmt.Errorf("the bench's CPU time: %w", err)
	}
	ss, err := querySeries(s, "", "SHOW STATS FOR 'httpd'")
	if err != nil {
		return st, err
	}
	for _, se := range ss {
		col := slices.Index(se.Columns, "writeReq")
		if col < 0 {
			return st, fmt.Errorf("InfluxDB's httpd statistics have no writeReq column: %v", se.Columns)
		}
		for _, row := range se.Values {
			if col < len(row) {
				if num, ok := row[col].(json.Number); ok {
					n, _ := num.Int64()
					st.writes += n
				}
			}
		}
	}
	return st, nil
}
