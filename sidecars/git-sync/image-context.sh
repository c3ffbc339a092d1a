#!/bin/bash
# Adds git and what it runs to the git-sync image's build context (called by `make image-git-sync` with the
# context directory): git, its HTTP(S) helper, ssh, and /bin/sh + sed + basename (git runs GIT_SSH_COMMAND
# through /bin/sh, and `git submodule` is a shell script), each with the shared libraries ldd lists, the CA
# bundle for HTTPS, and /etc/passwd naming the image's user (ssh refuses to run for a UID it cannot name).
# Everything comes from this Debian host (offline: no registry pulls).
set -euo pipefail
ctx=${1:?usage: image-context.sh <context dir>}
root="$ctx/rootfs"
rm -rf "$root"
mkdir -p "$root"/{bin,usr/bin,usr/lib/git-core,etc/ssl/certs,tmp}

copy() { # copy <source> <destination inside the image>, following symlinks
  mkdir -p "$root$(dirname "$2")"
  cp -L "$1" "$root$2"
}
binaries=(/usr/bin/git /usr/lib/git-core/git-remote-http /usr/bin/ssh /bin/dash /usr/bin/sed /usr/bin/basename)
copy /usr/bin/git /usr/bin/git
copy /usr/lib/git-core/git-remote-http /usr/lib/git-core/git-remote-http
ln -s git-remote-http "$root/usr/lib/git-core/git-remote-https"
# Git runs some of its own commands by their dashed names from its exec path: they are git itself.
for cmd in git git-upload-pack git-receive-pack git-upload-archive; do
  ln -s /usr/bin/git "$root/usr/lib/git-core/$cmd"
done
for f in git-submodule git-sh-setup git-sh-i18n; do
  copy "/usr/lib/git-core/$f" "/usr/lib/git-core/$f"
done
copy /usr/bin/ssh /usr/bin/ssh
copy /bin/dash /bin/sh
copy /usr/bin/sed /usr/bin/sed
copy /usr/bin/basename /usr/bin/basename
for lib in $(ldd "${binaries[@]}" | awk '/=>/ {print $3} /^[[:space:]]*\/lib/ {print $1}' | sort -u); do
  copy "$lib" "$lib"
done
copy /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
outrigger-git-sync:x:64104:64104:git-sync (its catalog UID):/tmp:/sbin/nologin
nonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin
git-sync:x:65533:65533:git-sync (kubernetes/git-sync's UID):/tmp:/sbin/nologin
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
outrigger-git-sync:x:64104:
nonroot:x:65532:
git-sync:x:65533:
GROUP
chmod 1777 "$root/tmp"

# The versions of what the image copies from the host, as build arguments (hack/build-image.sh reads
# build-args) that become labels: the image says which git (and ssh) it runs, and the image test checks it.
{
  echo "GIT_VERSION=$(/usr/bin/git --version | awk '{print $3}')"
  echo "SSH_VERSION=$(/usr/bin/ssh -V 2>&1 | awk '{print $1}' | tr -d ,)"
} > "$ctx/build-args"
