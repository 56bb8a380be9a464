#!/bin/sh
# Build examples/hello-prebuilt/hello: a program made outside tinyuki, as any
# toolchain would make one. Here gcc -static on the C hello; any static x86-64
# executable will do (Go with CGO_ENABLED=0, Rust with crt-static, Zig, assembly).
# tinyuki only checks it (ELF, static, x86-64) and packs it: examples/hello-prebuilt.toml.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
gcc -static -Os -s -Wl,--build-id=none -ffile-prefix-map="$here/..=examples" \
  -DTINYUKI_MARKER='"hello: started (prebuilt)"' -DHELLO_LANG='"prebuilt"' \
  -o "$here/hello" "$here/../hello-c/hello.c"
echo "built $here/hello"
