#!/usr/bin/env bash
# Does a change leave the artifacts as they were? Builds each profile with an earlier
# revision and with the working tree, then compares every artifact's sha256
# (`doit repro compare=`). Usage:
#   scripts/same-bytes.sh REV [PROFILE...]        (default profiles: debian fast-boot small)
# Builds go to build/same-bytes/{before,after}/<profile>; both share one cache dir,
# so the second build of each kernel is served by the compile cache (which the
# repro check has proven not to change output).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: scripts/same-bytes.sh REV [PROFILE...]" >&2; exit 2; }
rev=$1; shift
profiles=("$@"); [ ${#profiles[@]} -gt 0 ] || profiles=(debian fast-boot small)
scripts/setup.sh runtime
here=$(pwd)
out=$here/build/same-bytes
cache=${TINYUKI_CACHE_DIR:-$here/cache}
mkdir -p "$out"
old=$(mktemp -d "${TMPDIR:-/tmp}/tinyuki-before.XXXXXX")
trap 'git worktree remove --force "$old" >/dev/null 2>&1 || rm -rf "$old"' EXIT
git worktree add --detach "$old" "$rev" >/dev/null
ln -s "$here/.venv" "$old/.venv"
# what scripts/setup.sh unpacked (the arm64 stub) is git-ignored: the old revision uses the same
[ -d "$here/.deps" ] && ln -s "$here/.deps" "$old/.deps"
status=0
for p in "${profiles[@]}"; do
  for side in before after; do
    src=$here; [ "$side" = before ] && src=$old
    echo "same-bytes: building $p ($side: $([ "$side" = before ] && echo "$rev" || echo "working tree"))"
    (cd "$src" && .venv/bin/doit profile="$p" build_dir="$out/$side/$p" cache_dir="$cache") \
      > "$out-$side-$p.log" 2>&1 || { echo "same-bytes: the $side build of $p failed; see $out-$side-$p.log" >&2; exit 1; }
  done
  .venv/bin/doit profile="$p" repro compare="$out/before/$p/manifest.json,$out/after/$p/manifest.json" \
    build_dir="$out/after/$p" cache_dir="$cache" || status=1
done
exit $status
