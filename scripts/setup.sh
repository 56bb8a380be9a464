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
  # programs in Go and Rust as /init (tinyuki/toolchain/program.py; glibc static is libc6-dev, in build-essential)
  golang-go rustc cargo
  # signature checks and source trust
  gnupg dpkg
  # UKI and boot
  systemd-boot-efi ovmf qemu-system-x86 mtools dosfstools
  # arm64 (tinyuki/arch.py): QEMU's virt machine and AAVMF (the cross compiler: below, on other hosts)
  qemu-system-arm qemu-efi-aarch64
  # the USB stick image (sfdisk; sgdisk checks it in the tests)
  fdisk gdisk
  # Secure Boot: signing, checking signatures, test keys, expected PCR 11 (systemd-measure is in systemd)
  sbsigntool osslsigncode openssl faketime systemd
  # signing with a key on a PKCS#11 token (sbsign --engine pkcs11), and a software token for the tests
  libengine-pkcs11-openssl softhsm2 opensc
  # python
  python3 python3-venv
  # reproducibility reports, shared compile cache, distributed compiles
  diffoscope-minimal redis-server distcc
  # the remote artifact cache's tests and benchmark: nginx with WebDAV PUT (core module)
  nginx
  # tests and CI
  git
)

# arm64 programs and kernels: the cross compiler with its libc and kernel headers, where the host is another
# architecture (an arm64 host builds arm64 with its own gcc).
if [ "$(dpkg --print-architecture 2>/dev/null || uname -m)" != arm64 ]; then
  APT_PACKAGES+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
fi

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

# arm64 UKIs need systemd's linuxaa64.efi.stub: Debian's systemd-boot-efi for arm64, the same version
# as the host's, downloaded and unpacked under .deps/arm64 (nothing for arm64 gets installed). On Debian
# only: adding arm64 to apt elsewhere (Ubuntu keeps arm64 on another mirror) would break apt-get update.
# The tests need it (dev); a build needs it only for an arm64 profile, whose uki stage says how to get it.
STUB=.deps/arm64/usr/lib/systemd/boot/efi/linuxaa64.efi.stub
fetch_arm64_stub() {
  local sudo="" version tmp
  if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then sudo=sudo; fi
  if ! grep -qsx 'ID=debian' /etc/os-release; then
    echo "setup: not Debian: get linuxaa64.efi.stub from systemd-boot-efi for arm64 and put it at $STUB" >&2
    return 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "setup: adding arm64 to apt's architectures (to download systemd-boot-efi:arm64's stub)"
    $sudo dpkg --add-architecture arm64
    $sudo apt-get update -qq || return 1
  fi
  version=$(dpkg-query -W -f='${Version}' systemd-boot-efi)
  tmp=$(mktemp -d)
  # apt-get download writes to the cwd; as root it warns that _apt cannot write there, harmlessly
  if ! (cd "$tmp" && { apt-get download -q "systemd-boot-efi:arm64=$version" || apt-get download -q systemd-boot-efi:arm64; } \
        >/dev/null 2>&1); then
    $sudo apt-get update -qq
    (cd "$tmp" && apt-get download -q systemd-boot-efi:arm64 >/dev/null 2>&1) || {
      echo "setup: cannot download systemd-boot-efi:arm64 (is arm64 in apt's sources?)" >&2
      rm -rf "$tmp"; return 1; }
  fi
  rm -rf .deps/arm64.tmp
  mkdir -p .deps
  dpkg-deb -x "$tmp"/systemd-boot-efi_*_arm64.deb .deps/arm64.tmp
  rm -rf "$tmp" .deps/arm64
  mv .deps/arm64.tmp .deps/arm64
  echo "setup: unpacked $(basename "$STUB") of systemd-boot-efi:arm64 under .deps/arm64"
}
if [ ! -s "$STUB" ] && ! fetch_arm64_stub; then
  if [ "$want" = dev ]; then
    echo "setup: the tests build arm64 UKIs and need $STUB" >&2
    exit 1
  fi
  echo "setup: without it only x86_64 profiles can make a UKI (arm64 ones stop at the uki stage)" >&2
fi

# The tests check signed UKIs with osslsigncode; Debian 12's own 2.5 rejects sbsign's valid signatures
# ("Invalid signature"), 2.9 from bookworm-backports reads them. Only the tests need it (dev).
ossl_recent() {
  osslsigncode --version 2>/dev/null | awk 'NR == 1 { split($2, v, "."); exit !(v[1] > 2 || (v[1] == 2 && v[2] >= 9)) }'
}
if [ "$want" = dev ] && ! ossl_recent; then
  if grep -qs '^12' /etc/debian_version && [ "$(id -u)" = 0 ]; then
    echo "setup: installing osslsigncode from bookworm-backports (Debian 12's 2.5 cannot verify sbsign signatures)"
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' \
      /usr/share/keyrings/debian-archive-keyring.gpg > /etc/apt/sources.list.d/tinyuki-bookworm-backports.sources
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends -t bookworm-backports osslsigncode >/dev/null
  fi
  if ! ossl_recent; then
    echo "setup: the tests need osslsigncode 2.9 or later (have: $(osslsigncode --version 2>/dev/null | head -1))" >&2
    echo "setup: on Debian 12 install it from bookworm-backports: apt-get install -t bookworm-backports osslsigncode" >&2
    exit 1
  fi
fi

# The venv: recreated only when missing or broken, repopulated when the pins change.
# Any Python 3.11 or later will do, Debian 12's own 3.11.2 included (requires-python in pyproject.toml).
PY=${PYTHON:-python3}
if ! .venv/bin/python -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  rm -rf .venv
  if ! "$PY" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    have=$("$PY" -c 'import sys; print("Python %d.%d.%d" % sys.version_info[:3])' 2>/dev/null || echo "not a Python that runs")
    echo "setup: tinyuki needs Python 3.11 or later; '$PY' is $have" >&2
    echo "setup: install python3 (Debian 12 has 3.11), or name another one: PYTHON=/path/to/python3.11 $0" >&2
    exit 1
  fi
  if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
    echo "setup: $PY cannot make a venv (no ensurepip); Debian: apt-get install python3-venv" >&2
    exit 1
  fi
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

# For the tests: a second venv from Debian's own interpreter (/usr/bin/python3, 3.11.2 on bookworm),
# whichever python3 comes first on PATH, so that scripts/test.sh proves the pipeline runs on a stock
# Debian 12 too (3.11.2 lacks what later 3.11 releases added, such as tarfile's extraction filters).
DEBIAN_PY=/usr/bin/python3
if [ "$want" = dev ] && [ -x "$DEBIAN_PY" ]; then
  if ! .venv-debian/bin/python -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null \
      || [ "$(readlink -f .venv-debian/bin/python)" != "$(readlink -f "$DEBIAN_PY")" ]; then
    rm -rf .venv-debian
    "$DEBIAN_PY" -m venv .venv-debian
  fi
  dstamp=.venv-debian/.tinyuki-dev.sha256
  if [ ! -f "$dstamp" ] || [ "$(cat "$dstamp")" != "$sum" ]; then
    echo "setup: installing Python packages from requirements/dev.txt into .venv-debian ($("$DEBIAN_PY" -V))"
    .venv-debian/bin/python -m pip install -q --disable-pip-version-check -r requirements/dev.txt
    echo "$sum" > "$dstamp"
  fi
fi
