"""`python -m bench`: tinyuki's numbers, each from a benchmark anyone can rerun.

  python -m bench [all]            boot + size (+ build with --build), results in bench/results/
  python -m bench boot [--runs N] [--profile NAME ...]
  python -m bench size
  python -m bench net [--runs N]   boot to the first HTTP answer on the host (bench/profiles/fast-boot-net.toml)
  python -m bench build [--cold] [--config-change]
  python -m bench compare OLD.json NEW.json [--threshold 0.1]   exit 1 on a regression

Profiles without a build are built first with `doit` (the fast-boot and small
profiles: a few minutes each on a fresh machine); `--no-build-missing` skips them instead.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from bench import boot as bboot
from bench import build as bbuild
from bench import net as bnet
from bench import report
from bench import size as bsize
from bench.common import doit_cmd
from tinyuki.config.context import ROOT, Context, make_context
from tinyuki.errors import TinyukiError, die
from tinyuki.tasks import PIPELINE
from tinyuki.util import fs as fsutil
from tinyuki.util import runner

# Each shape on both kernels, side by side: a profile named SHAPE-X.Y is SHAPE's settings on Linux X.Y
# (configs/profiles/*-6.12.toml extend the 6.1 ones), held to SHAPE's goals.
DEFAULT_PROFILES = ("debian", "debian-6.12", "fast-boot", "fast-boot-6.12", "small", "small-6.12",
                    "arm64", "arm64-6.12")
DEFAULT = "debian"
KERNEL_SUFFIX_RE = re.compile(r"^(?P<shape>.+)-(?P<kernel>\d+\.\d+)$")
RESULTS = ROOT / "bench" / "results"
HANG_PROFILES = ("fast-boot",)  # whose default boot is repeated --hang-runs times: the "0 hangs in 100" goal
# What a profile's build must contain for the benchmark: small has no EFI, so no UKI.
BUILD_TARGETS = {"small": ["embed"]}


def shape_of(profile: str) -> str:
    """The shape a profile's name says it is: small-6.12 is small on another kernel; any other name is its own."""
    m = KERNEL_SUFFIX_RE.match(profile)
    return m.group("shape") if m else profile


def build_targets(profile: str) -> list[str]:
    return BUILD_TARGETS.get(shape_of(profile), [])

REST = "the rest (stub to program) vs the direct -kernel boot of the same kernel on the same machine"
GOALS = (
    # (goal, target text, where the figure comes from, limit): the performance issue's goals, in its order.
    # A boot figure: ("boot", profile, case name or None for the profile's first case, key).
    ("fast-boot: QEMU start to the program", "≤ 0.250 s (about 8× QEMU's floor)",
     ("boot", "fast-boot", None, "to_program"), 0.25),
    ("fast-boot: VM exit after the program asks for power-off", "≤ 0.020 s",
     ("boot", "fast-boot", None, "exit_after_program"), 0.02),
    ("fast-boot: hangs", "0 in 100 boots", ("boot", "fast-boot", None, "hangs"), 0),
    ("debian: QEMU start to the program", "≤ 0.600 s", ("boot", "debian", None, "to_program"), 0.6),
    ("small: bzImage with the embedded program", "≤ 640 KB (655,360 B)", ("size", "small", "bzImage"), 655360),
    ("small: init", "≤ 1 KB (1,024 B)", ("size", "small", "init"), 1024),
    (f"debian: UKI through OVMF, {REST}", "≤ 1.20×",
     ("boot", "debian", "UKI via OVMF (q35, pflash)", "rest_ratio_same_machine"), 1.2),
    (f"fast-boot: UKI through OVMF, {REST}", "≤ 1.20×",
     ("boot", "fast-boot", "UKI via OVMF (q35, pflash)", "rest_ratio_same_machine"), 1.2),
    (f"arm64: UKI through AAVMF, {REST}", "≤ 1.20×",
     ("boot", "arm64", "UKI via AAVMF (virt, pflash)", "rest_ratio_same_machine"), 1.2),
)
# The build goals, from the rows bench/build.py writes (their names are its constants, read here, so a
# renamed row drops its goal instead of showing a wrong one): (goal, target, rows, key, limit).
NOOP_ROW = getattr(bbuild, "NOOP", "no-op build")  # "no-op build" (debian), "no-op build (PROFILE)" for others
BUILD_GOALS = (
    ("program edit → new UKI vs kbuild's relink", "≤ 1.10×",
     (getattr(bbuild, "REBUILD", "rebuild after a one-line change to the program"),), "ratio", 1.1),
    ("program edit → its line on the console, [kernel] initramfs = \"initrd\"", "≤ 1.500 s",
     (getattr(bbuild, "LOOP", "edit loop"),), "tinyuki", 1.5),
    ("program edit → its line on the console: initrd vs embedded", "≤ 0.30×",
     (getattr(bbuild, "LOOP", "edit loop"),), "ratio", 0.3),
    ("one local option changed → new UKI vs kbuild's incremental rebuild", "≤ 1.30×",
     tuple(c.name for c in getattr(bbuild, "CONFIG_CHANGES", ())[:1]), "ratio", 1.3),
    ("the option kbuild spreads everywhere changed → new UKI vs kbuild's incremental rebuild", "≤ 1.20×",
     tuple(c.name for c in getattr(bbuild, "CONFIG_CHANGES", ())[1:2]), "ratio", 1.2),
    ("cold build vs the same make commands by hand", "≤ 1.03×",
     ("cold build of the kernel (configure + build)",), "ratio", 1.03),
    ("no-op doit", "≤ 0.250 s", (NOOP_ROW,), "tinyuki", 0.25),
)
NOOP_OF_RE = re.compile(rf"^{re.escape(NOOP_ROW)} \((?P<profile>[^()]+)\)$")


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
        runner.run(doit_cmd(f"profile={ctx.profile.path}", *build_targets(ctx.profile.name)), cwd=ROOT,
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


def only_names(only: str) -> list[str]:
    """--only's case names: split at commas, but not at the ", " inside a name like "UKI via OVMF (q35, pflash)"."""
    return [n.strip() for n in re.split(r",(?! )", only) if n.strip()]


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
        if shape_of(ctx.profile.name) in HANG_PROFILES and cases and hang_runs > runs:
            cases[0] = bboot.Case(**{**cases[0].__dict__, "runs": hang_runs})
        chosen = [c for c in cases if c.name in only_names(only)] if only else cases
        plan.append((ctx, config, bboot.with_rest_baselines(cases, chosen)))
    n = sum(len(c) for _, _, c in plan)
    # QEMU's floor takes part in every round, the hang count's extra rounds included: it costs 0.04 s a boot.
    rounds = max([runs, *(c.runs or 0 for _, _, cs in plan for c in cs)])
    print(f"bench boot: {n} cases x {runs} runs and QEMU's floor x {rounds}, TCG", file=sys.stderr)
    cases = bboot.run_cases(plan, runs, floor_at=bboot.floor_case(rounds))
    notes = [
        "KVM is not used: the KVM probe of `doit boot` found it unusable on this host (nested); all boots are TCG.",
        "'before kernel' is QEMU start to the kernel clock's zero (QEMU, firmware, setup, decompressor, earliest "
        "setup); for a bzImage, minus the same figure for the PVH vmlinux of the same build, it is the "
        "decompression.",
        "'exit after program' is the marker line to QEMU's exit: the program's own work plus the power-off.",
        "External initrd: the same bzImage (which embeds the initramfs) plus initrd.img, unpacked over it.",
        f"'{bboot.FLOOR_NAME}' is QEMU's own floor (bench/floor.py): QEMU start to its exit for a guest that "
        "writes to isa-debug-exit at its first instruction, booted in the same rounds as every case. "
        "'× floor' is a case's median to the program over the floor's median; the x86_64 cases only.",
        "UKI rows: 'firmware' is QEMU start to the firmware's `BdsDxe: starting Boot0001` line, as it starts "
        "EFI/BOOT/BOOTX64.EFI (BOOTAA64.EFI); 'rest' is from there to the program: systemd's stub, the "
        "kernel's EFI stub and decompressor, kernel init and exec. The rest is put against the time to the "
        "program of the direct -kernel boot of the same kernel image on q35, the chipset OVMF needs (so that "
        "only the stubs and the EFI boot differ: the goal's baseline), and on the profile's machine (microvm: "
        "how tinyuki boots it without firmware).",
        "-bios OVMF.fd: Debian's 2 MiB OVMF as one read-only image instead of the 4 MiB pflash code and a "
        "variable store. Its variables are emulated in RAM and gone at power-off: no enrolled Secure Boot "
        "keys (secureboot=1 needs the store) and no variable the OS writes survives. Booting the removable "
        "media path (EFI/BOOT/BOOTX64.EFI) needs neither, and tinyuki's pflash boots start from a fresh copy "
        "of the store anyway.",
    ]
    return {"accel": "tcg", "runs": runs, "cases": cases, "notes": notes}


def _boot_case(results: dict[str, Any], profile: str, name: str | None) -> dict[str, Any] | None:
    """A profile's boot case by name; None names the profile's first case (its default boot)."""
    cases = [c for c in results.get("boot", {}).get("cases", []) if c["profile"] == profile]
    if not cases:
        return None
    return cases[0] if name is None else next((c for c in cases if c["name"] == name), None)


def _value(value: Any) -> float | None:
    """A figure as the goals compare it: a summary by its median."""
    return value.get("median") if isinstance(value, dict) else value


def _find(results: dict[str, Any], path: tuple[Any, ...]) -> float | None:
    section, profile = path[0], path[1]
    if section == "size":
        return (results.get("size", {}).get("profiles", {}).get(profile) or {}).get(path[2])
    case = _boot_case(results, profile, path[2])
    return None if case is None else _value(case.get(path[3]))


def _measured_text(value: float, key: str, case: dict[str, Any] | None) -> str:
    """The measured figure as the goals table shows it, with what makes it comparable across hosts."""
    if key == "rest_ratio_same_machine" and case is not None:
        # Judged on the firmware's own machine, so that only the stubs and the EFI boot differ; the
        # profile's direct boot (microvm for x86_64: no firmware runs there) is shown beside it.
        rest, fw = _value(case.get("rest")), _value(case.get("firmware"))
        own, own_name = case.get("rest_ratio"), case.get("rest_baseline")
        shares = ([f"rest {rest:.3f} s"] if rest is not None else []) + \
                 ([f"the firmware's share {fw:.3f} s"] if fw is not None else []) + \
                 ([f"{own:.2f}× vs {own_name}, the profile's direct boot"]
                  if own is not None and own_name != case.get("rest_baseline_same_machine") else [])
        against = f" vs {case['rest_baseline_same_machine']}" if case.get("rest_baseline_same_machine") else ""
        return f"{value:.2f}×{against}" + (f" ({'; '.join(shares)})" if shares else "")
    if key.endswith("ratio"):
        return f"{value:.2f}×"
    if isinstance(value, int):
        return f"{value:,}"
    text = f"{value:.3f}"
    if case is not None and key == "to_program":
        extra = []
        split = case.get("split") or {}
        before, kinit, exec_ = (split.get(k) for k in ("before_kernel", "kernel_init", "exec_init"))
        if before is not None and kinit is not None and exec_ is not None:
            extra.append(f"before the kernel {before:.3f}, kernel init {kinit:.3f}, exec {exec_:.3f}")
        elif before is not None:  # `quiet`: no stamps between the kernel's start and the program
            extra.append(f"before the kernel {before:.3f}, kernel to program {value - before:.3f}")
        if case.get("floor_ratio") is not None:
            extra.append(f"{case['floor_ratio']:.1f}× QEMU's floor")
        if extra:
            text += f" ({'; '.join(extra)})"
    return text


def _build_row(row: dict[str, Any]) -> tuple[str, str]:
    """A build row's profile and its name as the goals know it: `no-op build (small)` is small's no-op build."""
    name = str(row.get("name", ""))
    per_profile = NOOP_OF_RE.match(name)
    if per_profile:
        return per_profile.group("profile"), NOOP_ROW
    return str(row.get("profile") or DEFAULT), name


def _build_goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The build goals, one per row bench/build.py wrote (the no-op one per profile, a config change per option).

    A goal without a row, or whose row has no figure (it failed: bench/build.py
    keeps the error in the row), is not listed.
    """
    out = []
    rows = [(*_build_row(r), r) for r in results.get("build", {}).get("cases", [])]
    for goal, target, names, key, limit in BUILD_GOALS:
        for profile, name, row in rows:
            value = _value(row.get(key)) if name in names else None
            if value is None:
                continue
            which = f" ({name})" if len(names) > 1 else ""  # which option changed, when there are several
            text = f"{value:.2f}×" if key == "ratio" else f"{value:.3f}"
            out.append({"goal": f"{profile}: {goal}{which}", "target": target, "measured": text,
                        "met": value <= limit})
    return out


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal with its measured figure; 'hangs' only counts as met over at least 100 boots.

    A goal whose figure was not measured (a profile not built, a row bench/build.py
    does not write) is left out rather than shown as failed.
    """
    measured = [*(c["profile"] for c in results.get("boot", {}).get("cases", [])),
                *results.get("size", {}).get("profiles", {})]
    out = []
    for goal, target, path, limit in GOALS:
        # the goal's own profile first, then the same shape on the other kernels, as they were measured
        for profile in dict.fromkeys(p for p in (path[1], *measured) if shape_of(p) == path[1]):
            at = (path[0], profile, *path[2:])
            value = _find(results, at)
            if value is None:
                continue
            met = value <= limit
            case = _boot_case(results, profile, path[2]) if path[0] == "boot" else None
            text = _measured_text(value, path[-1], case)
            if path[-1] == "hangs" and case is not None:
                text = f"{value} in {case['runs']} boots"
                met = met and case["runs"] >= 100
            named = f"{profile}{goal.removeprefix(path[1])}" if goal.startswith(f"{path[1]}:") else goal
            out.append({"goal": named, "target": target, "measured": text, "met": met})
    return out + _build_goals(results)


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
    names = args.profile or (["fast-boot"] if args.what == "net" else list(DEFAULT_PROFILES))
    command = shlex.join(["python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])])
    results: dict[str, Any] = {}
    if args.what != "all" and args.out.is_file():
        # one part rerun: the other parts of the last results stay, each with its own command
        results = {k: v for k, v in load_results(args.out).items() if k in ("boot", "size", "build", "net")}
    results.update({**report.machine(ROOT), "command": command})
    ctxs = contexts(names, not args.no_build_missing)
    # the network row: fast-boot's kernel plus net, beside fast-boot's own boot (bench/net.py)
    net_ctxs = contexts([str(bnet.PROFILE)], not args.no_build_missing) if args.what in ("all", "net", "size") else []
    if args.what in ("all", "boot"):
        load = report.load_average()
        results["boot"] = {**run_boot(ctxs, args.runs or 10, args.only, args.hang_runs), "command": command,
                           "load": load}
    if net_ctxs and args.what in ("all", "net"):
        load = report.load_average()
        fast = next((c for c in ctxs if c.profile.name == "fast-boot"), None)
        results["net"] = {**bnet.measure(net_ctxs[0], fast, args.runs or 10), "command": command, "load": load}
    if args.what in ("all", "size"):
        load = report.load_average()
        results["size"] = {**bsize.measure([*ctxs, *net_ctxs], DEFAULT), "command": command, "load": load}
    if args.what == "build" or (args.what == "all" and args.build):
        dctx = make_context(DEFAULT)
        load = report.load_average()
        # every measured profile gets its no-op row (goal: ≤ 0.25 s whatever its stages)
        targets = {c.profile.name: build_targets(c.profile.name) for c in ctxs}
        results["build"] = {**bbuild.measure(dctx, runs=args.runs or 1, cold_build=args.cold, results_dir=RESULTS,
                                             noop_contexts=ctxs, noop_targets=targets,
                                             config_changes=args.config_change, slow_runs=args.slow_runs),
                            "command": command, "load": load}
    results["goals"] = goals(results)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", default="all", choices=("all", "boot", "size", "build", "net", "compare"))
    ap.add_argument("files", nargs="*", help="compare: OLD.json NEW.json")
    ap.add_argument("--runs", type=int, default=None, help="boots per case (default 10), builds (default 1)")
    ap.add_argument("--profile", action="append", help=f"profiles to measure (default: {', '.join(DEFAULT_PROFILES)})")
    ap.add_argument("--hang-runs", type=int, default=100,
                    help="boots of fast-boot's default case, for its hang count (default 100; 0: --runs)")
    ap.add_argument("--only", help="boot: only these cases (names as in the table, comma-separated; "
                    "QEMU's floor and the direct boots a UKI case is compared with are booted too)")
    ap.add_argument("--build", action="store_true", help="all: include the build benchmark")
    ap.add_argument("--cold", action="store_true", help="build: also a cold build (minutes per run)")
    ap.add_argument("--config-change", action="store_true",
                    help="build: also the rebuilds after one config option changed (minutes per run)")
    ap.add_argument("--slow-runs", type=int, default=None,
                    help="build: runs of the rows that compile (--cold, --config-change; default --runs)")
    ap.add_argument("--no-build-missing", action="store_true", help="skip profiles that are not built")
    ap.add_argument("--threshold", type=float, default=report.DEFAULT_THRESHOLD, help="compare: 0.1 = 10 %%")
    ap.add_argument("--readme", action="store_true", help="also put the tables into README.md's Benchmarks section")
    ap.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    args = ap.parse_args(argv)
    # time Python as a user's shell runs it, with its bytecode cache: a shell that turns the cache off makes
    # every `doit` compile each module changed since its last .pyc again, and the no-op rows measure that
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

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
