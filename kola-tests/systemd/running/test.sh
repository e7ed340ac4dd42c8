#!/bin/bash
## kola:
##   description: The systemd variant's system is up and clean; sshd, networkd, the core user and the persistent journal are as the stream configures them.
##   tags: basic systemd
##   timeoutMin: 3
set -euo pipefail
fail() { echo "FAIL: $*" >&2; exit 1; }

state=$(systemctl is-system-running || true)
[ "$state" = running ] || fail "systemctl is-system-running says $state; failed units: $(systemctl --failed --no-legend --plain)"
[ "$(cat /proc/1/comm)" = systemd ] || fail "PID 1 is $(cat /proc/1/comm), not systemd"

for u in ssh.service systemd-networkd.service systemd-journald.service; do
    systemctl is-active --quiet "$u" || fail "$u is not active"
done
systemctl is-enabled --quiet ssh.socket && fail "ssh.socket is enabled beside ssh.service"

# The user kola logged in as: in the sudo group, passwordless sudo.
id -nG core | tr ' ' '\n' | grep -qx sudo || fail "core is not in group sudo: $(id -nG core)"
runuser -u core -- sudo -n true || fail "core has no passwordless sudo"
mode=$(stat -c %a /etc/sudoers.d/coreos-sudo-group)
[ "$mode" = 440 ] || fail "/etc/sudoers.d/coreos-sudo-group has mode $mode, not 0440"

# The boot partition at /boot (ostree's kernels), not the ESP. It is mounted on
# first access (x-systemd.automount): the listing mounts it.
ls /boot/loader/entries/*.conf >/dev/null || fail "no BLS entry under /boot/loader/entries"
[ "$(findmnt -no LABEL -t ext4 /boot)" = boot ] || fail "/boot is $(findmnt -no SOURCE,FSTYPE /boot | tr '\n' ' ')"

# The host keys made on first boot: Ed25519 and ECDSA, no RSA.
for t in ed25519 ecdsa; do
    [ -s /etc/ssh/ssh_host_${t}_key.pub ] || fail "no $t host key"
done
[ ! -e /etc/ssh/ssh_host_rsa_key ] || fail "an RSA host key was made"

# DHCP from QEMU's user network through networkd.
ip -4 -o addr show scope global | grep -q "inet 10.0.2." || fail "no DHCP address: $(ip -4 -o addr)"

# A persistent journal.
[ -d /var/log/journal ] || fail "/var/log/journal missing: the journal is volatile"
journalctl --header -q | grep -q "/var/log/journal" || fail "journald does not write to /var/log/journal"
echo "ok: $(. /etc/os-release; echo "$PRETTY_NAME"), system $state, kernel $(uname -r)"
