#!/bin/bash
## kola:
##   description: Ignition's files, directories, links, users, groups and systemd units from config.ign are applied in the ostree deployment.
##   tags: basic ignition systemd
##   timeoutMin: 3
set -euo pipefail
fail() { echo "FAIL: $*" >&2; exit 1; }

[ "$(cat /etc/kola-ignition/hello)" = "hello from ignition" ] || fail "/etc/kola-ignition/hello content"
[ "$(stat -c %a /etc/kola-ignition/hello)" = 640 ] || fail "/etc/kola-ignition/hello mode"
[ "$(readlink /etc/kola-ignition/link)" = hello ] || fail "/etc/kola-ignition/link target"
[ -d /var/kola-ignition ] || fail "/var/kola-ignition missing (written under the stateroot's /var?)"

# A user and a group, with its home under /var/home and its key in place.
getent group kolagroup >/dev/null || fail "group kolagroup missing"
getent passwd kolauser >/dev/null || fail "user kolauser missing"
id -nG kolauser | tr ' ' '\n' | grep -qx kolagroup || fail "kolauser not in kolagroup: $(id -nG kolauser)"
home=$(getent passwd kolauser | cut -d: -f6)
[ -d "$home" ] || fail "kolauser's home $home missing"
grep -q "kola-test-key" "$home/.ssh/authorized_keys.d/ignition" || fail "kolauser's SSH key missing"

# A unit written and enabled by Ignition ran at boot.
systemctl is-enabled --quiet kola-ignition.service || fail "kola-ignition.service not enabled"
[ "$(cat /var/lib/kola-ignition-unit)" = ran ] || fail "kola-ignition.service did not run"

# Provisioned in the deployment: /etc is the deployment's, and the stamp is gone.
[ ! -e /boot/ignition.firstboot ] || fail "/boot/ignition.firstboot survived provisioning"
echo "ok: ignition files, users, groups and units"
