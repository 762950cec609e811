#!/usr/bin/env bash
# Assembles a stock Debian kernel and a busybox initramfs for the slow "real Linux guest" tier:
#   guest-images/out/linux/vmlinuz            the newest /boot/vmlinuz-*, else the kernel of
#                                             Debian's linux-image-amd64 (apt-get download)
#   guest-images/out/linux/vmlinux            the same kernel decompressed: an ELF with a PVH
#                                             note. On hosts where guest ring 0 is emulated (PVM)
#                                             the bzImage's own xz decompressor alone takes many
#                                             minutes; this file starts at the kernel proper.
#   guest-images/out/linux/initramfs.cpio.gz  busybox (Debian's busybox-static) + a small /init
# The /init prints `linux: init ok` and `linux: cpus=<N>`, and powers off when the kernel
# command line has `linux.poweroff`; otherwise it starts a shell on the console.
# Needs apt-get/dpkg-deb (Debian) and package lists (`apt-get update`) when downloading.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out="$here/out/linux"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"   # apt-get download runs as _apt and must be able to write here
mkdir -p "$out"

fetch_deb() {   # fetch_deb <package> -> extracts into $work/<package>
  local pkg=$1
  (cd "$work" && apt-get download "$pkg" >/dev/null 2>"$work/apt.log") || {
    cat "$work/apt.log" >&2
    echo "debian-linux.sh: 'apt-get download $pkg' failed; run 'apt-get update' first" >&2
    exit 1
  }
  dpkg-deb -x "$work/${pkg}"_*.deb "$work/$pkg"
}

# --- kernel -----------------------------------------------------------------------------
host_kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1 || true)
if [ -n "$host_kernel" ] && [ -r "$host_kernel" ]; then
  cp "$host_kernel" "$out/vmlinuz"
  echo "kernel: $host_kernel"
else
  # linux-image-amd64 is a metapackage: download the versioned image it depends on.
  image=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
  if [ -z "$image" ]; then
    echo "debian-linux.sh: cannot resolve linux-image-amd64; run 'apt-get update' first" >&2
    exit 1
  fi
  fetch_deb "$image"
  vmlinuz=$(ls "$work/$image"/boot/vmlinuz-* | head -n 1)
  cp "$vmlinuz" "$out/vmlinuz"
  echo "kernel: $image ($(basename "$vmlinuz"))"
fi

# --- uncompressed ELF -------------------------------------------------------------------
# The bzImage payload is a compressed vmlinux (Debian: xz). Find the first stream that
# decompresses to an ELF, as the kernel's scripts/extract-vmlinux does.
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
if extract_vmlinux "$out/vmlinuz" "$out/vmlinux"; then
  echo "vmlinux: $out/vmlinux ($(stat -c %s "$out/vmlinux") bytes, uncompressed ELF)"
else
  rm -f "$out/vmlinux"
  echo "debian-linux.sh: could not decompress $out/vmlinuz to an ELF; only the bzImage is available" >&2
fi

# --- initramfs --------------------------------------------------------------------------
fetch_deb busybox-static
bb="$work/busybox-static/bin/busybox"
root="$work/root"
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,etc}
cp "$bb" "$root/bin/busybox"
for applet in $("$bb" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
cat > "$root/init" <<'EOF'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "linux: init ok"
echo "linux: cpus=$(grep -c ^processor /proc/cpuinfo)"
if grep -qw linux.poweroff /proc/cmdline; then
  # tsvmm's power-off port (0xf4, isa-debug-exit style; value 0 = exit status 0): tsvmm's ACPI
  # tables have no sleep/S5 registers, so the kernel's own power-off cannot stop it. Elsewhere
  # nothing listens on 0xf4 and poweroff does the work.
  printf '\000' | dd of=/dev/port bs=1 seek=244 count=1 conv=notrunc 2>/dev/null
  poweroff -f
fi
exec /bin/sh
EOF
chmod 755 "$root/init"
# The kernel needs a console device node before devtmpfs is mounted.
mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true

cpio_cmd=("$bb" cpio)
command -v cpio >/dev/null && cpio_cmd=(cpio)
(cd "$root" && find . | sort | "${cpio_cmd[@]}" -o -H newc 2>/dev/null) | gzip -9 > "$out/initramfs.cpio.gz"
echo "initramfs: $out/initramfs.cpio.gz ($(stat -c %s "$out/initramfs.cpio.gz") bytes)"
