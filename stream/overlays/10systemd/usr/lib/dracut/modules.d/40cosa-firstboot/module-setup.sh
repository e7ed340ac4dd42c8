#!/bin/bash
# dracut module of the systemd variant: what a CoreOS-style first boot needs
# beside Ignition's and ostree's own modules (fedora-coreos-config's
# ignition-ostree module plays this role there).
#  - the stateroot's /var is mounted at /sysroot/var while Ignition writes
#    into it (home directories), its tmpfiles.d directories created;
#  - the GRUB stamp /ignition.firstboot on the boot partition is removed only
#    after every Ignition stage succeeded (a failed stage isolates
#    emergency.target: the boot fails, the stamp stays, the next boot retries).

check() {
    # Only when asked for (initramfs-args: --add cosa-firstboot).
    return 255
}

depends() {
    echo ignition ostree systemd
}

install() {
    inst_multiple mount umount mountpoint rm mkdir cut systemd-tmpfiles
    inst_simple "$moddir/cosa-mount-var.service" \
        "$systemdsystemunitdir/cosa-mount-var.service"
    inst_simple "$moddir/cosa-mount-var" /usr/libexec/cosa-mount-var
    inst_simple "$moddir/cosa-firstboot-complete.service" \
        "$systemdsystemunitdir/cosa-firstboot-complete.service"
    inst_simple "$moddir/cosa-firstboot-complete" /usr/libexec/cosa-firstboot-complete
    local wants="$systemdsystemunitdir/ignition-complete.target.requires"
    mkdir -p "$initdir$wants"
    ln_r "$systemdsystemunitdir/cosa-mount-var.service" "$wants/cosa-mount-var.service"
    ln_r "$systemdsystemunitdir/cosa-firstboot-complete.service" "$wants/cosa-firstboot-complete.service"
}
