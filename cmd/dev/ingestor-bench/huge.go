package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/preservarium/iot-ingestor/internal/dev/devbroker"
	"github.com/preservarium/iot-ingestor/internal/meta"
)

// The huge scenario (issue 13, item 3): readings of about 1 MB each, of the shapes the contract
// allows, flow through the shipped pipeline; the figure is the ingestor's peak RSS (VmHWM)
// against the 256 MB target, with every reading accounted for exactly: stored in InfluxDB (its
// device is a measurement of its own) or reported on the error topic (counted by source
// partition and offset, a redelivery's duplicate counted once). The expected outcome of each
// reading comes from reading_to_point run in-process with the shipped settings; a reading that
// is neither stored nor reported is lost, and the run says so.
//
// With -profile DIR the ingestor serves /debug/pprof, and a heap profile is saved each time its
// RSS reaches a new high (huge.peak.heap.pprof, with the RSS it was taken at): where the memory
// of the peak is held.
const (
	hugeTopic      = "bench_huge"
	hugeErrorTopic = "bench_huge_errors"
	// hugeMaxReadingBytes keeps a reading, in its own record batch, under the broker's default
	// message.max.bytes (1,048,588) with the batch's framing.
	hugeMaxReadingBytes = 1_040_000
	hugeTallFields      = 16
)

// hugeOptions are the flags of the huge scenario.
type hugeOptions struct {
	readings int
	bytes    int
	env      string
}

func registerHugeFlags(h *hugeOptions) {
	flag.IntVar(&h.readings, "huge-readings", 1000, "readings of the huge scenario, the shapes in turn (see huge.go)")
	flag.IntVar(&h.bytes, "huge-bytes", 1_000_000, "size of each reading of the huge scenario, in bytes (at most 1,040,000: the broker's record limit)")
	flag.StringVar(&h.env, "huge-env", "", "settings added to the shipped ones in the huge scenario, KEY=VALUE,... (e.g. KAFKA_CHECKPOINT_LIMIT=64)")
}

// hugeShape is one kind of huge reading and what the shipped mapping makes of it.
type hugeShape struct {
	name string
	what string
	// body is the reading's JSON for device, about size bytes, in json.dumps's style (", " and
	// ": " separators), as stage 2 writes it.
	body   func(device, requestID, ts string, size int, rng *rand.Rand) []byte
	fields int // of its point when stored: fewer in InfluxDB is a loss
}

var hugeShapes = []hugeShape{
	{"wide", "a values array of ~200,000 floats (over max_fields)", hugeWide, 0},
	{"blob", "one string value of ~1 MB, a raw payload in hex (over InfluxDB's 64 KiB string)", hugeBlob, 0},
	{"metadata", "two values and a ~1 MB metadata object of parser extras (frames)", hugeMetadata, 2},
	{"tall", "16 string values of 62 KB (a ~1 MB point under every limit)", hugeTall, hugeTallFields},
}

// hugeHead is the reading's members before values, json.dumps style.
func hugeHead(device, requestID, ts string) string {
	return `{"request_id": "` + requestID + `", "timestamp": "` + ts + `", "device_id": "` + device + `", `
}

func hugeWide(device, requestID, ts string, size int, _ *rand.Rand) []byte {
	var b bytes.Buffer
	b.WriteString(hugeHead(device, requestID, ts))
	b.WriteString(`"values": [0.0`)
	for b.Len() < size-64 {
		b.WriteString(", 0.0")
	}
	b.WriteString(`], "labels": null, "index": "T", "metadata": null}`)
	return b.Bytes()
}

func hugeBlob(device, requestID, ts string, size int, rng *rand.Rand) []byte {
	var b bytes.Buffer
	b.WriteString(hugeHead(device, requestID, ts))
	b.WriteString(`"values": ["`)
	const hex = "0123456789abcdef"
	for n := size - b.Len() - 120; n > 0; n-- {
		b.WriteByte(hex[rng.IntN(16)])
	}
	b.WriteString(`"], "labels": ["raw_payload_hex"], "index": "P", "metadata": {"datatype_type": ["string"], "persist": [true]}}`)
	return b.Bytes()
}

func hugeMetadata(device, requestID, ts string, size int, rng *rand.Rand) []byte {
	var b bytes.Buffer
	b.WriteString(hugeHead(device, requestID, ts))
	b.WriteString(`"values": [21.5, 48.0], "labels": ["temperature", "humidity"], "index": "T", `)
	b.WriteString(`"metadata": {"datatype_name": "Temp\u00e9rature", "datatype_unit": "\u00b0C", "persist": [true, true], "frames": [`)
	for i := 0; b.Len() < size-200; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, `{"seq": %d, "rssi": %d, "snr": %.1f, "gateway": "gw-%04x", "payload_hex": "%016x%016x"}`,
			i, -40-rng.IntN(80), rng.Float64()*20-5, rng.IntN(1<<16), rng.Uint64(), rng.Uint64())
	}
	b.WriteString(`], "source_sn_hex": "00a1b2c3d4e5", "config_hash": "9f86d081884c7d65"}}`)
	return b.Bytes()
}

func hugeTall(device, requestID, ts string, size int, rng *rand.Rand) []byte {
	var b bytes.Buffer
	b.WriteString(hugeHead(device, requestID, ts))
	const fields = hugeTallFields
	each := (size - 400) / fields
	b.WriteString(`"values": [`)
	words := []string{"mode", "auto", "threshold", "12.5", "interval", "300", "channel", "3", "enabled", "true"}
	for f := range fields {
		if f > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('"')
		for n := 0; n < each; {
			w := words[rng.IntN(len(words))]
			b.WriteString(w)
			b.WriteByte(' ')
			n += len(w) + 1
		}
		b.WriteByte('"')
	}
	b.WriteString(`], "labels": [`)
	for f := range fields {
		if f > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, `"config_%d"`, f)
	}
	b.WriteString(`], "index": "P", "metadata": {"is_config_parameter": true}}`)
	return b.Bytes()
}

// hugeReading is one produced reading and what must become of it.
type hugeReading struct {
	shape     int
	device    string
	partition int32
	offset    int64
	// expect is "stored", "filtered" or the error kind the mapping gives it ("validation", ...).
	expect string
	reason string // the mapping's error, when expect is an error kind
}

func runHuge(ctx context.Context, o options) error {
	if err := prepare(&o); err != nil {
		return err
	}
	h := o.huge
	if h.bytes > hugeMaxReadingBytes || h.bytes < 10_000 {
		return fmt.Errorf("-huge-bytes: %d, want 10,000 to %d", h.bytes, hugeMaxReadingBytes)
	}
	extra, err := parseEnvList(h.env)
	if err != nil {
		return fmt.Errorf("-huge-env: %w", err)
	}
	fmt.Printf("ingestor-bench: huge scenario, %d readings of %d bytes on %d partitions; logs in %s\n",
		h.readings, h.bytes, o.partitions, o.workDir)
	for _, s := range hugeShapes {
		fmt.Printf("  %-8s %s\n", s.name, s.what)
	}
	influx, err := startInflux(o.influxd, filepath.Join(o.workDir, "influxdb"))
	if err != nil {
		return err
	}
	defer influx.stop()
	broker, err := devbroker.Start(devbroker.Options{Partitions: int32(o.partitions), Topics: []string{hugeTopic, hugeErrorTopic}})
	if err != nil {
		return err
	}
	defer broker.Close()
	brokers := broker.Addr()
	admCl, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		return err
	}
	defer admCl.Close()

	fmt.Println("== pre-loading")
	t := time.Now()
	readings, err := produceHuge(ctx, brokers, h, o.seed)
	if err != nil {
		return err
	}
	st := &stream{topic: hugeTopic, messages: len(readings)}
	for _, r := range readings {
		switch r.expect {
		case "stored":
			st.stored++
		case "filtered":
			st.filtered++
		default:
			st.errors++
		}
	}
	st.bytes = int64(len(readings) * h.bytes)
	for i, s := range hugeShapes {
		for _, r := range readings {
			if r.shape == i {
				fmt.Printf("  %-8s the mapping: %s %s\n", s.name, r.expect, r.reason)
				break
			}
		}
	}
	fmt.Printf("  %s: %d readings (%.0f MB) in %v; the mapping expects %d stored, %d filtered, %d reported\n",
		hugeTopic, st.messages, float64(st.bytes)/1e6, time.Since(t).Round(time.Millisecond), st.stored, st.filtered, st.errors)

	rs := runSpec{name: "huge", config: o.shippedConf, stream: st, batch: o.shippedBatch, flushMS: o.shippedFlush, held: -1,
		env: map[string]string{"KAFKA_ERROR_TOPIC": hugeErrorTopic}}
	for k, v := range extra {
		rs.env[k] = v
	}
	rs.group = fmt.Sprintf("bench_huge_%d", time.Now().UnixNano())
	rs.db = "huge"
	if o.profile != "" {
		rs.profile, rs.profileS = o.profile, o.profileSeconds
	}
	fmt.Printf("== huge: %s, batch %d, flush %d ms, extra settings %v\n", filepath.Base(rs.config), rs.batch, rs.flushMS, extra)
	watch := startMemoryWatch(o.bin, o.profile)
	r, err := runIngestor(ctx, o.bin, o.workDir, brokers, influx, kadm.NewClient(admCl), rs)
	peak := watch.stop()
	if err != nil {
		return err
	}
	fmt.Printf("  drained in %v (start-up %v), %.1f CPU s, peak RSS %.0f MB (VmHWM)\n",
		r.took.Round(time.Millisecond), r.startup.Round(time.Millisecond), r.cpu.Seconds(), float64(r.peakRSS)/(1<<20))
	fmt.Print(peak.String())

	stored, err := hugeStored(influx, rs.db)
	if err != nil {
		return err
	}
	reported, err := hugeReported(ctx, brokers, r.errRecs)
	if err != nil {
		return err
	}
	_ = influx.dropDatabase(rs.db)
	lost := hugeAccount(readings, stored, reported, r)
	fmt.Println()
	fmt.Println("== summary")
	fmt.Printf("peak RSS %.0f MB against the 256 MB target (%.2fx); %d readings: %d stored, %d reported, %d filtered, %d lost; %v\n",
		float64(r.peakRSS)/(1<<20), float64(r.peakRSS)/(256<<20), len(readings), len(stored), len(reported), r.filtered, lost, r.took.Round(time.Millisecond))
	return nil
}

// produceHuge writes the readings, the shapes in turn, each keyed by its own device, and maps
// each one in-process to know what the ingestor must make of it.
func produceHuge(ctx context.Context, brokers string, h hugeOptions, seed int64) ([]hugeReading, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.DefaultProduceTopic(hugeTopic),
		kgo.ProducerBatchMaxBytes(hugeMaxReadingBytes+8192), kgo.MaxBufferedBytes(64<<20))
	if err != nil {
		return nil, fmt.Errorf("producer for %s: %w", hugeTopic, err)
	}
	defer cl.Close()
	mapper, err := newMapper()
	if err != nil {
		return nil, err
	}
	defer mapper.Close(ctx)
	rng := rand.New(rand.NewPCG(uint64(seed), 13))
	readings := make([]hugeReading, h.readings)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		failure error
	)
	base := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	for i := range readings {
		shape := i % len(hugeShapes)
		device := fmt.Sprintf("huge-%s-%04d", hugeShapes[shape].name, i)
		at := base.Add(time.Duration(i) * time.Second)
		requestID := fmt.Sprintf("%08x-0000-4000-8000-%012x", i, rng.Uint64()>>16)
		value := hugeShapes[shape].body(device, requestID, at.Format("2006-01-02T15:04:05.000000"), h.bytes, rng)
		readings[i] = hugeReading{shape: shape, device: device}
		if readings[i].expect, readings[i].reason, err = hugeExpect(ctx, mapper, device, value, at); err != nil {
			return nil, err
		}
		wg.Add(1)
		cl.Produce(ctx, &kgo.Record{Key: []byte(device), Value: value, Timestamp: at}, func(rec *kgo.Record, err error) {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failure = err
				return
			}
			readings[i].partition, readings[i].offset = rec.Partition, rec.Offset
		})
	}
	wg.Wait()
	if failure != nil {
		return nil, fmt.Errorf("producing to %s: %w", hugeTopic, failure)
	}
	return readings, nil
}

// hugeExpect maps value with reading_to_point as the shipped pipeline does: "stored" when it
// yields a point, "filtered" when nothing, else the error's kind and the error.
func hugeExpect(ctx context.Context, mapper *service.OwnedProcessor, device string, value []byte, at time.Time) (string, string, error) {
	m := service.NewMessage(value)
	m.MetaSetMut(meta.KafkaKey, device)
	m.MetaSetMut(meta.KafkaTimestampMs, at.UnixMilli())
	m.MetaSetMut(meta.KafkaTopic, hugeTopic)
	out, err := mapper.ProcessBatch(ctx, service.MessageBatch{m})
	if err != nil {
		return "", "", fmt.Errorf("mapping %s with reading_to_point: %w", device, err)
	}
	for _, b := range out {
		for _, m := range b {
			if e := m.GetError(); e != nil {
				kind, _, _ := strings.Cut(e.Error(), ":")
				return kind, e.Error(), nil
			}
			return "stored", "", nil
		}
	}
	return "filtered", "", nil
}

// hugeStored is the set of measurements (devices) db holds, with their field count.
func hugeStored(influx *influxServer, db string) (map[string]int, error) {
	counts, err := fieldCounts(influx, db)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for m, fields := range counts {
		out[m] = len(fields)
	}
	return out, nil
}

// hugeRecord is what the accounting reads of an error record.
type hugeRecord struct {
	Kind      string `json:"kind"`
	Error     string `json:"error"`
	Truncated bool   `json:"original_truncated"`
	Source    struct {
		Partition int32 `json:"partition"`
		Offset    int64 `json:"offset"`
	} `json:"source"`
	bytes int
}

type hugeSource struct {
	partition int32
	offset    int64
}

// hugeReported reads the whole error topic: one record per source (a redelivery may write a
// reading's record again: contract.md). It reads until it has at least want records (what the
// ingestor counted) and the topic has been quiet for a few seconds.
func hugeReported(ctx context.Context, brokers string, want int64) (map[hugeSource]hugeRecord, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics(hugeErrorTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	out := map[hugeSource]hugeRecord{}
	var total int64
	quietSince := time.Now()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			n++
			total++
			var rec hugeRecord
			if err := json.Unmarshal(r.Value, &rec); err != nil {
				rec.Kind = "unreadable: " + err.Error()
			}
			rec.bytes = len(r.Value)
			out[hugeSource{rec.Source.Partition, rec.Source.Offset}] = rec
		})
		if n > 0 {
			quietSince = time.Now()
		}
		if total >= want && time.Since(quietSince) > 3*time.Second {
			break
		}
	}
	if total < want {
		return out, fmt.Errorf("the error topic holds %d records, the ingestor counted %d written", total, want)
	}
	return out, nil
}

// hugeAccount prints, per shape, what became of the readings against the mapping's
// expectation, and returns how many were lost (neither stored nor reported nor filtered).
func hugeAccount(readings []hugeReading, stored map[string]int, reported map[hugeSource]hugeRecord, r runResult) int {
	type tally struct{ sent, stored, reported, truncated, lost, unexpected int }
	per := make([]tally, len(hugeShapes))
	kinds := map[string]int{}
	largest := 0
	lost := 0
	filtered := int(r.filtered) // only the total is known; the shapes filter nothing as built
	for _, rd := range readings {
		t := &per[rd.shape]
		t.sent++
		rec, isReported := reported[hugeSource{rd.partition, rd.offset}]
		fields, isStored := stored[rd.device]
		got := ""
		switch {
		case isStored && isReported:
			got = "both"
		case isStored && fields != hugeShapes[rd.shape].fields:
			got = fmt.Sprintf("stored with %d of its %d fields", fields, hugeShapes[rd.shape].fields)
			t.lost++
			lost++
		case isStored:
			got = "stored"
			t.stored++
		case isReported:
			got = rec.Kind
			t.reported++
			kinds[rec.Kind]++
			if rec.Truncated {
				t.truncated++
			}
			largest = max(largest, rec.bytes)
		case filtered > 0:
			got = "filtered"
			filtered--
		default:
			got = "lost"
			t.lost++
			lost++
		}
		if got != rd.expect {
			t.unexpected++
			if t.unexpected <= 3 {
				fmt.Printf("  %s (partition %d, offset %d): %s, the mapping expected %s %s\n", rd.device, rd.partition, rd.offset, got, rd.expect, rd.reason)
			}
		}
	}
	fmt.Printf("%-9s %5s %7s %9s %10s %5s %11s\n", "shape", "sent", "stored", "reported", "truncated", "lost", "unexpected")
	for i, t := range per {
		fmt.Printf("%-9s %5d %7d %9d %10d %5d %11d\n", hugeShapes[i].name, t.sent, t.stored, t.reported, t.truncated, t.lost, t.unexpected)
	}
	fmt.Printf("error records by kind %v, largest %d bytes; the ingestor counted %d points written, %d error records, %d filtered\n",
		kinds, largest, r.points, r.errRecs, r.filtered)
	return lost
}

// parseEnvList reads KEY=VALUE,KEY=VALUE.
func parseEnvList(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not KEY=VALUE", kv)
		}
		out[k] = v
	}
	return out, nil
}

// memoryWatch follows the ingestor's memory from outside: runIngestor starts the process and
// picks its HTTP port, so the watch finds the child by its binary and reads the port from its
// environment. Every quarter second it reads VmRSS (and the engine's heap gauge); at each new
// RSS high, a heap profile when the debug endpoints are on.
type memoryWatch struct {
	stopc chan struct{}
	done  chan memoryPeak
}

type memoryPeak struct {
	rss, heapInuse int64
	at             time.Duration
	profileRSS     int64 // RSS when the saved heap profile was taken
	profile        string
	err            error
}

func (p memoryPeak) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "  sampled: RSS peak %.0f MB at %v after start; heap in use at most %.0f MB (go_memstats_heap_inuse_bytes)\n",
		float64(p.rss)/(1<<20), p.at.Round(100*time.Millisecond), float64(p.heapInuse)/(1<<20))
	if p.profile != "" {
		fmt.Fprintf(&b, "  heap profile at RSS %.0f MB: %s (go tool pprof -sample_index=inuse_space)\n", float64(p.profileRSS)/(1<<20), p.profile)
	}
	if p.err != nil {
		fmt.Fprintf(&b, "  memory watch: %v\n", p.err)
	}
	return b.String()
}

func startMemoryWatch(bin, profileDir string) *memoryWatch {
	w := &memoryWatch{stopc: make(chan struct{}), done: make(chan memoryPeak, 1)}
	go func() {
		var p memoryPeak
		start := time.Now()
		pid, addr := 0, ""
		hc := &http.Client{Timeout: 10 * time.Second}
		lastProfile := time.Time{}
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stopc:
				w.done <- p
				return
			case <-tick.C:
			}
			if pid == 0 {
				pid, addr = findChild(bin)
				continue
			}
			rss, err := procRSS(pid)
			if err != nil {
				continue // exited
			}
			if m, err := scrape(hc, "http://"+addr+"/metrics"); err == nil {
				p.heapInuse = max(p.heapInuse, int64(m["go_memstats_heap_inuse_bytes"]))
			}
			if rss <= p.rss {
				continue
			}
			p.rss, p.at = rss, time.Since(start)
			// A profile costs the process a little: one a second at most, and only for a high
			// a tenth over the last profiled one.
			if profileDir == "" || time.Since(lastProfile) < time.Second || rss < p.profileRSS*11/10 {
				continue
			}
			lastProfile = time.Now()
			file := filepath.Join(profileDir, "huge.peak.heap.pprof")
			if err := saveURL(hc, "http://"+addr+"/debug/pprof/heap", file); err != nil {
				// A high during shutdown finds the HTTP server closed: only a run with no
				// profile at all is worth a word.
				if p.profile == "" {
					p.err = err
				}
				continue
			}
			p.profile, p.profileRSS = file, rss
		}
	}()
	return w
}

func (w *memoryWatch) stop() memoryPeak {
	close(w.stopc)
	return <-w.done
}

// findChild is this process's child running bin, and the HTTP_ADDRESS it was given.
func findChild(bin string) (int, string) {
	entries, _ := os.ReadDir("/proc")
	me := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(stat)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 2 || f[1] != me {
			continue
		}
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); exe != bin {
			continue
		}
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		addr := ""
		for _, kv := range bytes.Split(env, []byte{0}) {
			if v, ok := bytes.CutPrefix(kv, []byte("HTTP_ADDRESS=")); ok {
				addr = string(v) // the last one wins, as in the process's own lookup
			}
		}
		return pid, addr
	}
	return 0, ""
}

// procRSS is the process's resident set size (VmRSS) in bytes.
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb * 1024, err
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

func saveURL(hc *http.Client, url, file string) error {
	resp, err := hc.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s answered %d", url, resp.StatusCode)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}
