#!/usr/bin/env bash
# Performance harness: measures the ingestor against the limits of the stack it runs on, in one
# run, on the embedded stack (the in-process Kafka-protocol broker and a real InfluxDB 1.8, both
# on loopback, sharing the machine's cores with the ingestor).
#
#   1. builds bin/ingestor and the harness (cmd/ingestor-bench), and InfluxDB 1.8 once
#      (scripts/install-influxdb.sh, cached in .tools/);
#   2. pre-loads streams from internal/readinggen (the demo's generator): a clean one, a poison
#      flood (a fifth bad, every kind) of the same size, and a backlog;
#   3. measures the raw limits: a bare franz-go consumer (records/s) and InfluxDB taking the same
#      readings, mapped in-process by reading_to_point, as line protocol posted by plain
#      concurrent HTTP at each run's batch size (points/s), into a fresh database each time;
#   4. runs the ingestor binary on each stream with a fresh consumer group and database:
#      config/ingestor.yaml as shipped (batch 100, flush 5 s), and the same pipeline with the
#      tuned values of config/ingestor-high-volume.env; a run ends when the group's committed
#      offsets reach the end of the topic;
#   5. prints messages/s (steady: between 10% and 90% of the stream; drained: first message to
#      last commit), the ratio to the raw write limit at the same batch size (measured right
#      before and after each run), CPU seconds per million messages (utime+stime of the ingestor
#      from /proc) and peak RSS (VmHWM), then the poison flood against the clean stream.
#
#   scripts/bench.sh                                   200,000 messages, 1,000,000 backlog
#   scripts/bench.sh -messages 500000 -backlog 0       bigger streams, no backlog runs
#   scripts/bench.sh -runs raw,tuned                   only the raw limits and the tuned run
#   scripts/bench.sh -profile .run/bench/pprof         CPU, heap and goroutine profiles per run
#   scripts/bench.sh -scenario stuck                   one message refused forever on one of 6
#                                                      partitions: the other five against 5/6 of
#                                                      the clean rate (-stuck-tuned: tuned values)
#   go run ./cmd/ingestor-bench -h                     every flag
#
# Figures vary with what else runs on the machine: compare ratios from the same run. Logs of
# every ingestor run and InfluxDB's data go to a temporary directory printed at the start
# (or -work DIR).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

"$root/scripts/install-influxdb.sh"
echo "== building"
go build -o bin/ingestor ./cmd/ingestor
go build -o bin/ingestor-bench ./cmd/ingestor-bench
exec bin/ingestor-bench -bin bin/ingestor -influxd .tools/bin/influxd \
  -shipped-config config/ingestor.yaml -tuned-env config/ingestor-high-volume.env "$@"
