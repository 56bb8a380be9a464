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
exit "$rc"
