#!/usr/bin/env bash
# Builds the real-Linux guest images from Debian packages only (no downloaded binaries), into
# guest-images/out/linux/:
#   vmlinuz            Debian's stock bzImage (debian-kernel.sh fetches linux-image-amd64's kernel)
#   vmlinux            the same kernel decompressed: an ELF with a PVH note (Xen ELF note 18)
#   initramfs.cpio.gz  busybox-static, the virtio-mmio/-blk/-console/-rng/-vsock, ext4, ACPI button and evdev
#                      modules, mke2fs/e2fsck from the host's e2fsprogs with their libraries,
#                      rng-probe, vsock-probe and mem-probe (*.c, built static), initramfs-init as /init
#   rootfs.ext4        an ext4 root disk (busybox, rootfs-init as /sbin/init), made with
#                      `mke2fs -d`, so no root privileges and no loop mounts
# Cached: nothing is rebuilt while the kernel version and every input (this script, the init
# scripts, busybox, e2fsprogs) are unchanged (stamp file), like tools/nested/initramfs.sh.
# Needs: busybox-static, cpio, e2fsprogs, xz-utils, a C compiler with static glibc (apt-get install
# busybox-static cpio e2fsprogs build-essential).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
images=$(cd "$here/.." && pwd)
debian="$images/out/debian"
out="$images/out/linux"
bash "$here/debian-kernel.sh"

# The initramfs has no C library of its own for busybox: it must be the static build.
busybox=/bin/busybox
if [ ! -x "$busybox" ] || readelf -l "$busybox" 2>/dev/null | grep -q 'program interpreter'; then
  echo "build.sh: needs a static /bin/busybox: apt-get install busybox-static" >&2
  exit 1
fi
for tool in cpio mke2fs e2fsck xz; do
  command -v "$tool" >/dev/null || { echo "build.sh: needs $tool (apt-get install cpio e2fsprogs xz-utils)" >&2; exit 1; }
done
mke2fs=$(command -v mke2fs)
e2fsck=$(command -v e2fsck)

MODULES=(virtio_mmio virtio_blk crc32c_generic ext4 virtio_console virtio_rng vmw_vsock_virtio_transport virtio_net button evdev)
inputs=("$0" "$here/initramfs-init" "$here/rootfs-init" "$here/modules.mjs" "$here/rng-probe.c" "$here/vsock-probe.c" "$here/mem-probe.c" "$busybox" "$mke2fs" "$e2fsck")
stamp="$(cat "$debian/version") ${MODULES[*]} $(sha1sum "${inputs[@]}" | awk '{ print $1 }' | tr '\n' ' ')"
if [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ] &&
   [ -f "$out/vmlinuz" ] && [ -f "$out/vmlinux" ] && [ -f "$out/initramfs.cpio.gz" ] && [ -f "$out/rootfs.ext4" ]; then
  exit 0
fi

work=$(mktemp -d /var/tmp/tsvmm-linux.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
rm -f "$out/stamp"

# --- kernel -----------------------------------------------------------------------------
cp "$debian/vmlinuz" "$out/vmlinuz"

# The bzImage payload is a compressed vmlinux (Debian: xz). Find the first stream that
# decompresses to an ELF, as the kernel's scripts/extract-vmlinux does. tsvmm boots both files;
# the ELF starts at the kernel proper (PVH entry), skipping the decompressor.
extract_vmlinux() {   # extract_vmlinux <bzImage> <out>
  local img=$1 dst=$2 magic tool off
  for pair in 'fd377a585a00:xz -dc --single-stream' '28b52ffd:zstd -dcq' '1f8b08:gzip -dc' \
              '5d000000:xz -dc --format=lzma' '02214c18:lz4 -dc' '894c5a:lzop -dc'; do
    magic=${pair%%:*} tool=${pair#*:}
    command -v "${tool%% *}" >/dev/null || continue
    for off in $(LC_ALL=C grep -obUaP "$(sed 's/../\\x&/g' <<<"$magic")" "$img" | cut -d: -f1); do
      tail -c +$((off + 1)) "$img" | $tool > "$dst.tmp" 2>/dev/null || true
      if [ "$(head -c 4 "$dst.tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
        mv "$dst.tmp" "$dst"
        return 0
      fi
    done
  done
  rm -f "$dst.tmp"
  return 1
}
if ! extract_vmlinux "$out/vmlinuz" "$out/vmlinux"; then
  echo "build.sh: could not decompress $out/vmlinuz to an ELF" >&2
  exit 1
fi

# --- shared pieces ----------------------------------------------------------------------
install_busybox() {   # install_busybox <root>: /bin/busybox and a link per applet
  local root=$1 applet
  mkdir -p "$root/bin" "$root/sbin"
  cp "$busybox" "$root/bin/busybox"
  for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
  done
}

# Copies a dynamically linked program and the libraries ldd names, at the paths ldd gives, so
# the program runs in the guest without the host's root file system.
install_dynamic() {   # install_dynamic <root> <program> <dest>
  local root=$1 prog=$2 dest=$3 lib
  mkdir -p "$root/$(dirname "$dest")"
  cp -L "$prog" "$root/$dest"
  for lib in $(ldd "$prog" | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }'); do
    mkdir -p "$root/$(dirname "$lib")"
    cp -L "$lib" "$root/$lib"
  done
}

# --- initramfs --------------------------------------------------------------------------
root="$work/initramfs"
install_busybox "$root"
mkdir -p "$root"/{proc,sys,dev,tmp,mnt,etc,modules}
cp "$here/initramfs-init" "$root/init"
chmod 755 "$root/init"
: > "$root/modules.list"
for ko in $(node "$here/modules.mjs" "$debian/modules" "${MODULES[@]}"); do
  cp "$ko" "$root/modules/"
  echo "/modules/$(basename "$ko")" >> "$root/modules.list"
done
# e2fsprogs, so tests can make and check file systems on virtio disks inside the guest.
install_dynamic "$root" "$mke2fs" /sbin/mke2fs
install_dynamic "$root" "$e2fsck" /sbin/e2fsck
for name in mkfs.ext4 mkfs.ext2; do ln -sf mke2fs "$root/sbin/$name"; done
ln -sf e2fsck "$root/sbin/fsck.ext4"
cp /etc/mke2fs.conf "$root/etc/mke2fs.conf"
# rng-probe (static, like busybox): the tests' view of the kernel RNG after a restore (VMGenID).
cc -O2 -Wall -Wextra -static -o "$root/bin/rng-probe" "$here/rng-probe.c"
# vsock-probe: the guest end of the vsock tests (echo server, client, reconnecting agent).
cc -O2 -Wall -Wextra -static -o "$root/bin/vsock-probe" "$here/vsock-probe.c"
# mem-probe: the guest end of the live-snapshot tests (memory and disk-read writes, checked after restore).
cc -O2 -Wall -Wextra -static -o "$root/bin/mem-probe" "$here/mem-probe.c"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -6 > "$work/initramfs.cpio.gz"

# --- root disk --------------------------------------------------------------------------
rootfs="$work/rootfs"
install_busybox "$rootfs"
mkdir -p "$rootfs"/{proc,sys,dev,tmp,mnt,root,etc}
cp "$here/rootfs-init" "$rootfs/sbin/init"
chmod 755 "$rootfs/sbin/init"
echo tsvmm-rootfs > "$rootfs/etc/hostname"
truncate -s 64M "$work/rootfs.ext4"
mke2fs -q -F -t ext4 -L tsvmm-root -E root_owner=0:0 -d "$rootfs" "$work/rootfs.ext4"
e2fsck -fn "$work/rootfs.ext4" >/dev/null 2>&1

mv "$work/initramfs.cpio.gz" "$out/initramfs.cpio.gz"
mv "$work/rootfs.ext4" "$out/rootfs.ext4"
echo "$stamp" > "$out/stamp"
echo "linux guest images: $out (kernel $(cat "$debian/version"); vmlinuz, vmlinux, initramfs.cpio.gz, rootfs.ext4)"
