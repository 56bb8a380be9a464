"""The benchmark's pure parts: summaries, ratios, regressions, the boot-time split, size parsing."""

from __future__ import annotations

import http.server
import json
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench import __main__ as bmain
from bench import boot as bboot
from bench import floor, report
from bench import net as bnet
from bench import size as bsize
from bench.__main__ import goals, main
from bench.build import one_line_change
from tinyuki.formats import elf
from tinyuki.util import runner
from tinyuki.vm import boottime, qemu

CONSOLE = [
    "[    0.000000] Linux version 6.1.192 (tinyuki@tinyuki)",
    "[    0.000000] Command line: console=ttyS0",
    "[    0.150000] Serial: 8250/16550 driver, 4 ports",
    "[    0.290000] Freeing unused kernel image (initmem) memory: 596K",
    "[    0.296000] Run /init as init process",
    "tinyuki: init started",
    "[    0.318000] reboot: Power down",
]
# The first three lines arrive in one burst when the console registers; the rest as logged.
TIMES = [0.80, 0.80, 0.80, 0.896, 0.902, 0.915, 0.92]


def test_summary_is_median_min_max() -> None:
    s = report.summarize([0.9, 0.5, 0.7, 0.6])
    assert s is not None
    assert (s.median, s.min, s.max, s.runs) == (pytest.approx(0.65), 0.5, 0.9, 4)
    assert report.summarize([]) is None


def test_ratio() -> None:
    assert report.ratio(0.5, 1.0) == 0.5
    assert report.ratio(None, 1.0) is None
    assert report.ratio(1.0, 0) is None


def test_split_anchors_kernel_zero_at_run_init() -> None:
    s = boottime.split(CONSOLE, TIMES, marker_at=0.915, exit_at=0.93)
    assert s.before_kernel == pytest.approx(0.902 - 0.296)
    assert s.kernel_init == pytest.approx(0.296)
    assert s.exec_init == pytest.approx(0.915 - 0.902)
    assert s.program == pytest.approx(0.015)
    # the parts add up to the time to the program
    assert s.before_kernel + s.kernel_init + s.exec_init == pytest.approx(0.915)


def test_split_without_run_init_uses_earliest_live_line() -> None:
    lines = [CONSOLE[0], CONSOLE[2], CONSOLE[3], "tinyuki: init started"]
    times = [0.80, 0.80, 0.896, 0.91]
    s = boottime.split(lines, times, marker_at=0.91, exit_at=None)
    assert s.before_kernel == pytest.approx(0.896 - 0.29)  # not the burst (0.80 - 0.15)
    assert s.kernel_init is None and s.exec_init is None and s.program is None
    assert "quiet" in boottime.describe(s)


def test_split_of_a_silent_boot() -> None:
    s = boottime.split(["tinyuki: init started"], [0.4], marker_at=0.4, exit_at=0.41)
    assert s.before_kernel is None
    assert s.program == pytest.approx(0.01)


def test_describe_names_pvh(tmp_path: Path) -> None:
    s = boottime.split(CONSOLE, TIMES, marker_at=0.915, exit_at=0.93)
    assert "PVH" in boottime.describe(s, decompressor=False)
    assert "decompressor 0.606 s" in boottime.describe(s)
    elf = tmp_path / "vmlinux"
    elf.write_bytes(b"\x7fELF" + bytes(60))
    bz = tmp_path / "bzImage"
    bz.write_bytes(b"MZ" + bytes(60))
    assert boottime.is_elf(elf) and not boottime.is_elf(bz) and not boottime.is_elf(tmp_path / "none")


def doc(to_program: float, hangs: int = 0, bz: int = 1000) -> dict:
    return {
        "machine": {"cores": 2}, "date": "x",
        "boot": {"cases": [{"profile": "debian", "name": "microvm bzImage", "ratio": 1.0, "runs": 10,
                            "to_program": {"median": to_program, "min": 0.1, "max": 9.0, "runs": 10},
                            "hangs": hangs}]},
        "size": {"profiles": {"debian": {"bzImage": bz, "bzImage_ratio": 1.0}}},
    }


def test_flatten_takes_medians_and_skips_context() -> None:
    flat = report.flatten(doc(0.8))
    assert flat == {"boot.cases.debian/microvm bzImage.to_program": 0.8,
                    "boot.cases.debian/microvm bzImage.hangs": 0.0,
                    "size.profiles.debian.bzImage": 1000.0}


def test_compare_flags_regressions_beyond_threshold() -> None:
    worse, better, _ = report.compare(doc(0.80), doc(0.87))
    assert worse == []  # +8.75 % is within 10 %
    worse, better, _ = report.compare(doc(0.80), doc(0.90))
    assert [c.key for c in worse] == ["boot.cases.debian/microvm bzImage.to_program"]
    worse, better, _ = report.compare(doc(0.80, bz=1000), doc(0.80, bz=800))
    assert worse == [] and [c.key for c in better] == ["size.profiles.debian.bzImage"]


def test_compare_any_new_hang_is_a_regression() -> None:
    worse, _, _ = report.compare(doc(0.8, hangs=0), doc(0.8, hangs=1))
    assert [c.key for c in worse] == ["boot.cases.debian/microvm bzImage.hangs"]


def test_compare_cli_exit_status(tmp_path: Path) -> None:
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(doc(0.8)))
    new.write_text(json.dumps(doc(1.2)))
    assert main(["compare", str(old), str(new)]) == 1
    assert main(["compare", str(old), str(old)]) == 0


def test_ratios_against_baselines_in_the_same_run() -> None:
    results = [
        {"profile": "debian", "name": "a", "baseline": None, "to_program": {"median": 1.0}},
        {"profile": "debian", "name": "b", "baseline": "a", "to_program": {"median": 0.5}},
        {"profile": "fast", "name": "c", "baseline": "debian:a", "to_program": {"median": 0.25}},
        {"profile": "fast", "name": "d", "baseline": "c", "to_program": None},
    ]
    bboot.add_ratios(results)
    assert [r["ratio"] for r in results] == [None, 0.5, 0.25, None]


def test_case_command_line_levers() -> None:
    c = bboot.Case("p", "n", "bzImage", "microvm", add=("quiet",), drop=("panic=-1",))
    assert bboot.cmdline("console=ttyS0 panic=-1", c) == "console=ttyS0 quiet"


def test_parse_size_and_bloat() -> None:
    out = "   text\t   data\t    bss\t    dec\t    hex\tfilename\n" \
          "2625421\t 829872\t 1071380\t4526673\t 451851\tvmlinux\n"
    assert bsize.parse_size(out) == {"text": 2625421, "data": 829872, "bss": 1071380}
    assert bsize.parse_size("nothing") is None
    bloat = "add/remove: 1/900 grow/shrink: 2/30 up/down: 10/-500 (-490)\nFunction old new delta\n" \
            "Total: Before=3000000, After=2500000, chg -16.67%\n"
    assert bsize.parse_bloat_total(bloat) == "Before=3,000,000 B, After=2,500,000 B, chg -16.67%"


def test_one_line_change_changes_exactly_one_line() -> None:
    src = Path(__file__).resolve().parents[2] / "init" / "init.c"
    text = src.read_text()
    changed = one_line_change(text)
    diff = [(a, b) for a, b in zip(text.splitlines(), changed.splitlines(), strict=True) if a != b]
    assert len(diff) == 1 and "powering off now" in diff[0][1]
    with pytest.raises(RuntimeError):
        one_line_change("int main(void) { return 0; }\n")


def test_markdown_has_a_row_per_case_and_profile() -> None:
    md = report.markdown(doc(0.8))
    assert "| debian  | microvm bzImage | 0.800 s (0.100–9.000) |" in md  # columns aligned (tinyuki.util.fmt)
    assert "### Sizes" in md and "1,000 B" in md


def elf_with_notes(notes: bytes) -> bytes:
    """A minimal 64-bit ELF: header, one PT_NOTE program header, the notes."""
    phoff, notes_at = 64, 64 + 56
    header = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    header += struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0, phoff, 0, 0, 64, 56, 1, 0, 0, 0)
    ph = struct.pack("<IIQQQQQQ", 4, 4, notes_at, 0, 0, len(notes), len(notes), 4)
    return header + ph + notes


def note(name: bytes, ntype: int, desc: bytes) -> bytes:
    def pad(b: bytes) -> bytes:
        return b + bytes(-len(b) % 4)

    return struct.pack("<III", len(name), len(desc), ntype) + pad(name) + pad(desc)


def test_pvh_entry_note() -> None:
    gnu = note(b"GNU\0", 3, bytes(20))
    assert elf.has_pvh_entry(elf_with_notes(gnu + note(b"Xen\0", 18, b"\x00\x10\x00\x01")))
    assert not elf.has_pvh_entry(elf_with_notes(gnu + note(b"Xen\0", 17, bytes(8))))
    assert not elf.has_pvh_entry(b"MZ" + bytes(100))


# ---------------------------------------------------------------- booting, through tinyuki/vm/run.py

def test_boot_benchmark_needs_no_doit() -> None:
    """The benchmark boots through the library, not through `doit boot`'s module."""
    code = ("import sys, bench.boot\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('doit', 'cli')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], check=True,
                         capture_output=True, text=True).stdout
    assert out.strip() == "[]"


MARKER = "tinyuki: init started"


def fake_boot(monkeypatch: pytest.MonkeyPatch, lines: list[str], result: runner.Streamed) -> list[dict]:
    """Replace the VM with `lines` on its console; returns the calls the benchmark made."""
    calls: list[dict] = []

    def stream(cmd: list[str], **kw: object) -> runner.Streamed:
        calls.append({"cmd": cmd, **kw})
        console = kw["console"]
        assert isinstance(console, qemu.Console)
        for i, line in enumerate(lines):
            console.feed(line, 0.1 * (i + 1))
        return result

    monkeypatch.setattr(bboot.vmrun, "stream", stream)
    monkeypatch.setattr(bboot, "spec_for", lambda *a: qemu.BootSpec(machine="microvm", memory="128M", accel="tcg",
                                                                     cmdline="console=ttyS0",
                                                                     kernel=Path("/b/bzImage")))
    return calls


def test_boot_once_times_a_good_boot_and_counts_a_hang(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ctx = SimpleNamespace(profile=SimpleNamespace(boot=SimpleNamespace(), init=SimpleNamespace(marker=MARKER)))
    case = bboot.Case("p", "microvm bzImage", "bzImage", "microvm")
    tally = bboot.Tally(case)
    good = ["[    0.000000] Linux version 6.1", "[    0.200000] Run /init as init process", MARKER,
            "[    0.300000] reboot: Power down"]
    calls = fake_boot(monkeypatch, good, runner.Streamed(returncode=0, timed_out=False, stopped=False, seconds=0.5))
    bboot.boot_once(ctx, case, "", None, tmp_path, tally)  # type: ignore[arg-type]
    assert calls[0]["quiet"] is True and calls[0]["timeout"] == bboot.DIRECT_TIMEOUT
    assert calls[0]["cmd"][0] == "qemu-system-x86_64" and tally.command == calls[0]["cmd"]
    assert tally.to_program == [pytest.approx(0.3)] and tally.to_exit == [0.5] and tally.hangs == 0

    fake_boot(monkeypatch, good[:2], runner.Streamed(returncode=None, timed_out=True, stopped=False, seconds=20.0))
    bboot.boot_once(ctx, case, "", None, tmp_path, tally)  # type: ignore[arg-type]
    assert tally.hangs == 1 and len(tally.to_exit) == 1 and "no sign of the program" in tally.failures[0]


# ---------------------------------------------------------------- QEMU's floor and the firmware's share

OVMF_CONSOLE = [
    "BdsDxe: loading Boot0001 \"UEFI Non-Block Boot Device\" from PciRoot(0x0)/Pci(0x1,0x0)",
    "BdsDxe: starting Boot0001 \"UEFI Non-Block Boot Device\" from PciRoot(0x0)/Pci(0x1,0x0)",
    *CONSOLE,
]
# OVMF hands over at 3.25 s; the kernel's lines come as in CONSOLE, 3 s later.
OVMF_TIMES = [3.24, 3.25, *(t + 3.0 for t in TIMES)]


def test_split_of_a_uki_boot_at_the_firmware_s_handover() -> None:
    s = boottime.split(OVMF_CONSOLE, OVMF_TIMES, marker_at=3.915, exit_at=3.93)
    assert s.firmware == 3.25 and s.rest == pytest.approx(3.915 - 3.25)
    assert s.before_kernel == pytest.approx(3.902 - 0.296)  # still QEMU start to the kernel's zero
    text = boottime.describe(s)
    assert text.startswith("QEMU and firmware to starting the UKI 3.250 s; EFI stubs and decompressor 0.356 s;")
    assert "(the rest, from the firmware's handover to the program: 0.665 s)" in text
    direct = boottime.split(CONSOLE, TIMES, marker_at=0.915, exit_at=0.93)
    assert direct.firmware is None and direct.rest is None  # no UEFI firmware: no handover
    assert boottime.describe(direct).startswith("QEMU, firmware, setup and decompressor 0.606 s;")


def test_handover_is_the_last_start_before_the_program() -> None:
    lines = ["BdsDxe: starting Boot0002 \"UEFI PXEv4\"", "BdsDxe: failed to start Boot0002",
             "\x1b[2J BdsDxe: starting Boot0001 \"UEFI QEMU HARDDISK\"", MARKER,
             "BdsDxe: starting Boot0003 \"after the program: not the handover\""]
    times = [1.0, 2.0, 2.5, 3.0, 4.0]
    assert boottime.handover(lines, times, before=3.0) == 2.5
    assert boottime.handover(["Linux version 6.1"], [0.1]) is None


def test_the_floor_guest_is_a_pvh_elf_that_writes_the_exit_port() -> None:
    image = floor.pvh_exit_elf()
    assert image[:5] == b"\x7fELF\x01"  # 32-bit: PVH enters in 32-bit protected mode
    entry = struct.unpack_from("<I", image, 24)[0]
    assert struct.pack("<III", 4, 4, 18) + b"Xen\0" + struct.pack("<I", entry) in image  # XEN_ELFNOTE_PHYS32_ENTRY
    assert b"\x66\xba\x01\x05" in image and b"\xee" in image  # mov dx, 0x501; out dx, al
    cmd = floor.command(Path("/x/exit.elf"))
    assert "isa-debug-exit,iobase=0x501" in cmd and cmd[cmd.index("-kernel") + 1] == "/x/exit.elf"


def test_floor_once_times_qemu_and_counts_a_wrong_exit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    results = [runner.Streamed(returncode=1, timed_out=False, stopped=False, seconds=0.04),
               runner.Streamed(returncode=0, timed_out=False, stopped=False, seconds=0.05),
               runner.Streamed(returncode=None, timed_out=True, stopped=False, seconds=20.0)]
    calls: list[list[str]] = []

    def stream(cmd: list[str], **kw: object) -> runner.Streamed:
        calls.append(cmd)
        assert kw["quiet"] is True
        return results[len(calls) - 1]

    monkeypatch.setattr(bboot.vmrun, "stream", stream)
    tally = bboot.Tally(bboot.floor_case())
    for _ in results:
        bboot.floor_once(tmp_path, tally)
    assert tally.to_exit == [0.04] and tally.to_program == [] and tally.hangs == 2
    assert tally.failures == ["exit status 0, not 1", "no exit within 20 s"]
    assert (tmp_path / "exit.elf").read_bytes() == floor.pvh_exit_elf() and calls[0][0] == "qemu-system-x86_64"


def test_run_cases_boots_the_floor_first_in_every_round(monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    monkeypatch.setattr(bboot.vmrun, "host_tsc_khz", lambda: None)
    monkeypatch.setattr(bboot, "floor_once", lambda work, tally: (order.append("floor"), tally.to_exit.append(0.04)))

    def boot_once(ctx: object, case: bboot.Case, *_a: object) -> None:
        order.append(case.name)
        tally = _a[-1]
        assert isinstance(tally, bboot.Tally)
        tally.to_program.append(0.4)

    monkeypatch.setattr(bboot, "boot_once", boot_once)
    ctx = SimpleNamespace(arch=SimpleNamespace(name="x86_64"))
    plan = [(ctx, "", [bboot.Case("fast-boot", "microvm vmlinux", "vmlinux", "microvm", runs=3),
                       bboot.Case("fast-boot", "pc vmlinux", "vmlinux", "pc")])]
    results = bboot.run_cases(plan, 2, floor_at=bboot.floor_case(3))  # type: ignore[arg-type]
    assert order == ["floor", "microvm vmlinux", "pc vmlinux"] * 2 + ["floor", "microvm vmlinux"]
    floor_row, fast = results[0], results[1]
    assert floor_row["kind"] == "floor" and floor_row["profile"] == bboot.FLOOR_PROFILE and floor_row["runs"] == 3
    assert fast["floor_ratio"] == 10.0 and fast["arch"] == "x86_64" and "rest" not in fast


def summary(median: float) -> dict:
    return {"median": median, "min": median, "max": median, "runs": 10}


def test_ratios_to_the_floor_and_of_the_uki_rest() -> None:
    results = [
        {"profile": "qemu", "name": bboot.FLOOR_NAME, "kind": "floor", "arch": "x86_64", "to_program": None,
         "to_exit": summary(0.04)},
        {"profile": "debian", "name": "microvm bzImage", "arch": "x86_64", "to_program": summary(0.8)},
        {"profile": "debian", "name": "q35 bzImage", "arch": "x86_64", "to_program": summary(1.2)},
        {"profile": "debian", "name": "UKI via OVMF (q35, pflash)", "arch": "x86_64", "to_program": summary(4.0),
         "firmware": summary(3.0), "rest": summary(1.0), "rest_baseline": "microvm bzImage",
         "rest_baseline_same_machine": "q35 bzImage"},
        {"profile": "arm64", "name": "virt Image", "arch": "arm64", "to_program": summary(2.0)},
        {"profile": "arm64", "name": "UKI via AAVMF (virt, pflash)", "arch": "arm64", "to_program": summary(9.0),
         "firmware": summary(7.0), "rest": None, "rest_baseline": "virt Image", "rest_baseline_same_machine": None},
    ]
    bboot.add_ratios(results)
    assert "floor_ratio" not in results[0]
    assert [r["floor_ratio"] for r in results[1:4]] == [20.0, 30.0, 100.0]
    assert results[4]["floor_ratio"] is None  # an arm64 guest against an x86 floor says nothing
    assert (results[3]["rest_ratio"], results[3]["rest_ratio_same_machine"]) == (1.25, 0.833)
    assert results[5]["rest_ratio"] is None and results[5]["rest_ratio_same_machine"] is None


def test_uki_cases_bring_their_direct_baselines(tmp_path: Path) -> None:
    from tinyuki.config.context import make_context

    ctx = make_context("debian", build_dir=str(tmp_path))
    cases = bboot.cases_for(ctx, "CONFIG_EFI_STUB=y\n", default_profile=True)
    assert "q35 bzImage" not in [c.name for c in cases]  # the case list older results are compared by
    uki = [c for c in cases if c.image == "uki"]
    assert {(c.rest_baseline, c.rest_baseline_same_machine) for c in uki} == {("microvm bzImage", "q35 bzImage")}
    every = bboot.with_rest_baselines(cases, cases)
    names = [c.name for c in every]
    assert names[names.index("q35 bzImage") + 1] == "UKI via OVMF (q35, pflash)" and len(every) == len(cases) + 1
    q35 = every[names.index("q35 bzImage")]
    assert (q35.image, q35.machine, q35.baseline) == ("bzImage", "q35", "microvm bzImage")
    only = bboot.with_rest_baselines(cases, uki[:1])  # --only the UKI: its baselines come along
    assert [c.name for c in only] == ["microvm bzImage", "q35 bzImage", "UKI via OVMF (q35, pflash)"]
    assert only[0] is cases[0]
    direct = [c for c in cases if c.image != "uki"]
    assert bboot.with_rest_baselines(cases, direct) == direct


def goal_doc() -> dict:
    return {
        "boot": {"cases": [
            {"profile": "qemu", "name": bboot.FLOOR_NAME, "kind": "floor", "to_exit": summary(0.04), "runs": 100,
             "hangs": 0},
            {"profile": "debian", "name": "microvm bzImage", "to_program": summary(0.58), "runs": 10, "hangs": 0,
             "floor_ratio": 14.5, "split": {"before_kernel": 0.3, "kernel_init": 0.26, "exec_init": 0.02}},
            {"profile": "debian", "name": "UKI via OVMF (q35, pflash)", "to_program": summary(4.0), "runs": 10,
             "hangs": 0, "firmware": summary(3.0), "rest": summary(1.0), "stubs": summary(0.4), "rest_ratio": 1.25,
             "rest_baseline": "microvm bzImage", "rest_ratio_same_machine": 0.9,
             "rest_baseline_same_machine": "q35 bzImage"},
            {"profile": "fast-boot", "name": "microvm vmlinux", "to_program": summary(0.24), "runs": 100, "hangs": 0,
             "exit_after_program": summary(0.011), "floor_ratio": 6.0,
             "split": {"before_kernel": 0.1, "kernel_init": None, "exec_init": None}},
        ]},
        "size": {"profiles": {"small": {"bzImage": 655361, "init": 688}}},
        "build": {"cases": [
            {"name": "no-op build", "tinyuki": summary(0.2), "ratio": 0.05},
            {"name": "no-op build (fast-boot)", "tinyuki": summary(0.3), "ratio": 0.06},
            {"name": "no-op build (small)", "tinyuki": None, "error": "its build broke"},
            {"name": "rebuild after a one-line change to the program", "tinyuki": summary(8.0), "ratio": 1.05},
        ]},
    }


def test_the_goals_are_the_issue_s() -> None:
    got = {g["goal"]: g for g in goals(goal_doc())}
    fast = got["fast-boot: QEMU start to the program"]
    assert fast["target"].startswith("≤ 0.250 s") and fast["met"]
    assert fast["measured"] == "0.240 (before the kernel 0.100, kernel to program 0.140; 6.0× QEMU's floor)"
    assert got["fast-boot: VM exit after the program asks for power-off"]["target"] == "≤ 0.020 s"
    assert got["fast-boot: hangs"]["met"] and got["fast-boot: hangs"]["measured"] == "0 in 100 boots"
    debian = got["debian: QEMU start to the program"]
    assert debian["met"] and "kernel init 0.260, exec 0.020; 14.5× QEMU's floor" in debian["measured"]
    small = got["small: bzImage with the embedded program"]
    assert small["target"] == "≤ 640 KB (655,360 B)" and small["measured"] == "655,361" and not small["met"]
    assert got["small: init"]["met"]
    uki = got[f"debian: UKI through OVMF, {bmain.REST}"]
    # judged against the same kernel booted directly on the firmware's machine; the profile's own boot beside it
    assert uki["measured"] == ("0.90× vs q35 bzImage (rest 1.000 s; the firmware's share 3.000 s; "
                               "1.25× vs microvm bzImage, the profile's direct boot)") and uki["met"]
    # not measured: not listed (fast-boot's and arm64's UKI, the config-change and cold builds)
    assert not any("fast-boot: UKI" in g or "arm64" in g or "config" in g or "cold" in g for g in got)
    assert got["debian: no-op doit"]["met"] and not got["fast-boot: no-op doit"]["met"]
    assert "small: no-op doit" not in got  # its row has no figure
    assert got["fast-boot: no-op doit"]["measured"] == "0.300"
    assert got["debian: program edit → new UKI vs kbuild's relink"]["measured"] == "1.05×"
    assert list(got)[:4] == ["fast-boot: QEMU start to the program",
                             "fast-boot: VM exit after the program asks for power-off", "fast-boot: hangs",
                             "debian: QEMU start to the program"]


def test_markdown_shows_the_floor_and_the_firmware_s_share() -> None:
    results = goal_doc()
    results["goals"] = goals(results)
    md = report.markdown(results)
    header = [c.strip() for c in next(ln for ln in md.splitlines() if ln.startswith("| profile")).split("|")]
    assert header[header.index("ratio (to program)") + 1] == "× floor"
    floor_row = [c.strip() for c in next(ln for ln in md.splitlines() if bboot.FLOOR_NAME in ln).split("|")]
    assert floor_row[header.index("to VM exit")] == "0.040 s (0.040–0.040)"
    assert floor_row[header.index("× floor")] == "1×"
    uki = next(line for line in md.splitlines() if "UKI via OVMF (q35, pflash)" in line and "vs microvm" in line)
    cells = [c.strip() for c in uki.strip("|").split("|")]
    assert cells == ["debian", "UKI via OVMF (q35, pflash)", "3.000 s (3.000–3.000)", "1.000 s (1.000–1.000)",
                     "0.400 s", "1.25× vs microvm bzImage", "0.90× vs q35 bzImage"]
    goal_rows = md.split("### Goals")[1]
    assert "| small: bzImage with the embedded program" in goal_rows and "**no**" in goal_rows
    old = report.markdown(doc(0.8))  # results from before the floor: no empty column, no firmware table
    assert "× floor" not in old and "firmware" not in old


def test_compare_keeps_the_rows_and_skips_the_new_ratios() -> None:
    flat = report.flatten(goal_doc())
    uki = "boot.cases.debian/UKI via OVMF (q35, pflash)"
    assert flat[f"{uki}.firmware"] == 3.0 and flat[f"{uki}.rest"] == 1.0
    assert f"{uki}.rest_ratio" not in flat and "boot.cases.debian/microvm bzImage.floor_ratio" not in flat
    assert flat[f"boot.cases.qemu/{bboot.FLOOR_NAME}.to_exit"] == 0.04


def test_build_goals_follow_the_rows_bench_build_writes() -> None:
    from bench import build as bbuild

    changes = [c.name for c in getattr(bbuild, "CONFIG_CHANGES", ())]
    rows = [{"name": n, "tinyuki": summary(30.0), "ratio": 1.1 + 0.2 * i} for i, n in enumerate(changes)]
    rows.append({"name": "cold build of the kernel (configure + build)", "tinyuki": summary(900.0), "ratio": 1.02})
    got = {g["goal"]: g for g in goals({"build": {"cases": rows}})}
    assert got["debian: cold build vs the same make commands by hand"]["met"]
    config = [g for name, g in got.items() if "option" in name and "changed" in name]
    assert len(config) == len(changes)  # one goal per option
    if len(changes) > 1:
        assert config[0]["met"] and not config[1]["met"]  # local ≤ 1.3×, the spread option ≤ 1.2×
    assert goals({"build": {"cases": []}}) == []  # no rows: no build goals


def test_boot_once_keeps_the_firmware_s_share(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ctx = SimpleNamespace(profile=SimpleNamespace(boot=SimpleNamespace(), init=SimpleNamespace(marker=MARKER)))
    case = bboot.Case("p", "a boot through firmware", "bzImage", "q35")
    tally = bboot.Tally(case)
    lines = ["BdsDxe: starting Boot0001 \"UEFI Non-Block Boot Device\"",  # at 0.1
             "[    0.000000] Linux version 6.1", "[    0.050000] Run /init as init process", MARKER]  # 0.2 .. 0.4
    fake_boot(monkeypatch, lines, runner.Streamed(returncode=0, timed_out=False, stopped=False, seconds=0.5))
    bboot.boot_once(ctx, case, "", None, tmp_path, tally)  # type: ignore[arg-type]
    assert tally.firmware == [0.1] and tally.rest == [pytest.approx(0.3)]
    assert tally.stubs == [pytest.approx(0.15)]  # the kernel's clock read 0 at 0.3 - 0.05 s, 0.15 s after the handover


def test_only_keeps_the_comma_inside_a_case_name() -> None:
    assert bmain.only_names("microvm bzImage,UKI via OVMF (q35, pflash),") == [
        "microvm bzImage", "UKI via OVMF (q35, pflash)"]


def test_each_part_says_the_load_it_started_under_and_compare_skips_it() -> None:
    loaded = doc(0.8)
    loaded["boot"].update(command="python -m bench boot", load=[0.71, 1.56, 1.91])
    md = report.markdown(loaded)
    assert "`python -m bench boot`; load average 0.71 / 1.56 / 1.91 when it started (1, 5, 15 min)." in md
    busier = doc(0.8)
    busier["boot"]["load"] = [4.0, 4.0, 4.0]
    assert report.compare(loaded, busier) == ([], [], [])
    assert len(report.load_average()) == 3


def test_the_network_row_times_the_first_answer_and_the_program_in_the_same_boot(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """bench/net.py's client against a real listener on 127.0.0.1 (the VM replaced): first answer, then /exit."""
    seen: list[str] = []

    class Server(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            body = b"hello from C (musl) over HTTP/1.0\n" if self.path == "/" else b"bye\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = bnet.Client(server.server_address[1], time.monotonic())
        client.run(10)
    finally:
        server.shutdown()
    assert client.answered_at is not None and 0 <= client.answered_at < 5
    assert b"hello from C (musl)" in client.answer and seen[-1] == "/exit"

    results = {"net": {"command": "python -m bench net", "cases": [{
        "profile": "fast-boot-net", "name": bnet.NAME, "runs": 3, "failures": 0,
        "to_program": {"median": 0.4, "min": 0.39, "max": 0.41, "runs": 3},
        "to_answer": {"median": 0.5, "min": 0.48, "max": 0.52, "runs": 3},
        "ratio": 1.25, "ratio_range": [1.2, 1.3]}],
        "cost": {"against": "fast-boot", "bloat": {"total": "Before=1 B, After=2 B, chg +100.00%"},
                 "vmlinux_file": 300000, "uki": 120000, "init": 20000}, "notes": ["a note"]}}
    md = report.markdown(results)
    assert "### Network" in md and "1.25× (1.20–1.30)" in md and "0/3" in md
    assert "What the net fragment costs, against fast-boot" in md and "+300,000 B" in md and "+20,000 B" in md


def test_a_shape_on_another_kernel_is_held_to_the_same_goals_beside_it() -> None:
    doc = goal_doc()
    doc["boot"]["cases"].append({"profile": "fast-boot-6.12", "name": "microvm vmlinux", "to_program": summary(0.27),
                                 "runs": 40, "hangs": 0, "exit_after_program": summary(0.012)})
    doc["size"]["profiles"]["small-6.12"] = {"bzImage": 640000, "init": 688}
    doc["size"]["profiles"]["smallish"] = {"bzImage": 1, "init": 1}  # another shape's name: no goal of small's
    listed = [g["goal"] for g in goals(doc)]
    got = {g["goal"]: g for g in goals(doc)}
    assert listed.index("fast-boot-6.12: QEMU start to the program") == \
        listed.index("fast-boot: QEMU start to the program") + 1  # beside the 6.1 one
    assert not got["fast-boot-6.12: QEMU start to the program"]["met"]  # 0.27 s > 0.25 s
    assert got["fast-boot-6.12: VM exit after the program asks for power-off"]["met"]
    assert got["fast-boot-6.12: hangs"]["measured"] == "0 in 40 boots" and not got["fast-boot-6.12: hangs"]["met"]
    assert got["small-6.12: bzImage with the embedded program"]["met"] and got["small-6.12: init"]["met"]
    assert not any(g.startswith("smallish") for g in got)
    assert bmain.shape_of("arm64-6.12") == "arm64" and bmain.shape_of("fast-boot") == "fast-boot"
    assert bmain.build_targets("small-6.12") == ["embed"] and bmain.build_targets("debian-6.12") == []
