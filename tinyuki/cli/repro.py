"""`doit repro`: build the profile twice from scratch in different surroundings and compare every stage.

Reproducibility claimed but not checked does not last: a new fragment, patch
or compiler can leak a path or a clock into the image. This task runs the
real pipeline (a `doit` subprocess each time) in two fresh build dirs whose
paths differ in length, from different working directories, with another
umask, time zone, locale, -j, user and host name, seconds apart. Only the
verified source and its extracted tree are shared (through the cache), so
configure, kernel, init, initramfs, embed and uki all run twice.

`doit repro compare=A.json,B.json` compares two existing manifests instead,
for example from two CI runners.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from doit import get_var

import tinyuki
from tinyuki import reprocheck
from tinyuki.cli.actions import action
from tinyuki.config.context import Context
from tinyuki.errors import TinyukiError, die
from tinyuki.reprocheck import Manifest, Row, Surroundings
from tinyuki.tasks import PIPELINE
from tinyuki.util import runner
from tinyuki.util.fs import remove_tree

# (artifact, stage) in pipeline order: the first difference is the stage worth reading.
ARTIFACT_ORDER = tuple((name, stage.name) for name, stage, _out in PIPELINE.artifacts())
MIN_GAP = 3.0  # seconds between the end of build A and the start of build B: another wall-clock second
REPORT_LINES = 25
DIFFOSCOPE_TIMEOUT = 900
PROBE_TIMEOUT = 20  # seconds for `locale -a` and the unshare test


def _current_user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return os.environ.get("USER", "")


def _locales() -> list[str]:
    """The locales this host has (build B runs under another one than A); none when `locale` is missing."""
    try:
        proc = runner.run(["locale", "-a"], quiet=True, ok_codes=None, merge_stderr=False, timeout=PROBE_TIMEOUT)
    except TinyukiError:
        return []
    return proc.stdout.decode(errors="replace").split()


def uts_namespace_works() -> bool:
    """Whether `unshare --uts` may set a hostname here (root, and not forbidden by a container)."""
    if not shutil.which("unshare"):
        return False
    try:
        proc = runner.run(["unshare", "--uts", "sh", "-c", "hostname tinyuki-probe && hostname"], quiet=True,
                          ok_codes=None, merge_stderr=False, timeout=PROBE_TIMEOUT)
    except (OSError, TinyukiError):
        return False
    return proc.returncode == 0 and proc.stdout.decode(errors="replace").strip() == "tinyuki-probe"


def build_command(ctx: Context, s: Surroundings, *, uts: bool) -> list[str]:
    """One command line that sets up the surroundings itself, so the echoed line can be rerun by hand.

    `env -u` drops the variables that could carry another locale or a make
    jobserver into the build; `env` then sets the chosen ones; `sh -c` sets
    the umask (and the host name, inside a new UTS namespace) before exec'ing doit.
    """
    # the `tinyuki` command's task loader, not a dodo.py: the same pipeline wherever tinyuki is installed
    doit = [sys.executable, "-m", "tinyuki.main", "manifest",
            f"profile={ctx.profile.path}", f"build_dir={s.build_dir}", f"cache_dir={ctx.paths.cache}",
            f"jobs={s.jobs}"]
    unset = [arg for var in ("LANG", "LANGUAGE", "MAKEFLAGS", "MFLAGS", "MAKELEVEL") for arg in ("-u", var)]
    # the package this doit runs, found by the build's interpreter from any cwd (a clone is not installed)
    package_dir = str(Path(tinyuki.__file__).resolve().parent.parent)
    env = ["env", *unset, f"PYTHONPATH={package_dir}", f"TZ={s.tz}", f"LC_ALL={s.locale}", f"USER={s.user}",
           f"LOGNAME={s.user}", f"HOSTNAME={s.host}",
           # A compiles every object itself; B may use the compile cache (warm from earlier builds,
           # never from A), so an output changed by ccache shows up as a difference
           *([] if s.ccache else ["CCACHE_DISABLE=1", "TINYUKI_CCACHE=0"]),
           # the artifact cache would hand B what A built: each build runs every stage itself
           "TINYUKI_ARTIFACT_CACHE=off",
           # doit's lines and the commands it echoes then arrive in the order they happened
           "PYTHONUNBUFFERED=1"]
    setup = f"umask {s.umask:03o}"
    if uts:
        setup = f"hostname {shlex.quote(s.host)} && {setup}"
    shell = ["sh", "-c", f'{setup} && exec "$@"', "sh", *doit]
    return [*env, *(["unshare", "--uts"] if uts else []), *shell]


def run_build(ctx: Context, s: Surroundings, log: Path, *, uts: bool) -> None:
    """Run one build, its output shown line by line as it comes and kept in `log`."""
    print(f"repro: build {s.label} in {s.build_dir}\n"
          f"       cwd {s.cwd}, umask {s.umask:03o}, TZ={s.tz}, LC_ALL={s.locale}, jobs={s.jobs}, "
          f"user {s.user}, host {s.host}" + (" (own UTS namespace)" if uts else " (HOSTNAME only)"), flush=True)
    cmd = build_command(ctx, s, uts=uts)
    log.unlink(missing_ok=True)  # the runner appends: this log is of this build only

    def show(line: str, _at: float) -> None:
        # text, not bytes: under doit, sys.stdout is doit's writer, which has no binary side
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    result = runner.stream(cmd, cwd=s.cwd, log=log, on_line=show, what=f"repro build {s.label}")
    if result.returncode != 0:
        raise die(f"repro: build {s.label} failed (exit {result.returncode}) in {s.build_dir}; its output is in {log}",
                  "the error is shown above; a plain `doit` must succeed before `doit repro` can compare builds")


def diffoscope_report(a: Path, b: Path, report: Path) -> None:
    """Explain a difference with diffoscope, saving its text report; say how to get it when missing."""
    tool = shutil.which("diffoscope")
    if tool is None:
        print("repro: diffoscope is not installed, so the difference is not explained here;\n"
              "       install it with `apt-get install diffoscope-minimal` and run `doit repro` again")
        return
    if not (a.is_file() and b.is_file()):
        missing = ", ".join(str(p) for p in (a, b) if not p.is_file())
        print(f"repro: cannot run diffoscope: {missing} not on this machine (copy both build dirs here)")
        return
    # Written beside the report and renamed when complete, so a report on disk is always a whole one.
    tmp = report.with_name(f".{report.name}.tmp")
    by_hand = f"diffoscope {shlex.quote(str(a))} {shlex.quote(str(b))}"
    # diffoscope exits 1 when it found differences (the expected outcome here) and 2 on an error.
    # Its failure is reported, not raised: the verdict (not reproducible) stands without the explanation.
    try:
        runner.run([tool, "--text", str(tmp), "--no-progress", str(a), str(b)], what="diffoscope",
                   timeout=DIFFOSCOPE_TIMEOUT, ok_codes=(0, 1))
    except runner.TimedOut:
        tmp.unlink(missing_ok=True)
        print(f"repro: diffoscope gave no answer within {DIFFOSCOPE_TIMEOUT}s; run it by hand: {by_hand}")
        return
    except TinyukiError as e:
        tmp.unlink(missing_ok=True)
        print(f"repro: {e.message}\n       run it by hand: {by_hand}")
        return
    if not tmp.is_file():
        print(f"repro: diffoscope wrote no report; run it by hand: {by_hand}")
        return
    os.replace(tmp, report)
    lines = report.read_text(encoding="utf-8", errors="replace").splitlines()
    print(f"repro: diffoscope report: {report} ({len(lines)} lines); it begins:")
    for line in lines[:REPORT_LINES]:
        print(f"  {line}")
    if len(lines) > REPORT_LINES:
        print(f"  ... ({len(lines) - REPORT_LINES} more lines in {report})")


def judge(a: Manifest, b: Manifest, report_dir: Path) -> list[Row]:
    """Print the comparison; explain the first difference and fail if there is one."""
    rows = reprocheck.compare(a, b, ARTIFACT_ORDER)
    print(f"A: {a.source}\nB: {b.source}")
    print(reprocheck.table(rows))
    print(reprocheck.verdict(rows))
    first = reprocheck.first_difference(rows)
    if first is None:
        return rows
    report = None
    if first.a is not None and first.b is not None:
        report = report_dir / f"diffoscope-{first.artifact}.txt"
        diffoscope_report(a.file(first.artifact), b.file(first.artifact), report)
    where = f"; diffoscope's report: {report}" if report is not None and report.is_file() else ""
    raise die(f"{reprocheck.verdict(rows)}{where}",
              f"the {first.stage} stage's output depends on something besides its inputs; see README.md's "
              "\"Reproducibility\" section for what the pipeline fixes, and compare the two builds' logs/ dirs")


def compare_manifests(spec: str, report_dir: Path) -> list[Row]:
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) != 2 or not all(parts):
        raise die(f"compare={spec!r} must name two manifest files separated by a comma",
                  "for example: doit repro compare=runner1/manifest.json,runner2/manifest.json")
    a, b = (reprocheck.load_manifest(Path(p).absolute()) for p in parts)
    return judge(a, b, report_dir)


def build_twice(ctx: Context, base: Path) -> list[Row]:
    """Both builds from scratch: previous repro build dirs are removed first."""
    a, b = reprocheck.plan(base, ctx.jobs, _current_user(), socket.gethostname(), _locales())
    for s in (a, b):
        remove_tree(s.build_dir)
        s.cwd.mkdir(parents=True, exist_ok=True)
    uts = uts_namespace_works()
    if not uts:
        print("repro: `unshare --uts` is not permitted here: build B's host name differs only in HOSTNAME")
    run_build(ctx, a, base / "build-a.log", uts=uts)
    time.sleep(MIN_GAP)
    run_build(ctx, b, base / "build-b.log", uts=uts)
    manifests = (reprocheck.load_manifest(s.build_dir / "manifest.json") for s in (a, b))
    return judge(*manifests, report_dir=base)


def repro(ctx: Context, compare: str = "", repro_dir: str = "") -> None:
    compare = get_var("compare", None) or compare
    repro_dir = get_var("repro_dir", None) or repro_dir
    base = Path(repro_dir).absolute() if repro_dir else ctx.paths.build / "repro"
    base.mkdir(parents=True, exist_ok=True)
    if compare:
        compare_manifests(compare, base)
    else:
        build_twice(ctx, base)


def task(ctx: Context) -> dict[str, Any]:
    def run(compare: str, repro_dir: str) -> None:
        repro(ctx, compare, repro_dir)

    return {
        "basename": "repro",
        "doc": "Build twice in different surroundings and compare every stage's sha256 (repro compare=A,B).",
        "actions": [action(run)],
        "params": [
            {"name": "compare", "long": "compare", "type": str, "default": "",
             "help": "A,B: compare two existing manifest.json files instead of building (or compare=A,B)"},
            {"name": "repro_dir", "long": "repro_dir", "type": str, "default": "",
             "help": "where the two builds go (default build/<profile>/repro; or repro_dir=DIR)"},
        ],
        "uptodate": [False],
        "verbosity": 2,
    }
