#!/usr/bin/env bash
# Runs every test of the project on a fresh machine (Go, root and apt are all it assumes):
# installs kcat (Debian, the independent Kafka client the interop tests use), builds InfluxDB
# 1.8 once (cached in .tools/), builds the ingestor, then runs the Go tests (unit, integration
# against real servers the tests start themselves, end-to-end and fault tests in tests/), and
# the config checks: every config in the repo passes `ingestor lint`, and the mapping configs'
# own `ingestor test` cases pass.
#
#   scripts/test.sh                 everything
#   scripts/test.sh -run TestFoo    extra arguments go to `go test`
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

"$root/scripts/install-deps.sh"
"$root/scripts/install-influxdb.sh"

echo "== building the ingestor"
go build -o bin/ingestor ./cmd/ingestor

echo "== config: ingestor lint"
mapfile -t configs < <(git ls-files 'config/*.yaml' 'config/**/*.yaml' | grep -v '_benthos_test.yaml$' | sort -u)
./bin/ingestor lint --deprecated "${configs[@]}"
echo "lint: ${#configs[@]} configs clean"

echo "== config: ingestor test"
./bin/ingestor test ./config/...

echo "== go vet"
go vet ./...

echo "== go test"
go test -count=1 -timeout 25m "$@" ./...
