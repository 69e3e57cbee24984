#!/usr/bin/env bash
# Builds InfluxDB OSS 1.8 (pure Go, serves the 2.x write/query API) into .tools/bin/influxd.
# Cached: a second run is a no-op. See ../shared/docs/influxdb.md for why 1.8.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.tools/bin/influxd"
if [ -x "$bin" ]; then
  echo "influxd already built: $bin"
  exit 0
fi
echo "building InfluxDB 1.8.0 into $root/.tools/bin (first time: about 4 minutes)..."
mkdir -p "$root/.tools/bin"
cd "$root/.tools"
GOFLAGS=-mod=mod GOBIN="$root/.tools/bin" go install github.com/influxdata/influxdb/cmd/influxd@v1.8.0
echo "built $bin"
