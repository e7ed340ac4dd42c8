#!/bin/bash
## kola:
##   description: systemd-resolved answers for the host's own name.
##   platforms: qemu
##   tags: networking
set -euo pipefail
resolvectl query "$(hostname)"
