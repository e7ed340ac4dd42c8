#!/bin/sh
## kola:
##   description: A reboot keeps /var and /etc, and first-boot provisioning does not run again.
##   tags: basic reboot
##   platforms: qemu
##   timeoutMin: 5
set -eu
fail() { echo "FAIL: $*" >&2; exit 1; }

case "${AUTOPKGTEST_REBOOT_MARK:-}" in
    "")
        [ -e /run/demo/firstboot ] || fail "the first boot was not marked (ignition.firstboot)"
        echo "before reboot" > /var/kola-reboot-test
        echo "before reboot" > /etc/kola-reboot-test
        /tmp/autopkgtest-reboot rebooted
        ;;
    rebooted)
        grep -qx "before reboot" /var/kola-reboot-test || fail "/var lost its content across the reboot"
        grep -qx "before reboot" /etc/kola-reboot-test || fail "/etc lost its content across the reboot"
        [ ! -e /run/demo/firstboot ] || fail "the second boot is marked as a first boot again"
        [ ! -e /boot/ignition.firstboot ] || fail "/boot/ignition.firstboot survived provisioning"
        echo "ok: state kept, provisioning ran once"
        ;;
    *) fail "unexpected reboot mark $AUTOPKGTEST_REBOOT_MARK" ;;
esac
