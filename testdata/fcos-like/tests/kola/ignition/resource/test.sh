#!/bin/bash
## kola:
##   description: Ignition wrote the file its config names, with the content in data/.
##   tags: "ignition platform-independent"
##   platforms: "! aws azure"
set -euo pipefail
cmp /etc/pebble-ignition-check "$KOLA_EXT_DATA/expected"
