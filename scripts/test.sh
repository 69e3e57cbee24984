#!/usr/bin/env bash
# Runs the project's tests.
#
#   scripts/test.sh                 everything: installs kcat and promtool (Debian) and builds
#                                   InfluxDB 1.8 once (cached in .tools/), builds the ingestor,
#                                   checks every config (`ingestor lint`, `ingestor test`), the
#                                   alert rules (`promtool check rules`, `promtool test rules`),
#                                   then `go vet` and every Go test: unit, integration against
#                                   real servers the tests start themselves, end-to-end, faults
#   scripts/test.sh -short          the unit tier: `go vet` and `go test -short` (every test that
#                                   needs a server, kcat or the built binary skips), plus the
#                                   promtool checks when promtool is installed; installs and
#                                   builds nothing, needs only Go
#   scripts/test.sh -run TestFoo    other arguments go to `go test` (in either mode)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

short=0
goargs=()
for a in "$@"; do
  case "$a" in
    -short | --short) short=1 ;;
    *) goargs+=("$a") ;;
  esac
done

alert_rules() {
  echo "== alert rules: promtool"
  promtool check rules deploy/prometheus-alerts.yml
  promtool test rules deploy/prometheus-alerts_test.yml
}

if [ "$short" -eq 1 ]; then
  if command -v promtool >/dev/null 2>&1; then
    alert_rules
  else
    echo "== alert rules: promtool not installed, checks left to the full run (scripts/install-deps.sh installs it)"
  fi
  echo "== go vet"
  go vet ./...
  echo "== go test -short (the unit tier)"
  go test -short -count=1 -timeout 10m ${goargs[@]+"${goargs[@]}"} ./...
  exit 0
fi

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

alert_rules

echo "== go vet"
go vet ./...

echo "== go test"
go test -count=1 -timeout 25m ${goargs[@]+"${goargs[@]}"} ./...
