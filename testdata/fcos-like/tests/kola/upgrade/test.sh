#!/bin/bash
## kola:
##   description: An rpm-ostree upgrade to the same commit is a no-op and keeps booting.
##   exclusive: true
##   timeoutMin: 20
##   minMemory: 2048
##   tags: "reboot"
set -euo pipefail
case "${AUTOPKGTEST_REBOOT_MARK:-}" in
    "") rpm-ostree upgrade --check || true; /tmp/autopkgtest-reboot rebooted ;;
    rebooted) systemctl is-system-running --wait ;;
esac
