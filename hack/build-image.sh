#!/usr/bin/env bash
# Builds one FROM-scratch image with podman from a context directory that holds its static binary, and
# prints one line: what was built, its size and its tags (podman's own output only on failure).
#
# usage: hack/build-image.sh NAME DOCKERFILE CONTEXT VERSION TAG...
set -euo pipefail
name=$1 dockerfile=$2 context=$3 version=$4
shift 4
tags=()
for t in "$@"; do tags+=(-t "$t"); done
# A context may carry more build arguments (KEY=VALUE lines in build-args), e.g. the versions of what
# sidecars/<name>/image-context.sh copied into it.
if [ -f "$context/build-args" ]; then
  while IFS= read -r arg; do [ -n "$arg" ] && tags+=(--build-arg "$arg"); done < "$context/build-args"
fi
if ! out=$(podman build -q --pull=never --build-arg VERSION="$version" "${tags[@]}" -f "$dockerfile" "$context" 2>&1); then
  echo "$out" >&2
  echo "image $name: podman build failed" >&2
  exit 1
fi
size=$(podman image inspect --format '{{.Size}}' "$1")
printf '  image %-18s %6.1f MB  %s\n' "$name" "$(echo "$size / 1000000" | bc -l)" "$*"
