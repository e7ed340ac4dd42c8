#!/bin/sh
## kola:
##   description: Ignition's storage.files, directories and links from config.ign are in place.
##   tags: basic ignition
##   timeoutMin: 3
set -eu
fail() { echo "FAIL: $*" >&2; exit 1; }

[ "$(cat /etc/kola-files/hello)" = "hello from ignition" ] || fail "/etc/kola-files/hello content"
[ "$(stat -c %a /etc/kola-files/hello)" = 640 ] || fail "/etc/kola-files/hello mode $(stat -c %a /etc/kola-files/hello)"
[ -d /var/kola-dir ] || fail "/var/kola-dir missing"
[ "$(readlink /etc/kola-files/link)" = hello ] || fail "/etc/kola-files/link does not point at hello"
echo "ok: ignition files, directories, links"
