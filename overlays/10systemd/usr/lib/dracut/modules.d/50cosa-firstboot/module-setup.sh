#!/bin/bash
# dracut module of the systemd variant: what a CoreOS-style first boot needs
# beside Ignition's and ostree's own modules (fedora-coreos-config's
# ignition-ostree module plays this role there).
#  - the stateroot's /var is mounted at /sysroot/var while Ignition writes
#    into it (home directories), its tmpfiles.d directories created;
#  - an installer's config at /boot/ignition/config.ign (coreos-installer's
#    place) becomes Ignition's /usr/lib/ignition/user.ign;
#  - the GRUB stamp /ignition.firstboot on the boot partition is removed only
#    after every Ignition stage succeeded (a failed stage isolates
#    emergency.target: the boot fails, the stamp stays, the next boot retries);
#  - the network comes up only when Ignition or rd.neednet=1 needs it
#    (cosa-ignition-network), not whenever a link appears.

check() {
    # Only when asked for (initramfs-args: --add cosa-firstboot).
    return 255
}

depends() {
    echo ignition ostree systemd
}

install() {
    inst_multiple mount umount mountpoint rm mkdir cut install udevadm systemd-tmpfiles
    inst_simple "$moddir/cosa-mount-var.service" \
        "$systemdsystemunitdir/cosa-mount-var.service"
    inst_simple "$moddir/cosa-mount-var" /usr/libexec/cosa-mount-var
    inst_simple "$moddir/cosa-firstboot-complete.service" \
        "$systemdsystemunitdir/cosa-firstboot-complete.service"
    inst_simple "$moddir/cosa-firstboot-complete" /usr/libexec/cosa-firstboot-complete
    inst_simple "$moddir/cosa-ignition-setup-user.service" \
        "$systemdsystemunitdir/cosa-ignition-setup-user.service"
    inst_simple "$moddir/cosa-ignition-setup-user" /usr/libexec/cosa-ignition-setup-user
    local wants="$systemdsystemunitdir/ignition-complete.target.requires"
    mkdir -p "$initdir$wants"
    ln_r "$systemdsystemunitdir/cosa-mount-var.service" "$wants/cosa-mount-var.service"
    ln_r "$systemdsystemunitdir/cosa-ignition-setup-user.service" "$wants/cosa-ignition-setup-user.service"
    ln_r "$systemdsystemunitdir/cosa-firstboot-complete.service" "$wants/cosa-firstboot-complete.service"

    # The network on demand. dracut's systemd-networkd module (installed
    # before this one) enables the daemon's netlink socket, which starts
    # networkd as soon as a link appears, on every boot; without ip= it then
    # configures nothing. Here it starts only when needed, with DHCP.
    rm -f "$initdir$systemdsystemconfdir/sockets.target.wants/systemd-networkd.socket"
    inst_simple /usr/lib/systemd/network/80-cosa-dhcp.network
    inst_simple "$moddir/cosa-ignition-network.service" \
        "$systemdsystemunitdir/cosa-ignition-network.service"
    inst_simple "$moddir/cosa-ignition-network" /usr/libexec/cosa-ignition-network
    mkdir -p "$initdir$systemdsystemunitdir/initrd.target.wants"
    ln_r "$systemdsystemunitdir/cosa-ignition-network.service" \
        "$systemdsystemunitdir/initrd.target.wants/cosa-ignition-network.service"
    # dracut's network module (Ignition depends on it) adds hooks for root=dhcp
    # and ifname=, which this stream does not support; with them gone the
    # cmdline and pre-udev hook services have nothing to run and are skipped
    # (3-4 s of a TCG boot's critical path).
    rm -f "$initdir/lib/dracut/hooks/cmdline/91-dhcp-root.sh" \
        "$initdir/lib/dracut/hooks/pre-udev/50-ifname-genrules.sh"
}
