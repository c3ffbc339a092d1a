#!/usr/bin/env bash
# Memory: each sidecar's resident set idle and under load, next to the peer users compare it with, in one
# run on this machine: https-proxy vs nginx (a TLS reverse proxy to the same app, wrk at 64 connections),
# shard-ambassador vs nutcracker (the same three redis shards, redis-benchmark SET/GET, 50 clients,
# pipelines of 16), topz vs `ps -eo pid,pcpu,rss,args` (the book's topz runs ps), and config-sync and
# git-sync idle (their peers, configmap-reload and kubernetes/git-sync, are not installed here). Each
# binary is the static build the image carries, run with its image's defaults (GOMAXPROCS=1 where the
# benchmarks pin one core). Prints a markdown table: VmRSS idle (after 3 s), VmHWM under load (the peak).
#
#   bench/memory/run.sh                # after `make deps`
#   LOAD=10s bench/memory/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
LOAD=${LOAD:-5s}
for b in nginx nutcracker redis-server redis-benchmark wrk openssl git curl; do
	command -v "$b" >/dev/null || [[ -x /usr/sbin/$b ]] || { echo "$b not found: run \`make deps\`" >&2; exit 1; }
done
BIN=$(mktemp -d)
for s in https-proxy shard-ambassador topz config-sync git-sync; do
	CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$BIN/$s" ./sidecars/$s
done
WORK=$(mktemp -d)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK" "$BIN"
}
trap cleanup EXIT
EPHEMERAL_START=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
free_port() {
	local p
	while :; do
		p=$((10000 + RANDOM % (EPHEMERAL_START - 10000)))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}
kb() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; } # kb PID VmRSS|VmHWM
mb() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
wait_http() { for _ in $(seq 100); do curl -sfk -o /dev/null "$1" && return; sleep 0.1; done; echo "$1 never answered" >&2; exit 1; }
ROWS=()
row() { ROWS+=("| $1 | $2 | $(mb "$3") | $4 |"); } # component, peer-or-ours, idle kB, load MB text

# --- https-proxy vs nginx, in front of the same nginx app ---
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
	-addext "subjectAltName=IP:127.0.0.1" -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
UP=$(free_port); NGX=$(free_port); HP=$(free_port); HPS=$(free_port)
mkdir -p "$WORK/app/tmp" "$WORK/tls/tmp"
nginx_conf() { # $1 dir, $2 server block
	cat <<NGX
daemon off; worker_processes 1; pid $1/nginx.pid; error_log $1/error.log warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $1/tmp/b; proxy_temp_path $1/tmp/p; fastcgi_temp_path $1/tmp/f;
  uwsgi_temp_path $1/tmp/u; scgi_temp_path $1/tmp/s; keepalive_requests 1000000;
  $2
}
NGX
}
nginx_conf "$WORK/app" "server { listen 127.0.0.1:$UP; location / { return 200 \"hello\"; } }" >"$WORK/app.conf"
nginx_conf "$WORK/tls" "upstream app { server 127.0.0.1:$UP; keepalive 256; }
  server { listen 127.0.0.1:$NGX ssl http2; ssl_certificate $WORK/tls.crt; ssl_certificate_key $WORK/tls.key;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }" >"$WORK/tls.conf"
nginx -c "$WORK/app.conf" -e "$WORK/app/error.log" & PIDS+=($!)
nginx -c "$WORK/tls.conf" -e "$WORK/tls/error.log" & PIDS+=($!); NGINX_MASTER=$!
GOMAXPROCS=1 PROXY_PORT=$UP LISTEN_PORT=$HP STATUS_PORT=$HPS CERTIFICATE_PATH=$WORK/tls.crt KEY_PATH=$WORK/tls.key \
	"$BIN/https-proxy" 2>"$WORK/https-proxy.log" & PIDS+=($!); HP_PID=$!
wait_http "https://127.0.0.1:$HP/"; wait_http "https://127.0.0.1:$NGX/"
sleep 3
NGX_WORKER=$(pgrep -P "$NGINX_MASTER" | head -1)
hp_idle=$(kb $HP_PID VmRSS); ngx_idle=$(($(kb $NGX_WORKER VmRSS) + $(kb $NGINX_MASTER VmRSS)))
wrk -t1 -c64 -d"$LOAD" "https://127.0.0.1:$HP/" >"$WORK/wrk-hp" 2>&1
wrk -t1 -c64 -d"$LOAD" "https://127.0.0.1:$NGX/" >"$WORK/wrk-ngx" 2>&1
hp_peak=$(kb $HP_PID VmHWM); ngx_peak=$(($(kb $NGX_WORKER VmHWM) + $(kb $NGINX_MASTER VmRSS)))
rps() { awk '/Requests\/sec/ {printf "%.0f", $2}' "$1"; }
row https-proxy "ours" "$hp_idle" "$(mb "$hp_peak") at $(rps "$WORK/wrk-hp") req/s"
row https-proxy "nginx 1.22 (master + worker)" "$ngx_idle" "$(mb "$ngx_peak") at $(rps "$WORK/wrk-ngx") req/s"

# --- shard-ambassador vs nutcracker, over the same three redis shards ---
SHARDS=()
for i in 0 1 2; do
	p=$(free_port)
	redis-server --port "$p" --bind 127.0.0.1 --save "" --appendonly no --protected-mode no --dir "$WORK" >/dev/null & PIDS+=($!)
	SHARDS+=("127.0.0.1:$p:1")
done
SA=$(free_port); SAS=$(free_port); NC=$(free_port)
cat >"$WORK/nutcracker.yml" <<NC
pool:
  listen: 127.0.0.1:$NC
  hash: fnv1a_64
  distribution: ketama
  redis: true
  servers:
$(for s in "${SHARDS[@]}"; do echo "   - $s"; done)
NC
NUTCRACKER=$(command -v nutcracker || echo /usr/sbin/nutcracker)
"$NUTCRACKER" -c "$WORK/nutcracker.yml" -s "$(free_port)" -o "$WORK/nutcracker.log" & PIDS+=($!); NC_PID=$!
LISTEN=127.0.0.1:$SA STATUS_PORT=$SAS SHARDS=$(IFS=,; echo "${SHARDS[*]}") "$BIN/shard-ambassador" 2>"$WORK/sa.log" & PIDS+=($!); SA_PID=$!
wait_http "http://127.0.0.1:$SAS/readyz"
for _ in $(seq 50); do redis-cli -p "$NC" ping >/dev/null 2>&1 && break; sleep 0.1; done
sleep 3
sa_idle=$(kb $SA_PID VmRSS); nc_idle=$(kb $NC_PID VmRSS)
rb() { redis-benchmark -p "$1" -c 50 -n 300000 -P 16 -t set,get --csv 2>/dev/null | awk -F'"' '$2 == "SET" || $2 == "GET" {printf "%s %.0f/s ", $2, $4}'; }
sa_rps=$(rb "$SA"); nc_rps=$(rb "$NC")
row shard-ambassador "ours" "$sa_idle" "$(mb "$(kb $SA_PID VmHWM)") (${sa_rps% })"
row shard-ambassador "nutcracker 0.5.0" "$nc_idle" "$(mb "$(kb $NC_PID VmHWM)") (${nc_rps% })"

# --- topz vs ps ---
TZ=$(free_port)
TOPZ_ADDR=127.0.0.1:$TZ "$BIN/topz" >/dev/null 2>&1 & PIDS+=($!); TZ_PID=$!
wait_http "http://127.0.0.1:$TZ/healthz"
sleep 3
tz_idle=$(kb $TZ_PID VmRSS)
for _ in $(seq 200); do curl -sf -o /dev/null "http://127.0.0.1:$TZ/topz"; done
ps_peak=$( { /usr/bin/time -f %M ps -eo pid,pcpu,rss,args >/dev/null; } 2>&1 )
row topz "ours ($(ls /proc | grep -c '^[0-9]') processes on the host)" "$tz_idle" "$(mb "$(kb $TZ_PID VmHWM)") after 200 /topz"
ROWS+=("| topz | \`ps -eo pid,pcpu,rss,args\` (one run) | — | $(mb "$ps_peak") |")

# --- config-sync (volume mode) and git-sync (a file:// repository), idle ---
mkdir -p "$WORK/src" "$WORK/target"; echo "greeting=hello" >"$WORK/src/app.conf"
CS=$(free_port)
SOURCE_DIR=$WORK/src TARGET_DIR=$WORK/target STATUS_PORT=$CS "$BIN/config-sync" 2>/dev/null & PIDS+=($!); CS_PID=$!
git init -q --bare -b main "$WORK/site.git"; git init -q -b main "$WORK/work"
git -C "$WORK/work" -c user.name=b -c user.email=b@example commit -q --allow-empty -m one
git -C "$WORK/work" push -q "$WORK/site.git" main
GS=$(free_port)
GITSYNC_REPO=file://$WORK/site.git GITSYNC_ROOT=$WORK/git STATUS_PORT=$GS "$BIN/git-sync" 2>/dev/null & PIDS+=($!); GS_PID=$!
wait_http "http://127.0.0.1:$CS/readyz"; wait_http "http://127.0.0.1:$GS/readyz"
sleep 3
row config-sync "ours (volume mode)" "$(kb $CS_PID VmRSS)" "—"
row git-sync "ours (the sidecar process; git runs only during a sync)" "$(kb $GS_PID VmRSS)" "—"

echo "| component | process | idle RSS (MB) | peak RSS under load (MB) |"
echo "|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
