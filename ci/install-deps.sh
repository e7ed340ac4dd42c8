#!/bin/bash
# Installs every Debian 12 package the project needs to build, test and run the
# pipeline. Idempotent: packages already present are left alone; apt lists are
# refreshed only when something is missing.
set -euo pipefail

PACKAGES=(
    # build: Rust FFI and the system libraries we link
    build-essential pkg-config libclang-dev clang
    libglib2.0-dev libostree-dev libdnf-dev librepo-dev librpm-dev libsolv-dev
    libgpgme-dev libarchive-dev libzstd-dev liblzma-dev
    # compose: rpm tooling, ostree CLI, sandboxing
    rpm createrepo-c ostree bubblewrap cpio gnupg libcap2-bin
    # the compose benchmark's baseline
    dnf
    # demo stream recipes: fetch Debian binaries and repackage them
    busybox-static kmod
    # images (later stages)
    e2fsprogs xfsprogs dosfstools mtools gdisk fdisk squashfs-tools erofs-utils
    xorriso zstd xz-utils grub-pc-bin grub-efi-amd64-bin grub-common
    # VMs (socat relays each guest connection of a guestfwd to the host's loopback;
    # kola's SSH transport uses the OpenSSH client and ssh-keygen)
    qemu-system-x86 qemu-utils ovmf seabios socat openssh-client
    # containers
    skopeo podman runc
    # misc test helpers
    jq python3-jsonschema python3-yaml git bc python3-venv curl
    # coreos-installer (built from crates.io below) links OpenSSL
    libssl-dev
)

# Python tools from PyPI, pinned, in a virtualenv of their own: the independent
# SPDX validator that the SBOM tests run (spdx-tools' pyspdxtools).
PYTOOLS=${COSA_PYTOOLS:-/opt/cosa/pytools}
PYPI=(spdx-tools==0.8.3)

install_pytools() {
    if [ -x "$PYTOOLS/bin/pyspdxtools" ] && [ "$(cat "$PYTOOLS/.pins" 2>/dev/null)" = "${PYPI[*]}" ]; then
        echo "install-deps: python tools present in $PYTOOLS"
        return
    fi
    echo "install-deps: installing ${PYPI[*]} into $PYTOOLS"
    rm -rf "$PYTOOLS"
    python3 -m venv "$PYTOOLS"
    "$PYTOOLS/bin/pip" install -q "${PYPI[@]}"
    echo "${PYPI[*]}" > "$PYTOOLS/.pins"
}

# Tools from crates.io, pinned, built into $TOOLS/bin (each binary is named
# like its crate and prints "NAME VERSION" for --version):
# - coreos-installer: the tests prove with it that our stream metadata and
#   live media are what the real tool expects;
# - action-validator: ci/lint-pipeline checks the CI workflow against GitHub's
#   schema with it.
TOOLS=${COSA_TOOLS:-/opt/cosa/tools}
CRATES=(coreos-installer@0.27.0 action-validator@0.9.0)

install_crates() {
    local c name version
    for c in "${CRATES[@]}"; do
        name=${c%@*} version=${c#*@}
        if [ "$("$TOOLS/bin/$name" --version 2>/dev/null)" = "$name $version" ]; then
            echo "install-deps: $name $version present in $TOOLS"
            continue
        fi
        echo "install-deps: building $name $version into $TOOLS (a few minutes)"
        cargo install --quiet --locked --force --root "$TOOLS" "$c"
    done
}

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#PACKAGES[@]} packages present"
    install_pytools
    install_crates
    exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Some machines carry a newer qemu-utils than Debian 12 ships, which qemu-system-x86
# cannot sit beside: take both from bookworm together.
apt-get install -y -qq --no-install-recommends --allow-downgrades "${missing[@]}" qemu-utils/bookworm
install_pytools
install_crates
