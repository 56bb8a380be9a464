#!/bin/sh
# The part of the kernel's scripts/kconfig/merge_config.sh that tinyuki uses:
#   merge_config.sh -m [-O DIR] BASE FRAGMENT...
# Each fragment's options replace the same options of what came before; the
# result is written to DIR/.config. Temp files go to the current directory,
# as in the real script.
set -e
[ "$1" = -m ] || { echo "fake merge_config.sh: only -m is implemented" >&2; exit 2; }
shift
out=.
if [ "$1" = -O ]; then out=$2; shift 2; fi
base=$1
shift
tmp=$(mktemp ./.tmp.config.XXXXXXXXXX)
trap 'rm -f "$tmp"' EXIT
cat "$base" > "$tmp"
for frag in "$@"; do
	if [ ! -r "$frag" ]; then
		echo "The merge file '$frag' does not exist.  Exit." >&2
		exit 1
	fi
	for cfg in $(sed -n -e 's/^\(CONFIG_[a-zA-Z0-9_]*\)=.*/\1/p' \
		-e 's/^# \(CONFIG_[a-zA-Z0-9_]*\) is not set$/\1/p' "$frag"); do
		sed -i "/$cfg[ =]/d" "$tmp"
	done
	echo >> "$tmp"
	cat "$frag" >> "$tmp"
done
cp -T -- "$tmp" "$out/.config"
echo "merge_config $#" >> "$out/fakekernel.log"
