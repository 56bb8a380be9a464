"""Stage 6: compile the profile's program into a static /init.

By default against nolibc, the header-only libc that ships inside the very
kernel tree being built (tools/include/nolibc): no extra package, and a
binary of a few KiB. `libc = "musl"` uses musl-gcc instead, for programs
that need a real libc. Either way the result must be a static x86-64 ELF:
the initramfs holds no dynamic loader, and a dynamic /init fails at boot
with a bare "No working init found".
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from doit.tools import config_changed

from tasks import compilecache
from tasks.cache import cached
from tasks.context import Context
from tasks.errors import die
from tasks.fsutil import atomic_copy, read_json, remove_tree
from tasks.runner import run, tool_version

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
COMPILERS = {"nolibc": "gcc", "musl": "musl-gcc"}

PT_INTERP = 3
EM_X86_64 = 62


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
) -> list[str]:
    """The compiler command line; `tree` (the kernel tree) is needed for nolibc.

    Paths that would leak into the binary (__FILE__ in assert messages) are
    mapped: the project root to ".", the kernel tree to "linux".
    """
    if libc not in COMPILERS:
        raise die(f"[init] libc = {libc!r} is not supported", f"use one of: {', '.join(COMPILERS)}")
    cmd = [COMPILERS[libc], *COMMON_FLAGS]
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


def compile_and_link(cmd: Sequence[str], sources: Sequence[str], objdir: Path,
                     wrapper: Sequence[str] = ()) -> tuple[list[list[str]], list[str]]:
    """compile_command's one step as a `-c` compile per source (behind `wrapper`, e.g. ccache) and a link.

    ccache caches compiles, never links. Both halves get every flag, so the
    program is byte-identical to the one-step build.
    """
    at = list(cmd).index("-o")
    compiler, flags, output, rest = cmd[0], list(cmd[1:at]), cmd[at + 1], list(cmd[at + 2:])
    srcs = [x for x in rest if x in sources]
    libs = [x for x in rest if x not in sources]
    objects = [str(objdir / f"{n}-{Path(src).stem}.o") for n, src in enumerate(srcs)]
    compiles = [[*wrapper, compiler, *flags, "-c", "-o", obj, src] for obj, src in zip(objects, srcs, strict=True)]
    return compiles, [compiler, *flags, "-o", output, *objects, *libs]


def elf_problem(data: bytes) -> str | None:
    """Why this file cannot be the kernel's /init, or None if it is a static x86-64 ELF executable."""
    if data[:4] != b"\x7fELF":
        return "not an ELF file"
    if data[4] != 2 or data[5] != 1:
        return "not a 64-bit little-endian ELF file"
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    if e_type not in (2, 3):  # ET_EXEC, or ET_DYN for static-pie
        return f"not an executable (ELF type {e_type})"
    if e_machine != EM_X86_64:
        return f"built for ELF machine {e_machine}, not x86-64 (62)"
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    for i in range(phnum):
        off = phoff + i * phentsize
        if off + 4 > len(data):
            return "truncated program headers"
        p_type, = struct.unpack_from("<I", data, off)
        if p_type == PT_INTERP:
            return "dynamically linked (it names a program interpreter)"
    return None


def _display(path: Path, root: Path) -> str:
    """Sources under the project root are compiled by relative path: shorter messages, nothing leaks."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def kernel_tree(ctx: Context) -> Path:
    """The tree the patch stage prepared, from its JSON record; checked to carry nolibc."""
    record = ctx.paths.tree
    try:
        tree = Path(read_json(record)["tree"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise die(f"cannot read the kernel tree's location from {record}: {e}", "run `doit patch` first") from e
    if not (tree / NOLIBC_HEADER).is_file():
        raise die(f"the kernel tree {tree} has no {NOLIBC_HEADER}",
                  'nolibc ships with Linux 5.1 and later; for another tree set [init] libc = "musl"')
    return tree


def build(ctx: Context) -> None:
    init = ctx.profile.init
    out = ctx.paths.init_bin
    tree = kernel_tree(ctx) if init.libc == "nolibc" else None
    marker = init.marker
    if not marker or not marker.isprintable():
        raise die(f"[init] marker {marker!r} must be one non-empty line of printable text",
                  f"fix it in {ctx.profile.path}")
    sources = [_display(s, ctx.root) for s in init.sources]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".init."))
    try:
        cmd = compile_command(libc=init.libc, sources=sources, output=str(tmp / "init"), marker=marker,
                              cflags=init.cflags, tree=tree, root=ctx.root)
        env = {**os.environ, "LC_ALL": "C", "SOURCE_DATE_EPOCH": str(ctx.profile.kernel.source_date_epoch)}
        hint = f"fix the error shown above in the program, or the [init] cflags in {ctx.profile.path}"
        if init.libc == "musl":
            hint += "; musl-gcc comes with Debian's musl-tools"
        # compiles through ccache when it is on (tasks/compilecache.py); the link never is
        compiling = compilecache.setup_for(ctx.paths.cache)
        compiles, link = compile_and_link(cmd, sources, tmp, compiling.wrapper() if compiling.ccache else [])
        env = compiling.environ(env) if compiling.ccache else env
        for step in [*compiles, link]:
            proc = run(step, cwd=ctx.root, env=env, what=f"compiling {', '.join(sources)}",
                       log=ctx.paths.logs / "init.log", hint=hint)
            if proc.stdout.strip():
                print(proc.stdout.decode(errors="replace").rstrip())  # warnings: shown, not fatal
        data = (tmp / "init").read_bytes()
        problem = elf_problem(data)
        if problem:
            raise die(f"the compiled program {', '.join(sources)} is {problem}",
                      "the kernel runs /init with no dynamic loader and only 64-bit programs:"
                      " drop flags such as -shared or -m32 from [init] cflags")
        atomic_copy(tmp / "init", out, mode=0o755)
    finally:
        remove_tree(tmp)
    print(f"init: {out} ({len(data)} bytes, {init.libc})")


def task(ctx: Context) -> dict[str, Any]:
    init = ctx.profile.init
    compiler = COMPILERS.get(init.libc, "gcc")
    deps = [str(s) for s in init.sources]
    # headers beside the sources are #included by them: a change there must recompile too
    deps += sorted({str(h) for s in init.sources for h in s.parent.glob("*.h")})
    if init.libc == "nolibc":
        deps.append(str(ctx.paths.tree))  # the tree record: a new tree means a new nolibc
    settings = {
        "init": ctx.profile.settings("init"),
        "source_date_epoch": ctx.profile.kernel.source_date_epoch,
        "compiler": tool_version([shutil.which(compiler) or compiler, "--version"]),
    }
    return {
        "actions": [cached(ctx, "init", lambda: build(ctx))],
        "file_dep": deps,
        "targets": [str(ctx.paths.init_bin)],
        "uptodate": [config_changed(settings)],
        "doc": f"Compile {', '.join(_display(s, ctx.root) for s in init.sources)} statically ({init.libc})",
        "verbosity": 2,
        "clean": True,
    }
