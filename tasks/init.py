"""init: compile the profile's program into a static /init.

The compile commands live in tinyuki/toolchain/program.py. Whatever the libc,
the result must be a static x86-64 ELF: the initramfs holds no dynamic loader,
and a dynamic /init fails at boot with a bare "No working init found".
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
from tinyuki.stage import Output, Stage
from tinyuki.toolchain.program import NOLIBC_HEADER, compile_and_link, compile_command
from tinyuki.util.fs import atomic_copy, remove_tree
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
        raise die(f"the kernel tree {tree} has no {NOLIBC_HEADER}",
                  'nolibc ships with Linux 5.1 and later; for another tree set [init] libc = "musl"')
    return tree


def build(ctx: Context) -> None:
    init = ctx.profile.init
    out = INIT.at(ctx)
    tree = kernel_tree(ctx) if init.libc == "nolibc" else None
    marker = init.marker
    if not marker or not marker.isprintable():
        raise die(f"[init] marker {marker!r} must be one non-empty line of printable text",
                  f"fix it in {ctx.profile.path}")
    sources = [display(s, ctx.root) for s in init.sources]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".init."))
    try:
        cmd = compile_command(libc=init.libc, sources=sources, output=str(tmp / "init"), marker=marker,
                              cflags=init.cflags, tree=tree, root=ctx.root)
        env = {**os.environ, "LC_ALL": "C", "SOURCE_DATE_EPOCH": str(ctx.profile.kernel.source_date_epoch)}
        hint = f"fix the error shown above in the program, or the [init] cflags in {ctx.profile.path}"
        if init.libc == "musl":
            hint += "; musl-gcc comes with Debian's musl-tools"
        # compiles through ccache when it is on (tinyuki/cache/compile.py); the link never is
        compiling = compilecache.for_context(ctx)
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


def headers(ctx: Context) -> list[Path]:
    """Headers beside the sources are #included by them: a change there must recompile too."""
    return sorted({h for s in ctx.profile.init.sources for h in s.parent.glob("*.h")})


STAGE = Stage(
    name="init",
    doc="Compile the profile's program statically (nolibc from the kernel tree, or musl).",
    build=build,
    # the tree: a new tree means a new nolibc
    needs=("patch",),
    outputs=(INIT,),
    inputs=headers,
    tools=("gcc", "musl-gcc", "binutils"),
    env=True,
    recipe=("tinyuki.toolchain.program", "tinyuki.formats.elf"),
    cache=True,
)
