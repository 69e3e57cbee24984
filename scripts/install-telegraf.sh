#!/usr/bin/env bash
# Builds Telegraf 1.36.4 with only the plugins the bench's comparison run needs
# (kafka_consumer -> starlark -> influxdb_v2) into .tools/bin/telegraf.
# Cached: a second run is a no-op. The custom build tags matter: a full build fails
# on a checksum lookup of one of its many dependencies, and it would take far longer.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.tools/bin/telegraf"
version=v1.36.4
if [ -x "$bin" ]; then
  echo "telegraf already built: $bin"
  exit 0
fi
echo "building Telegraf $version (custom build) into $root/.tools/bin (first time: 10 minutes or more)..."
mkdir -p "$root/.tools/bin"
cd "$root/.tools"
GOFLAGS=-mod=mod GOBIN="$root/.tools/bin" go install \
  -tags "custom,inputs.kafka_consumer,outputs.influxdb_v2,parsers.value,processors.starlark" \
  "github.com/influxdata/telegraf/cmd/telegraf@$version"
echo "built $bin"
