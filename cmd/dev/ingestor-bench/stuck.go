package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The stuck scenario: one message that fails forever must hold back its own partition only.
//
// What nacks a message forever in the real pipeline is the error topic refusing its error
// record for good (an authorization error on the topic, a record over the broker's limit): the
// reading is bad, the error output fails, the fallback fails, the input's replayer delivers it
// again with back-off, and its partition's commit stays before it. The scenario reproduces
// exactly that: the topic holds the clean stream plus one undecodable record at the start of
// partition 0, and the in-process broker answers every produce to the scenario's error topic
// with TOPIC_AUTHORIZATION_FAILED. The same stream without that record is run first, clean,
// with the same settings. The stuck run ends when every other partition is committed to its
// end; the figure is their rate against five sixths of the clean rate (six partitions).
const (
	stuckCleanTopic = "bench_stuck_clean"
	stuckTopic      = "bench_stuck"
	stuckErrorTopic = "bench_stuck_errors"
	stuckPartition  = 0
)

func runStuck(ctx context.Context, o options) error {
	if err := prepare(&o); err != nil {
		return err
	}
	parts := int32(o.stuckPartitions)
	if parts < 2 {
		return fmt.Errorf("-stuck-partitions: %d, want at least 2", parts)
	}
	fmt.Printf("ingestor-bench: stuck scenario, %d messages on %d partitions, one refused forever on partition %d; logs in %s\n",
		o.messages, parts, stuckPartition, o.workDir)
	st, err := startStack(o, parts, []string{stuckCleanTopic, stuckTopic, stuckErrorTopic})
	if err != nil {
		return err
	}
	defer st.close()
	influx, broker, brokers, adm := st.influx, st.broker, st.brokers, st.adm

	fmt.Println("== pre-loading")
	clean, err := preload(ctx, brokers, stuckCleanTopic, o.messages, 0, o.seed, o.devices, nil)
	if err != nil {
		return err
	}
	if err := producePoison(ctx, brokers, stuckTopic, stuckPartition); err != nil {
		return err
	}
	stuck, err := preload(ctx, brokers, stuckTopic, o.messages, 0, o.seed, o.devices, nil)
	if err != nil {
		return err
	}
	stuck.messages++
	stuck.errors++
	ends, err := adm.ListEndOffsets(ctx, stuckTopic)
	if err != nil {
		return err
	}
	var heldCount int64
	ends.Each(func(e kadm.ListedOffset) {
		if e.Partition == stuckPartition {
			heldCount = e.Offset
		}
	})
	fmt.Printf("  %s: %d messages; %s: the same plus one undecodable record at offset 0 of partition %d (%d records there)\n",
		clean.topic, clean.messages, stuck.topic, stuckPartition, heldCount)

	refusal, err := broker.RefuseProduce(context.Background(), adm, stuckErrorTopic)
	if err != nil {
		return err
	}

	base := runSpec{config: o.shippedConf, batch: o.shippedBatch, flushMS: o.shippedFlush, held: -1,
		env: map[string]string{"KAFKA_ERROR_TOPIC": stuckErrorTopic}}
	if o.stuckTuned {
		tunedEnv, err := loadEnvFile(o.tunedEnv)
		if err != nil {
			return err
		}
		for k, v := range tunedEnv {
			base.env[k] = v
		}
		base.batch, base.flushMS = o.tunedBatch, o.tunedFlush
		if err := envInt(tunedEnv, "INFLUXDB_BATCH_SIZE", &base.batch); err != nil {
			return err
		}
		if err := envInt(tunedEnv, "INFLUXDB_FLUSH_INTERVAL_MS", &base.flushMS); err != nil {
			return err
		}
	}
	cleanSpec, stuckSpec := base, base
	cleanSpec.name, cleanSpec.stream = "stuck-clean", clean
	stuckSpec.name, stuckSpec.stream = "stuck", stuck
	stuckSpec.held, stuckSpec.want = stuckPartition, int64(stuck.messages)-heldCount

	// Clean and stuck runs alternate, so that the machine's drift (other work on its cores)
	// falls on both alike; the figure compares their means.
	var plan []runSpec
	for range max(o.stuckRounds, 1) {
		plan = append(plan, cleanSpec, stuckSpec)
	}
	var results []runResult
	for i, rs := range plan {
		rs.group = fmt.Sprintf("bench_%s_%d", rs.name, time.Now().UnixNano())
		rs.db = fmt.Sprintf("stuck_%d", i)
		fmt.Printf("== %s: %s, batch %d, flush %d ms, %d messages drained\n", rs.name, filepath.Base(rs.config), rs.batch, rs.flushMS, rs.messages())
		before := refusal.Refused()
		r, err := runIngestor(ctx, o.bin, o.workDir, brokers, influx, adm, rs)
		if err != nil {
			return err
		}
		_ = influx.dropDatabase(rs.db)
		fmt.Printf("  steady %.0f messages/s, drained at %.0f messages/s (drained in %v, start-up %v), %.1f CPU s per million, peak RSS %.0f MB\n",
			r.steady, r.rate(), r.took.Round(time.Millisecond), r.startup.Round(time.Millisecond), r.cpuPerMillion(), float64(r.peakRSS)/(1<<20))
		if rs.held >= 0 {
			committed, err := adm.FetchOffsets(ctx, rs.group)
			if err != nil {
				return err
			}
			at := int64(0)
			if c, ok := committed.Lookup(stuckTopic, rs.held); ok {
				at = c.At
			}
			fmt.Printf("  partition %d: committed at %d (the refused record is at 0); the error topic refused %d produce requests during the run\n",
				rs.held, at, refusal.Refused()-before)
			if at > 0 {
				fmt.Printf("  MISMATCH: partition %d committed past the record that was never reported\n", rs.held)
			}
		} else if r.points != int64(rs.stream.stored) || r.errRecs != 0 {
			fmt.Printf("  MISMATCH: points written %d (expected %d), error records %d (expected 0)\n", r.points, rs.stream.stored, r.errRecs)
		}
		results = append(results, r)
	}

	mean := func(name string) (steady, drained float64) {
		n := 0.0
		for _, r := range results {
			if r.spec.name == name {
				steady += r.steady
				drained += r.rate()
				n++
			}
		}
		return steady / n, drained / n
	}
	cSteady, cDrained := mean(cleanSpec.name)
	sSteady, sDrained := mean(stuckSpec.name)
	share := float64(parts-1) / float64(parts)
	fmt.Println()
	fmt.Println("== summary")
	fmt.Println("steady: messages/s between 10% and 90% of the messages drained; drained: first message received to")
	fmt.Println("the commits of the drained partitions reaching their end (includes the batch and commit periods).")
	fmt.Printf("%-12s %9s %9s %9s\n", "run", "messages", "steady", "drained")
	for _, r := range results {
		fmt.Printf("%-12s %9d %9.0f %9.0f\n", r.spec.name, r.spec.messages(), r.steady, r.rate())
	}
	fmt.Printf("means: clean %.0f steady, %.0f drained; stuck %.0f steady, %.0f drained\n", cSteady, cDrained, sSteady, sDrained)
	fmt.Printf("the %d partitions beside the stuck one, against %d/%d of the clean rate: steady %.2fx, drained %.2fx (target: at least 0.9x)\n",
		parts-1, parts-1, parts, sSteady/(share*cSteady), sDrained/(share*cDrained))
	return nil
}

// producePoison writes one record that is not a reading to partition of topic: the mapper
// rejects it (decode), so it can only be acknowledged once its error record is written.
func producePoison(ctx context.Context, brokers, topic string, partition int32) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return err
	}
	defer cl.Close()
	rec := &kgo.Record{Topic: topic, Partition: partition, Key: []byte("stuck-poison"), Value: []byte("not a reading"), Timestamp: time.Now()}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("producing the refused record to %s/%d: %w", topic, partition, err)
	}
	return nil
}
