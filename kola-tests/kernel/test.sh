#!/bin/sh
## kola:
##   description: The kernel package that booted is the one the build holds, with its module subset.
##   tags: basic kernel
##   timeoutMin: 3
set -eu
fail() { echo "FAIL: $*" >&2; exit 1; }

moddir=/usr/lib/modules/$(uname -r)
[ -f "$moddir/vmlinuz" ] || fail "$moddir/vmlinuz missing: booted kernel is not the tree's"
[ -f "$moddir/initramfs.img" ] || fail "$moddir/initramfs.img missing: the compose made no initramfs"
release=$(cat "$moddir/demo-kernel-release")
echo "kernel package $release ($(uname -r))"
# A test that overrides the kernel passes the wanted version-release in its data.
if [ -n "${KOLA_EXT_DATA:-}" ] && [ -f "$KOLA_EXT_DATA/expected-kernel" ]; then
    want=$(cat "$KOLA_EXT_DATA/expected-kernel")
    [ "$release" = "$want" ] || fail "booted kernel package $release, want $want"
fi
for m in virtio_blk ext4 virtio_console qemu_fw_cfg; do
    grep -q "^$m " /proc/modules || fail "module $m is not loaded"
done
modprobe -D xfs >/dev/null || fail "modprobe cannot resolve xfs from modules.dep"
