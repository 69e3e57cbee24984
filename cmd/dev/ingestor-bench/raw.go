package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"
)

// rawResult is one raw write measurement.
type rawResult struct {
	batch       int
	concurrency int
	gzip        bool
	points      int
	took        time.Duration
	influxCPU   time.Duration // InfluxDB's CPU time during the run
}

func (r rawResult) rate() float64 { return float64(r.points) / r.took.Seconds() }

// bodies joins the lines into write bodies of batch points each, gzipped (fastest level, as
// the output does) when gz is set. Encoding is done before the clock starts: this measures
// what InfluxDB can take, not what a client can prepare.
func bodies(lines [][]byte, batch int, gz bool) [][]byte {
	var out [][]byte
	for i := 0; i < len(lines); i += batch {
		end := min(i+batch, len(lines))
		var b bytes.Buffer
		for _, l := range lines[i:end] {
			b.Write(l)
			b.WriteByte('\n')
		}
		if gz {
			var z bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&z, gzip.BestSpeed)
			_, _ = zw.Write(b.Bytes())
			_ = zw.Close()
			out = append(out, z.Bytes())
		} else {
			out = append(out, b.Bytes())
		}
	}
	return out
}

// rawWrite posts the pre-encoded stream into a fresh database with concurrency parallel
// writers and returns the points/s InfluxDB accepted.
func rawWrite(ctx context.Context, influx *influxServer, db string, lines [][]byte, batch, concurrency int, gz bool) (rawResult, error) {
	res := rawResult{batch: batch, concurrency: concurrency, gzip: gz, points: len(lines)}
	if err := influx.createDatabase(db); err != nil {
		return res, err
	}
	bs := bodies(lines, batch, gz)
	client := &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		MaxIdleConns:        2 * concurrency,
		MaxIdleConnsPerHost: 2 * concurrency,
		DisableCompression:  true,
	}, Timeout: 60 * time.Second}
	defer client.CloseIdleConnections()
	url := influx.writeURL(db)

	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		failure error
	)
	cpu0, _ := procCPU(influx.pid())
	start := time.Now()
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(bs) {
					return
				}
				if err := post(ctx, client, url, bs[i], gz); err != nil {
					errOnce.Do(func() { failure = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	res.took = time.Since(start)
	cpu1, _ := procCPU(influx.pid())
	res.influxCPU = cpu1 - cpu0
	if failure != nil {
		return res, fmt.Errorf("raw write to %s: %w", db, failure)
	}
	return res, nil
}
