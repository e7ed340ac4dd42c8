#!/bin/bash
# Installs every Debian 12 package the project needs to build, test and run the
# pipeline. Idempotent: packages already present are left alone; apt lists are
# refreshed only when something is missing.
set -euo pipefail

# What cosa itself calls or links at run time: the toolkit's container image
# (container/) installs exactly this list (`--runtime`), so the image and a
# host set up by this script cannot drift apart.
RUNTIME_PACKAGES=(
    # libraries the cosa binary links
    libostree-1-1 libglib2.0-0 libdnf2 librpmio9 liblzma5 zlib1g
    # compose: rpm tooling, ostree CLI (and rofiles-fuse), sandboxing
    rpm rpm2cpio ostree bubblewrap fuse3 cpio gnupg libcap2-bin git ca-certificates
    # images and live media
    e2fsprogs xfsprogs dosfstools mtools gdisk fdisk squashfs-tools erofs-utils
    xorriso zstd xz-utils grub-pc-bin grub-efi-amd64-bin grub-common
    # cosa compress's zip (image.yaml platform-compressor: hyperv) and its way back
    zip unzip
    # VMs (socat relays each guest connection of a guestfwd to the host's loopback;
    # kola's SSH transport uses the OpenSSH client and ssh-keygen)
    qemu-system-x86 qemu-utils ovmf seabios socat openssh-client
    # containers: import, push-container and the OCI checks
    skopeo
    # PID 1 of the toolkit's container: forwards signals, reaps children
    tini
    # the pipeline's scripts that run in the toolkit's image (ci/promote)
    jq
)

# What building and testing the project needs on top of that.
BUILD_PACKAGES=(
    # build: Rust FFI and the system libraries we link
    build-essential pkg-config libclang-dev clang
    libglib2.0-dev libostree-dev libdnf-dev librepo-dev librpm-dev libsolv-dev
    libgpgme-dev libarchive-dev libzstd-dev liblzma-dev
    # test repos and the compose benchmark's baseline
    createrepo-c dnf
    # demo stream recipes: fetch Debian binaries and repackage them
    busybox-static kmod
    # containers: the tests run images with podman; container/build makes the
    # toolkit image's base from Debian's packages with mmdebstrap
    podman runc mmdebstrap
    # misc test helpers
    jq python3-jsonschema python3-yaml bc python3-venv curl
    # coreos-installer (built from crates.io below) links OpenSSL
    libssl-dev
)

usage() {
    cat <<'USAGE'
usage: ci/install-deps.sh [--runtime | --list runtime|all]
  (no option)      install everything needed to build, test and run cosa
  --runtime        install only what cosa needs at run time (the toolkit image)
  --list WHICH     print the package list, one per line, and install nothing
USAGE
}

MODE=all
case "${1:-}" in
    "") ;;
    --runtime) MODE=runtime ;;
    --list)
        case "${2:-}" in
            runtime) printf '%s\n' "${RUNTIME_PACKAGES[@]}" ;;
            all) printf '%s\n' "${RUNTIME_PACKAGES[@]}" "${BUILD_PACKAGES[@]}" ;;
            *) usage >&2; exit 2 ;;
        esac
        exit 0
        ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
esac

if [ "$MODE" = runtime ]; then
    PACKAGES=("${RUNTIME_PACKAGES[@]}")
else
    PACKAGES=("${RUNTIME_PACKAGES[@]}" "${BUILD_PACKAGES[@]}")
fi

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

# The test tools (Python and crates.io) are for hosts that build and test.
install_tools() {
    if [ "$MODE" = all ]; then
        install_pytools
        install_crates
    fi
}

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#PACKAGES[@]} packages present"
    install_tools
    exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Some machines carry a newer qemu-utils than Debian 12 ships, which qemu-system-x86
# cannot sit beside: take both from bookworm together.
apt-get install -y -qq --no-install-recommends --allow-downgrades "${missing[@]}" qemu-utils/bookworm
install_tools
