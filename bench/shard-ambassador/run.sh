#!/usr/bin/env bash
# Benchmark: shard-ambassador vs nutcracker (twemproxy 0.5.0) vs direct redis/memcached, all over the same
# three shards on 127.0.0.1, in one run. Proxies are pinned to core 0; shards and load generators to the
# other core(s). Prints a markdown table (and ratios vs nutcracker) to stdout.
#
#   bench/shard-ambassador/run.sh            # after `make deps build`
#   REQUESTS=300000 bench/shard-ambassador/run.sh
#   PROXY_CPU=0-1 LOAD_CPUS=0-1 bench/shard-ambassador/run.sh   # unpinned
#   AMBASSADOR_BIN=/tmp/new BASELINE_BIN=/tmp/old bench/shard-ambassador/run.sh   # compare two builds
#
# AMBASSADOR_BIN defaults to _output/bin/shard-ambassador (built here if missing: `make build` refreshes it).
# BASELINE_BIN, when set, is a second shard-ambassador build measured in the same run, as "baseline".
set -euo pipefail
cd "$(dirname "$0")/../.."
REQUESTS=${REQUESTS:-200000}
MC_TIME=${MC_TIME:-10s}
BIN=${AMBASSADOR_BIN:-_output/bin/shard-ambassador}
BASELINE_BIN=${BASELINE_BIN:-}
if [[ ! -x $BIN ]]; then
	mkdir -p _output/bin
	CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$BIN" ./sidecars/shard-ambassador
fi
for b in redis-server redis-benchmark memcached nutcracker taskset; do
	command -v "$b" >/dev/null || [[ -x /usr/sbin/$b ]] || { echo "$b not found: run \`make deps\`" >&2; exit 1; }
done
NUTCRACKER=$(command -v nutcracker || echo /usr/sbin/nutcracker)
NCPU=$(nproc)
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPUS=${LOAD_CPUS:-1-$((NCPU - 1))}
[[ $NCPU -ge 2 ]] || LOAD_CPUS=0

WORK=$(mktemp -d)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { # a random port nothing listens on (loopback only)
	local p
	while :; do
		p=$(shuf -i 20000-32000 -n 1) # below the ephemeral range (32768+): those may be in use by clients
		(exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo "$p"; return; }
	done
}
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

# --- redis ------------------------------------------------------------------------------------------
R=()
for i in 0 1 2; do
	p=$(free_port)
	taskset -c "$LOAD_CPUS" redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" >/dev/null &
	PIDS+=($!)
	R+=("$p")
	RPIDS+=($!)
done
for p in "${R[@]}"; do wait_port "$p"; done
NC_PORT=$(free_port)
SA_PORT=$(free_port)
cat >"$WORK/redis.yml" <<YAML
bench:
  listen: 127.0.0.1:$NC_PORT
  hash: fnv1a_64
  distribution: ketama
  redis: true
  timeout: 1000
  servers:
   - 127.0.0.1:${R[0]}:1
   - 127.0.0.1:${R[1]}:1
   - 127.0.0.1:${R[2]}:1
YAML
taskset -c $PROXY_CPU "$NUTCRACKER" -c "$WORK/redis.yml" -s "$(free_port)" -o "$WORK/nc.log" &
PIDS+=($!) NC_PID=$!
CONFIG_FILE=$WORK/redis.yml LISTEN=127.0.0.1:$SA_PORT STATUS_PORT=$(free_port) taskset -c $PROXY_CPU "$BIN" 2>"$WORK/sa.log" &
PIDS+=($!) SA_PID=$!
wait_port "$NC_PORT"
wait_port "$SA_PORT"
# name:port:pid (the pid's CPU time is measured: for direct-redis it is that shard's own)
TARGETS=("direct-redis:${R[0]}:${RPIDS[0]}" "nutcracker:$NC_PORT:$NC_PID")
if [[ -n $BASELINE_BIN ]]; then
	BA_PORT=$(free_port)
	CONFIG_FILE=$WORK/redis.yml LISTEN=127.0.0.1:$BA_PORT STATUS_PORT=$(free_port) taskset -c $PROXY_CPU "$BASELINE_BIN" 2>"$WORK/ba.log" &
	PIDS+=($!) BA_PID=$!
	wait_port "$BA_PORT"
	TARGETS+=("baseline:$BA_PORT:$BA_PID")
fi
TARGETS+=("shard-ambassador:$SA_PORT:$SA_PID")

echo "# shard-ambassador benchmark ($(date -u +%F), $(nproc) cores, $(nutcracker --version 2>&1 | head -1 | sed 's/This is //'), $(redis-server --version | cut -d' ' -f3))"
echo
echo "redis-benchmark -t {set,get} -r 100000 -c 50 -n $REQUESTS -P {1,16}; proxies on core $PROXY_CPU, shards and load on $LOAD_CPUS"
echo "(CPU µs/req: the process's user+system CPU time during the test over its requests; for direct-redis, the shard's)"
echo
echo "| target | pipeline | test | requests/s | p50 ms | p99 ms | CPU µs/req | rps vs nutcracker | p99 vs nutcracker |"
echo "|---|---|---|---|---|---|---|---|---|"
HZ=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime
declare -A RPS P99
run_rb() { # name port pipeline pid
	local test t0 t1 line rname rps avg min p50 p95 p99 max
	for test in set get; do
		t0=$(cpu_ticks "$4")
		line=$(taskset -c "$LOAD_CPUS" redis-benchmark -p "$2" -t "$test" -r 100000 -c 50 -n "$REQUESTS" -P "$3" --csv 2>"$WORK/rb.err" | tail -n +2 | tr -d '"')
		t1=$(cpu_ticks "$4")
		if [[ -z $line ]]; then # redis-benchmark stops at the first error reply: show it
			echo "$1 $3 ${test^^} failed - $(grep -m1 -v WARNING "$WORK/rb.err" | tr ' ' '_') -"
			continue
		fi
		IFS=, read -r rname rps avg min p50 p95 p99 max <<<"$line"
		echo "$1 $3 $rname $rps $p50 $p99 $(awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="$REQUESTS" 'BEGIN{printf "%.1f", t/hz*1e6/n}')"
	done
}
for P in 1 16; do
	for target in "${TARGETS[@]}"; do
		IFS=: read -r name port pid <<<"$target"
		# "direct" is one of the three shards alone: an upper bound, not a sharded setup.
		while read -r n p test rps p50 p99 cpu; do
			RPS[$n/$p/$test]=$rps P99[$n/$p/$test]=$p99
			ratio="" pratio=""
			if [[ ($n == shard-ambassador || $n == baseline) && $rps != failed && ${RPS[nutcracker/$p/$test]:-failed} != failed ]]; then
				ratio=$(awk -v a="$rps" -v b="${RPS[nutcracker/$p/$test]}" 'BEGIN{printf "%.2f×", a/b}')
				pratio=$(awk -v a="$p99" -v b="${P99[nutcracker/$p/$test]}" 'BEGIN{printf "%.2f×", a/b}')
			fi
			echo "| $n | $p | $test | $rps | $p50 | $p99 | $cpu | $ratio | $pratio |"
		done < <(run_rb "$name" "$port" "$P" "$pid")
	done
done

# --- memcache (memaslap from libmemcached-tools, if installed) -----------------------------------------
MEMASLAP=$(command -v memaslap || command -v memcaslap || true)
if [[ -n $MEMASLAP ]]; then
	M=()
	for i in 0 1 2; do
		p=$(free_port)
		taskset -c "$LOAD_CPUS" memcached -l 127.0.0.1 -p "$p" -U 0 -u root -m 256 -t 1 &
		PIDS+=($!)
		M+=("$p")
		MPIDS+=($!)
	done
	for p in "${M[@]}"; do wait_port "$p"; done
	MNC_PORT=$(free_port)
	MSA_PORT=$(free_port)
	cat >"$WORK/mc.yml" <<YAML
bench:
  listen: 127.0.0.1:$MNC_PORT
  hash: fnv1a_64
  distribution: ketama
  timeout: 1000
  servers:
   - 127.0.0.1:${M[0]}:1
   - 127.0.0.1:${M[1]}:1
   - 127.0.0.1:${M[2]}:1
YAML
	taskset -c $PROXY_CPU "$NUTCRACKER" -c "$WORK/mc.yml" -s "$(free_port)" -o "$WORK/mnc.log" &
	PIDS+=($!) MNC_PID=$!
	CONFIG_FILE=$WORK/mc.yml LISTEN=127.0.0.1:$MSA_PORT STATUS_PORT=$(free_port) taskset -c $PROXY_CPU "$BIN" 2>"$WORK/msa.log" &
	PIDS+=($!) MSA_PID=$!
	wait_port "$MNC_PORT"
	wait_port "$MSA_PORT"
	MTARGETS=("direct-memcached:${M[0]}:${MPIDS[0]}" "nutcracker:$MNC_PORT:$MNC_PID")
	if [[ -n $BASELINE_BIN ]]; then
		MBA_PORT=$(free_port)
		CONFIG_FILE=$WORK/mc.yml LISTEN=127.0.0.1:$MBA_PORT STATUS_PORT=$(free_port) taskset -c $PROXY_CPU "$BASELINE_BIN" 2>"$WORK/mba.log" &
		PIDS+=($!) MBA_PID=$!
		wait_port "$MBA_PORT"
		MTARGETS+=("baseline:$MBA_PORT:$MBA_PID")
	fi
	MTARGETS+=("shard-ambassador:$MSA_PORT:$MSA_PID")
	echo
	echo "$(basename "$MEMASLAP") -T 1 -c 50 -t $MC_TIME -X 32 (90% get / 10% set)"
	echo
	echo "| target | ops/s | CPU µs/op | vs nutcracker |"
	echo "|---|---|---|---|"
	declare -A TPS
	for target in "${MTARGETS[@]}"; do
		IFS=: read -r name port pid <<<"$target"
		t0=$(cpu_ticks "$pid")
		out=$(taskset -c "$LOAD_CPUS" "$MEMASLAP" -s "127.0.0.1:$port" -T 1 -c 50 -t "$MC_TIME" -X 32 2>&1 | awk '/^Run time/' | tail -1)
		t1=$(cpu_ticks "$pid")
		tps=$(awk '{for (i=1;i<=NF;i++) if ($i=="TPS:") print $(i+1)}' <<<"$out")
		ops=$(awk '{for (i=1;i<=NF;i++) if ($i=="Ops:") print $(i+1)}' <<<"$out")
		cpu=$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="$ops" 'BEGIN{if (n > 0) printf "%.1f", t/hz*1e6/n}')
		TPS[$name]=$tps
		ratio=""
		[[ $name == shard-ambassador || $name == baseline ]] && ratio=$(awk -v a="$tps" -v b="${TPS[nutcracker]}" 'BEGIN{printf "%.2f×", a/b}')
		echo "| $name | $tps | $cpu | $ratio |"
	done
fi
