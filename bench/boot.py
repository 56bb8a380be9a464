"""Boot benchmark: many boots of each way to start a build, timed from QEMU's start.

Each case is one way to boot one profile's build (machine, image, initrd,
command line); every case is booted `runs` times, round-robin, so a slow
moment of the shared host hits all cases alike instead of one. A boot that
times out, panics or never shows the marker is a hang: counted and reported
with the timings, never silently dropped. Booting goes through the same code
as `doit boot` (tinyuki/vm/qemu.py, tinyuki/vm/run.py's stream, tinyuki/vm/esp.py's ESP builder).
A profile of another architecture (arm64: the Image on QEMU's virt, its UKI
through AAVMF) gets the same cases its build can boot, emulated under TCG.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import report
from tasks import PIPELINE
from tinyuki.config.context import Context
from tinyuki.vm import boottime, qemu
from tinyuki.vm import run as vmrun
from tinyuki.vm.esp import make_esp

DIRECT_TIMEOUT = 20.0
UKI_TIMEOUT = 60.0


@dataclass(frozen=True)
class Case:
    """One way to boot a profile's build."""

    profile: str
    name: str
    image: str  # the pipeline output booted: "bzImage", "vmlinux", "Image" (arm64) or "uki"
    machine: str
    initrd: bool = False
    add: tuple[str, ...] = ()  # kernel command line words added
    drop: tuple[str, ...] = ()  # words removed from the profile's command line
    tsc_khz: bool = True  # let tinyuki/vm/qemu.py add tsc_early_khz on microvm/TCG
    qemu_args: tuple[str, ...] = ()
    ovmf: str = "pflash"  # "pflash" (CODE + fresh VARS, as doit boot) or "bios" (-bios OVMF.fd)
    baseline: str | None = None  # name of the case (same profile) this one is a ratio of
    runs: int | None = None  # boots of this case when it needs more than the others (a hang count)
    notes: tuple[str, ...] = field(default_factory=tuple)


def cmdline(base: str, case: Case) -> str:
    words = [w for w in base.split() if w not in case.drop]
    words += [w for w in case.add if w not in words]
    return " ".join(words)


def cases_for(ctx: Context, config: str, default_profile: bool) -> list[Case]:
    """The cases worth booting for this build: what it can boot, and its levers."""
    name = ctx.profile.name
    machine = ctx.profile.boot.machine
    image = ctx.profile.kernel.image
    target = ctx.arch
    pvh = qemu.has_option(config, "CONFIG_PVH")
    efi = qemu.has_option(config, "CONFIG_EFI_STUB")
    quiet = "quiet" in ctx.profile.kernel.cmdline.split()
    base = f"{machine} {image}"
    out = [Case(name, base, image, machine)]
    if default_profile:
        out += [
            Case(name, "pc bzImage", "bzImage", "pc", baseline=base),
            Case(name, "pc bzImage i8042.noaux i8042.nokbd", "bzImage", "pc",
                 add=("i8042.noaux", "i8042.nokbd"), baseline="pc bzImage"),
            Case(name, f"{machine} bzImage + external initrd", "bzImage", machine, initrd=True, baseline=base),
            Case(name, f"{machine} bzImage quiet", "bzImage", machine, add=("quiet",), baseline=base),
            Case(name, f"{machine} bzImage without tsc_early_khz", "bzImage", machine, tsc_khz=False,
                 baseline=base),
        ]
    if image != target.image_name:
        out.append(Case(name, f"{machine} {target.image_name}", target.image_name, machine, baseline=base))
    if pvh and image != "vmlinux":
        out.append(Case(name, f"{machine} vmlinux (PVH)", "vmlinux", machine, baseline=base))
    if not default_profile and pvh:
        if quiet:
            out.append(Case(name, f"{base} without quiet", image, machine, drop=("quiet",), baseline=base))
        out.append(Case(name, f"{base} without tsc_early_khz", image, machine, tsc_khz=False, baseline=base))
        out.append(Case(name, f"pc {image}", image, "pc", baseline=base))
    if efi and target.name != "x86_64":
        fw, fw_machine = qemu.firmware_name(target.name), qemu.firmware_machine(machine)
        out.append(Case(name, f"UKI via {fw} ({fw_machine}, pflash)", "uki", fw_machine, baseline=base))
    elif efi:
        out.append(Case(name, "UKI via OVMF (q35, pflash)", "uki", "q35", baseline=base))
        out.append(Case(name, "UKI via OVMF (q35, -bios OVMF.fd)", "uki", "q35", ovmf="bios",
                            baseline="UKI via OVMF (q35, pflash)"))
    return out


OVMF_BIOS = Path("/usr/share/ovmf/OVMF.fd")


def spec_for(ctx: Context, case: Case, config: str, tsc: int | None, esp: Path | None,
             vars_copy: Path | None) -> qemu.BootSpec:
    b = ctx.profile.boot
    spec = qemu.BootSpec(
        machine=case.machine, memory=b.memory, accel="tcg", cmdline=cmdline(ctx.profile.kernel.cmdline, case),
        arch=ctx.arch.name, cpu=b.cpu,
        kernel=PIPELINE.path(ctx, case.image) if case.image != "uki" else None,
        initrd=PIPELINE.path(ctx, "initrd") if case.initrd else None,
        virtio_mmio=qemu.has_option(config, "CONFIG_VIRTIO_MMIO"),
        tsc_khz=tsc if case.tsc_khz else None, extra=tuple(b.qemu_args) + case.qemu_args,
    )
    if case.image == "uki":
        if case.ovmf == "bios":
            spec = replace(spec, esp=esp, ovmf_code=None, ovmf_vars=None,
                           extra=(*spec.extra, "-bios", str(OVMF_BIOS)))
        else:
            spec = replace(spec, esp=esp, ovmf_code=b.ovmf_code, ovmf_vars=vars_copy)
    return spec


def _command(spec: qemu.BootSpec) -> list[str]:
    if spec.esp is not None and spec.ovmf_code is None:
        # -bios: OVMF as one read-only image, no variable store at all.
        cmd = qemu.command(replace(spec, ovmf_code=Path("/dev/null"), ovmf_vars=Path("/dev/null")))
        cut = [i for i, a in enumerate(cmd) if a == "-drive" and "if=pflash" in cmd[i + 1]]
        for i in reversed(cut):
            del cmd[i:i + 2]
        return cmd
    return qemu.command(spec)


@dataclass
class Tally:
    case: Case
    to_program: list[float] = field(default_factory=list)
    to_exit: list[float] = field(default_factory=list)
    splits: list[boottime.Split] = field(default_factory=list)
    hangs: int = 0
    failures: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)


def boot_once(ctx: Context, case: Case, config: str, tsc: int | None, work: Path, tally: Tally) -> None:
    b = ctx.profile.boot
    esp = vars_copy = None
    if case.image == "uki":
        esp = work / "esp.img"
        if not esp.exists():
            with contextlib.redirect_stderr(io.StringIO()):  # once per case, unechoed; a failure still raises
                make_esp(PIPELINE.path(ctx, "uki"), work, work / "esp.log", ctx.arch.efi_boot_file)
        vars_copy = work / "OVMF_VARS.fd"
        shutil.copyfile(b.ovmf_vars, vars_copy)  # fresh for every boot, as doit boot does
    spec = spec_for(ctx, case, config, tsc, esp, vars_copy)
    cmd = _command(spec)
    tally.command = cmd
    console = qemu.Console(ctx.profile.init.marker)
    timeout = UKI_TIMEOUT if case.image == "uki" else DIRECT_TIMEOUT
    # unechoed: the command is in the results, once per case
    ran = vmrun.stream(cmd, timeout=timeout, console=console, quiet=True)
    seconds = ran.seconds
    v = qemu.verdict(console, timed_out=ran.cut, returncode=ran.returncode, timeout=timeout)
    if console.marker_at is not None:
        tally.to_program.append(console.marker_at)
    if v.ok:
        tally.to_exit.append(seconds)
        tally.splits.append(boottime.split(console.lines, console.times, console.marker_at, seconds))
    else:
        tally.hangs += 1
        tally.failures.append(v.reason)


def _median_split(splits: Sequence[boottime.Split]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key in ("before_kernel", "kernel_init", "exec_init", "program"):
        vals = [getattr(s, key) for s in splits if getattr(s, key) is not None]
        summ = report.summarize(vals)
        out[key] = round(summ.median, 4) if summ else None
    return out


def run_cases(contexts: Sequence[tuple[Context, str, list[Case]]], runs: int) -> list[dict[str, Any]]:
    """Boot every case `runs` times, round-robin; returns one result dict per case."""
    tsc = vmrun.host_tsc_khz()
    tallies: list[tuple[Context, str, Tally]] = [(ctx, cfg, Tally(c)) for ctx, cfg, cases in contexts for c in cases]
    with tempfile.TemporaryDirectory(prefix="tinyuki-bench-") as tmp:
        works = []
        for i, _ in enumerate(tallies):
            w = Path(tmp) / str(i)
            w.mkdir()
            works.append(w)
        rounds = max([runs, *(t.case.runs or 0 for _, _, t in tallies)])
        for r in range(rounds):
            for (ctx, cfg, tally), work in zip(tallies, works, strict=True):
                if r < (tally.case.runs or runs):
                    boot_once(ctx, tally.case, cfg, tsc, work, tally)
            print(f"bench boot: round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    results = []
    for _ctx, _cfg, t in tallies:
        to_program = report.summarize(t.to_program)
        to_exit = report.summarize(t.to_exit)
        after = report.summarize([s.program for s in t.splits if s.program is not None])
        results.append({
            "profile": t.case.profile, "name": t.case.name, "baseline": t.case.baseline,
            "command": " ".join(t.command),
            "to_program": to_program.as_dict() if to_program else None,
            "to_exit": to_exit.as_dict() if to_exit else None,
            "exit_after_program": after.as_dict() if after else None,
            "hangs": t.hangs, "runs": t.case.runs or runs,
            "failures": sorted(set(t.failures)),
            "split": _median_split(t.splits),
        })
    add_ratios(results)
    return results


def add_ratios(results: list[dict[str, Any]]) -> None:
    """Each case's median time to the program as a ratio of its baseline's, from the same run."""
    by = {(r["profile"], r["name"]): r for r in results}
    for r in results:
        key = r.get("baseline")
        if key and ":" in key:  # "profile:case" for a ratio against another profile's build
            prof, _, name = key.partition(":")
            base = by.get((prof, name))
        else:
            base = by.get((r["profile"], key)) if key else None
        if base is None:
            r["ratio"] = None
            continue
        mine, theirs = r.get("to_program"), base.get("to_program")
        r["ratio"] = report.ratio(mine and mine["median"], theirs and theirs["median"])
        if r["ratio"] is not None:
            r["ratio"] = round(r["ratio"], 3)
