#!/usr/bin/env bash
# Performance harness: measures the ingestor against the limits of the stack it runs on, in one
# run, on the embedded stack (the in-process Kafka-protocol broker and a real InfluxDB 1.8, both
# on loopback, sharing the machine's cores with the ingestor).
#
#   1. builds bin/ingestor and the harness (cmd/dev/ingestor-bench), and InfluxDB 1.8 once
#      (scripts/install-influxdb.sh, cached in .tools/);
#   2. pre-loads streams from internal/dev/readinggen (the demo's generator): a clean one, a poison
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
#      from /proc) and peak RSS (VmHWM), then the poison flood against the clean stream;
#   6. the whole-run drains (-runs whole6,whole12: a backlog of -whole-backlog messages on 6 and
#      12 partitions): each configuration of -whole-runs is timed from its process's start to
#      the last value stored, read from InfluxDB's count of points written (its shard statistics,
#      polled once a second; the field values counted once to confirm), with
#      the time to the first stored value, CPU s per million and peak RSS: the raw write limit
#      (pre-encoded, batch 5000 and batch 100, 4 posts at once), Telegraf 1.36 doing the same
#      job (bench/telegraf/: kafka_consumer, the Starlark mapping, influxdb_v2, batch 5000;
#      built once by scripts/install-telegraf.sh), the ingestor as shipped, with
#      INFLUXDB_BATCH_SIZE alone at 100 to 10000 (-whole-runs batch or all), and with
#      config/ingestor-high-volume.env. Telegraf's database is compared with the ingestor's
#      (counts per field of every measurement, field types, a sample value by value).
#
#   scripts/bench.sh                                   200,000 messages, 1,000,000 backlog
#   scripts/bench.sh -messages 500000 -backlog 0       bigger streams, no backlog runs
#   scripts/bench.sh -runs raw,tuned                   only the raw limits and the tuned run
#   scripts/bench.sh -profile .run/bench/pprof         CPU, heap and goroutine profiles per run
#   scripts/bench.sh -scenario stuck                   one message refused forever on one of 6
#                                                      partitions: the other five against 5/6 of
#                                                      the clean rate (-stuck-tuned: tuned values)
#   scripts/bench.sh -runs whole6 -whole-runs all      every whole-run drain on 6 partitions only
#   scripts/bench.sh -runs raw,shipped,tuned           no whole-run drains (no Telegraf needed)
#   scripts/bench.sh -runs whole6,whole48 -whole-more-devices 5000 -whole-more-runs shipped,high-volume
#                                                      the scale check: 48 partitions and 5,000
#                                                      devices against the 6-partition runs
#   scripts/bench.sh -runs whole6 -whole-runs shipped,shipped@base -whole-base-bin /tmp/ingestor-main
#                                                      a change against its base build, in one run
#   go run ./cmd/dev/ingestor-bench -h                 every flag
#
# Figures vary with what else runs on the machine: compare ratios from the same run. Logs of
# every ingestor run and InfluxDB's data go to a temporary directory printed at the start
# (or -work DIR).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

"$root/scripts/install-influxdb.sh"
# Telegraf is needed only by the telegraf whole-run drain (in the default runs); a first build
# takes minutes, later runs reuse it.
"$root/scripts/install-telegraf.sh"
echo "== building"
go build -o bin/ingestor ./cmd/ingestor
go build -o bin/ingestor-bench ./cmd/dev/ingestor-bench
exec bin/ingestor-bench -bin bin/ingestor -influxd .tools/bin/influxd \
  -shipped-config config/ingestor.yaml -tuned-env config/ingestor-high-volume.env \
  -telegraf .tools/bin/telegraf -telegraf-config bench/telegraf/telegraf.conf \
  -telegraf-mapping bench/telegraf/mapping.star "$@"
