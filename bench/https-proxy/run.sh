#!/usr/bin/env bash
# Benchmark: https-proxy vs nginx (Debian) terminating TLS in front of the same plain-HTTP app, with the same
# certificate (ECDSA P-256) and the same clients (wrk; h2load for HTTP/2), on 127.0.0.1 only. Prints requests/s and p99
# latency of both and their ratios (https-proxy / nginx), for keep-alive and for a handshake-heavy run
# (Connection: close: one TLS handshake per request), and per scenario the median of the rounds' p99s and
# in how many rounds https-proxy's p99 was at or below nginx's.
#
# Run after `make deps build` (nginx, wrk, h2load from nghttp2-client, openssl from Debian; the binary in
# _output/bin):
#   bash bench/https-proxy/run.sh
# Knobs (ENV): DURATION (10s), CONNECTIONS (64), CLOSE_CONNECTIONS (16), ROUNDS (3), BODY_BYTES (1024),
#   BIN (_output/bin/https-proxy), SCENARIOS ("keepalive close h2": wrk over HTTP/1.1 with keep-alive, wrk
#   with a TLS handshake per request, h2load over HTTP/2 with keep-alive),
#   BASELINE_BIN (unset): a second https-proxy binary (e.g. built from the previous commit) run in the same
#   alternating rounds on the same core, reported as its own row, for before/after comparisons.
#
# CPU pinning (2 cores): the proxy under test (nginx: 1 worker; https-proxy: GOMAXPROCS=1) runs alone on
# CPU 0; wrk and the upstream app share CPU 1. Both proxies get exactly one core.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
CLOSE_CONNECTIONS=${CLOSE_CONNECTIONS:-16}
ROUNDS=${ROUNDS:-3}
BODY_BYTES=${BODY_BYTES:-1024}
PROXY_CPU=0
LOAD_CPU=1

for tool in nginx wrk h2load openssl taskset curl pgrep; do
  command -v "$tool" >/dev/null || { echo "$tool not found: run \`make deps\`" >&2; exit 1; }
done
BIN=${BIN:-$ROOT/_output/bin/https-proxy}
BASELINE_BIN=${BASELINE_BIN:-}
SCENARIOS=${SCENARIOS:-keepalive close h2}
if [[ -n $BASELINE_BIN && ! -x $BASELINE_BIN ]]; then echo "BASELINE_BIN=$BASELINE_BIN is not an executable" >&2; exit 1; fi
if [[ ! -x $BIN ]]; then
  echo "building $BIN" >&2
  (cd "$ROOT" && mkdir -p _output/bin && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$BIN" ./sidecars/https-proxy)
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# free_port prints a random port on which nothing on 127.0.0.1 accepts connections, below the ephemeral
# range (which outgoing connections, e.g. wrk's, take their ports from, so a bind there can fail).
EPHEMERAL_START=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
free_port() {
  local p
  while :; do
    p=$(( 10000 + RANDOM % (EPHEMERAL_START - 10000) ))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}
UP_PORT=$(free_port); NGINX_PORT=$(free_port); PROXY_PORT_TLS=$(free_port); STATUS=$(free_port)

# One certificate for both.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null

BODY=$(head -c "$BODY_BYTES" /dev/zero | tr '\0' 'x')
common_nginx() { # $1 = prefix dir
  mkdir -p "$1/logs" "$1/tmp"
  cat <<NGX
daemon off;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $1/tmp/body; proxy_temp_path $1/tmp/proxy; fastcgi_temp_path $1/tmp/fcgi;
  uwsgi_temp_path $1/tmp/uwsgi; scgi_temp_path $1/tmp/scgi;
NGX
}

# The app: plain HTTP, BODY_BYTES of text, keep-alive.
{ common_nginx "$WORK/app"; cat <<NGX
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$UP_PORT;
    location / { default_type text/plain; return 200 "$BODY"; }
  }
}
NGX
} > "$WORK/app.conf"

# nginx as the TLS-terminating sidecar, configured to do what https-proxy does (keep-alive to the app,
# X-Forwarded-*, Host passed through, HTTP/2 offered).
{ common_nginx "$WORK/tls"; cat <<NGX
  upstream app { server 127.0.0.1:$UP_PORT; keepalive 256; }
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$NGINX_PORT ssl http2;
    ssl_certificate $WORK/tls.crt;
    ssl_certificate_key $WORK/tls.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto https;
      proxy_set_header X-Forwarded-Host \$http_host;
      proxy_buffering off;
    }
  }
}
NGX
} > "$WORK/tls.conf"

taskset -c $LOAD_CPU nginx -c "$WORK/app.conf" -e "$WORK/app/logs/error.log" & PIDS+=($!)
taskset -c $PROXY_CPU nginx -c "$WORK/tls.conf" -e "$WORK/tls/logs/error.log" & PIDS+=($!); NGINX_MASTER=$!

# start_proxy NAME BIN: runs one https-proxy on CPU 0 with default settings; sets PORT_<NAME> and PID_<NAME>.
start_proxy() {
  local name=$1 bin=$2 port status
  port=$(free_port); status=$(free_port)
  GOMAXPROCS=1 PROXY_PORT=$UP_PORT LISTEN_PORT=$port STATUS_PORT=$status \
    CERTIFICATE_PATH=$WORK/tls.crt KEY_PATH=$WORK/tls.key taskset -c $PROXY_CPU "$bin" 2>"$WORK/$name.log" & PIDS+=($!)
  printf -v "PID_$name" %s $!; printf -v "PORT_$name" %s "$port"
  for i in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$status/readyz" && break; sleep 0.1; done
  curl -sf -o /dev/null --cacert "$WORK/tls.crt" "https://127.0.0.1:$port/" || { cat "$WORK/$name.log"; exit 1; }
}
CONTENDERS=(nginx proxy)
start_proxy proxy "$BIN"
if [[ -n $BASELINE_BIN ]]; then start_proxy baseline "$BASELINE_BIN"; CONTENDERS+=(baseline); fi
for i in $(seq 100); do
  curl -sf -o /dev/null --cacert "$WORK/tls.crt" "https://127.0.0.1:$NGINX_PORT/" && break; sleep 0.1
done
PORT_nginx=$NGINX_PORT
PID_nginx=$(pgrep -P "$NGINX_MASTER" | head -1)
HZ=$(getconf CLK_TCK)
# cpu_ticks PID: user+system CPU time the process used so far, in clock ticks. The box may be shared, so
# besides req/s (which other load skews) the table gives CPU time per request, which it skews far less.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# to_ms converts wrk's latency ("812.00us", "1.20ms", "1.01s") to milliseconds.
to_ms() { awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; printf "%.3f", n }'; }

# bench PORT PID CONNECTIONS [wrk args...] → prints "rps p99ms cpu_us_per_request"
bench() {
  local port=$1 pid=$2 conns=$3; shift 3
  taskset -c $LOAD_CPU wrk -t1 -c"$conns" -d2s "$@" "https://127.0.0.1:$port/" >/dev/null 2>&1 || true  # warm-up
  local t0; t0=$(cpu_ticks "$pid")
  local out; out=$(taskset -c $LOAD_CPU wrk -t1 -c"$conns" -d"$DURATION" --latency "$@" "https://127.0.0.1:$port/")
  local ticks=$(( $(cpu_ticks "$pid") - t0 ))
  local rps p99 errors requests
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
  [[ -n $errors ]] && echo "  wrk on $port: $errors" >&2
  echo "$rps $(to_ms "$p99") $(awk -v t="$ticks" -v hz="$HZ" -v n="$requests" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')"
}

# bench_h2 PORT PID CONNECTIONS → like bench, over HTTP/2 with h2load (one stream at a time per connection,
# as wrk does over HTTP/1.1); p99 comes from h2load's per-request log.
bench_h2() {
  local port=$1 pid=$2 conns=$3
  taskset -c $LOAD_CPU h2load -t1 -c"$conns" -m1 -D 2 "https://127.0.0.1:$port/" >/dev/null 2>&1 || true  # warm-up
  local t0; t0=$(cpu_ticks "$pid")
  local out; out=$(taskset -c $LOAD_CPU h2load -t1 -c"$conns" -m1 -D "${DURATION%s}" --log-file="$WORK/h2.log" "https://127.0.0.1:$port/")
  local ticks=$(( $(cpu_ticks "$pid") - t0 ))
  local rps p99 requests failed
  requests=$(awk '/^requests:/ {print $8}' <<<"$out")  # succeeded
  failed=$(awk '/^requests:/ {print $10 + $12 + $14}' <<<"$out")
  rps=$(awk '/^finished in/ {print $4}' <<<"$out")
  p99=$(awk '{print $3}' "$WORK/h2.log" | sort -n | awk '{v[NR] = $1} END { i = int(NR * 0.99); if (i < 1) i = 1; printf "%.3f", v[i] / 1000 }')
  [[ ${failed:-0} != 0 ]] && echo "  h2load on $port: $failed failed/errored/timed out" >&2
  echo "$rps $p99 $(awk -v t="$ticks" -v hz="$HZ" -v n="$requests" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')"
}

echo "# https-proxy vs nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), $(nproc) CPUs, $(uname -r); wrk $DURATION, body $BODY_BYTES B, rounds $ROUNDS; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# proxies pinned to CPU $PROXY_CPU (nginx 1 worker, https-proxy GOMAXPROCS=1); wrk + app on CPU $LOAD_CPU"
echo "# proxy = $BIN${BASELINE_BIN:+; baseline = $BASELINE_BIN}"
printf '| %-33s | %-8s | %9s | %9s | %-24s | %7s | %7s | %9s |\n' run who "req/s" p99 "CPU/req mean (min–max)" "req/s ×" "p99 ×" "CPU/req ×"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
scenario() { # name tool conns [tool args]
  local name=$1 tool=$2 conns=$3; shift 3
  local rounds=() who port pid
  for r in $(seq "$ROUNDS"); do  # alternate, so that a burst of other load hits every contender
    local line="round $r:"
    for who in "${CONTENDERS[@]}"; do
      port=PORT_$who; pid=PID_$who
      read -r rps p99 cpu <<<"$($tool "${!port}" "${!pid}" "$conns" "$@")"
      rounds+=("$who $rps $p99 $cpu"); line+=" $who $rps req/s p99 ${p99}ms ${cpu}us/req;"
    done
    echo "  $line" >&2
  done
  printf '%s\n' "${rounds[@]}" | awk -v name="$name" -v order="${CONTENDERS[*]}" '
    { n[$1]++; s[$1]+=$2; l[$1]+=$3; c[$1]+=$4; p99[$1, n[$1]] = $3
      if (!($1 in lo) || $4 < lo[$1]) lo[$1]=$4; if (!($1 in hi) || $4 > hi[$1]) hi[$1]=$4 }
    # median of a contender'"'"'s per-round p99s (one slow round moves the mean, not the median)
    function median(w,    i, j, m, v, t) {
      m = n[w]; for (i = 1; i <= m; i++) v[i] = p99[w, i]
      for (i = 2; i <= m; i++) for (j = i; j > 1 && v[j-1] > v[j]; j--) { t = v[j]; v[j] = v[j-1]; v[j-1] = t }
      return m % 2 ? v[(m+1)/2] : (v[m/2] + v[m/2+1]) / 2 }
    END { k = split(order, who, " ")
      for (i = 1; i <= k; i++) { w = who[i]; cpu = sprintf("%.1fµs (%.1f–%.1f)", c[w]/n[w], lo[w], hi[w])
        if (w == "nginx") printf "| %-33s | %-8s | %9.0f | %7.2fms | %-24s | %7s | %7s | %9s |\n", name, w, s[w]/n[w], l[w]/n[w], cpu, "", "", ""
        else printf "| %-33s | %-8s | %9.0f | %7.2fms | %-24s | %6.2f× | %6.2f× | %8.2f× |\n", name, w, s[w]/n[w], l[w]/n[w], cpu,
          s[w]/s["nginx"], l[w]/l["nginx"], c[w]/c["nginx"] }
      below = 0; for (i = 1; i <= n["proxy"]; i++) if (p99["proxy", i] <= p99["nginx", i]) below++
      printf "# %s: p99 median of rounds: nginx %.2fms, proxy %.2fms (%.2f×); proxy at or below nginx in %d of %d rounds\n",
        name, median("nginx"), median("proxy"), median("proxy")/median("nginx"), below, n["proxy"]
      if ("baseline" in n) printf "# %s: proxy / baseline CPU per request %.2f×\n", name, c["proxy"]/c["baseline"] }'
}
for s in $SCENARIOS; do
  case $s in
    keepalive) scenario "keep-alive, $CONNECTIONS conns" bench "$CONNECTIONS" ;;
    close) scenario "handshake per request, $CLOSE_CONNECTIONS conns" bench "$CLOSE_CONNECTIONS" -H 'Connection: close' ;;
    h2) scenario "HTTP/2 keep-alive, $CONNECTIONS conns" bench_h2 "$CONNECTIONS" ;;
    *) echo "unknown scenario $s (want keepalive, close, h2)" >&2; exit 1 ;;
  esac
done
echo "# ratios × = contender / nginx (req/s: higher is better; p99 and CPU/req: lower is better)"
rss="nginx worker $(awk '/VmHWM/ {print $2, $3}' "/proc/$PID_nginx/status")"
for who in "${CONTENDERS[@]:1}"; do pid=PID_$who; rss+=", $who $(awk '/VmHWM/ {print $2, $3}' "/proc/${!pid}/status")"; done
echo "# peak RSS: $rss; load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
