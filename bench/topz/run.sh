#!/usr/bin/env bash
# bench/topz: /topz latency with 50 and 500 processes, next to `ps -eo pid,pcpu,rss,args` on the same
# processes in the same run. Each size runs in a fresh PID namespace with its own /proc (as root:
# `unshare --pid --fork --mount-proc`), so the table holds exactly the N sleepers plus the harness, like a
# pod with shareProcessNamespace, whatever else runs on the machine.
#
# Usage: bench/topz/run.sh [N ...]        (default: 50 500; needs root, hyperfine, curl, procps, util-linux)
# Results: a markdown table on stdout, for docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH
sizes=("${@:-50}")
[ $# -eq 0 ] && sizes=(50 500)
for tool in hyperfine curl ps unshare jq; do
  command -v "$tool" >/dev/null || { echo "$tool not found: run \`make deps\`" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench/topz needs root (unshare --pid --mount-proc)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bin=_output/bin/topz
if [ ! -x "$bin" ]; then
  bin=$work/topz
  CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$bin" ./sidecars/topz
fi
port=$(( 20000 + RANDOM % 20000 ))

# inner.sh runs as PID 1 of the new namespace: N-<harness> sleepers, topz, then the measurements.
cat >"$work/inner.sh" <<'INNER'
set -euo pipefail
n=$1 bin=$2 port=$3 out=$4
for _ in $(seq 1 $((n - 4))); do sleep 100000 & done   # + this shell, topz, hyperfine and its child = n
"$bin" --addr=127.0.0.1:$port --sample=200ms 2>"$out.log" &
topz=$!
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.05; done
procs=$(curl -sf "http://127.0.0.1:$port/topz?format=json" | jq .total)

# Cold: a fresh sampler pays the window (200ms) plus two scans. Restart topz to measure it.
cold=()
for _ in 1 2 3 4 5; do
  kill $topz; wait $topz || true
  "$bin" --addr=127.0.0.1:$port --sample=200ms 2>>"$out.log" & topz=$!
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.05; done
  cold+=("$(curl -sf -o /dev/null -w '%{time_total}' "http://127.0.0.1:$port/topz")")
done

# Warm: requests keep the sampler active, so each is answered from the latest table (<= 200ms old).
t0=$(awk '{print $14+$15}' /proc/$topz/stat); s0=$(date +%s.%N)
hyperfine -N --warmup 20 --runs 300 --export-json "$out.json" \
  -n "topz GET /topz (text)" "curl -sf -o /dev/null http://127.0.0.1:$port/topz" \
  -n "topz GET /topz?format=json" "curl -sf -o /dev/null http://127.0.0.1:$port/topz?format=json" \
  -n "ps -eo pid,pcpu,rss,args" "ps -eo pid,pcpu,rss,args" >/dev/null
t1=$(awk '{print $14+$15}' /proc/$topz/stat); s1=$(date +%s.%N)
# Warm, as curl times the request itself (no process start-up in the figure).
for _ in $(seq 200); do curl -sf -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$port/topz"; done | sort -n | sed -n 100p >"$out.warm"
# The sampler's own cost while active: CPU time of topz (ticks of 10ms) over the wall time of the run.
busy=$(echo "($t1 - $t0) / 100 / ($s1 - $s0) * 100" | bc -l)
kill $topz; wait $topz || true
printf '%s\n' "${cold[@]}" | sort -n | sed -n 3p >"$out.cold"
echo "$procs $busy" >"$out.facts"
INNER

echo "| processes | command | p50 (ms) | mean ± σ (ms) |"
echo "|---:|---|---:|---:|"
for n in "${sizes[@]}"; do
  out=$work/n$n
  unshare --pid --fork --mount-proc bash "$work/inner.sh" "$n" "$(realpath "$bin")" "$port" "$out"
  read -r procs busy <"$out.facts"
  jq -r --arg n "$procs" '.results[] | "| \($n) | `\(.command)` | \(.median*1000*100|round/100) | \(.mean*1000*100|round/100) ± \(.stddev*1000*100|round/100) |"' "$out.json" \
    | sed -e "s|curl -sf -o /dev/null http://127.0.0.1:$port|curl /topz|" -e 's|/topz/topz|/topz|'
  printf '| %s | `curl /topz`, warm, request time as curl measures it (no process start-up), median of 200 | %.2f | |\n' "$procs" "$(echo "$(cat "$out.warm") * 1000" | bc -l)"
  printf '| %s | `curl /topz`, cold (first request: sampling window 200ms + 2 scans), median of 5 | %.2f | |\n' "$procs" "$(echo "$(cat "$out.cold") * 1000" | bc -l)"
  printf '| %s | topz CPU while a client keeps it sampling every 200ms | %.1f%% of a core | |\n' "$procs" "$busy"
done
