#!/bin/bash
## kola:
##   description: Files shipped in the overlays are owned by root and not writable by others.
##   tags: "platform-independent"
set -euo pipefail
bad=$(find /usr/lib/pebble /usr/lib/systemd/system/pebble-firstboot.service \( ! -user root -o -perm -o+w \) -print)
if [ -n "$bad" ]; then
    echo "bad ownership or mode: $bad" >&2
    exit 1
fi
