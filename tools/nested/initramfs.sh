#!/usr/bin/env bash
# Builds the nested-KVM test host's initramfs: guest-images/out/nested/initramfs.cpio.gz, for
# Debian's kernel (guest-images/linux/debian-kernel.sh): busybox-static, KVM and 9p modules, /init.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
debian="$repo/guest-images/out/debian"
out="$repo/guest-images/out/nested"
bash "$repo/guest-images/linux/debian-kernel.sh"

target="$out/initramfs.cpio.gz"
stamp="$(cat "$debian/version") $(sha1sum "$here/init" "$here/initramfs.sh" | awk '{ print $1 }' | tr '\n' ' ')"
if [ -f "$target" ] && [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi

# The initramfs has no C library: busybox must be the static one (package busybox-static).
busybox=/bin/busybox
if [ ! -x "$busybox" ] || readelf -l "$busybox" 2>/dev/null | grep -q 'program interpreter'; then
  echo "initramfs.sh: needs a static /bin/busybox: apt-get install busybox-static" >&2
  exit 1
fi

root=$(mktemp -d /var/tmp/tsvmm-nested-root.XXXXXX)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,proc,sys,dev,modules}
cp "$busybox" "$root/bin/busybox"
cp "$here/init" "$root/init"
chmod 755 "$root/init"
: > "$root/modules.list"
for ko in $(node "$repo/guest-images/linux/modules.mjs" "$debian/modules" \
              kvm_amd 9pnet_virtio 9p virtio_pci tun); do
  cp "$ko" "$root/modules/"
  echo "/modules/$(basename "$ko")" >> "$root/modules.list"
done

mkdir -p "$out"
(cd "$root" && find . | sort | cpio -o -H newc --quiet) | gzip -6 > "$target.tmp"
mv "$target.tmp" "$target"
echo "$stamp" > "$out/stamp"
echo "nested host initramfs: $target"
