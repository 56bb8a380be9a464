"""Size benchmark: every artifact of every built profile, and what changed between profiles.

Sizes are exact, so one reading is the figure. vmlinux is split into
text/data/bss by binutils' `size`; the per-profile difference in symbols
comes from the kernel's own scripts/bloat-o-meter, run from the profile's
extracted tree. Debian's own kernel in /boot, where installed, is the
yardstick a general-purpose kernel sets.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import report
from tasks import PIPELINE
from tinyuki.config.context import Context
from tinyuki.errors import TinyukiError
from tinyuki.util import runner
from tinyuki.util.fs import read_json

SIZE_RE = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+\d+\s+[0-9a-f]+\s+", re.M)
TOTAL_RE = re.compile(r"^Total: Before=(\d+), After=(\d+), chg ([-+]?[\d.]+%)", re.M)


def parse_size(output: str) -> dict[str, int] | None:
    """text, data and bss from Berkeley-format `size` output."""
    m = SIZE_RE.search(output)
    if not m:
        return None
    return {"text": int(m.group(1)), "data": int(m.group(2)), "bss": int(m.group(3))}


def parse_bloat_total(output: str) -> str | None:
    """bloat-o-meter's summary line, e.g. 'Before=6312345, After=4012345, chg -36.44%'."""
    m = TOTAL_RE.search(output)
    return f"Before={int(m.group(1)):,} B, After={int(m.group(2)):,} B, chg {m.group(3)}" if m else None


def _file_size(p: Path) -> int | None:
    return p.stat().st_size if p.is_file() else None


def vmlinux_sections(vmlinux: Path) -> dict[str, int] | None:
    if not vmlinux.is_file():
        return None
    try:
        proc = runner.run(["size", vmlinux], what="size vmlinux", hint="install binutils")
    except TinyukiError as e:
        print(f"bench size: {e}", file=sys.stderr)
        return None
    return parse_size(proc.stdout.decode(errors="replace"))


def profile_sizes(ctx: Context) -> dict[str, Any] | None:
    p = ctx.paths
    if not p.bzimage.is_file():
        return None
    return {
        "bzImage": _file_size(p.bzimage),
        "uki": _file_size(p.uki),
        "vmlinux_file": _file_size(p.vmlinux),
        "vmlinux": vmlinux_sections(p.vmlinux),
        "init": _file_size(p.init_bin),
        "initramfs": _file_size(p.cpio),
        "initrd": _file_size(p.initrd),
        "image": ctx.profile.kernel.image,
    }


def vendor_kernel(boot: Path = Path("/boot")) -> dict[str, Any] | None:
    """The newest installed Debian kernel and its initrd, if any."""
    kernels = sorted(boot.glob("vmlinuz-*"))
    if not kernels:
        return None
    k = kernels[-1]
    release = k.name.removeprefix("vmlinuz-")
    return {"release": release, "size": k.stat().st_size, "initrd": _file_size(boot / f"initrd.img-{release}")}


def bloat(old: Context, new: Context) -> dict[str, Any] | None:
    """scripts/bloat-o-meter old/vmlinux new/vmlinux from the new build's tree."""
    try:
        tree = Path(read_json(PIPELINE.path(new, "tree.json"))["tree"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    script = tree / "scripts" / "bloat-o-meter"
    if not (script.is_file() and PIPELINE.path(old, "vmlinux").is_file() and PIPELINE.path(new, "vmlinux").is_file()):
        return None
    try:
        proc = runner.run([sys.executable, script, PIPELINE.path(old, "vmlinux"), PIPELINE.path(new, "vmlinux")],
                          what="bloat-o-meter", hint="it needs nm from binutils")
    except TinyukiError as e:
        print(f"bench size: {e}", file=sys.stderr)
        return None
    text = proc.stdout.decode(errors="replace")
    lines = text.splitlines()
    return {"total": parse_bloat_total(text), "head": lines[:12]}


def measure(contexts: Sequence[Context], default: str) -> dict[str, Any]:
    profiles: dict[str, Any] = {}
    by = {c.profile.name: c for c in contexts}
    for ctx in contexts:
        s = profile_sizes(ctx)
        if s is not None:
            profiles[ctx.profile.name] = s
    base = profiles.get(default, {}).get("bzImage")
    for s in profiles.values():
        r = report.ratio(s.get("bzImage"), base)
        s["bzImage_ratio"] = None if r is None else round(r, 3)
    out: dict[str, Any] = {"profiles": profiles, "vendor": vendor_kernel(), "bloat": {}}
    if default in by and default in profiles:
        for name in profiles:
            if name != default:
                b = bloat(by[default], by[name])
                if b:
                    out["bloat"][name] = b
    return out
