#!/usr/bin/env bash
# Install what tinyuki needs on Debian 12 (bookworm), idempotently:
# the build and boot tools from apt, and a .venv with pinned Python packages.
# Usage: scripts/setup.sh [runtime|dev]   (dev adds the test and lint tools)
set -euo pipefail
cd "$(dirname "$0")/.."
want=${1:-runtime}

APT_PACKAGES=(
  # kernel build
  build-essential flex bison bc libelf-dev libssl-dev dwarves kmod cpio xz-utils gzip lz4 patch
  # the init program and the compile cache
  musl-tools ccache
  # signature checks and source trust
  gnupg dpkg
  # UKI and boot
  systemd-boot-efi ovmf qemu-system-x86 mtools dosfstools
  # Secure Boot: signing, checking signatures, test keys, expected PCR 11 (systemd-measure is in systemd)
  sbsigntool osslsigncode openssl faketime systemd
  # python
  python3 python3-venv
  # reproducibility reports, shared compile cache, distributed compiles
  diffoscope-minimal redis-server distcc
  # tests and CI
  git
)

# Wanted where the distribution has it: Debian's kernel source (the default profile's
# tarball) exists on Debian only; elsewhere the kernel.org profile is the one to use.
OPTIONAL_PACKAGES=(linux-source-6.1)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

missing=()
for p in "${OPTIONAL_PACKAGES[@]}"; do
  if ! installed "$p"; then
    if apt-cache show "$p" >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-cache show "$p" >/dev/null 2>&1; }; then
      APT_PACKAGES+=("$p")
    else
      echo "setup: $p is not available here; only the kernel.org profile will work" >&2
    fi
  fi
done
for p in "${APT_PACKAGES[@]}"; do
  if ! installed "$p"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "setup: installing ${#missing[@]} Debian packages: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then SUDO=sudo; else
      echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The venv: recreated only when missing or broken, repopulated when the pins change.
PY=${PYTHON:-python3}
if ! .venv/bin/python -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  rm -rf .venv
  "$PY" -c 'import sys; assert sys.version_info >= (3, 11), "tinyuki needs Python 3.11+"'
  "$PY" -m venv .venv
fi
req=requirements/$want.txt
stamp=.venv/.tinyuki-$want.sha256
sum=$(cat requirements/*.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
  echo "setup: installing Python packages from $req"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r "$req"
  echo "$sum" > "$stamp"
fi
