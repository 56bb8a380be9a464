"""disk: tinyuki.img, a whole-disk image to write to a USB stick, booting the UKI on any UEFI machine.

The UKI goes where firmware looks on removable media (/EFI/BOOT/BOOTX64.EFI)
on an EFI system partition, under a GPT (or a DOS label, [disk] table), with
the profile's extra files beside it and an optional second partition for the
program. The image is the same bytes for the same inputs: ids from the
contents, times from source_date_epoch, files in sorted order
(tinyuki/formats/disk.py says how). `doit boot stick=1` boots it as a USB
stick; `doit flash device=/dev/sdX` writes it to one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.uki import UKI
from tinyuki.config.context import Context
from tinyuki.formats import disk
from tinyuki.stage import Output, Stage
from tinyuki.util import fs as fsutil
from tinyuki.util.fmt import human_size

DISK = Output("tinyuki.img", manifest="disk")


def data_entries(ctx: Context) -> list[disk.Entry] | None:
    folder = ctx.profile.disk.data
    return disk.folder_entries(folder) if folder is not None else None


def inputs(ctx: Context) -> list[Path]:
    """The data folder's files: their contents reach the image (the extra ESP files are settings already)."""
    return [e.source for e in data_entries(ctx) or [] if e.source is not None]


def derived(ctx: Context) -> dict[str, Any]:
    """The data folder's shape (names, empty folders), which its files' contents alone do not capture."""
    entries = data_entries(ctx)
    if entries is None:
        return {}
    return {"[disk] data listing": [[e.path, "dir" if e.is_dir else "file"] for e in entries]}


def write_disk(ctx: Context, target: Path | None = None) -> disk.Layout:
    """Plan and write the image atomically; a failure (too small, a tool missing) leaves the old one in place."""
    d = ctx.profile.disk
    epoch = ctx.profile.kernel.source_date_epoch
    esp = disk.esp_entries(UKI.at(ctx), d.files)
    data = data_entries(ctx)
    seed = disk.seed_of(table=d.table, esp=esp, data=data, esp_size=d.esp_size, data_size=d.data_size, epoch=epoch)
    layout = disk.plan(table=d.table, seed=seed, esp_content=disk.content_bytes(esp), esp_size=d.esp_size,
                       data_content=None if data is None else disk.content_bytes(data), data_size=d.data_size)
    out = target or DISK.at(ctx)
    with fsutil.atomic_path(out) as tmp:
        disk.make_image(tmp, layout, esp, data, epoch=epoch, log=ctx.paths.logs / "disk.log")
    parts = "; ".join(p.describe() for p in layout.partitions)
    print(f"disk: {out} ({human_size(layout.size)}, {layout.table.upper()} {layout.disk_id}): {parts}")
    return layout


def build(ctx: Context) -> None:
    write_disk(ctx)


STAGE = Stage(
    name="disk",
    doc="Write tinyuki.img: a GPT or DOS disk whose EFI system partition holds the UKI as /EFI/BOOT/BOOTX64.EFI.",
    build=build,
    needs=("uki",),
    outputs=(DISK,),
    inputs=inputs,
    derived=derived,
    tools=("sfdisk", "mkfs.fat", "mtools"),
    recipe=("tinyuki.formats.disk",),
    cache=True,
)
