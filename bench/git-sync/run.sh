#!/bin/bash
# git-sync benchmark: initial sync of a generated repository (5,000 files, 2,000 commits) against plain
# `git clone` in the same run (the peer ratio); one sync after a push of 1, 50 and 5,000 changed files
# against `git fetch` + `git checkout` (see syncbench's pushToFlip); and push → link flip with a 1 s period. Everything runs on 127.0.0.1. Needs git (`make deps`); uses _output/bin/git-sync from `make build`
# when it exists. Results go to docs/performance.md (by hand).
# K8S_GIT_SYNC=<path to a kubernetes/git-sync v4 binary> adds its columns, measured the same way; without
# it they are left out. Build it from a checkout of github.com/kubernetes/git-sync with `go build .`; its
# source is never part of this repository.
#   [K8S_GIT_SYNC=…] [RUNS=3] bench/git-sync/run.sh [pushes]     RUNS: initial syncs of each tool
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH
pushes=${1:-30}
runs=${RUNS:-3}
work=$(mktemp -d /tmp/git-sync-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
command -v git >/dev/null || { echo "git not found: run \`make deps\`" >&2; exit 1; }
bin=_output/bin/git-sync
if [ ! -x "$bin" ]; then
  bin="$work/git-sync"
  CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$bin" ./sidecars/git-sync
fi
go build -o "$work/genrepo" ./bench/git-sync/genrepo
go build -o "$work/syncbench" ./bench/git-sync/syncbench
"$work/genrepo" -files 5000 -commits 2000 -o "$work/big.git"
git -C "$work/big.git" repack -a -d -q   # a server's packed repository, as after its own gc
echo "machine: $(nproc) cores, $(git --version), load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$work/syncbench" -gitsync "$bin" -repo "$work/big.git" -n "$pushes" -period 1s -runs "$runs" -depth 1
echo
"$work/syncbench" -gitsync "$bin" -repo "$work/big.git" -n 0 -runs "$runs" -depth 0 | sed -n '/initial sync/,$p'
