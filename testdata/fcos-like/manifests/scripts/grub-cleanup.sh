#!/usr/bin/bash
# Drop GRUB's static config: the bootloader config is generated at install time.
set -euo pipefail
rm -f /usr/lib/grub/grub.cfg.static
