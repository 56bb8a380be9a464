"""init: build the profile's program into a static /init.

The builder comes from the profile (tinyuki/toolchain/builders.py): C is
compiled here with the commands of tinyuki/toolchain/program.py (through
ccache, with the compiler's header discovery); Go, Rust and a prebuilt binary
are the builder's own. Whatever the builder, the result must be a static
ELF for the profile's architecture (ctx.arch): the initramfs holds no dynamic
loader, and a dynamic /init, or one for another machine, fails at boot with a
bare "No working init found". For arm64 on an x86-64 host C compiles with the
cross gcc (aarch64-linux-gnu-gcc), through ccache like the host's gcc.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tinyuki.cache import compile as compilecache
from tinyuki.config.context import Context
from tinyuki.errors import die
from tinyuki.formats.elf import elf_problem
from tinyuki.records import Tree
from tinyuki.stage import Output, Predicate, Stage
from tinyuki.toolchain import builders
from tinyuki.toolchain.program import (
    NOLIBC_HEADER,
    compile_and_link,
    compile_command,
    depend_commands,
    depfiles,
    parse_depfile,
    require_compiler,
)
from tinyuki.util.fs import atomic_copy, atomic_write_json, read_json, remove_tree, sha256_file
from tinyuki.util.runner import run

INIT = Output("init/init", manifest="init")


def display(path: Path, root: Path) -> str:
    """Sources under the project root are compiled by relative path: shorter messages, nothing leaks."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def kernel_tree(ctx: Context) -> Path:
    """The tree the patch stage prepared, checked to carry nolibc."""
    tree = Path(Tree.load(ctx.paths.build).tree)
    if not (tree / NOLIBC_HEADER).is_file():
        other = "glibc" if ctx.arch.compiler_prefix() else "musl"  # musl-gcc builds only for the host
        raise die(f"the kernel tree {tree} has no {NOLIBC_HEADER}",
                  f'nolibc ships with Linux 5.1 and later; for another tree set [init] libc = "{other}"')
    return tree


def _command(ctx: Context, output: str) -> tuple[list[str], list[str], dict[str, str], str]:
    """The compile command, the sources as passed, the environment and the hint for a failure."""
    init = ctx.profile.init
    tree = kernel_tree(ctx) if init.libc == "nolibc" else None
    marker = init.marker
    if not marker or not marker.isprintable():
        raise die(f"[init] marker {marker!r} must be one non-empty line of printable text",
                  f"fix it in {ctx.profile.path}")
    sources = [display(s, ctx.root) for s in init.sources]
    cmd = compile_command(libc=init.libc, sources=sources, output=output, marker=marker,
                          cflags=init.cflags, tree=tree, root=ctx.root, arch=ctx.arch)
    require_compiler(cmd[0], ctx.arch)
    env = {**os.environ, "LC_ALL": "C", "SOURCE_DATE_EPOCH": str(ctx.profile.kernel.source_date_epoch)}
    hint = f"fix the error shown above in the program, or the [init] cflags in {ctx.profile.path}"
    if init.libc == "musl":
        hint += "; musl-gcc comes with Debian's musl-tools"
    if ctx.arch.compiler_prefix():
        hint += (f"; {cmd[0]} and the {ctx.arch.name} headers and static glibc come with Debian's"
                 f" {ctx.arch.cross_package} and {ctx.arch.libc_package}")
    return cmd, sources, env, hint


def builder(ctx: Context) -> builders.Builder:
    """The profile's builder (tinyuki/toolchain/builders.py): a binary, else the language and the libc.

    Checked against the target here, so a combination that cannot build
    (arm64 and musl) fails when the stage starts, with the settings that work.
    """
    init = ctx.profile.init
    builders.check_sources(init.language, init.sources, init.binary)
    chosen = builders.select(init.language, init.libc, init.binary)
    builders.check_arch(chosen, ctx.arch)
    return chosen


def build(ctx: Context) -> None:
    init = ctx.profile.init
    chosen = builder(ctx)
    if chosen.build is not None:
        build_other(ctx, chosen)
        return
    out = INIT.at(ctx)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".init."))
    try:
        cmd, sources, env, hint = _command(ctx, str(tmp / "init"))
        # compiles through ccache when it is on (tinyuki/cache/compile.py); the link never is
        compiling = compilecache.for_context(ctx)
        compiles, link = compile_and_link(cmd, sources, tmp, compiling.wrapper() if compiling.ccache else [],
                                          deps=True)
        env = compiling.environ(env) if compiling.ccache else env
        for step in [*compiles, link]:
            proc = run(step, cwd=ctx.root, env=env, what=f"compiling {', '.join(sources)}",
                       log=ctx.paths.logs / "init.log", hint=hint)
            if proc.stdout.strip():
                print(proc.stdout.decode(errors="replace").rstrip())  # warnings: shown, not fatal
        data = (tmp / "init").read_bytes()
        problem = elf_problem(data, ctx.arch.elf_machine)
        if problem:
            raise die(f"the compiled program {', '.join(sources)} is {problem}",
                      "the kernel runs /init with no dynamic loader and only 64-bit programs:"
                      " drop flags such as -shared or -m32 from [init] cflags")
        record_deps(ctx, depfiles(compiles))  # the compile's own list: what the next run's check compares
        atomic_copy(tmp / "init", out, mode=0o755)
    finally:
        remove_tree(tmp)
    print(f"init: {out} ({len(data)} bytes, {init.libc})")


def build_other(ctx: Context, chosen: builders.Builder) -> None:
    """A Go or Rust build, or a prebuilt binary: the builder writes it, the stage checks it like a C program."""
    init = ctx.profile.init
    out = INIT.at(ctx)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".init."))
    try:
        job = builders.Job(sources=init.sources, output=tmp / "init", marker=marker_of(ctx), flags=init.cflags,
                           root=ctx.root, cache=ctx.paths.cache / "program", epoch=ctx.profile.kernel.source_date_epoch,
                           log=ctx.paths.logs / "init.log", binary=init.binary, arch=ctx.arch)
        assert chosen.build is not None
        chosen.build(job)
        data = (tmp / "init").read_bytes()
        problem = elf_problem(data, ctx.arch.elf_machine)
        if problem:
            raise die(f"the {chosen.name} program is {problem}", builders.prebuilt_hint(data, ctx.arch))
        atomic_write_json(deps_file(ctx), {"files": {}})  # no compiler-discovered files: inputs() lists them all
        atomic_copy(tmp / "init", out, mode=0o755)
    finally:
        remove_tree(tmp)
    print(f"init: {out} ({len(data)} bytes, {chosen.name})")


def marker_of(ctx: Context) -> str:
    marker = ctx.profile.init.marker
    if not marker or not marker.isprintable():
        raise die(f"[init] marker {marker!r} must be one non-empty line of printable text",
                  f"fix it in {ctx.profile.path}")
    return marker


def headers(ctx: Context) -> list[Path]:
    """The files beside the settings' own that reach the program: headers beside C sources, a Go module, a crate."""
    init = ctx.profile.init
    return builders.select(init.language, init.libc, init.binary).inputs(init.sources)


# ---------------------------------------------------------------- every header the compiler reads
#
# A header reached through -I in cflags, or a system header (nolibc includes the host's
# <asm/unistd.h>), changes the program as much as the source does. The compiler names them:
# `refresh` asks it (gcc -M, before the cache key is computed), each compile writes the same list
# (-MD), and both are kept in build/<p>/init.deps.json with the files' sha256. The key hashes them
# (`discovered`); on later runs `deps_unchanged` reruns the stage when one changed or vanished.
# Files of the kernel tree are left out: the tree is named by its content and reaches the key as such.

DEPS = "init.deps.json"


def deps_file(ctx: Context) -> Path:
    return ctx.paths.build / DEPS


def record_deps(ctx: Context, depfile_paths: list[Path]) -> None:
    """Keep the files the compiler listed (outside the kernel tree), with their sha256."""
    tree = Tree.peek(ctx.paths.build)
    skip = os.path.realpath(tree.tree) if tree is not None else None
    files: dict[str, str] = {}
    for d in depfile_paths:
        for name in parse_depfile(d.read_text(errors="surrogateescape")):
            path = Path(os.path.normpath(ctx.root / name))
            real = os.path.realpath(path)
            if skip is not None and (real == skip or real.startswith(skip + os.sep)):
                continue
            files[str(path)] = sha256_file(path)
    atomic_write_json(deps_file(ctx), {"files": dict(sorted(files.items()))})


def refresh(ctx: Context) -> None:
    """List the files the compile will read, before the cache key is computed (gcc -M, no compile)."""
    if builder(ctx).build is not None:  # Go, Rust, prebuilt: inputs() names every file, nothing to discover
        atomic_write_json(deps_file(ctx), {"files": {}})
        return
    tmp = Path(tempfile.mkdtemp(dir=ctx.paths.build, prefix=".init-deps."))
    try:
        cmd, sources, env, hint = _command(ctx, str(tmp / "init"))
        commands = depend_commands(cmd, sources, tmp)
        for step in commands:
            run(step, cwd=ctx.root, env=env, what=f"listing the headers of {', '.join(sources)}",
                log=ctx.paths.logs / "init.log", hint=hint, quiet=True)
        record_deps(ctx, [Path(c[c.index("-MF") + 1]) for c in commands])
    finally:
        remove_tree(tmp)


def _recorded(ctx: Context) -> dict[str, str] | None:
    try:
        files = read_json(deps_file(ctx))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return files if isinstance(files, dict) else None


def discovered(ctx: Context) -> list[Path]:
    """The files the compiler listed last (refresh runs right before the key is computed)."""
    return [Path(p) for p in (_recorded(ctx) or {})]


def deps_unchanged(ctx: Context) -> bool:
    """Every file the last compile read still has the bytes it had then."""
    files = _recorded(ctx)
    if files is None:
        return False
    for path, sha in files.items():
        try:
            if sha256_file(path) != sha:
                return False
        except OSError:
            return False  # deleted: the stage runs, and the compiler says whether it still needs the file
    return True


# the tree: a new tree means a new nolibc
STAGE = Stage(
    "init", build=build,
    doc="Build the profile's program statically (C with nolibc, musl or glibc; Go; Rust) or check a prebuilt one.",
    needs=("patch",), outputs=(INIT,), inputs=headers, discovered=discovered, refresh=refresh,
    tools=builders.TOOLS, env=True,
    # tinyuki.arch: its rows' cross prefix, GOARCH, Rust target and ELF machine shape the program
    recipe=("tinyuki.toolchain.program", "tinyuki.toolchain.builders", "tinyuki.formats.elf"),
    cache=True, checks=(Predicate(deps_unchanged, "the headers the compiler read are unchanged"),))
