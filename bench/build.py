"""Build benchmark: what the pipeline costs on top of the `make` commands it runs.

Each tinyuki figure has a baseline taken in the same run: kbuild's own no-op
`make <image>` for a no-op `doit` (per profile: the no-op must not grow with
the stages), kbuild's relink of a new initramfs for the rebuild after a
one-line change to the program, and the same make commands run by hand for a
cold build (opt-in: minutes per run) and for a changed config option (opt-in:
each run rebuilds part of the kernel).

A rebuild must be of a change never built before, or it measures an
artifact-cache hit: every run puts a fresh nonce into the changed line, and
returning to the program as it was is reported as its own row (a hit is a
feature, not the figure of an edit). The change is made to a copy of the
program named by a temporary copy of the profile, so the repository's files
are never modified; the build dir is put back afterwards.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import report
from bench.common import doit_cmd, kbuild_make, timed
from tinyuki.config.context import Context
from tinyuki.config.profile import moved_profile_text
from tinyuki.errors import TinyukiError, die
from tinyuki.formats import kconfig
from tinyuki.records import Tree
from tinyuki.tasks import PIPELINE
from tinyuki.tasks.configure import fragments_of
from tinyuki.toolchain.kbuild import make_cmd, make_env, remove_initramfs_outputs
from tinyuki.util import runner
from tinyuki.util.fs import read_json, sha256_file

EXTERNAL = ("cache", "ccache")  # bench/cache.py and bench/ccache.py, owned by the cache engineers


def _timed(cmd: Sequence[str | os.PathLike[str]], *, cwd: Path, env: dict[str, str] | None = None,
           log: Path) -> float:
    """Run a command (its output appended to `log`); a failure raises; the seconds it took."""
    return timed(cmd, cwd=cwd, env=env, log=log)[0]


def _doit(ctx: Context, *args: str) -> list[str]:
    return doit_cmd(*args, root=ctx.root)


def _case(name: str, ours: Sequence[float], theirs: Sequence[float], what: str) -> dict[str, Any]:
    a, b = report.summarize(ours), report.summarize(theirs)
    r = report.ratio(a.median if a else None, b.median if b else None)
    return {"name": name, "tinyuki": a.as_dict() if a else None, "baseline": b.as_dict() if b else None,
            "baseline_what": what, "ratio": None if r is None else round(r, 3)}


NOOP = "no-op build"  # the default profile's row keeps this name: older results compare with it


def noop_name(ctx: Context, default: str) -> str:
    """The default profile's no-op row keeps its old name; another profile's names the profile."""
    return NOOP if ctx.profile.name == default else f"{NOOP} ({ctx.profile.name})"


def noop(ctx: Context, runs: int, log: Path, *, name: str = NOOP, targets: Sequence[str] = ()) -> dict[str, Any]:
    """A no-op `doit` against kbuild's no-op `make <image>` in the same build dir.

    `targets` limits doit to some tasks, for a profile whose whole pipeline is not built (small has no UKI).
    """
    tree = Tree.load(ctx.paths.build).location()
    make, env = kbuild_make(ctx, tree, ctx.arch.image_target)
    args = [f"profile={ctx.profile.path}", f"build_dir={ctx.paths.build}", *targets]
    _timed(_doit(ctx, *args), cwd=ctx.root, log=log)  # make sure both are built and up to date
    _timed(make, cwd=ctx.root, env=env, log=log)
    ours, theirs = [], []
    for _ in range(runs):
        ours.append(_timed(_doit(ctx, *args), cwd=ctx.root, log=log))
        theirs.append(_timed(make, cwd=ctx.root, env=env, log=log))
    return _case(name, ours, theirs, f"no-op `make {ctx.arch.image_target}`")


def noops(ctxs: Sequence[Context], default: str, runs: int, log: Path,
          targets: Mapping[str, Sequence[str]] | None = None) -> list[dict[str, Any]]:
    """The no-op row of every built profile the caller passes (goal: no-op `doit` ≤ 0.25 s whatever the stages).

    A profile whose no-op cannot be measured (its build broke) gets a row without figures and the error,
    rather than costing the other rows.
    """
    rows = []
    for c in ctxs:
        name = noop_name(c, default)
        try:
            rows.append(noop(c, runs, log, name=name, targets=(targets or {}).get(c.profile.name, ())))
        except TinyukiError as e:
            rows.append({**_case(name, [], [], f"no-op `make {c.arch.image_target}`"), "error": e.message})
    return rows


def changed_program(ctx: Context, tmp: Path, change: Callable[[str], str]) -> Path:
    """Write a changed copy of the profile's first source (and the headers beside it) into `tmp`."""
    src = ctx.profile.init.sources[0]
    copy = tmp / src.name
    try:
        text = change(src.read_text(encoding="utf-8"))
    except RuntimeError as e:  # the change does not fit this program: the user's to fix, not a crash
        raise die(f"{src}: {e}", "the build benchmark changes the line of the program that prints "
                  "'powering off'; give it such a line") from None
    copy.write_text(text, encoding="utf-8")
    for header in src.parent.glob("*.h"):
        shutil.copy(header, tmp / header.name)
    return copy


def changed_profile(ctx: Context, tmp: Path, change: Callable[[str], str]) -> Path:
    """A copy of the profile whose program is a changed copy of its first source."""
    src = ctx.profile.init.sources[0]
    raw = moved_profile_text(ctx.profile.path.read_text(encoding="utf-8"), ctx.profile.path.parent)
    old = f'sources = ["{src}"]'
    if old not in raw:
        raise die(f"cannot point a copy of {ctx.profile.path} at a changed copy of {src}: "
                  f"it has no line `sources = [...]` naming it alone",
                  "the build benchmark needs a profile whose [init] sources is one file of the project")
    copy = changed_program(ctx, tmp, change)
    prof = tmp / ctx.profile.path.name  # same file name: same profile name
    prof.write_text(raw.replace(old, f'sources = ["{copy}"]'), encoding="utf-8")
    return prof


TAG_RE = re.compile(r"^[A-Za-z0-9 ._-]*$")


def nonce() -> str:
    """A tag no build has seen: put into the program, it makes a binary that is in no cache."""
    return secrets.token_hex(8)


def one_line_change(text: str, tag: str = "now") -> str:
    """Change one line of the program so that its binary changes (a string it prints, with `tag` in it).

    `tag` lands inside a C string literal, so it may only hold letters, digits, spaces, dots, dashes and
    underscores; a fresh `nonce()` per run makes every run's binary new.
    """
    if not TAG_RE.match(tag):
        raise ValueError(f"tag {tag!r} would not stay a plain C string")
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if "powering off" in line and '"' in line:  # every string on it: the one the program prints among them
            lines[i] = line.replace("powering off", f"powering off {tag}".rstrip())
            return "".join(lines)
    raise RuntimeError("no line printing 'powering off' to change in the program")


def _sha(path: Path) -> str | None:
    return sha256_file(path) if path.is_file() else None


def check_reached(ctx: Context, tag: str, seen: set[str]) -> str:
    """After a rebuild with `tag`: the tag is in the initramfs (embed proves the kernel holds that cpio)
    and the UKI is one never seen before in this run; returns its sha256 (a stale program must not pass)."""
    cpio = PIPELINE.path(ctx, "initramfs.cpio").read_bytes()
    if tag.encode() not in cpio:
        raise die(f"the program's change ({tag}) did not reach {PIPELINE.path(ctx, 'initramfs.cpio')}",
                  "the build benchmark measured a build that did not build the change: see its log")
    uki = _sha(PIPELINE.path(ctx, "uki"))
    if uki is None or uki in seen:
        raise die(f"the UKI did not change after a change to the program ({tag})",
                  "the build benchmark measured a build that did not reach the UKI: see its log")
    return uki


REBUILD = "rebuild after a one-line change to the program"
REBUILD_HIT = "rebuild back to an already-built program (artifact-cache hit)"
RELINK = "kbuild relink of a new initramfs (`make {image} vmlinux`)"


def rebuild(ctx: Context, runs: int, log: Path) -> list[dict[str, Any]]:
    """doit after a one-line change never built before, and doit back to the program as it was (a cache hit),
    both against kbuild's relink of the same new initramfs.

    Each run: a new nonce in the program, `doit` (timed); then kbuild by hand relinks that same initramfs
    (`make <image> vmlinux` after its copy of the initramfs is removed, as embed does: timed); then `doit`
    with the real profile, whose every stage is in the artifact cache (timed as the hit row).
    """
    tree = Tree.load(ctx.paths.build).location()
    make, env = kbuild_make(ctx, tree, ctx.arch.image_target, "vmlinux")
    real = [f"profile={ctx.profile.path}", f"build_dir={ctx.paths.build}"]
    uki = PIPELINE.path(ctx, "uki")
    new, hit, theirs = [], [], []
    with tempfile.TemporaryDirectory(prefix="tinyuki-bench-init-") as tmp:
        tag = nonce()
        prof = changed_profile(ctx, Path(tmp), lambda text: one_line_change(text, tag))
        changed = [f"profile={prof}", f"build_dir={ctx.paths.build}"]
        _timed(_doit(ctx, *real), cwd=ctx.root, log=log)
        original = _sha(uki)
        seen = {original} if original else set()
        try:
            for i in range(runs):
                if i:
                    tag = nonce()
                    changed_program(ctx, Path(tmp), lambda text, t=tag: one_line_change(text, t))
                new.append(_timed(_doit(ctx, *changed), cwd=ctx.root, log=log))
                seen.add(check_reached(ctx, tag, seen))
                remove_initramfs_outputs(ctx.paths.kbuild)
                theirs.append(_timed(make, cwd=ctx.root, env=env, log=log))
                hit.append(_timed(_doit(ctx, *real), cwd=ctx.root, log=log))
                if _sha(uki) != original:
                    raise die("going back to the program as it was did not give the UKI it had",
                              f"the artifact cache returned something else: see {log}")
        finally:
            _timed(_doit(ctx, *real), cwd=ctx.root, log=log)
    what = RELINK.format(image=ctx.arch.image_target)
    return [_case(REBUILD, new, theirs, what), _case(REBUILD_HIT, hit, theirs, what)]


# ---------------------------------------------------------------- the edit loop

LOOP = "edit → the program's changed line on the console, [kernel] initramfs = \"initrd\" (no relink)"
LOOP_BASELINE = "the same with the program embedded (the default: relink, then boot)"
KERNEL_TABLE_RE = re.compile(r"^\[kernel\][ \t]*$", re.M)


def with_initrd(raw: str) -> str:
    """The profile's TOML with [kernel] initramfs = "initrd" (the edit loop's mode)."""
    if tomllib.loads(raw).get("kernel", {}).get("initramfs") is not None:
        raise die("the build benchmark sets [kernel] initramfs itself", "remove it from the profile")
    out, n = KERNEL_TABLE_RE.subn('[kernel]\ninitramfs = "initrd"', raw, count=1)
    if n != 1 or tomllib.loads(out)["kernel"].get("initramfs") != "initrd":
        raise die("the build benchmark could not set [kernel] initramfs in the profile",
                  "write [kernel] as a table of its own")
    return out


def until_seen(cmd: Sequence[str], needle: str, *, cwd: Path, log: Path) -> float:
    """Seconds from starting `cmd` to the first output line holding `needle`; the command must then succeed."""
    seen: list[float] = []

    def line(text: str, at: float) -> None:
        if not seen and needle in text:
            seen.append(at)

    ran = runner.stream(cmd, cwd=cwd, log=log, on_line=line, stdin=subprocess.DEVNULL, quiet=True)
    if ran.returncode != 0 or not seen:
        raise die(f"`{' '.join(cmd)}` " + (f"exited with {ran.returncode}" if ran.returncode else
                                           f"never printed {needle!r}"), f"see {log}")
    return seen[0]


def edit_loop(ctx: Context, runs: int, log: Path) -> dict[str, Any]:
    """Edit → the program's changed line, through `doit boot` alone (it rebuilds what the edit changed), with the
    program as an external initrd against the same edit embedded, each in a build dir of its own.

    Each round: a new nonce in the program, then `doit boot` for the embedded build (init, initramfs, the
    relink, the boot) and for the initrd build (init, initramfs, the boot), timed until the line carrying the
    nonce is on the console.
    """
    loop_dir = ctx.paths.build.parent / f"{ctx.paths.build.name}-loop"
    ours, theirs = [], []
    with tempfile.TemporaryDirectory(prefix="tinyuki-bench-loop-") as tmp:
        tag = nonce()
        embedded = changed_profile(ctx, Path(tmp), lambda text: one_line_change(text, tag))
        (Path(tmp) / "loop").mkdir()
        loop = Path(tmp) / "loop" / embedded.name  # the same file name: the same profile name
        loop.write_text(with_initrd(embedded.read_text(encoding="utf-8")), encoding="utf-8")
        both = ((embedded, ctx.paths.build, theirs), (loop, loop_dir, ours))
        try:
            for prof, bdir, _ in both:  # built and booted once: the rounds measure edits only
                until_seen(_doit(ctx, f"profile={prof}", f"build_dir={bdir}", "boot"), tag, cwd=ctx.root, log=log)
            for _ in range(runs):
                tag = nonce()
                changed_program(ctx, Path(tmp), lambda text, t=tag: one_line_change(text, t))
                for prof, bdir, into in both:
                    into.append(until_seen(_doit(ctx, f"profile={prof}", f"build_dir={bdir}", "boot"), tag,
                                           cwd=ctx.root, log=log))
        finally:
            _timed(_doit(ctx, f"profile={ctx.profile.path}", f"build_dir={ctx.paths.build}"), cwd=ctx.root, log=log)
    return _case(LOOP, ours, theirs, LOOP_BASELINE)


# ---------------------------------------------------------------- a changed config option (goal 5)

@dataclass(frozen=True)
class ConfigChange:
    """One option changed through a fragment: the row's name and the symbol it flips."""

    name: str
    symbol: str


CONFIG_CHANGES = (
    ConfigChange("rebuild after one local option changed (CONFIG_BLK_DEV_LOOP: a driver, a handful of objects)",
                 "CONFIG_BLK_DEV_LOOP"),
    ConfigChange("rebuild after one option kbuild spreads everywhere changed (CONFIG_TIMERFD: ~900 objects)",
                 "CONFIG_TIMERFD"),
)
FRAGMENT_EDIT = "rebuild after a fragment edit that leaves .config unchanged"


def flipped(config: Mapping[str, str], symbol: str) -> str:
    """The fragment line that changes `symbol` in a parsed .config: off if it is y, else y."""
    if config.get(symbol) == "y":
        return f"# {symbol} is not set"
    return f"{symbol}=y"


def restated(config: Mapping[str, str], symbol: str = "CONFIG_PRINTK") -> str:
    """A fragment line that asks for what the .config already has: merged, it changes nothing."""
    value = config.get(symbol)
    if value is None or value == kconfig.NOT_SET:
        return f"# {symbol} is not set"
    return f"{symbol}={value}"


def fragment_text(lines: Sequence[str], tag: str) -> str:
    """A fragment with a nonce comment first: its own hash is new, so no cache holds what it configures."""
    return "\n".join([f"# tinyuki build benchmark {tag}", *lines]) + "\n"


def apply_line(dot_config: str, line: str) -> str:
    """What a user does to kbuild's .config by hand for one fragment line (then `make olddefconfig`)."""
    if m := kconfig.SET_RE.match(line):
        return kconfig.set_option(dot_config, m.group(1), m.group(2))
    if m := kconfig.UNSET_RE.match(line):
        off = f"{m.group(1)}=n"
        text = kconfig.set_option(dot_config, m.group(1), "n")
        return "".join(f"{line}\n" if x == off else f"{x}\n" for x in text.splitlines())
    raise ValueError(f"not a .config line: {line!r}")


def wanted(line: str) -> str:
    """The value a fragment line asks for, as parse_config spells it ('n' for `# ... is not set`)."""
    m = kconfig.SET_RE.match(line)
    return m.group(2) if m else kconfig.NOT_SET


FRAGMENTS_RE = re.compile(r"^(\s*fragments\s*=\s*)\[[^\]]*\]", re.M)


def with_fragment(raw: str, fragment: Path) -> str:
    """The profile's TOML with one more fragment (a path) at the end of [kernel] fragments; a profile whose
    fragments the benchmark cannot find as one array is refused rather than guessed at."""
    kernel = tomllib.loads(raw).get("kernel", {})
    want = [*kernel.get("fragments", []), str(fragment)]
    found = FRAGMENTS_RE.findall(raw)
    if "fragments" not in kernel or len(found) != 1:
        raise die("the build benchmark cannot add a fragment to the profile: it needs exactly one"
                  " `fragments = [...]` line, in [kernel]", "write the fragments as one array in [kernel]")
    out = FRAGMENTS_RE.sub(lambda m: m.group(1) + json.dumps(want), raw, count=1)
    if tomllib.loads(out).get("kernel", {}).get("fragments") != want:
        raise die("the build benchmark could not add a fragment to the profile's [kernel] fragments",
                  "write the fragments as one array in [kernel]")
    return out


def fragment_profile(ctx: Context, tmp: Path, lines: Sequence[str], tag: str) -> Path:
    """A copy of the profile (same name) with one more fragment holding `lines` (and a nonce comment)."""
    frag = tmp / f"bench-{tag}.config"
    frag.write_text(fragment_text(lines, tag), encoding="utf-8")
    prof = tmp / ctx.profile.path.name
    raw = moved_profile_text(ctx.profile.path.read_text(encoding="utf-8"), ctx.profile.path.parent)
    prof.write_text(with_fragment(raw, frag), encoding="utf-8")
    return prof


def _checked_config(ctx: Context) -> dict[str, str]:
    return kconfig.parse_config(PIPELINE.path(ctx, "kernel.config").read_text(encoding="utf-8"))


def config_change(ctx: Context, change: ConfigChange, runs: int, log: Path) -> dict[str, Any]:
    """doit to the UKI after one option changed in a fragment, against kbuild's own incremental rebuild of the
    same .config change in the same tree (`make olddefconfig` + `make <image> vmlinux`, tinyuki's env and CC).

    The compile cache is put in the same state for both: one untimed round by hand first compiles the
    changed objects and the original ones, and one untimed tinyuki round compiles its own (its kernel
    stage's .config has no initramfs, so its objects differ from the by-hand ones): both sides find them.
    tinyuki's fragment carries a nonce, so its configure and kernel keys are new: the artifact cache holds
    neither. Between the two, the tree goes back to the original config by hand (kbuild) and by `doit` with
    the real profile (tinyuki); the build is put back at the end.
    """
    tree = Tree.load(ctx.paths.build).location()
    kb = ctx.paths.kbuild
    olddefconfig, env = kbuild_make(ctx, tree, "olddefconfig")
    make, _ = kbuild_make(ctx, tree, ctx.arch.image_target, "vmlinux")
    real = [f"profile={ctx.profile.path}", f"build_dir={ctx.paths.build}"]
    _timed(_doit(ctx, *real), cwd=ctx.root, log=log)
    # kbuild's .config as a user has it: with the initramfs (a restore leaves the kernel stage's, without)
    start = kconfig.set_option((kb / ".config").read_text(encoding="utf-8"), kconfig.INITRAMFS_SOURCE,
                               kconfig.quote(str(PIPELINE.path(ctx, "initramfs.cpio").absolute())))
    line = flipped(_checked_config(ctx), change.symbol)

    def by_hand(text: str) -> float:
        (kb / ".config").write_text(text, encoding="utf-8")
        begin = time.monotonic()
        _timed(olddefconfig, cwd=ctx.root, env=env, log=log)
        _timed(make, cwd=ctx.root, env=env, log=log)
        return time.monotonic() - begin

    ours, theirs = [], []
    with tempfile.TemporaryDirectory(prefix="tinyuki-bench-config-") as tmp:
        try:
            by_hand(apply_line(start, line))  # the compile cache learns both configs' objects
            by_hand(start)
            base = (kb / ".config").read_text(encoding="utf-8")  # as olddefconfig writes it
            # and tinyuki's: its kernel stage builds without the initramfs, so CONFIG_INITRAMFS_SOURCE (in
            # every object's autoconf.h) differs from the by-hand .config and their objects are not shared
            warm = fragment_profile(ctx, Path(tmp), [line], nonce())
            _timed(_doit(ctx, f"profile={warm}", f"build_dir={ctx.paths.build}"), cwd=ctx.root, log=log)
            _timed(_doit(ctx, *real), cwd=ctx.root, log=log)
            for _ in range(runs):
                if (kb / ".config").read_text(encoding="utf-8") != base:
                    by_hand(base)  # doit's restore left the kernel stage's .config (no initramfs)
                theirs.append(by_hand(apply_line(base, line)))
                by_hand(base)
                prof = fragment_profile(ctx, Path(tmp), [line], nonce())
                ours.append(_timed(_doit(ctx, f"profile={prof}", f"build_dir={ctx.paths.build}"), cwd=ctx.root,
                                   log=log))
                if _checked_config(ctx).get(change.symbol, kconfig.NOT_SET) != wanted(line):
                    raise die(f"{change.symbol} did not change in the build's kernel.config ({line})",
                              f"the build benchmark measured a build without the change: see {log}")
                _timed(_doit(ctx, *real), cwd=ctx.root, log=log)
        finally:
            _timed(_doit(ctx, *real), cwd=ctx.root, log=log)
    return _case(change.name, ours, theirs, "kbuild incremental rebuild of the same .config change"
                 f" (`make olddefconfig` + `make {ctx.arch.image_target} vmlinux`)")


def configure_by_hand(ctx: Context, scratch: Path, fragments: Sequence[Path], log: Path) -> float:
    """What the configure stage runs, by hand in a scratch build dir: tinyconfig, merge_config.sh, olddefconfig."""
    tree = Tree.load(ctx.paths.build).location()
    scratch.mkdir(parents=True, exist_ok=True)
    env = make_env(ctx.profile.kernel, tree, scratch)
    arch_vars = ctx.arch.make_vars()
    start = time.monotonic()
    _timed(make_cmd(tree, scratch, "tinyconfig", jobs=ctx.jobs, make_vars=arch_vars), cwd=scratch, env=env, log=log)
    _timed(["sh", tree / "scripts/kconfig/merge_config.sh", "-m", "-O", scratch, scratch / ".config", *fragments],
           cwd=scratch, env=env, log=log)
    _timed(make_cmd(tree, scratch, "olddefconfig", jobs=ctx.jobs, make_vars=arch_vars), cwd=scratch, env=env,
           log=log)
    return time.monotonic() - start


def fragment_edit(ctx: Context, runs: int, log: Path) -> dict[str, Any]:
    """doit after a fragment edit that leaves .config as it was (a comment, an option restated) against
    configure alone by hand: only configure may run, never the kernel stage (the row says if it did)."""
    real = [f"profile={ctx.profile.path}", f"build_dir={ctx.paths.build}"]
    _timed(_doit(ctx, *real), cwd=ctx.root, log=log)
    line = restated(_checked_config(ctx))
    ours, theirs, reran = [], [], set()
    with tempfile.TemporaryDirectory(prefix="tinyuki-bench-fragment-") as tmp:
        scratch = Path(tmp) / "configure"
        try:
            configure_by_hand(ctx, scratch, fragments_of(ctx), log)  # kconfig's own tools get built once
            for _ in range(runs):
                tag = nonce()
                prof = fragment_profile(ctx, Path(tmp), [line], tag)
                seconds, out = timed(_doit(ctx, f"profile={prof}", f"build_dir={ctx.paths.build}"), cwd=ctx.root,
                                     log=log)
                ours.append(seconds)
                reran |= set(ran_stages(out)) - {"configure", "manifest", "summary"}
                theirs.append(configure_by_hand(ctx, scratch, [*fragments_of(ctx), Path(tmp) / f"bench-{tag}.config"],
                                                log))
                _timed(_doit(ctx, *real), cwd=ctx.root, log=log)
        finally:
            _timed(_doit(ctx, *real), cwd=ctx.root, log=log)
    row = _case(FRAGMENT_EDIT, ours, theirs, "configure alone by hand (tinyconfig + merge_config.sh + olddefconfig)")
    return {**row, "also_ran": sorted(reran)}


def ran_stages(out: str) -> list[str]:
    """The tasks a doit run ran, from its output (doit prints `.  NAME` for each)."""
    return [line[3:].strip() for line in out.splitlines() if line.startswith(".  ")]


def config_rows(ctx: Context, runs: int, log: Path) -> list[dict[str, Any]]:
    """Goal 5's rows: each option of CONFIG_CHANGES, then the fragment edit that changes no option."""
    rows = []
    for name, measure_row in [*((c.name, functools.partial(config_change, ctx, c)) for c in CONFIG_CHANGES),
                              (FRAGMENT_EDIT, functools.partial(fragment_edit, ctx))]:
        try:
            rows.append(measure_row(runs, log))
        except TinyukiError as e:  # one option that does not fit this kernel costs its row, not the others
            rows.append({**_case(name, [], [], ""), "error": e.message})
    return rows


def cold(ctx: Context, runs: int, log: Path, scratch: Path) -> dict[str, Any]:
    """A full build in a fresh build dir (no ccache, no artifact cache) against the same makes by hand."""
    tree = Tree.load(ctx.paths.build).location()
    env = {**os.environ, "TINYUKI_ARTIFACT_CACHE": "off", "TINYUKI_CCACHE": "0", "CCACHE_DISABLE": "1"}
    ours, theirs = [], []
    for i in range(runs):
        bdir = scratch / f"cold-{i}"
        shutil.rmtree(bdir, ignore_errors=True)
        ours.append(_timed(_doit(ctx, f"profile={ctx.profile.path}", f"build_dir={bdir}", "kernel"),
                           cwd=ctx.root, env=env, log=log))
        shutil.rmtree(bdir, ignore_errors=True)
        hand = scratch / f"hand-{i}"
        shutil.rmtree(hand, ignore_errors=True)
        hand.mkdir(parents=True)
        menv = make_env(ctx.profile.kernel, tree, hand, env)
        start = time.monotonic()
        arch_vars = ctx.arch.make_vars()
        _timed(make_cmd(tree, hand, "tinyconfig", jobs=ctx.jobs, make_vars=arch_vars), cwd=hand, env=menv, log=log)
        _timed(["sh", tree / "scripts/kconfig/merge_config.sh", "-m", "-O", hand, hand / ".config",
                *ctx.profile.kernel.fragments], cwd=hand, env=menv, log=log)
        _timed(make_cmd(tree, hand, "olddefconfig", jobs=ctx.jobs, make_vars=arch_vars), cwd=hand, env=menv, log=log)
        _timed(make_cmd(tree, hand, ctx.arch.image_target, "vmlinux", jobs=ctx.jobs, make_vars=arch_vars), cwd=hand,
               env=menv, log=log)
        theirs.append(time.monotonic() - start)
        shutil.rmtree(hand, ignore_errors=True)
    return _case("cold build of the kernel (configure + build)", ours, theirs,
                 "tinyconfig + merge_config.sh + olddefconfig + `make bzImage vmlinux` by hand")


def external(results_dir: Path) -> dict[str, Any]:
    """The cache engineers' figures: their module's `results()` if it has one, else their JSON."""
    out: dict[str, Any] = {}
    for name in EXTERNAL:
        got: Any = None
        try:
            mod = importlib.import_module(f"bench.{name}")
            fn = getattr(mod, "results", None) or getattr(mod, "latest", None)
            if callable(fn):
                got = fn()
        except Exception as e:  # their module, their failure: reported, not fatal to this benchmark
            got = {"error": f"bench.{name}: {e}"}
        if got is None:
            path = results_dir / f"{name}.json"
            if path.is_file():
                try:
                    got = read_json(path)
                except (OSError, ValueError) as e:
                    got = {"error": f"{path}: {e}"}
        if got is not None:
            out[name] = got
    return out


def measure(ctx: Context, *, runs: int, cold_build: bool, results_dir: Path,
            noop_contexts: Sequence[Context] = (), noop_targets: Mapping[str, Sequence[str]] | None = None,
            config_changes: bool = False, slow_runs: int | None = None) -> dict[str, Any]:
    """The build rows for `ctx` (the default profile), plus the no-op row of every other built profile in
    `noop_contexts`; `cold_build` and `config_changes` add the rows that compile (minutes each), measured
    `slow_runs` times (default: `runs`)."""
    log = ctx.paths.logs / "bench-build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("", encoding="utf-8")
    others = [c for c in noop_contexts if c.profile.name != ctx.profile.name]
    cases = [noop(ctx, max(runs, 3), log), *noops(others, ctx.profile.name, max(runs, 3), log, noop_targets),
             *rebuild(ctx, runs, log), edit_loop(ctx, runs, log)]
    slow = slow_runs or runs
    if config_changes:
        cases += config_rows(ctx, slow, log)
    if cold_build:
        cases.append(cold(ctx, slow, log, ctx.root / "build" / "bench-cold"))
    return {"cases": cases, "external": external(results_dir), "log": str(log)}
