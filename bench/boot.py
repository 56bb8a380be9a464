"""Boot benchmark: many boots of each way to start a build, timed from QEMU's start.

Each case is one way to boot one profile's build (machine, image, initrd,
command line); every case is booted `runs` times, round-robin, so a slow
moment of the shared host hits all cases alike instead of one. A boot that
times out, panics or never shows the marker is a hang: counted and reported
with the timings, never silently dropped. Booting goes through the same code
as `doit boot` (tinyuki/vm/qemu.py, tinyuki/vm/run.py's stream, tinyuki/vm/esp.py's ESP builder).
A profile of another architecture (arm64: the Image on QEMU's virt, its UKI
through AAVMF) gets the same cases its build can boot, emulated under TCG.

QEMU's own floor (bench/floor.py: a guest that exits at its first
instruction) is one more case of the same round-robin, so every x86_64 case
also has its ratio to the floor of the same moment: a figure that moves less
with the host's CPU than seconds do. A UKI case is split at the firmware's
handover (tinyuki/vm/boottime.py): the firmware's share, and the rest, which is
compared with the direct -kernel boot of the same kernel image, both on the
profile's own machine (what tinyuki boots it on without firmware) and on the
firmware's machine (q35: the same chipset, so only the stubs differ).
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

from bench import floor, report
from tinyuki.config.context import Context
from tinyuki.tasks import PIPELINE
from tinyuki.vm import boottime, qemu
from tinyuki.vm import run as vmrun
from tinyuki.vm.esp import make_esp

DIRECT_TIMEOUT = 20.0
UKI_TIMEOUT = 60.0
FLOOR_PROFILE = "qemu"  # the floor's row belongs to no profile: QEMU alone
FLOOR_NAME = "floor: PVH stub that exits at once (microvm)"
FLOOR_ARCH = "x86_64"  # the floor's guest is x86: only x86_64 cases get a ratio to it


# Boot-time words a profile's command line may carry (configs/profiles/*.toml say why).
LEVERS = ("nolapic_timer",)


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
    # A UKI case: the direct boots of the same kernel image its rest (handover to program) is compared with:
    # on the profile's machine, and on the firmware's machine (the same chipset: the goal's baseline).
    rest_baseline: str | None = None
    rest_baseline_same_machine: str | None = None
    runs: int | None = None  # boots of this case when it needs more than the others (a hang count)
    notes: tuple[str, ...] = field(default_factory=tuple)


def floor_case(runs: int | None = None) -> Case:
    """QEMU's floor as a case of the round-robin: booted with the others, so a slow moment hits it too."""
    return Case(FLOOR_PROFILE, FLOOR_NAME, "floor", "microvm", runs=runs)


def cmdline(base: str, case: Case) -> str:
    words = [w for w in base.split() if w not in case.drop]
    words += [w for w in case.add if w not in words]
    return " ".join(words)


def cases_for(ctx: Context, config: str, default_profile: bool) -> list[Case]:
    """The cases worth booting for this build: what it can boot, and its levers."""
    name = ctx.profile.name
    machine = ctx.profile.boot.machine
    target = ctx.arch
    # vmlinuz.efi (arm64's EFI zboot image) is only the UKI's: -kernel starts the Image it wraps, as `doit boot`
    image = target.image_name if ctx.profile.kernel.image == "vmlinuz.efi" else ctx.profile.kernel.image
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
    # the command-line levers a profile takes, each undone alone: what each one is worth in this run
    for lever in LEVERS:
        if lever in ctx.profile.kernel.cmdline.split():
            out.append(Case(name, f"{base} without {lever}", image, machine, drop=(lever,), baseline=base))
    if image != target.image_name:
        out.append(Case(name, f"{machine} {target.image_name}", target.image_name, machine, baseline=base))
    if pvh and image != "vmlinux":
        out.append(Case(name, f"{machine} vmlinux (PVH)", "vmlinux", machine, baseline=base))
    if not default_profile and pvh:
        if quiet:
            out.append(Case(name, f"{base} without quiet", image, machine, drop=("quiet",), baseline=base))
        out.append(Case(name, f"{base} without tsc_early_khz", image, machine, tsc_khz=False, baseline=base))
        out.append(Case(name, f"pc {image}", image, "pc", baseline=base))
    # The UKI carries the architecture's image (bzImage, Image): its direct boot is the rest's baseline.
    direct = f"{machine} {target.image_name}"
    if efi and target.name != "x86_64":
        fw, fw_machine = qemu.firmware_name(target.name), qemu.firmware_machine(machine)
        same = f"{fw_machine} {target.image_name}"
        out.append(Case(name, f"UKI via {fw} ({fw_machine}, pflash)", "uki", fw_machine, baseline=base,
                        rest_baseline=direct, rest_baseline_same_machine=same))  # virt: both are one case
    elif efi:
        same = f"q35 {target.image_name}"  # booted when a UKI case is: see with_rest_baselines()
        out.append(Case(name, "UKI via OVMF (q35, pflash)", "uki", "q35", baseline=base,
                        rest_baseline=direct, rest_baseline_same_machine=same))
        out.append(Case(name, "UKI via OVMF (q35, -bios OVMF.fd)", "uki", "q35", ovmf="bios",
                        baseline="UKI via OVMF (q35, pflash)", rest_baseline=direct,
                        rest_baseline_same_machine=same))
    return out


def with_rest_baselines(cases: Sequence[Case], chosen: Sequence[Case]) -> list[Case]:
    """`chosen` (a selection of `cases`) plus the direct boots its UKI cases' rests are compared with.

    A baseline among `cases` is taken as it is; one that is not (the same
    kernel directly on q35, the firmware's machine) is made here, as a direct
    boot of the kernel image the UKI carries, placed before the first UKI case.
    Kept apart from cases_for() so that its list, which older results are
    compared by, does not change.
    """
    known = {c.name: c for c in cases}
    out = list(chosen)
    names = {c.name for c in out}
    added: list[Case] = []
    for c in chosen:
        for ref in (c.rest_baseline, c.rest_baseline_same_machine):
            if ref is None or ref in names:
                continue
            if ref in known:
                extra = known[ref]
            else:
                machine, _, image = ref.partition(" ")
                extra = Case(c.profile, ref, image, machine, baseline=c.rest_baseline)
            added.append(extra)
            names.add(ref)
    first_uki = next((i for i, c in enumerate(out) if c.image == "uki"), len(out))
    return out[:first_uki] + added + out[first_uki:]


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
    firmware: list[float] = field(default_factory=list)  # a UKI boot: QEMU start to the firmware's handover
    rest: list[float] = field(default_factory=list)  # and from there to the program
    stubs: list[float] = field(default_factory=list)  # of the rest: handover to the kernel's clock zero
    hangs: int = 0
    failures: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)


def floor_once(work: Path, tally: Tally) -> None:
    """One boot of QEMU's floor, through the same streaming code as every other case.

    Its only figure is QEMU's start to its exit (there is no console line to
    wait for); an exit status other than isa-debug-exit's is a failure, counted
    like a hang, not a time.
    """
    elf = work / "exit.elf"
    if not elf.exists():
        elf.write_bytes(floor.pvh_exit_elf())
    cmd = floor.command(elf, tally.case.machine)
    tally.command = cmd
    ran = vmrun.stream(cmd, timeout=DIRECT_TIMEOUT, console=qemu.Console(""), quiet=True)
    if not ran.cut and ran.returncode == floor.EXPECTED_STATUS:
        tally.to_exit.append(ran.seconds)
    else:
        tally.hangs += 1
        tally.failures.append(f"no exit within {DIRECT_TIMEOUT:g} s" if ran.cut
                              else f"exit status {ran.returncode}, not {floor.EXPECTED_STATUS}")


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
        s = boottime.split(console.lines, console.times, console.marker_at, seconds)
        tally.splits.append(s)
        if s.firmware is not None and s.rest is not None:
            tally.firmware.append(s.firmware)
            tally.rest.append(s.rest)
            if s.stubs is not None:  # not under `quiet`
                tally.stubs.append(s.stubs)
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


def _summary(values: Sequence[float]) -> dict[str, float | int] | None:
    s = report.summarize(values)
    return s.as_dict() if s else None


def run_cases(contexts: Sequence[tuple[Context, str, list[Case]]], runs: int,
              floor_at: Case | None = None) -> list[dict[str, Any]]:
    """Boot every case `runs` times, round-robin; returns one result dict per case.

    `floor_at`, QEMU's floor (floor_case()), comes first in every round it
    takes part in, and first among the results.
    """
    tsc = vmrun.host_tsc_khz()
    tallies: list[tuple[Context | None, str, Tally]] = [(None, "", Tally(floor_at))] if floor_at else []
    tallies += [(ctx, cfg, Tally(c)) for ctx, cfg, cases in contexts for c in cases]
    with tempfile.TemporaryDirectory(prefix="tinyuki-bench-") as tmp:
        works = []
        for i, _ in enumerate(tallies):
            w = Path(tmp) / str(i)
            w.mkdir()
            works.append(w)
        rounds = max([runs, *(t.case.runs or 0 for _, _, t in tallies)])
        for r in range(rounds):
            for (ctx, cfg, tally), work in zip(tallies, works, strict=True):
                if r >= (tally.case.runs or runs):
                    continue
                if ctx is None:
                    floor_once(work, tally)
                else:
                    boot_once(ctx, tally.case, cfg, tsc, work, tally)
            print(f"bench boot: round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    results = []
    for ctx, _cfg, t in tallies:
        result = {
            "profile": t.case.profile, "name": t.case.name, "baseline": t.case.baseline,
            "arch": ctx.arch.name if ctx is not None else FLOOR_ARCH,
            "command": " ".join(t.command),
            "to_program": _summary(t.to_program),
            "to_exit": _summary(t.to_exit),
            "exit_after_program": _summary([s.program for s in t.splits if s.program is not None]),
            "hangs": t.hangs, "runs": t.case.runs or runs,
            "failures": sorted(set(t.failures)),
            "split": _median_split(t.splits),
        }
        if ctx is None:
            result["kind"] = "floor"
        if t.case.image == "uki":
            result.update({"firmware": _summary(t.firmware), "rest": _summary(t.rest), "stubs": _summary(t.stubs),
                           "rest_baseline": t.case.rest_baseline,
                           "rest_baseline_same_machine": t.case.rest_baseline_same_machine})
        results.append(result)
    add_ratios(results)
    return results


def _median(summary: dict[str, Any] | None) -> float | None:
    return summary["median"] if summary else None


def _rounded(r: float | None) -> float | None:
    return None if r is None else round(r, 3)


def add_ratios(results: list[dict[str, Any]]) -> None:
    """Ratios from the same run: each case's median to the program against its baseline's and the floor's.

    A UKI case's rest (firmware handover to the program) is also put against
    the time to the program of the direct boots of the same kernel it names.
    The floor's figure is its time to QEMU's exit (its guest exits at once).
    """
    by = {(r["profile"], r["name"]): r for r in results}
    the_floor = next((r for r in results if r.get("kind") == "floor"), None)
    floor_s = _median(the_floor.get("to_exit")) if the_floor else None
    for r in results:
        if the_floor is not None and r is not the_floor:
            same_arch = r.get("arch", FLOOR_ARCH) == the_floor.get("arch", FLOOR_ARCH)
            r["floor_ratio"] = _rounded(report.ratio(_median(r.get("to_program")), floor_s)) if same_arch else None
        for key, out in (("rest_baseline", "rest_ratio"), ("rest_baseline_same_machine", "rest_ratio_same_machine")):
            if key in r:
                direct = by.get((r["profile"], r[key])) if r[key] else None
                r[out] = _rounded(report.ratio(_median(r.get("rest")),
                                               _median(direct.get("to_program")) if direct else None))
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
