#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite: lint, then unit, wiring and e2e tests.
# Arguments go to pytest, e.g. `scripts/test.sh -m unit` for the fast layer only.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
.venv/bin/ruff check .
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
# pytest exits 5 when a selection matched no test: that is a failure here, not a pass.
if [ "$rc" = 5 ]; then echo "test: no tests were collected" >&2; exit 1; fi
if [ "$rc" != 0 ]; then exit "$rc"; fi

# The whole run again under Debian 12's own Python (3.11.2, .venv-debian from scripts/setup.sh) for the
# fast layers and one extraction of the real tarball: the pipeline must not need a newer 3.11 than stock
# Debian's. Only for the full run (no arguments): a run of chosen tests stays one run.
if [ "$#" = 0 ] && [ -x .venv-debian/bin/python ]; then
  echo "test: again under $(.venv-debian/bin/python -V) (.venv-debian): unit, wiring, the real tarball's extraction"
  .venv-debian/bin/python -m pytest -p no:cacheprovider -m "unit or wiring" tests/unit tests/wiring
  .venv-debian/bin/python -m pytest -p no:cacheprovider tests/e2e/test_extract_real.py
elif [ "$#" = 0 ] && [ -x /usr/bin/python3 ]; then
  echo "test: .venv-debian is missing; scripts/setup.sh dev makes it" >&2
  exit 1
fi
