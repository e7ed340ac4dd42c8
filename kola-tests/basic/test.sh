#!/bin/sh
## kola:
##   description: The booted OS is the demo stream, deployed by ostree, provisioned once.
##   tags: basic
##   timeoutMin: 3
set -eu
fail() { echo "FAIL: $*" >&2; exit 1; }

. /etc/os-release
[ "$ID" = demo ] || fail "os-release ID is '$ID', want demo"
[ "$VARIANT_ID" = coreos ] || fail "os-release VARIANT_ID is '$VARIANT_ID', want coreos"
[ -L /etc/os-release ] || fail "/etc/os-release is not a link to /usr/lib/os-release"

# ostree-prepare-root's layout: the physical root at /sysroot, /var from the
# stateroot, /usr read-only.
mnt() { awk -v m="$1" '$2 == m { print $4 }' /proc/mounts | tail -n 1; }
[ -n "$(mnt /sysroot)" ] || fail "/sysroot is not mounted"
[ -n "$(mnt /var)" ] || fail "/var is not a mount"
case ",$(mnt /usr)," in *,ro,*) ;; *) fail "/usr is not read-only: $(mnt /usr)" ;; esac
touch /usr/.kola-write 2>/dev/null && fail "/usr is writable"

# The overlay (ostree layer overlay/10demo) is in the tree and applied.
[ "$(cat /proc/sys/kernel/panic)" = 10 ] || fail "sysctl from overlays/10demo not applied"
# demo-release's %post ran at compose time.
grep -q "Demo CoreOS" /etc/issue || fail "/etc/issue was not written by demo-release's %post"
# demo-init gave the machine its own id.
grep -qE '^[0-9a-f]{32}$' /etc/machine-id || fail "/etc/machine-id is not a machine id: $(cat /etc/machine-id)"
echo "ok: $PRETTY_NAME on $(uname -r)"
