#!/usr/bin/env bash
# A Debian 13 (trixie) root for a native TFX 1.21 run (`make tfx-debian13`) on an older host.
#
# Builds the root once, idempotently, with debootstrap (--variant=minbase) from Debian's
# package registry: python3 (3.13), python3-venv, python3-dev, gcc, g++, make and
# ca-certificates. Then mounts /proc, /dev (with /dev/pts and a fresh /dev/shm) and the
# repository (a bind mount at /repo) inside it, runs COMMAND there with chroot, and
# unmounts everything on exit, whatever the command's status.
#
# Usage: tools/debian13_root.sh [COMMAND [ARG...]]   (as root; no COMMAND: only build)
# Environment: DEBIAN13_ROOT (default: <repo>/.debian13), DEBIAN13_MIRROR
#   (default: http://deb.debian.org/debian).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="${DEBIAN13_ROOT:-$repo/.debian13}"
mirror="${DEBIAN13_MIRROR:-http://deb.debian.org/debian}"
packages="python3,python3-venv,python3-dev,gcc,g++,make,ca-certificates"

if [ "$(id -u)" != 0 ]; then
  echo "tools/debian13_root.sh: error: debootstrap, mount and chroot need root" >&2
  exit 2
fi

# Every mount this script makes, innermost last; unmounted in reverse order.
mounts=()
cleanup() {
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    umount "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}" || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if mount | grep -q " on $root/"; then
  echo "tools/debian13_root.sh: error: something is still mounted under $root" \
    "(another run, or one that was killed): see \`mount | grep $root\`" >&2
  exit 2
fi

# $root/.built marks a finished build; a half-built root (an interrupted debootstrap) is
# removed and built again.
if [ ! -f "$root/.built" ]; then
  if ! command -v debootstrap >/dev/null; then
    echo "tools/debian13_root.sh: error: debootstrap is not installed" \
      "(apt-get update && apt-get install -y debootstrap)" >&2
    exit 2
  fi
  rm -rf "$root"
  echo "==> building a Debian 13 root in $root (debootstrap, a few minutes)"
  debootstrap --variant=minbase --include="$packages" trixie "$root" "$mirror"
  touch "$root/.built"
fi

if [ $# -eq 0 ]; then
  exit 0
fi

mount_in() {  # mount_in TARGET MOUNT-ARGS...: mount under the root and remember it.
  local target="$root$1"
  shift
  mkdir -p "$target"
  mount "$@" "$target"
  mounts+=("$target")
}
mount_in /proc -t proc proc
mount_in /dev --bind /dev
mount_in /dev/pts --bind /dev/pts
mount_in /dev/shm -t tmpfs -o mode=1777 shm
mount_in /repo --bind "$repo"
# pip inside the root resolves PyPI's host with the host's resolver, and trusts the host's
# local certificate authorities (those of a TLS-inspecting proxy, say) beside Debian's.
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
local_cas=/usr/local/share/ca-certificates
if [ -d "$local_cas" ] && ! diff -rq "$local_cas" "$root$local_cas" >/dev/null 2>&1; then
  rm -rf "${root:?}$local_cas"
  cp -a "$local_cas" "$root$local_cas"
  chroot "$root" update-ca-certificates --fresh >/dev/null 2>&1 || {
    echo "tools/debian13_root.sh: error: update-ca-certificates failed in $root" >&2; exit 2; }
fi

status=0
chroot "$root" /usr/bin/env -i HOME=/root TERM="${TERM:-dumb}" \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
  bash -c 'cd /repo && exec "$@"' bash "$@" || status=$?
exit "$status"
