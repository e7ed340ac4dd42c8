#!/bin/bash
# dracut module of the systemd variant: boot live from the ISO or PXE media that
# `cosa buildextend-live` makes (fedora-coreos-config's 35coreos-live plays this
# role there). The live root image (root.squashfs or root.erofs: a whole sysroot
# with one deployment and the metal image) is mounted read-only under a RAM
# overlay at /sysroot; ostree-prepare-root then boots its deployment as on a disk.
#  - cosa-live-generator: on a live boot (coreos.liveiso=LABEL, or the rootfs
#    appended to the initramfs as PXE does), queues sysroot.mount (the overlay)
#    after cosa-live-media.service and stamps /run/cosa-live/booted;
#  - cosa-live-media: mounts the ISO and the root image, and hands the media's
#    Day-0 live Ignition config (/config.ign, from the ISO's Ignition area or an
#    appended initrd: cosa or coreos-installer iso/pxe customize) to Ignition as
#    /usr/lib/ignition/user.ign before Ignition fetches;
#  - is-live-image: Ignition's hook; a live boot has no boot disk to set up.

check() {
    # Only when asked for (initramfs-args: --add cosa-live).
    return 255
}

depends() {
    echo ignition ostree systemd
}

installkernel() {
    instmods -c loop overlay isofs squashfs erofs
}

install() {
    inst_multiple mount umount mkdir dd tr head cat install systemd-escape modprobe
    inst_simple "$moddir/cosa-live-generator" \
        "$systemdutildir/system-generators/cosa-live-generator"
    inst_script "$moddir/is-live-image" /usr/bin/is-live-image
    inst_script "$moddir/cosa-live-media" /usr/libexec/cosa-live-media
    inst_script "$moddir/cosa-live-ostree-cmdline" /usr/libexec/cosa-live-ostree-cmdline
    inst_simple "$moddir/cosa-live-media.service" \
        "$systemdsystemunitdir/cosa-live-media.service"
}
