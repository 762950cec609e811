#!/usr/bin/env bash
# Fetches Debian's stock kernel (the package linux-image-amd64 depends on) into
# guest-images/out/debian/, unpacked with dpkg-deb and never installed:
#   vmlinuz      the bzImage            modules/     its lib/modules/<version> tree
#   version      the package version    (kept until linux-image-amd64 points elsewhere)
# Both the real-Linux guests and the nested-KVM test host boot this kernel.
# Needs apt-get and dpkg-deb, and package lists (it runs `apt-get update` once if they are missing).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out="$here/../out/debian"

resolve_image() {
  apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}
image=$(resolve_image)
if [ -z "$image" ]; then
  apt-get update -qq >/dev/null 2>&1 || true
  image=$(resolve_image)
fi
if [ -z "$image" ]; then
  echo "debian-kernel.sh: cannot resolve linux-image-amd64 (is this Debian with apt package lists?)" >&2
  exit 1
fi

if [ -f "$out/version" ] && [ "$(cat "$out/version")" = "$image" ] && [ -f "$out/vmlinuz" ]; then
  exit 0
fi

work=$(mktemp -d /var/tmp/tsvmm-kernel.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"   # apt-get download runs as _apt and must be able to write here
(cd "$work" && apt-get download "$image" >"$work/apt.log" 2>&1) || {
  cat "$work/apt.log" >&2
  echo "debian-kernel.sh: 'apt-get download $image' failed" >&2
  exit 1
}
dpkg-deb -x "$work/$image"_*.deb "$work/pkg"

rm -rf "$out"
mkdir -p "$out"
cp "$work"/pkg/boot/vmlinuz-* "$out/vmlinuz"
mv "$work"/pkg/lib/modules/* "$out/modules"
echo "$image" > "$out/version"
echo "kernel: $image -> $out"
