#!/usr/bin/env bash
# Checks, before `make demo` changes anything, that this host can run the local cluster's node; if not, it
# says in one line what is missing and points at `make demo-quick` (the control plane alone, no node).
set -euo pipefail
quick="run \`make demo-quick\` instead: the webhook and the API server alone, no node"
fail() { echo "make demo: $1; $quick" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "the local node (kubelet, containerd, a network bridge) needs root"
[ "$(uname -s)" = Linux ] || fail "the local node needs Linux"
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  for c in cpu memory pids; do
    grep -qw "$c" /sys/fs/cgroup/cgroup.controllers || fail "cgroup v2 without the $c controller"
  done
else
  for c in cpu memory pids; do
    [ -d "/sys/fs/cgroup/$c" ] || fail "no cgroup v1 $c hierarchy under /sys/fs/cgroup"
  done
fi
if ! command -v podman >/dev/null && ! command -v apt-get >/dev/null; then
  fail "no podman to build the images, and no apt-get to install it"
fi
if ip link show cni0 >/dev/null 2>&1 && [ ! -f /run/outrigger-local-node.json ]; then
  fail "a network bridge cni0 exists that no Outrigger cluster made (another cluster's?)"
fi
