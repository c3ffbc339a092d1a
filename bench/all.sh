#!/usr/bin/env bash
# Every benchmark under bench/, one after the other (they pin cores and must not overlap), each one's
# output saved to _output/bench/<name>.txt, then one summary table (component, figure, ours, peer, ratio,
# goal, met?) printed and written to _output/bench/summary.md (bench/summary).
#
#   bash bench/all.sh                 # `make bench`: the runs of record (about 25 minutes on 2 cores)
#   BENCH_QUICK=1 bash bench/all.sh   # a sanity check in about 5 minutes: short runs, same figures, noisy
#
# Needs `make deps tools build`. A benchmark that fails is reported in the summary and makes the exit
# status non-zero; the others still run.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
out=_output/bench
mkdir -p "$out"
rm -f "$out"/*.txt "$out/summary.md"
quick=${BENCH_QUICK:-}
failed=0
run() { # name command...
  local name=$1; shift
  echo "== $name: $*" >&2
  local start=$SECONDS
  if "$@" >"$out/$name.txt" 2>"$out/$name.log"; then
    echo "   done in $((SECONDS - start)) s" >&2
  else
    echo "   FAILED after $((SECONDS - start)) s: see $out/$name.log" >&2
    failed=1
  fi
}
if [ -n "$quick" ]; then
  run webhook go run ./bench/webhook -duration 2s -closed 2s
  run https-proxy env DURATION=3s ROUNDS=1 bash bench/https-proxy/run.sh
  run shard-ambassador env REQUESTS=20000 MC_TIME=3s bash bench/shard-ambassador/run.sh
  run topz bash bench/topz/run.sh 500
  run config-sync bash bench/config-sync/run.sh -updates 20
  run git-sync env RUNS=1 bash bench/git-sync/run.sh 3
  run memory env LOAD=2s bash bench/memory/run.sh
else
  run webhook go run ./bench/webhook
  run https-proxy bash bench/https-proxy/run.sh
  run shard-ambassador bash bench/shard-ambassador/run.sh
  run topz bash bench/topz/run.sh
  run config-sync bash bench/config-sync/run.sh
  run git-sync bash bench/git-sync/run.sh 30
  run memory bash bench/memory/run.sh
fi
echo >&2
go run ./bench/summary -dir "$out" -o "$out/summary.md" || failed=1
[ -z "$quick" ] || echo "(BENCH_QUICK: short runs; quote only the full runs, docs/performance.md)"
exit $failed
