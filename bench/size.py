"""Size benchmark: every artifact of every built profile, and what changed between profiles.

Sizes are exact, so one reading is the figure. vmlinux is split into
text/data/bss by binutils' `size`; the per-profile difference in symbols
comes from the kernel's own scripts/bloat-o-meter, run from the profile's
extracted tree. Debian's own kernel in /boot, where installed, is the
yardstick a general-purpose kernel sets.

Each profile's kernel image is its architecture's: bzImage on x86_64 (under
that key, as always), the uncompressed Image on arm64 (under "Image"), named
by "kernel_image". Ratios and bloat-o-meter only compare builds of one
architecture: an arm64 Image against an x86_64 bzImage says nothing.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import report
from tinyuki.config.context import Context
from tinyuki.errors import TinyukiError
from tinyuki.records import Tree
from tinyuki.tasks import PIPELINE
from tinyuki.util import runner

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
        return parse_size(runner.output(["size", str(vmlinux)], what="size vmlinux", hint="install binutils"))
    except TinyukiError as e:
        print(f"bench size: {e}", file=sys.stderr)
        return None


def profile_sizes(ctx: Context) -> dict[str, Any] | None:
    def size(name: str) -> int | None:
        return _file_size(PIPELINE.path(ctx, name))

    target = ctx.arch
    if not PIPELINE.path(ctx, target.image_name).is_file():
        return None
    return {
        target.image_name: size(target.image_name),
        "kernel_image": target.image_name,
        "arch": target.name,
        "uki": size("uki"),
        "vmlinux_file": size("vmlinux"),
        "vmlinux": vmlinux_sections(PIPELINE.path(ctx, "vmlinux")),
        "init": size("init"),
        "initramfs": size("initramfs.cpio"),
        "initrd": size("initrd"),
        "image": ctx.profile.kernel.image,
        # the EFI zboot image the UKI carries instead of the plain image ([kernel] image = "vmlinuz.efi")
        **({"zboot": size("vmlinuz.efi")} if ctx.profile.kernel.image == "vmlinuz.efi" else {}),
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
    tree = Tree.peek(new.paths.build)
    if tree is None:
        return None
    script = Path(tree.tree) / "scripts" / "bloat-o-meter"
    before, after = PIPELINE.path(old, "vmlinux"), PIPELINE.path(new, "vmlinux")
    if not (script.is_file() and before.is_file() and after.is_file()):
        return None
    try:
        text = runner.output([sys.executable, str(script), str(before), str(after)],
                             what="bloat-o-meter", hint="it needs nm from binutils")
    except TinyukiError as e:
        print(f"bench size: {e}", file=sys.stderr)
        return None
    return {"total": parse_bloat_total(text), "head": text.splitlines()[:12]}


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
            if name != default and by[name].arch.name == by[default].arch.name:
                b = bloat(by[default], by[name])
                if b:
                    out["bloat"][name] = b
    return out
