"""disk: tinyuki.img, a whole-disk image to write to a USB stick, booting the UKI on any UEFI machine.

The UKI goes where firmware looks on removable media (/EFI/BOOT/BOOTX64.EFI, BOOTAA64.EFI on arm64)
on an EFI system partition, under a GPT (or a DOS label, [disk] table), with
the profile's extra files beside it and an optional second partition for the
program. With [sign], the UKI on the stick is the signed one (tasks/sign.py),
so it boots with Secure Boot on. The image is the same bytes for the same
inputs: ids from the contents, times from source_date_epoch, files in sorted
order (tinyuki/formats/disk.py says how). `doit boot stick=1` boots it as a USB
stick; `doit flash device=/dev/sdX` writes it to one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tinyuki.config.context import Context
from tinyuki.errors import TinyukiError
from tinyuki.formats import disk
from tinyuki.stage import Output, Stage
from tinyuki.tasks.sign import SIGNED
from tinyuki.tasks.sign import STAGE as SIGN
from tinyuki.tasks.uki import UKI
from tinyuki.util import fs as fsutil
from tinyuki.util.fmt import human_size

DISK = Output("tinyuki.img", manifest="disk")


def loader(ctx: Context) -> Path:
    """The UKI the stick boots: the one signed for Secure Boot when the profile signs ([sign]), else the UKI."""
    return SIGNED.at(ctx) if SIGN.active(ctx) else UKI.at(ctx)


def data_entries(ctx: Context) -> list[disk.Entry] | None:
    folder = ctx.profile.disk.data
    return disk.folder_entries(folder) if folder is not None else None


def _listed(ctx: Context) -> list[disk.Entry] | str | None:
    """The data folder's entries, or the error that refuses it: doit asks for inputs while it loads the tasks,
    where an error would show as a traceback; the build itself reports it (message and hint)."""
    try:
        return data_entries(ctx)
    except TinyukiError as err:
        return err.message


def inputs(ctx: Context) -> list[Path]:
    """The data folder's files: their contents reach the image (the extra ESP files are settings already)."""
    entries = _listed(ctx)
    return [] if isinstance(entries, str) else [e.source for e in entries or [] if e.source is not None]


def derived(ctx: Context) -> dict[str, Any]:
    """Which UKI goes on the stick, and the data folder's shape (names, empty folders): neither is in the
    contents of the files doit tracks (turning [sign] off leaves no file behind to notice)."""
    out: dict[str, Any] = {"[disk] loader": "signed" if SIGN.active(ctx) else "unsigned"}
    entries = _listed(ctx)
    if isinstance(entries, str):
        out["[disk] data listing"] = f"refused: {entries}"
    elif entries is not None:
        out["[disk] data listing"] = [[e.path, "dir" if e.is_dir else "file"] for e in entries]
    return out


def plan(ctx: Context) -> tuple[disk.Layout, list[disk.Entry], list[disk.Entry] | None]:
    """The layout and the contents of both partitions, from the UKI and the profile (no tool runs)."""
    d = ctx.profile.disk
    esp = disk.esp_entries(loader(ctx), d.files, f"EFI/BOOT/{ctx.arch.efi_boot_file}")
    data = data_entries(ctx)
    seed = disk.seed_of(table=d.table, esp=esp, data=data, esp_size=d.esp_size, data_size=d.data_size,
                        epoch=ctx.profile.kernel.source_date_epoch)
    layout = disk.plan(table=d.table, seed=seed, esp_content=disk.content_bytes(esp), esp_size=d.esp_size,
                       data_content=None if data is None else disk.content_bytes(data), data_size=d.data_size)
    return layout, esp, data


def report(ctx: Context) -> dict[str, Any]:
    """For manifest.json: the image's layout and ids, and every file on it with its sha256."""
    layout, esp, data = plan(ctx)

    def files(entries: list[disk.Entry] | None) -> list[dict[str, str]]:
        return [{"path": "/" + e.path, "sha256": fsutil.sha256_file(e.source)}
                for e in entries or [] if e.source is not None]

    return {"disk": {
        "table": layout.table, "disk_id": layout.disk_id, "size": layout.size,
        "partitions": [{"role": p.role, "start_mib": p.start_mib, "size_mib": p.size_mib,
                        "filesystem": f"FAT{p.fat}" if p.fat else None,
                        "type": p.gpt_type() if layout.table == "gpt" else f"0x{p.mbr_type():02x}",
                        "uuid": p.uuid if layout.table == "gpt" else None} for p in layout.partitions],
        "esp_files": files(esp), "data_files": files(data),
    }}


def write_disk(ctx: Context, target: Path | None = None) -> disk.Layout:
    """Plan and write the image atomically; a failure (too small, a tool missing) leaves the old one in place."""
    layout, esp, data = plan(ctx)
    out = target or DISK.at(ctx)
    with fsutil.atomic_path(out) as tmp:
        disk.make_image(tmp, layout, esp, data, epoch=ctx.profile.kernel.source_date_epoch,
                        log=ctx.paths.logs / "disk.log")
    parts = "; ".join(p.describe() for p in layout.partitions)
    print(f"disk: {out} ({human_size(layout.size)}, {layout.table.upper()} {layout.disk_id}): {parts}")
    return layout


def build(ctx: Context) -> None:
    write_disk(ctx)


STAGE = Stage(
    "disk", build=build,
    doc="Write tinyuki.img: a GPT or DOS disk whose EFI system partition holds the UKI as /EFI/BOOT/BOOTX64.EFI.",
    needs=("uki", "sign"), outputs=(DISK,), inputs=inputs, derived=derived,
    tools=("sfdisk", "mkfs.fat", "mtools"), recipe=("tinyuki.formats.disk",),
    cache=True, report=report)
