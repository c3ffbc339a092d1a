#!/usr/bin/env bash
# Builds the context of a FROM-scratch image for a server from this Debian host (offline: no registry
# pulls): the binary and the shared libraries ldd lists, an /etc/passwd naming the image's user, and /tmp.
# The examples' redis and memcached images are made this way (`make image-redis image-memcached`).
#
# usage: examples/images/copy-binary.sh CONTEXT_DIR BINARY
set -euo pipefail
ctx=${1:?usage: copy-binary.sh <context dir> <binary>}
bin=${2:?usage: copy-binary.sh <context dir> <binary>}
root="$ctx/rootfs"
rm -rf "$root"
mkdir -p "$root"/{usr/bin,etc,tmp}
copy() { mkdir -p "$root$(dirname "$2")"; cp -L "$1" "$root$2"; }
copy "$bin" "/usr/bin/$(basename "$bin")"
for lib in $(ldd "$bin" | awk '/=>/ {print $3} /^[[:space:]]*\/lib/ {print $1}' | sort -u); do
  copy "$lib" "$lib"
done
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$root/etc/group"
chmod 1777 "$root/tmp"
