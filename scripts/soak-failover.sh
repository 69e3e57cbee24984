#!/usr/bin/env bash
# Failover soak, outside the test suite: runs the three-SIGKILL fault scenario
# (tests/faults_test.go, TestFaultKilledThreeTimes) again and again on the embedded stack and
# prints, for each run, how long after the last crash the last instance owned every partition
# and how long until every partition was consumed again and committed to its end. The bound is
# session timeout + two rebalance timeouts (20 s + 2 x 20 s as shipped); a run past it fails.
#
#   scripts/soak-failover.sh                  ten runs, 80,000 readings in four chunks
#   SOAK_RUNS=3 scripts/soak-failover.sh      three runs
#   FAILOVER_READINGS=3000 FAILOVER_CHUNKS=60 scripts/soak-failover.sh   the suite's stream
#   FAILOVER_KILL_JOINING=1 scripts/soak-failover.sh   kill the second instance while it joins
#                                                      (the embedded broker's quirk: see
#                                                      cmd/dev/joinrepro)
#
# Each run's log goes to a directory printed at the start (SOAK_DIR to choose it); the group's
# timeline at the broker (state, members, partitions owned) is in each log. Exits non-zero if
# any run failed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

runs=${SOAK_RUNS:-10}
export FAILOVER_READINGS=${FAILOVER_READINGS:-80000}
export FAILOVER_CHUNKS=${FAILOVER_CHUNKS:-4}
dir=${SOAK_DIR:-$(mktemp -d -t soak-failover-XXXX)}
mkdir -p "$dir"

"$root/scripts/install-influxdb.sh"
echo "== failover soak: $runs runs, $FAILOVER_READINGS readings in $FAILOVER_CHUNKS chunks; logs in $dir"
failed=0
results=()
for i in $(seq 1 "$runs"); do
  log="$dir/run-$i.log"
  if go test -count=1 -timeout 10m -v -run '^TestFaultKilledThreeTimes$' ./tests >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed=$((failed + 1))
  fi
  line=$(grep -o 'FAILOVER owned=[^ ]* drained=[^ ]*' "$log" || true)
  owned=$(sed -n 's/.*owned=\([^ ]*\).*/\1/p' <<<"$line")
  drained=$(sed -n 's/.*drained=\([^ ]*\).*/\1/p' <<<"$line")
  results+=("$(printf '%3d  %-6s  %8s  %8s' "$i" "$status" "${owned:--}" "${drained:--}")")
  echo "${results[-1]}"
done
echo
echo "run  status  owned     drained   (seconds after the last crash; bound 60 s)"
printf '%s\n' "${results[@]}"
if [ "$failed" -gt 0 ]; then
  echo "$failed of $runs runs failed: see $dir"
  exit 1
fi
