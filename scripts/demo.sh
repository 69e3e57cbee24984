#!/usr/bin/env bash
# The main job on the embedded stack, from a fresh machine with Go:
#   1. installs kcat/curl and builds InfluxDB 1.8 once (cached in .tools/),
#   2. starts InfluxDB 1.8 and the in-process Kafka-protocol broker on loopback,
#   3. runs the ingestor with config/ingestor.yaml exactly as shipped (settings from the env),
#   4. feeds it a realistic stream from cmd/dev/readings-gen (every variant of the contract and a
#      share of bad messages), showing progress from /metrics while it runs,
#   5. shows the result: points stored, error records with their reasons, a stored series.
# Ctrl-C at any point stops everything it started.
#
#   scripts/demo.sh                     20,000 messages at 4,000/s, then exit
#   DEMO_COUNT=100000 DEMO_RATE=0 scripts/demo.sh      more, as fast as possible
#   DEMO_KEEP_RUNNING=1 scripts/demo.sh                leave the stack running until Ctrl-C
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

count=${DEMO_COUNT:-20000}
rate=${DEMO_RATE:-4000}
bad_share=${DEMO_BAD_SHARE:-0.03}
kafka_addr=${DEMO_KAFKA_ADDR:-127.0.0.1:19092}
influx_port=${DEMO_INFLUX_PORT:-18086}
http_addr=${DEMO_HTTP_ADDR:-127.0.0.1:4195}
run_dir="$root/.run/demo"

"$root/scripts/install-deps.sh"
"$root/scripts/install-influxdb.sh"
echo "== building"
go build -o bin/ingestor ./cmd/ingestor
go build -o bin/readings-gen ./cmd/dev/readings-gen

rm -rf "$run_dir" && mkdir -p "$run_dir"
pids=()
cleanup() {
  trap - EXIT INT TERM
  echo
  echo "== stopping"
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  PORT=$influx_port "$root/scripts/start-influxdb.sh" stop >/dev/null 2>&1 || true
  echo "stopped; logs in $run_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== starting InfluxDB 1.8 on 127.0.0.1:$influx_port"
PORT=$influx_port "$root/scripts/start-influxdb.sh" >"$run_dir/influxdb-start.log"
cat "$run_dir/influxdb-start.log"

echo "== starting the embedded Kafka broker on $kafka_addr"
bin/ingestor kafka-broker --addr "$kafka_addr" >"$run_dir/broker.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
  grep -q "ready" "$run_dir/broker.log" && break
  sleep 0.2
done
grep -q "ready" "$run_dir/broker.log" || { cat "$run_dir/broker.log"; echo "broker did not start"; exit 1; }

echo "== starting the ingestor (config/ingestor.yaml, logs in $run_dir/ingestor.log)"
KAFKA_BOOTSTRAP_SERVERS=$kafka_addr \
INFLUXDB_URL=http://127.0.0.1:$influx_port \
INFLUXDB_BATCH_SIZE=${INFLUXDB_BATCH_SIZE:-500} \
INFLUXDB_FLUSH_INTERVAL_MS=${INFLUXDB_FLUSH_INTERVAL_MS:-1000} \
HTTP_ADDRESS=$http_addr \
  bin/ingestor run config/ingestor.yaml >"$run_dir/ingestor.log" 2>&1 &
pids+=($!)

echo "== feeding $count readings at ${rate}/s (0 = unlimited), ${bad_share} of them bad"
bin/readings-gen --brokers "$kafka_addr" --count "$count" --rate "$rate" --bad-share "$bad_share" \
  >"$run_dir/generator.log" 2>&1 &
gen_pid=$!
pids+=($gen_pid)

# metric NAME [LABEL=VALUE]: the sum of the series of one metric on /metrics (0 when absent).
metric() {
  curl -fsS "http://$http_addr/metrics" 2>/dev/null |
    awk -v n="$1" -v l="${2:-}" '($1 == n || index($1, n "{") == 1) && (l == "" || index($1, l) > 0) { s += $NF } END { printf "%d", s }'
}

start=$(date +%s)
while :; do
  sleep 2
  consumed=$(metric input_received)
  written=$(metric influxdb_points_written)
  filtered=$(metric iot_messages_filtered)
  errors=$(metric iot_error_records)
  lag=$(metric kafka_consumer_lag)
  ready=$(curl -s -o /dev/null -w '%{http_code}' "http://$http_addr/ready" || true)
  printf '%4ss  consumed %7s  points written %7s  filtered %5s  error records %5s  lag %6s  /ready %s\n' \
    "$(($(date +%s) - start))" "$consumed" "$written" "$filtered" "$errors" "$lag" "$ready"
  if ! kill -0 "$gen_pid" 2>/dev/null && [ "$consumed" -ge "$count" ] && [ "$lag" -eq 0 ] &&
    [ "$((written + filtered + errors))" -ge "$count" ]; then
    break
  fi
  if [ "$(($(date +%s) - start))" -gt $((count / 500 + 120)) ]; then
    echo "not drained in time; see $run_dir/ingestor.log"
    break
  fi
done

echo
echo "== what the generator sent (its own expectation, computed from the contract)"
sed -n '/ messages acknowledged by /,/^  errors:/p' "$run_dir/generator.log"
echo
echo "== what the ingestor did (from /metrics)"
printf '  points written %s, messages filtered %s, error records: decode %s, validation %s, write %s\n' \
  "$(metric influxdb_points_written)" "$(metric iot_messages_filtered)" \
  "$(metric iot_error_records 'kind="decode"')" "$(metric iot_error_records 'kind="validation"')" \
  "$(metric iot_error_records 'kind="write"')"

query() {
  curl -fsS -G "http://127.0.0.1:$influx_port/query" -H 'Accept: application/csv' \
    --data-urlencode "db=iot_data" --data-urlencode "q=$1"
}
echo
echo "== InfluxDB: $(query 'SHOW MEASUREMENTS' | tail -n +2 | wc -l) measurements (one per device); the latest 5 points of one"
device=$(query 'SHOW MEASUREMENTS LIMIT 1' | tail -n 1 | cut -d, -f3)
query "SELECT * FROM \"$device\" ORDER BY time DESC LIMIT 5" | cut -c1-220
echo
echo "== iot_errors: records by kind"
kcat -C -b "$kafka_addr" -t iot_errors -o beginning -e -q -f '%s\n' 2>/dev/null |
  sed -n 's/.*"kind":"\([a-z]*\)".*/\1/p' | sort | uniq -c
echo
echo "== iot_errors: the first 3 records (key, then value)"
kcat -C -b "$kafka_addr" -t iot_errors -o beginning -c 3 -e -q -f '%k  %s\n\n' 2>/dev/null | cut -c1-400

if [ -n "${DEMO_KEEP_RUNNING:-}" ]; then
  echo
  echo "The stack keeps running: ingestor on http://$http_addr (/ready, /metrics), Kafka on $kafka_addr,"
  echo "InfluxDB on http://127.0.0.1:$influx_port. Ctrl-C stops everything."
  wait "${pids[1]}"
fi
