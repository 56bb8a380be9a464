#!/usr/bin/env bash
# CI, before actions/cache saves: bound what is carried and say in the job summary what the caches did.
#   scripts/ci-cache.sh [doit variables, e.g. profile=kernel.org]   (cache dir: TINYUKI_CACHE_DIR, default cache)
# Prunes the artifact entries to CACHE_KEEP_GIB (default 0.5) GiB, most recently used first (ccache
# trims itself to CCACHE_MAXSIZE), then appends to $GITHUB_STEP_SUMMARY (stdout elsewhere): `doit
# stats` (stages restored, locally or from the remote, and built; bytes moved) and the size of each
# carried dir. cache/trees/ is never carried: extraction recreates it from the verified tarball.
set -u
cd "$(dirname "$0")/.."
doit=.venv/bin/doit
summary=${GITHUB_STEP_SUMMARY:-/dev/stdout}
if [ ! -x "$doit" ]; then
  echo "ci-cache: no .venv (did setup fail?); nothing pruned" | tee -a "$summary"
  exit 0
fi
cache=${TINYUKI_CACHE_DIR:-cache}
size() { du -shc "$@" 2>/dev/null | tail -1 | cut -f1; }
"$doit" cache-prune keep="${CACHE_KEEP_GIB:-0.5}" "$@" | grep -v '^\.  ' || true
{
  echo "### Caches"
  echo
  "$doit" stats "$@" | grep -v '^\.  ' || true
  echo
  echo "| carried by actions/cache | size |"
  echo "|---|---:|"
  for d in sha256 locks artifacts ccache; do
    echo "| \`$cache/$d\` | $(size "$cache/$d") |"
  done
  echo "| **total** (not \`$cache/trees\`, $(size "$cache/trees"), which extraction recreates) |" \
    "$(size "$cache/sha256" "$cache/locks" "$cache/artifacts" "$cache/ccache") |"
} >> "$summary"
