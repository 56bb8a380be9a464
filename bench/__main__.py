"""`python -m bench`: tinyuki's numbers, each from a benchmark anyone can rerun.

  python -m bench [all]            boot + size (+ build with --build), results in bench/results/
  python -m bench boot [--runs N] [--profile NAME ...]
  python -m bench size
  python -m bench build [--cold]
  python -m bench compare OLD.json NEW.json [--threshold 0.1]   exit 1 on a regression

Profiles without a build are built first with `doit` (the fast-boot and small
profiles: a few minutes each on a fresh machine); `--no-build-missing` skips them instead.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from bench import boot as bboot
from bench import build as bbuild
from bench import report
from bench import size as bsize
from bench.common import doit_cmd
from tasks import PIPELINE
from tinyuki.config.context import ROOT, Context, make_context
from tinyuki.errors import TinyukiError, die
from tinyuki.util import fs as fsutil
from tinyuki.util import runner

DEFAULT_PROFILES = ("debian", "fast-boot", "small", "arm64")
DEFAULT = "debian"
RESULTS = ROOT / "bench" / "results"
HANG_PROFILES = ("fast-boot",)  # whose default boot is repeated --hang-runs times: the "0 hangs in 100" goal
# What a profile's build must contain for the benchmark: small has no EFI, so no UKI.
BUILD_TARGETS = {"small": ["embed"]}

GOALS = (
    # (goal, target text, where the figure comes from, limit)
    ("fast-boot: QEMU start to the program", "≤ 0.400 s", ("boot", "fast-boot", None, "to_program"), 0.4),
    ("fast-boot: VM exit after the program asks for power-off", "≤ 0.050 s",
     ("boot", "fast-boot", None, "exit_after_program"), 0.05),
    ("fast-boot: hangs", "0 in 100 boots", ("boot", "fast-boot", None, "hangs"), 0),
    ("small: bzImage with the embedded program", "≤ 800 KB (819,200 B)", ("size", "small", "bzImage"), 819200),
    ("small: init", "≤ 1 KB (1,024 B)", ("size", "small", "init"), 1024),
    ("debian: UKI through OVMF to the program", "≤ 2.500 s",
     ("boot", "debian", "UKI via OVMF (q35, pflash)", "to_program"), 2.5),
    ("fast-boot: UKI through OVMF to the program", "≤ 2.500 s",
     ("boot", "fast-boot", "UKI via OVMF (q35, pflash)", "to_program"), 2.5),
)


def ensure_built(ctx: Context, build_missing: bool) -> bool:
    needed = PIPELINE.path(ctx, ctx.arch.image_name)
    if needed.is_file():
        return True
    if not build_missing:
        print(f"bench: {ctx.profile.name} is not built ({needed} missing): skipped", file=sys.stderr)
        return False
    log = ctx.paths.logs / "bench-build-missing.log"
    print(f"bench: building {ctx.profile.name} first (a few minutes; its output goes to {log})", file=sys.stderr)
    try:
        runner.run(doit_cmd(f"profile={ctx.profile.name}", *BUILD_TARGETS.get(ctx.profile.name, [])), cwd=ROOT,
                   log=log, what=f"building {ctx.profile.name}")
    except TinyukiError as e:
        print(f"{e}\nbench: {ctx.profile.name} skipped", file=sys.stderr)
        return False
    return True


def contexts(names: list[str], build_missing: bool) -> list[Context]:
    out = []
    for name in names:
        ctx = make_context(name)
        if ensure_built(ctx, build_missing):
            out.append(ctx)
    return out


def run_boot(ctxs: list[Context], runs: int, only: str | None = None, hang_runs: int = 0) -> dict[str, Any]:
    plan = []
    for ctx in ctxs:
        config_file = PIPELINE.path(ctx, "kernel.config")
        config = config_file.read_text(encoding="utf-8") if config_file.is_file() else ""
        cases = bboot.cases_for(ctx, config, default_profile=ctx.profile.name == DEFAULT)
        d = make_context(DEFAULT).profile
        # another architecture's boot is emulated differently: a ratio against debian's would say nothing
        if ctx.profile.name != DEFAULT and cases and ctx.profile.kernel.arch == d.kernel.arch:
            cases[0] = bboot.Case(**{**cases[0].__dict__,
                                     "baseline": f"{DEFAULT}:{d.boot.machine} {d.kernel.image}"})
        if ctx.profile.name in HANG_PROFILES and cases and hang_runs > runs:
            cases[0] = bboot.Case(**{**cases[0].__dict__, "runs": hang_runs})
        if only:
            cases = [c for c in cases if c.name in only.split(",")]
        plan.append((ctx, config, cases))
    n = sum(len(c) for _, _, c in plan)
    print(f"bench boot: {n} cases x {runs} runs, TCG", file=sys.stderr)
    cases = bboot.run_cases(plan, runs)
    notes = [
        "KVM is not used: the KVM probe of `doit boot` found it unusable on this host (nested); all boots are TCG.",
        "'before kernel' is QEMU start to the kernel clock's zero (QEMU, firmware, setup, decompressor, earliest "
        "setup); for a bzImage, minus the same figure for the PVH vmlinux of the same build, it is the "
        "decompression.",
        "'exit after program' is the marker line to QEMU's exit: the program's own work plus the power-off.",
        "External initrd: the same bzImage (which embeds the initramfs) plus initrd.img, unpacked over it.",
    ]
    return {"accel": "tcg", "runs": runs, "cases": cases, "notes": notes}


def _find(results: dict[str, Any], path: tuple[Any, ...]) -> float | None:
    section, profile = path[0], path[1]
    if section == "size":
        return (results.get("size", {}).get("profiles", {}).get(profile) or {}).get(path[2])
    cases = [c for c in results.get("boot", {}).get("cases", []) if c["profile"] == profile]
    if not cases:
        return None
    case = cases[0] if path[2] is None else next((c for c in cases if c["name"] == path[2]), None)
    if case is None:
        return None
    value = case.get(path[3])
    if isinstance(value, dict):
        return value.get("median")
    return value


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal with its measured figure; 'hangs' only counts as met over at least 100 boots."""
    out = []
    for goal, target, path, limit in GOALS:
        value = _find(results, path)
        if value is None:
            continue
        met = value <= limit
        text = f"{value:,}" if isinstance(value, int) else f"{value:.3f}"
        if path[-1] == "hangs":
            case = next(c for c in results["boot"]["cases"] if c["profile"] == path[1])
            text = f"{value} in {case['runs']} boots"
            met = met and case["runs"] >= 100
        out.append({"goal": goal, "target": target, "measured": text, "met": met})
    return out


def write(results: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fsutil.atomic_write_json(out, results)
    md = report.markdown(results)
    fsutil.atomic_write(out.with_suffix(".md"), md)
    print(md)
    print(f"bench: wrote {out} and {out.with_suffix('.md')}", file=sys.stderr)


README_START = "<!-- bench:start (written by python -m bench --readme) -->"
README_END = "<!-- bench:end -->"


def update_readme(readme: Path, md: str) -> None:
    """Put the tables between the README's benchmark markers; nothing else in the README changes."""
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        print(f"bench: no benchmark markers in {readme}: not updated", file=sys.stderr)
        return
    fsutil.atomic_write(readme, text[:start + len(README_START)] + "\n" + md.rstrip() + "\n" + text[end:])
    print(f"bench: updated the tables in {readme}", file=sys.stderr)


def load_results(path: Path) -> dict[str, Any]:
    """A results document written by an earlier run (bench/results/*.json)."""
    hint = f"give results files that python -m bench wrote, such as {RESULTS / 'latest.json'}"
    try:
        data = fsutil.read_json(path)
    except FileNotFoundError:
        raise die(f"{path}: no such file", hint) from None
    except (OSError, ValueError) as e:
        raise die(f"{path} is not a results file ({e})", hint) from None
    if not isinstance(data, dict):
        raise die(f"{path} is not a results file (not a JSON object)", hint)
    return data


def measure(args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    """Run the benchmarks the command line asks for; the results document, with its goals."""
    names = args.profile or list(DEFAULT_PROFILES)
    command = shlex.join(["python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])])
    results: dict[str, Any] = {}
    if args.what != "all" and args.out.is_file():
        # one part rerun: the other parts of the last results stay, each with its own command
        results = {k: v for k, v in load_results(args.out).items() if k in ("boot", "size", "build")}
    results.update({**report.machine(ROOT), "command": command})
    ctxs = contexts(names, not args.no_build_missing)
    if args.what in ("all", "boot"):
        results["boot"] = {**run_boot(ctxs, args.runs or 10, args.only, args.hang_runs), "command": command}
    if args.what in ("all", "size"):
        results["size"] = {**bsize.measure(ctxs, DEFAULT), "command": command}
    if args.what == "build" or (args.what == "all" and args.build):
        dctx = make_context(DEFAULT)
        results["build"] = {**bbuild.measure(dctx, runs=args.runs or 1, cold_build=args.cold,
                                             results_dir=RESULTS), "command": command}
    results["goals"] = goals(results)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", default="all", choices=("all", "boot", "size", "build", "compare"))
    ap.add_argument("files", nargs="*", help="compare: OLD.json NEW.json")
    ap.add_argument("--runs", type=int, default=None, help="boots per case (default 10), builds (default 1)")
    ap.add_argument("--profile", action="append", help=f"profiles to measure (default: {', '.join(DEFAULT_PROFILES)})")
    ap.add_argument("--hang-runs", type=int, default=100,
                    help="boots of fast-boot's default case, for its hang count (default 100; 0: --runs)")
    ap.add_argument("--only", help="boot: only these cases (names as in the table, comma-separated)")
    ap.add_argument("--build", action="store_true", help="all: include the build benchmark")
    ap.add_argument("--cold", action="store_true", help="build: also a cold build (minutes per run)")
    ap.add_argument("--no-build-missing", action="store_true", help="skip profiles that are not built")
    ap.add_argument("--threshold", type=float, default=report.DEFAULT_THRESHOLD, help="compare: 0.1 = 10 %%")
    ap.add_argument("--readme", action="store_true", help="also put the tables into README.md's Benchmarks section")
    ap.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    args = ap.parse_args(argv)

    if args.what == "compare" and len(args.files) != 2:
        ap.error("compare needs OLD.json NEW.json")
    try:
        if args.what == "compare":
            old, new = (load_results(Path(f)) for f in args.files)
            worse, better, missing = report.compare(old, new, args.threshold)
            print(report.compare_text(worse, better, missing, args.threshold))
            return 1 if worse else 0
        results = measure(args, argv)
    except TinyukiError as e:
        print(e, file=sys.stderr)  # renders as "error: ..." with its hint
        return 1
    write(results, args.out)
    if args.readme:
        update_readme(ROOT / "README.md", report.markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
