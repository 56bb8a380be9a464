"""The benchmark's pure parts: summaries, ratios, regressions, the boot-time split, size parsing."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench import boot as bboot
from bench import report
from bench import size as bsize
from bench.__main__ import main
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
