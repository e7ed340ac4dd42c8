#!/bin/bash
## kola:
##   description: The root filesystem can be moved onto LUKS at first boot.
##   additionalDisks: ["4G"]
##   distros: "pebble fcos"
set -euo pipefail
. "$(dirname "$0")/lib.sh"
lsblk -o NAME,TYPE | grep -q crypt
