"""Configure the kernel: `make tinyconfig`, the profile's fragments in order, `olddefconfig`.

Kconfig silently drops any option whose dependencies are not met, so the
result is checked against every line of every fragment: a configure that
succeeds is a .config in which each requested option holds.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from tinyuki.cache import keys
from tinyuki.config.context import Context
from tinyuki.config.profile import fragment_path
from tinyuki.errors import die
from tinyuki.formats import kconfig, kversion
from tinyuki.records import Tree
from tinyuki.resources import DATA
from tinyuki.stage import Output, Stage
from tinyuki.toolchain import tools
from tinyuki.toolchain.builders import runtime_fragment
from tinyuki.toolchain.kbuild import make_cmd, make_env
from tinyuki.util import fs as fsutil
from tinyuki.util.runner import run

# The checked .config (without the initramfs), and what the fragments asked for
# (symbol, value, file, line): configure's proof that each held, read by configure alone.
CONFIG = Output("kernel.config", manifest="kernel.config")
REQUESTED = Output("kernel.requested.json", handed_on=False)  # the kernel reads .config, never this
MERGE_HINT = "the kernel tree's scripts/kconfig/merge_config.sh; run it by hand as shown to see its messages"


def fragment_name(ctx: Context, path: Path) -> str:
    """How an error names a fragment: relative to the project when it lives there."""
    try:
        return str(path.relative_to(ctx.root))
    except ValueError:
        return str(path)


def runtime_fragments(ctx: Context) -> list[Path]:
    """The fragment the program's runtime needs ([init] language: Go wants futexes and epoll), if not listed already.

    Merged after the profile's own, so configure's proof covers it like any
    fragment; a C program adds none, so its kernel is the profile's alone.
    """
    name = runtime_fragment(ctx.profile.init.language)
    if name is None:
        return []
    path = fragment_path(DATA, ctx.arch.name, name)  # the architecture's own version first, as a profile's
    return [] if path in ctx.profile.kernel.fragments else [path]


def fragments_of(ctx: Context) -> tuple[Path, ...]:
    return (*ctx.profile.kernel.fragments, *runtime_fragments(ctx))


CONFIG_ARCH_RE = re.compile(r"^# Linux/(\S+) ", re.M)


def forget_other_arch(ctx: Context, kbuild: Path) -> bool:
    """Empty the build dir when it holds another architecture's build; True if it did.

    kbuild keeps one architecture per O= dir: a build dir reused after [kernel]
    arch changed would mix both (and the artifact cache would store the other
    one's files with this one's kernel).
    """
    dot_config = kbuild / ".config"
    if not dot_config.is_file():
        return False
    m = CONFIG_ARCH_RE.search(dot_config.read_text(encoding="utf-8", errors="replace")[:400])
    if m is None or m.group(1) == ctx.arch.srcarch:
        return False
    print(f"configure: {kbuild} holds a {m.group(1)} build and [kernel] arch is {ctx.arch.name}: starting it afresh")
    shutil.rmtree(kbuild)
    return True


# `make tinyconfig`'s result, kept in the build dir with what decided it: it is the same for every fragment
# change, and running it again (two kconfig runs, each probing the compiler a hundred times) would be most of
# configure's time after a one-option edit.
TINYCONFIG_MEMO = ".tinyuki-tinyconfig"


def tinyconfig_identity(ctx: Context, tree: Path) -> str:
    """What `make tinyconfig`'s output depends on: the tree (its directory is named by its content), the target,
    the tools and environment configure's key covers. The fragments and settings do not reach it."""
    material = {"tree": str(tree), "arch": ctx.arch.make_vars(),
                "tools": {t: tools.version(t, ctx.arch.compiler_prefix()) for t in STAGE.tools},
                "env": keys.relevant_env(os.environ), "recipe": keys.module_hash(__name__)}
    return keys.digest(material)


def tinyconfig(ctx: Context, tree: Path, env: dict[str, str], log: Path) -> None:
    """Leave `make tinyconfig`'s .config in the build dir: remembered from an earlier run when nothing it depends
    on changed, else made (and remembered)."""
    kbuild = ctx.paths.kbuild
    memo, ident = kbuild / TINYCONFIG_MEMO, tinyconfig_identity(ctx, tree)
    try:
        remembered = fsutil.read_json(memo)
    except (OSError, ValueError):
        remembered = None
    config = remembered.get("config") if isinstance(remembered, dict) else None
    if isinstance(config, str) and remembered.get("identity") == ident:
        fsutil.atomic_write(kbuild / ".config", config)
        print(f"configure: make tinyconfig's result as this tree and toolchain gave it before ({memo.name})")
        return
    run(make_cmd(tree, kbuild, "tinyconfig", jobs=ctx.jobs, make_vars=ctx.arch.make_vars()), env=env, log=log,
        what="make tinyconfig", hint=f"see {log}; the tree must be clean (no .config in it) for an out-of-tree build")
    fsutil.atomic_write_json(memo, {"identity": ident, "config": (kbuild / ".config").read_text(encoding="utf-8")})


FOR_THIS_KERNEL = "configure-fragments"  # in the build dir: fragments with the lines for other kernels emptied


def fragments_for_kernel(ctx: Context, fragments: tuple[Path, ...],
                         version: kversion.KernelVersion | None) -> tuple[dict[str, kconfig.Request], list[Path]]:
    """What the fragments ask of this kernel, and the files merge_config.sh is to merge.

    A fragment whose version conditions all hold (or that has none) is merged as it is; one with lines
    for other kernels is merged as a copy in the build dir with those lines emptied, so kbuild never sees
    an option this kernel lacks and the proof asks only for what was merged.
    """
    per_fragment: list[list[kconfig.Request]] = []
    to_merge: list[Path] = []
    copies = ctx.paths.build / FOR_THIS_KERNEL
    shutil.rmtree(copies, ignore_errors=True)
    for i, f in enumerate(fragments):
        name = fragment_name(ctx, f)
        asked = kconfig.read_fragment(f, name)
        kept = kconfig.for_kernel(asked, version, name)
        per_fragment.append(kept)
        left_out = [r for r in asked if r not in kept]
        if not left_out:
            to_merge.append(f)
            continue
        for r in left_out:
            assert r.condition is not None
            print(f"configure: {r.symbol} ({r.where}) is for {r.condition.text}, not Linux {version}: left out")
        copy = copies / f"{i:02d}-{f.name}"
        fsutil.atomic_write(copy, kconfig.without_lines(f.read_text(encoding="utf-8"), {r.line for r in left_out}))
        to_merge.append(copy)
    return kconfig.merge_requests(per_fragment), to_merge


def configure(ctx: Context) -> None:
    tree = Tree.load(ctx.paths.build).location()
    kbuild = ctx.paths.kbuild
    forget_other_arch(ctx, kbuild)
    kbuild.mkdir(parents=True, exist_ok=True)
    version = kversion.tree_version(tree)
    # Read the fragments first: a malformed line fails before minutes of make.
    requests, fragments = fragments_for_kernel(ctx, fragments_of(ctx), version)

    env = make_env(ctx.profile.kernel, tree, kbuild)
    log = ctx.paths.logs / "configure.log"
    fsutil.atomic_write(log, "")
    dot_config = kbuild / ".config"
    ctx.arch.require_compiler()
    arch_vars = ctx.arch.make_vars()  # ARCH= and CROSS_COMPILE= for another architecture; none for x86_64
    tinyconfig(ctx, tree, env, log)
    # merge_config.sh makes its temp files in the cwd: run it in the build dir, never in the tree.
    run(["sh", tree / "scripts" / "kconfig" / "merge_config.sh", "-m", "-O", kbuild, dot_config, *fragments],
        cwd=kbuild, env=env, log=log, what="merging the config fragments", hint=MERGE_HINT)
    run(make_cmd(tree, kbuild, "olddefconfig", jobs=ctx.jobs, make_vars=arch_vars), env=env, log=log,
        what="make olddefconfig", hint=f"see {log}")

    text = dot_config.read_text(encoding="utf-8")
    mismatches = kconfig.check(requests, kconfig.parse_config(text))
    if mismatches:
        hints = kconfig.tree_depends(tree, [m.request.symbol for m in mismatches], ctx.arch.srcarch)
        mismatches = [kconfig.Mismatch(m.request, m.actual, tuple(hints.get(m.request.symbol, ())),
                                       unknown=m.request.symbol not in hints) for m in mismatches]
        kernel = f"Linux {version or '(version unknown)'} for {ctx.arch.name}"
        unknown = [m.request for m in mismatches if m.unknown]
        hint = ("request the missing dependencies in the same fragment (see the Kconfig lines), or drop the option; "
                f"`make -C {tree} O={kbuild} menuconfig` and `/SYMBOL` show why an option is hidden")
        if unknown:
            first = unknown[0]
            gone = (f"{first.symbol} is gone from (or not yet in) this kernel: drop it from {first.file}, or keep it"
                    f" for the kernels that have it with `# tinyuki: linux < {version.major}.{version.minor}` on the"
                    " line before it") if version else f"drop {first.symbol} from {first.file}"
            hint = gone + (f"; for the others: {hint}" if len(unknown) < len(mismatches) else "")
        raise die(f"{kconfig.render(mismatches, kernel)}\n  resulting config: {dot_config}", hint)

    # The initramfs is the embed stage's business: the checked config never carries one.
    text = kconfig.set_option(text, kconfig.INITRAMFS_SOURCE, '""')
    fsutil.atomic_write_json(REQUESTED.at(ctx), [r.to_json() for r in requests.values()])
    fsutil.atomic_write(CONFIG.at(ctx), text)
    print(f"configure: {len(requests)} requested options hold; {CONFIG.at(ctx)}")


# make runs with the reproducible-build environment; .config records the compiler's
# version, pahole's, and whether Rust is available
STAGE = Stage("configure", build=configure,
              doc="make tinyconfig + the profile's fragments + olddefconfig, then prove every option held.",
              needs=("patch",), outputs=(CONFIG, REQUESTED), inputs=runtime_fragments,
              tools=("gcc", "binutils", "make", "pahole", "rustc", "bindgen"), env=True,
              recipe=("tinyuki.toolchain.kbuild", "tinyuki.formats.kconfig"),
              cache=True)
