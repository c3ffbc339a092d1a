#!/usr/bin/env bash
# config-sync latency benchmark: ConfigMap update acknowledged → new file visible → SIGHUP delivered, against
# a real kube-apiserver + etcd, beside the floor (a bare client-go watch of the same ConfigMap).
# Needs `make tools` (kube-apiserver and etcd in ./bin). Extra arguments go to the benchmark, e.g. -updates 500.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The binary as `make build` builds it, from the current source.
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w -X main.version=bench' -o "$tmp/config-sync" ./sidecars/config-sync
# The benchmark is also the app that receives the SIGHUPs: config-sync finds it by this command name.
go build -o "$tmp/csbench" ./bench/config-sync
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
	# Its own PID namespace, as a pod with shareProcessNamespace: /proc lists only the benchmark's processes.
	unshare --pid --fork --mount-proc "$tmp/csbench" -binary "$tmp/config-sync" "$@"
else
	echo "note: not root: running in the host's PID namespace (config-sync scans every process of the host)" >&2
	"$tmp/csbench" -binary "$tmp/config-sync" "$@"
fi
