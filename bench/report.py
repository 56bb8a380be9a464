"""Numbers in, verdicts and tables out: summaries, ratios, the machine, regressions, Markdown.

Everything here is pure (no VM, no build), so the logic that turns timings
into the claims in the README is unit-tested (tests/unit/test_bench.py).
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyuki.errors import TinyukiError
from tinyuki.util import runner
from tinyuki.util.fmt import human_size, markdown_table

DEFAULT_THRESHOLD = 0.10


@dataclass(frozen=True)
class Summary:
    """Several runs of one measurement: the median is the figure, min and max show the spread."""

    median: float
    min: float
    max: float
    runs: int

    def as_dict(self) -> dict[str, float | int]:
        return {"median": round(self.median, 4), "min": round(self.min, 4), "max": round(self.max, 4),
                "runs": self.runs}


def summarize(values: Iterable[float]) -> Summary | None:
    """None for no values: a measurement that never completed has no figure, not a zero."""
    vals = sorted(values)
    if not vals:
        return None
    return Summary(statistics.median(vals), vals[0], vals[-1], len(vals))


def ratio(value: float | None, baseline: float | None) -> float | None:
    """value / baseline, or None when either is missing or the baseline is zero."""
    if value is None or baseline is None or baseline <= 0:
        return None
    return value / baseline


def fmt_seconds(s: Mapping[str, Any] | None) -> str:
    """'0.552 s (0.531–0.601)' from a summary dict."""
    if not s:
        return "n/a"
    return f"{s['median']:.3f} s ({s['min']:.3f}–{s['max']:.3f})"


def fmt_ratio(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.2f}×"


def fmt_bytes(n: int | None) -> str:
    """'1,468,006 B (1.4 MiB)': exact bytes, and the binary units tinyuki shows sizes in."""
    if n is None:
        return "n/a"
    return f"{n:,} B ({human_size(n)})" if n >= 1024 else f"{n:,} B"


# ---------------------------------------------------------------- regressions

@dataclass(frozen=True)
class Change:
    key: str
    old: float
    new: float

    @property
    def rel(self) -> float:
        return (self.new - self.old) / self.old if self.old else 0.0


def flatten(data: Any, prefix: str = "") -> dict[str, float]:
    """Every comparable number of a results document, by a dotted path.

    A timing summary counts by its median; sizes and counts by their value.
    Ratios, min/max, run counts, the load average and the machine block are context, not figures.
    """
    out: dict[str, float] = {}
    if isinstance(data, Mapping):
        if "median" in data and isinstance(data["median"], (int, float)):
            out[prefix] = float(data["median"])
            return out
        for key, value in data.items():
            if key in ("machine", "tools", "ratio", "ratios", "min", "max", "runs", "command", "notes", "date",
                       "revision", "split", "bzImage_ratio", "goals", "floor_ratio", "rest_ratio",
                       "rest_ratio_same_machine", "load"):
                continue
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(data, list):
        for i, item in enumerate(data):
            key = item.get("profile", "") + "/" + item["name"] if isinstance(item, Mapping) and "name" in item \
                else str(i)
            out.update(flatten(item, f"{prefix}.{key}" if prefix else key))
    elif isinstance(data, bool):
        pass
    elif isinstance(data, (int, float)):
        out[prefix] = float(data)
    return out


def compare(old: Mapping[str, Any], new: Mapping[str, Any],
            threshold: float = DEFAULT_THRESHOLD) -> tuple[list[Change], list[Change], list[str]]:
    """(regressions, improvements, keys only in one of them), comparing figures present in both.

    A figure regresses when it grew by more than `threshold` (0.10 = 10 %). Hang
    counts regress on any increase from zero, since a ratio of zero means nothing.
    """
    a, b = flatten(old), flatten(new)
    worse: list[Change] = []
    better: list[Change] = []
    for key in sorted(a.keys() & b.keys()):
        c = Change(key, a[key], b[key])
        if c.old == 0:
            if c.new > 0 and key.endswith("hangs"):
                worse.append(c)
            continue
        if c.rel > threshold:
            worse.append(c)
        elif c.rel < -threshold:
            better.append(c)
    missing = sorted(a.keys() ^ b.keys())
    return worse, better, missing


def compare_text(worse: Sequence[Change], better: Sequence[Change], missing: Sequence[str],
                 threshold: float) -> str:
    lines = [f"threshold: {threshold:.0%}"]
    for title, changes in (("regressions", worse), ("improvements", better)):
        lines.append(f"{title}: {len(changes)}")
        for c in changes:
            rel = "from zero" if c.old == 0 else f"{c.rel:+.1%}"
            lines.append(f"  {c.key}: {c.old:g} -> {c.new:g} ({rel})")
    if missing:
        lines.append(f"only in one of the two: {len(missing)} figures (not compared)")
    return "\n".join(lines)


# ---------------------------------------------------------------- the machine

def _version(cmd: Sequence[str]) -> str | None:
    """The first line a tool prints about its version; None when it is not installed or says nothing."""
    text = runner.tool_version(cmd)
    return None if text in ("missing", "unknown") else text


def _git(root: Path, *args: str) -> str | None:
    """git's answer in the project's checkout; None outside one, or without git."""
    try:
        return runner.output(["git", "-C", str(root), *args]).strip()
    except TinyukiError:
        return None


def cpu_model(cpuinfo: str) -> str | None:
    m = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    return m.group(1).strip() if m else None


def mem_total_kib(meminfo: str) -> int | None:
    m = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.M)
    return int(m.group(1)) if m else None


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages: TCG boots and builds slow down with anything else running."""
    return [round(x, 2) for x in os.getloadavg()]


def machine(root: Path) -> dict[str, Any]:
    """What the numbers were measured on: they mean little without it."""
    def read(p: str) -> str:
        try:
            return Path(p).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
    rev = _git(root, "rev-parse", "HEAD")
    dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    return {
        "machine": {
            "cpu": cpu_model(read("/proc/cpuinfo")),
            "cores": len(os.sched_getaffinity(0)),
            "memory_kib": mem_total_kib(read("/proc/meminfo")),
            "kernel": platform.release(),
            "python": platform.python_version(),
        },
        "tools": {
            "qemu": _version(["qemu-system-x86_64", "--version"]),
            "gcc": _version(["gcc", "--version"]),
            "ld": _version(["ld", "--version"]),
            "make": _version(["make", "--version"]),
            "ovmf": _version(["dpkg-query", "-W", "-f=${Version}", "ovmf"]),
            "linux_source": _version(["dpkg-query", "-W", "-f=${Version}", "linux-source-6.1"]),
        },
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "revision": (rev or "unknown") + (" (with uncommitted changes)" if dirty else ""),
    }


# ---------------------------------------------------------------- Markdown

def _heading(title: str, part: Mapping[str, Any]) -> list[str]:
    """A section's heading, and the command that measured it when it has its own."""
    lines = [f"### {title}", ""]
    said = [f"`{part['command']}`"] if part.get("command") else []
    if part.get("load"):
        load = " / ".join(f"{x:.2f}" for x in part["load"])
        said.append(f"load average {load} when it started (1, 5, 15 min)")
    if said:
        lines += ["; ".join(said) + ".", ""]
    return lines


def _boot(boot: Mapping[str, Any]) -> list[str]:
    lines = _heading(f"Boot ({boot.get('accel', 'tcg')}; median (min–max) of the runs; "
                     "ratio against the baseline named in the same run)", boot)
    cases = boot.get("cases", [])
    floor = any(c.get("kind") == "floor" for c in cases)  # results from before the floor have no such column
    rows = []
    for c in cases:
        sp = c.get("split") or {}
        rows.append([
            c["profile"], c["name"], fmt_seconds(c.get("to_program")), fmt_seconds(c.get("to_exit")),
            fmt_seconds(c.get("exit_after_program")),
            f"{c.get('hangs', 0)}/{c.get('runs', 0)}",
            fmt_ratio(c.get("ratio")) + (f" vs {c['baseline']}" if c.get("baseline") else ""),
            *([("1×" if c.get("kind") == "floor" else fmt_ratio(c.get("floor_ratio")))] if floor else []),
            " / ".join("n/a" if sp.get(k) is None else f"{sp[k]:.3f}"
                       for k in ("before_kernel", "kernel_init", "exec_init", "program")),
        ])
    lines.append(markdown_table(["profile", "boot", "to program", "to VM exit", "exit after program", "hangs",
                                 "ratio (to program)", *(["× floor"] if floor else []),
                                 "split: before kernel / kernel init / exec / program (s, medians)"], rows))
    lines += _firmware(cases)
    for note in boot.get("notes", []):
        lines += ["", f"- {note}"]
    return lines


def _firmware(cases: Sequence[Mapping[str, Any]]) -> list[str]:
    """The UKI cases split at the firmware's handover: its share, the rest, and the rest against direct boots."""
    rows = []
    for c in cases:
        if "rest" not in c:
            continue
        against = []
        for key, ratio_key in (("rest_baseline", "rest_ratio"), ("rest_baseline_same_machine",
                                                                 "rest_ratio_same_machine")):
            against.append(f"{fmt_ratio(c.get(ratio_key))} vs {c[key]}" if c.get(key) else "n/a")
        stubs = c.get("stubs")
        rows.append([c["profile"], c["name"], fmt_seconds(c.get("firmware")), fmt_seconds(c.get("rest")),
                     f"{stubs['median']:.3f} s" if stubs else "n/a", *against])
    if not rows:
        return []
    return ["", "UKI boots, split where the firmware starts the UKI (median (min–max) of the same runs):", "",
            markdown_table(["profile", "boot", "firmware: QEMU start to starting the UKI", "rest: to the program",
                            "of the rest: stubs, decompressor, kernel's earliest setup",
                            "rest vs direct boot (profile's machine)", "rest vs direct boot (same machine)"], rows)]


def _sizes(size: Mapping[str, Any]) -> list[str]:
    lines = _heading("Sizes", size)
    rows = []
    for name, s in size.get("profiles", {}).items():
        v = s.get("vmlinux") or {}
        image = s.get("kernel_image") or "bzImage"  # arm64's is the uncompressed Image: named in its cell
        zboot = f"; vmlinuz.efi {fmt_bytes(s['zboot'])} (in the UKI)" if s.get("zboot") else ""
        rows.append([name, fmt_bytes(s.get(image)) + ("" if image == "bzImage" else f" ({image})") + zboot,
                     fmt_bytes(s.get("uki")),
                     f"{v.get('text', 0):,} / {v.get('data', 0):,} / {v.get('bss', 0):,}" if v else "n/a",
                     fmt_bytes(s.get("init")), fmt_bytes(s.get("initramfs")), fmt_bytes(s.get("initrd")),
                     fmt_ratio(s.get("bzImage_ratio"))])
    vendor = size.get("vendor")
    if vendor:
        rows.append([f"Debian vendor kernel {vendor['release']}", fmt_bytes(vendor["size"]), "", "", "", "",
                     fmt_bytes(vendor.get("initrd")), ""])
    images = {s.get("kernel_image") or "bzImage" for s in size.get("profiles", {}).values()}
    lines.append(markdown_table(["profile", "bzImage" if images <= {"bzImage"} else "kernel image", "UKI",
                                 "vmlinux text / data / bss", "init",
                                 "initramfs (cpio)", "initrd (gzip)", "bzImage vs debian"], rows))
    if not vendor:
        lines += ["", "- No Debian vendor kernel (/boot/vmlinuz-*) is installed on this machine: no row for it."]
    for name, b in size.get("bloat", {}).items():
        lines += ["", f"- bloat-o-meter debian → {name}: {b.get('total', 'n/a')}"]
    return lines


def _goals(goals: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = [[g["goal"], g["target"], g["measured"], "yes" if g["met"] else "**no**"] for g in goals]
    return [*_heading("Goals", {}), markdown_table(["goal", "target", "measured", "met"], rows)]


def _build(build: Mapping[str, Any]) -> list[str]:
    lines = _heading("Build", build)
    rows = [[b["name"], fmt_seconds(b.get("tinyuki")), fmt_seconds(b.get("baseline")), b.get("baseline_what", ""),
             fmt_ratio(b.get("ratio"))] for b in build.get("cases", [])]
    lines.append(markdown_table(["measurement", "tinyuki", "by hand", "baseline", "ratio"], rows))
    for name, ext in build.get("external", {}).items():
        figures = flatten(ext)
        shown = ", ".join(f"{k} {v:g}" for k, v in list(figures.items())[:12])
        lines += ["", f"- from bench/{name}.py (its own method and baselines): {shown or 'no figures'}"]
    return lines


def _net(net: Mapping[str, Any]) -> list[str]:
    lines = _heading("Network (tcg; median (min–max) of the runs)", net)
    rows = [[c["profile"], c["name"], fmt_seconds(c.get("to_program")), fmt_seconds(c.get("to_answer")),
             (f"{c['ratio']:.2f}× ({c['ratio_range'][0]:.2f}–{c['ratio_range'][1]:.2f})" if c.get("ratio") else ""),
             fmt_ratio(c["answer_vs_plain"]) if c.get("answer_vs_plain") else "",
             f"{c.get('failures', 0)}/{c.get('runs', 0)}"] for c in net.get("cases", [])]
    lines += [markdown_table(["profile", "boot", "to program (first line)", "to first HTTP answer on the host",
                              "answer vs program (same boot)", "answer vs plain", "failed"], rows)]
    cost = net.get("cost")
    if cost:
        bloat = (cost.get("bloat") or {}).get("total") or "n/a"
        lines += ["", f"- What the net fragment costs, against {cost['against']}: kernel symbols (bloat-o-meter)"
                      f" {bloat}; vmlinux file {_signed(cost.get('vmlinux_file'))}, UKI {_signed(cost.get('uki'))},"
                      f" of which the program (/init) {_signed(cost.get('init'))}."]
    for note in net.get("notes", []):
        lines += ["", f"- {note}"]
    return lines


def _signed(n: int | None) -> str:
    return "n/a" if n is None else f"{n:+,} B"


def markdown(results: Mapping[str, Any]) -> str:
    """The results as the tables the README shows."""
    m = results.get("machine", {})
    t = results.get("tools", {})
    lines = [
        f"Measured {results.get('date', '?')} at {results.get('revision', '?')} on {m.get('cpu', '?')}, "
        f"{m.get('cores', '?')} cores, {(m.get('memory_kib') or 0) // 1024} MiB; {t.get('qemu') or 'QEMU ?'}; "
        f"`{results.get('command', 'python -m bench')}`.",
        "",
    ]
    for key, section in (("boot", _boot), ("net", _net), ("size", _sizes), ("goals", _goals), ("build", _build)):
        if results.get(key):
            lines += [*section(results[key]), ""]
    return "\n".join(lines)
