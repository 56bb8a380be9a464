#!/usr/bin/env bash
# Set up (idempotent) and run the pipeline: `scripts/build.sh` builds the UKI of the
# default profile; any arguments go to doit (e.g. `scripts/build.sh boot`, `profile=kernel.org`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh runtime
exec .venv/bin/doit "$@"
