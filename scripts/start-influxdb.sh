#!/usr/bin/env bash
# Starts a throw-away InfluxDB 1.8 (built by scripts/install-influxdb.sh) on loopback for the
# demo and CI: data under .run/influxdb (wiped on each start), waits for /health, creates the
# database iot_data and prints the URL. 1.8 serves the 2.x write API: bucket = database, org
# ignored, any token (auth is off).
#
#   scripts/start-influxdb.sh          start on 127.0.0.1:${PORT:-8086}
#   scripts/start-influxdb.sh stop     stop the instance started here
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.tools/bin/influxd"
run="$root/.run/influxdb"
pidfile="$run/influxd.pid"
port="${PORT:-8086}"

stop() {
  if [ -f "$pidfile" ]; then
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
      echo "stopped influxd (pid $pid)"
    fi
    rm -f "$pidfile"
  fi
}

if [ "${1:-}" = "stop" ]; then
  stop
  exit 0
fi

if [ ! -x "$bin" ]; then
  echo "influxd not found at $bin: run scripts/install-influxdb.sh" >&2
  exit 1
fi

stop
rm -rf "$run"
mkdir -p "$run"
# The RPC (backup) port must not collide with another instance: port + 2 by default.
cat > "$run/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:${RPC_PORT:-$((port + 2))}"
[meta]
  dir = "$run/meta"
[data]
  dir = "$run/data"
  wal-dir = "$run/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[logging]
  level = "warn"
[http]
  bind-address = "127.0.0.1:$port"
  flux-enabled = true
  log-enabled = false
CONF

nohup "$bin" -config "$run/influxdb.conf" >"$run/influxd.log" 2>&1 &
echo $! > "$pidfile"

url="http://127.0.0.1:$port"
for _ in $(seq 1 300); do
  if curl -fsS "$url/health" >/dev/null 2>&1; then
    curl -fsS -XPOST "$url/query" --data-urlencode "q=CREATE DATABASE iot_data" >/dev/null
    echo "$url"
    exit 0
  fi
  if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "influxd exited; log:" >&2
    tail -n 40 "$run/influxd.log" >&2
    exit 1
  fi
  sleep 0.2
done
echo "influxd did not answer $url/health within 60s; log in $run/influxd.log" >&2
stop
exit 1
