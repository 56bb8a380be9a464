"""Compiling the one program: the command lines for a static, small, reproducible /init.

By default against nolibc, the header-only libc that ships inside the very
kernel tree being built (tools/include/nolibc): no extra package, and a
binary of a few KiB. `libc = "musl"` uses musl-gcc instead, for programs
that need a real libc.

For another architecture than the host's (arm64 on an x86-64 machine) nolibc
and glibc compile with the cross gcc (aarch64-linux-gnu-gcc), which finds the
target's kernel UAPI headers and static glibc in Debian's libc6-dev-arm64-cross;
musl-gcc has no such counterpart in Debian. The host's own architecture keeps
the plain `gcc` and the very command line it always had.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from tinyuki.arch import ARCHES, CROSS_LIBCS, DEFAULT, Arch
from tinyuki.errors import die

NOLIBC_HEADER = Path("tools/include/nolibc/nolibc.h")

# Size and reproducibility flags shared by both libcs.
COMMON_FLAGS = (
    "-static", "-Os",
    # a fixed-address executable: position-independent code would put pointer tables in a page of their own
    "-fno-pie", "-no-pie",
    "-Wall", "-Wextra",
    "-ffunction-sections", "-fdata-sections", "-Wl,--gc-sections",
    # gcc -Os turns hand-written length loops into calls to strlen, which nolibc only has as a static inline
    "-fno-tree-loop-distribute-patterns",
    "-fno-asynchronous-unwind-tables",
    # one load segment instead of page-aligned ones: a few KiB less for a tiny program
    "-Wl,-z,noseparate-code",
    "-s", "-Wl,--build-id=none",
)
# nolibc brings its own _start and syscalls; it has no stack-protector support in 6.1.
NOLIBC_FLAGS = ("-nostdlib", "-fno-stack-protector")
COMPILERS = {"nolibc": "gcc", "musl": "musl-gcc", "glibc": "gcc"}
# What puts the host's own compiler in place, for the error when it is missing.
HOST_PACKAGES = {"gcc": "build-essential", "musl-gcc": "musl-tools"}


def compiler(libc: str, arch: Arch | None = None) -> str:
    """The C compiler for `libc` and the target (default x86_64): the host's, or its cross gcc.

    A libc without a cross compiler (musl) is refused here, before anything
    runs, so an arm64 profile with libc = "musl" fails with the reason and the
    settings that work rather than with musl-gcc building an x86-64 program.
    """
    if libc not in COMPILERS:
        raise die(f"[init] libc = {libc!r} is not supported", f"use one of: {', '.join(COMPILERS)}")
    target = arch or ARCHES[DEFAULT]
    prefix = target.compiler_prefix()
    if not prefix:
        return COMPILERS[libc]
    if libc not in CROSS_LIBCS:
        raise die(f'[init] libc = "{libc}" cannot build /init for {target.name} on this {os.uname().machine} machine:'
                  f" Debian has no {libc} cross toolchain ({COMPILERS[libc]} of musl-tools only builds for the"
                  " machine it runs on)",
                  f'set [init] libc = "nolibc" (the kernel tree\'s own, a few KiB) or "glibc" (static, through'
                  f" {prefix}gcc), or build the program elsewhere and set [init] binary")
    return prefix + COMPILERS[libc]


def require_compiler(cc: str, arch: Arch | None = None, path: str | None = None) -> None:
    """Fail with the package to install when the compiler is missing (from `path`, default $PATH).

    Asked up front because behind ccache a missing compiler is ccache's
    "Could not find compiler" rather than tinyuki's missing-tool message, and
    a cross compiler's package name is not guessable from its command name.
    """
    if shutil.which(cc, path=path) is not None:
        return
    target = arch or ARCHES[DEFAULT]
    if target.compiler_prefix() and cc.startswith(target.compiler_prefix()):
        target.require_compiler(path=path)  # the table's own check: names the cross compiler's packages
    package = HOST_PACKAGES.get(cc, "build-essential")
    raise die(f"{cc} is not installed: it compiles /init", f"apt-get install {package} (scripts/setup.sh does)")



def c_string(text: str) -> str:
    """`text` as a C string literal, for passing the marker with -D (no shell involved)."""
    out = []
    for ch in text.encode():
        if ch in (0x22, 0x5C):  # " and backslash
            out.append("\\" + chr(ch))
        elif 0x20 <= ch < 0x7F:
            out.append(chr(ch))
        else:
            out.append(f"\\{ch:03o}")
    return '"' + "".join(out) + '"'


def compile_command(
    *,
    libc: str,
    sources: Sequence[str],
    output: str,
    marker: str,
    cflags: Sequence[str] = (),
    tree: Path | None = None,
    root: Path | None = None,
    arch: Arch | None = None,
) -> list[str]:
    """The compiler command line; `tree` (the kernel tree) is needed for nolibc.

    Paths that would leak into the binary (__FILE__ in assert messages) are
    mapped: the project root to ".", the kernel tree to "linux". `arch` (the
    profile's target, default x86_64) changes only the compiler's name: the
    flags are the same for every architecture.
    """
    cmd = [compiler(libc, arch), *COMMON_FLAGS]
    if libc == "nolibc":
        if tree is None:
            raise die("nolibc needs the kernel tree", "build the tree first (`doit patch`)")
        cmd += [*NOLIBC_FLAGS, "-include", str(tree / NOLIBC_HEADER), f"-ffile-prefix-map={tree}=linux"]
    if root is not None:
        cmd.append(f"-ffile-prefix-map={root}=.")
    cmd += [f"-DTINYUKI_MARKER={c_string(marker)}", *cflags, "-o", output, *sources]
    if libc == "nolibc":
        cmd.append("-lgcc")  # compiler helpers nolibc does not provide; --gc-sections drops what is unused
    return cmd


def _split(cmd: Sequence[str], sources: Sequence[str]) -> tuple[str, list[str], str, list[str], list[str]]:
    """compile_command's parts: compiler, flags, output, sources, libraries."""
    at = list(cmd).index("-o")
    compiler, flags, output, rest = cmd[0], list(cmd[1:at]), cmd[at + 1], list(cmd[at + 2:])
    return compiler, flags, output, [x for x in rest if x in sources], [x for x in rest if x not in sources]


def compile_and_link(cmd: Sequence[str], sources: Sequence[str], objdir: Path,
                     wrapper: Sequence[str] = (), deps: bool = False) -> tuple[list[list[str]], list[str]]:
    """compile_command's one step as a `-c` compile per source (behind `wrapper`, e.g. ccache) and a link.

    ccache caches compiles, never links. Both halves get every flag, so the
    program is byte-identical to the one-step build. With `deps`, each compile
    also writes the list of files it read (`-MD -MF <object>.d`, see
    depfiles): a by-product that changes nothing in the object.
    """
    compiler, flags, output, srcs, libs = _split(cmd, sources)
    objects = [str(objdir / f"{n}-{Path(src).stem}.o") for n, src in enumerate(srcs)]
    compiles = [[*wrapper, compiler, *flags, *(("-MD", "-MF", f"{obj}.d") if deps else ()), "-c", "-o", obj, src]
                for obj, src in zip(objects, srcs, strict=True)]
    return compiles, [compiler, *flags, "-o", output, *objects, *libs]


def depfiles(compiles: Sequence[Sequence[str]]) -> list[Path]:
    """The dependency files compile_and_link's compiles write."""
    return [Path(c[list(c).index("-MF") + 1]) for c in compiles]


def depend_commands(cmd: Sequence[str], sources: Sequence[str], depdir: Path) -> list[list[str]]:
    """One `-M -MF` run per source: the files the compile would read, without compiling.

    The same compiler and flags as the compile, so the list is the compiler's
    own (system headers included: -M, not -MM).
    """
    compiler, flags, _output, srcs, _libs = _split(cmd, sources)
    return [[compiler, *flags, "-M", "-MF", str(depdir / f"{n}.d"), src] for n, src in enumerate(srcs)]


def parse_depfile(text: str) -> list[str]:
    """The prerequisites of a make-format dependency file as gcc writes it (`obj.o: a.c b.h \\`)."""
    out: list[str] = []
    for rule in text.replace("\\\n", " ").splitlines():
        target_end = re.search(r"(?<!\\):(?:\s|$)", rule)
        if target_end is None:
            continue
        for word in re.split(r"(?<!\\)\s+", rule[target_end.end():].strip()):
            if word:
                out.append(word.replace("\\ ", " ").replace("\\#", "#").replace("$$", "$"))
    return out
