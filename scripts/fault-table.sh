#!/usr/bin/env bash
# Runs the end-to-end and fault scenarios of tests/ (real broker, real InfluxDB, the real binary)
# and prints the README's fault table from the SCENARIO line each one logs: what was sent, what
# InfluxDB holds (values, checked one by one), the error records on the error topic (one per
# source), what was lost, and how long the scenario took.
#
#   scripts/fault-table.sh                      every scenario (about 6 minutes)
#   scripts/fault-table.sh 'TestFaultPoison'    a -run pattern
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/install-deps.sh"
"$root/scripts/install-influxdb.sh"
log=$(mktemp)
pattern=${1:-'TestFault|TestEndToEnd|TestTLSAndSCRAM'}
status=0
go test -count=1 -v -timeout 25m -run "$pattern" ./tests/ >"$log" 2>&1 || status=$?
echo "| scenario | sent | values stored / expected | error records / expected | lost | time |"
echo "|---|---|---|---|---|---|"
grep -o 'SCENARIO .*' "$log" | awk -F' \\| ' '
{
  name = $1; sub(/^SCENARIO /, "", name)
  n = split($2, kv, " "); delete f
  for (i = 1; i <= n; i++) { split(kv[i], p, "="); f[p[1]] = p[2] }
  took = $3; sub(/^took=/, "", took)
  split(f["error_records"], er, "/")
  lost = (f["values_expected"] - f["values_stored"]) + (er[2] - er[1])
  printf "| %s | %s | %s / %s | %s / %s | %d | %s |\n", name, f["sent"], f["values_stored"], f["values_expected"], er[1], er[2], lost, took
}'
if [ "$status" -ne 0 ]; then
  echo "some scenarios failed (exit $status); log: $log" >&2
  grep -E '^(--- FAIL|FAIL|panic)' "$log" >&2 || true
  exit "$status"
fi
rm -f "$log"
