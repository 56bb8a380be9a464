#!/usr/bin/env bash
# Set up (idempotent, installing only what the profile needs) and run the pipeline: `scripts/build.sh`
# builds the UKI of the default profile; any arguments go to doit (e.g. `scripts/build.sh boot`,
# `scripts/build.sh profile=kernel.org`, whose packages setup then installs).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=""
for arg in "$@"; do
  case "$arg" in profile=*) profile=$arg ;; esac
done
scripts/setup.sh runtime ${profile:+"$profile"}
exec .venv/bin/doit "$@"
