#!/usr/bin/env bash
# Install what tinyuki needs on Debian 12 (bookworm), idempotently and by need: the Debian packages
# that a profile's stages and boots use (tinyuki/packages.py names them; `tinyuki doctor` shows why),
# and a .venv with pinned Python packages.
# Usage: scripts/setup.sh [runtime [profile=NAME|PATH] | dev]
#   runtime: what the profile needs (default: the shipped default profile), nothing more;
#   dev: what the whole test suite needs (every shipped profile and example, its servers, lint tools).
set -euo pipefail
cd "$(dirname "$0")/.."
want=${1:-runtime}
profile=${2:-}
case "$want" in runtime|dev) ;; *) echo "usage: scripts/setup.sh [runtime [profile=NAME] | dev]" >&2; exit 2 ;; esac
case "$profile" in ""|profile=*) ;; *) echo "setup: expected profile=NAME|PATH, not '$profile'" >&2; exit 2 ;; esac

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; fi
fi
apt_install() {
  if [ "$(id -u)" != 0 ] && [ -z "$SUDO" ]; then
    echo "setup: need root (or sudo) to install: $*" >&2; exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Python first: tinyuki itself names every other package it needs (python3 -m tinyuki.packages).
PY=${PYTHON:-python3}
if [ -z "${PYTHON:-}" ] && command -v dpkg-query >/dev/null; then
  first=()
  for p in python3 python3-venv; do installed "$p" || first+=("$p"); done
  if ((${#first[@]})); then
    echo "setup: installing ${first[*]}"
    apt_install "${first[@]}"
  fi
fi
if ! "$PY" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  have=$("$PY" -c 'import sys; print("Python %d.%d.%d" % sys.version_info[:3])' 2>/dev/null || echo "not a Python that runs")
  echo "setup: tinyuki needs Python 3.11 or later; '$PY' is $have" >&2
  echo "setup: install python3 (Debian 12 has 3.11), or name another one: PYTHON=/path/to/python3.11 $0" >&2
  exit 1
fi
packages() { PYTHONPATH=$PWD "$PY" -m tinyuki.packages "$@"; }

# The packages by need: the profile's, or the whole suite's.
if [ "$want" = dev ]; then
  missing=$(packages --missing --suite)
else
  missing=$(packages --missing ${profile:+"$profile"})
fi
# Debian's kernel source exists on Debian only; elsewhere the kernel.org profile is the one to use.
wanted=()
for p in $missing; do
  case "$p" in
    linux-source-*)
      if ! apt-cache show "$p" >/dev/null 2>&1 && ! { $SUDO apt-get update -qq >/dev/null 2>&1 && apt-cache show "$p" >/dev/null 2>&1; }; then
        echo "setup: $p is not available here; only the kernel.org profile will work" >&2
        continue
      fi ;;
  esac
  wanted+=("$p")
done
if ((${#wanted[@]})); then
  echo "setup: installing ${#wanted[@]} Debian packages: ${wanted[*]}"
  apt_install "${wanted[@]}"
fi
# Another architecture's EFI stub (arm64's linuxaa64.efi.stub) is not installed but downloaded with
# systemd-boot-efi for that architecture and unpacked under .deps/ (tinyuki/packages.py fetch_stub): for
# the tests (dev), and for a profile that builds for arm64.
if [ "$want" = dev ]; then
  packages --suite --stubs || { echo "setup: the tests build arm64 UKIs and need arm64's stub" >&2; exit 1; }
else
  packages ${profile:+"$profile"} --stubs \
    || echo "setup: without arm64's stub an arm64 profile stops at the uki stage (it says how to get it)" >&2
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
if ! .venv/bin/python -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  rm -rf .venv
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
