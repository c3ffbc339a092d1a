#!/usr/bin/env bash
# Builds the cluster's binaries from source (hack/tools/go.mod: k8s.io/kubernetes and etcd through the Go
# module proxy) into BIN_DIR, each one that is missing or older than hack/tools/go.{mod,sum}. The first build
# downloads and compiles Kubernetes: minutes on two cores. It says what it builds, which of the N is done and
# how long each took; the go command's own output goes to _output/tools-build.log (shown if a build fails).
#
# usage: hack/build-tools.sh BIN_DIR K8S_VERSION NAME...
set -euo pipefail
bin=$1 k8s=$2
shift 2
cd "$(dirname "$0")/tools"
log=../../_output/tools-build.log
mkdir -p "$bin" ../../_output

todo=()
for name in "$@"; do
  if [ ! -x "$bin/$name" ] || [ go.mod -nt "$bin/$name" ] || [ go.sum -nt "$bin/$name" ]; then
    todo+=("$name")
  fi
done
[ ${#todo[@]} -eq 0 ] && exit 0

minor=${k8s#v1.}; minor=${minor%%.*}
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
if [ ! -d "$(go env GOMODCACHE)/k8s.io/kubernetes@$k8s" ]; then
  echo "tools: first build of Kubernetes $k8s and etcd from source (${#todo[@]} binaries: ${todo[*]}); about 5-8 minutes on 2 cores, later builds take seconds"
fi
: >"$log"
i=0
for name in "${todo[@]}"; do
  i=$((i + 1))
  case $name in
    etcd) pkg=go.etcd.io/etcd/server/v3 flags="-s -w" ;;
    *) pkg=k8s.io/kubernetes/cmd/$name flags=$ldflags ;;
  esac
  start=$SECONDS
  printf 'tools: [%d/%d] %s ... ' "$i" "${#todo[@]}" "$name"
  if ! CGO_ENABLED=0 go build -trimpath -ldflags "$flags" -o "$bin/$name" "$pkg" >>"$log" 2>&1; then
    echo "failed"
    tail -30 "$log" >&2
    exit 1
  fi
  echo "done in $((SECONDS - start))s"
done
