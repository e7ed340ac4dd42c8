#!/bin/bash
## kola:
##   description: The zipl boot record names the current deployment.
##   architectures: s390x
set -euo pipefail
grep -q ostree /boot/loader/entries/*.conf
