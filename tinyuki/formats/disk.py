"""tinyuki.img: a whole-disk image a firmware boots like a USB stick, the UKI as /EFI/BOOT/BOOTX64.EFI.

The image is made with the tools every distribution has and that partition
and file system readers trust (sfdisk for the GPT or DOS label, mkfs.fat for
the file systems, mtools to fill them, no loop devices or root needed), driven
so that they leave nothing to chance:

- the layout (where each partition starts, its size and FAT type) is planned
  here, in whole MiB, from the contents and the profile;
- the disk and partition GUIDs (and the DOS disk id) are derived from a hash
  of everything that goes into the image, so the same inputs give the same ids
  and different contents never share them, as systemd-repart derives its ids;
- the FAT volume ids and every timestamp come from `source_date_epoch`
  (SOURCE_DATE_EPOCH, which mkfs.fat and mtools honour; files are also
  staged with that mtime and copied with `mcopy -m`, all under TZ=UTC since
  FAT stores local time), and a user's ~/.mtoolsrc or MTOOLS_* variables
  cannot change how names are written;
- files and folders are added one folder at a time, in sorted order, so the
  clusters they get do not depend on the order a directory lists them in.

The pure part (sizes, layout, ids, the sfdisk script) is separate from the
part that runs the tools, so it is tested without them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tinyuki.errors import TinyukiError, die
from tinyuki.util import runner
from tinyuki.util.fmt import human_size

SECTOR = 512
MIB = 1 << 20
# Partitions start on MiB boundaries, the first one after the first MiB (the table and the alignment gap).
FIRST_MIB = 1
# A GPT keeps its backup table in the last 33 sectors: the last MiB holds it.
GPT_TAIL_MIB = 1
# FAT32 needs at least 65525 clusters; with 512-byte clusters a 33 MiB volume has 66512 (mkfs.fat's own limit).
FAT32_MIN_MIB = 33
# mkfs.fat cannot make a valid FAT16 below 16 MiB with its cluster sizes; FAT12 then.
FAT16_MIN_MIB = 16
# Room to spare on an automatic size: a quarter more than the contents, plus this for the FAT's own tables.
SPARE_MIB = 1
ESP_LOADER = "EFI/BOOT/BOOTX64.EFI"
# Items per mcopy call: one call per folder keeps the order, batches keep each echoed command readable.
MCOPY_BATCH = 64
ESP_LABEL = "TINYUKI"
DATA_LABEL = "TINYUKIDATA"

GPT_ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
GPT_BASIC_DATA = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"  # a FAT data partition any OS mounts
GPT_LINUX_DATA = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"  # raw bytes for the program, no file system
MBR_ESP = 0xEF
MBR_FAT = {12: 0x01, 16: 0x0E, 32: 0x0C}  # FAT12, FAT16 (LBA), FAT32 (LBA)
MBR_LINUX = 0x83
TABLES = ("gpt", "mbr")

SIZE_HINT_ESP = 'raise [disk] esp_size, or leave it out (auto) to get the smallest size that fits'
SIZE_HINT_DATA = 'raise [disk] data_size, or leave it out (auto) to fit the data folder'


# ---------------------------------------------------------------- what goes in


@dataclass(frozen=True)
class Entry:
    """One file or folder in a FAT file system: its path there ("EFI/BOOT") and, for a file, where it comes from."""

    path: str
    source: Path | None  # None: a folder

    @property
    def is_dir(self) -> bool:
        return self.source is None


def with_folders(files: Iterable[tuple[str, Path]]) -> list[Entry]:
    """The files plus every folder they need, sorted component by component (parents first)."""
    entries: dict[str, Entry] = {}
    for dest, src in files:
        parts = PurePosixPath(dest.lstrip("/")).parts
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i])
            entries.setdefault(folder, Entry(folder, None))
        entries["/".join(parts)] = Entry("/".join(parts), Path(src))
    return sorted(entries.values(), key=lambda e: PurePosixPath(e.path).parts)


def esp_entries(uki: Path, files: Sequence[tuple[str, Path]], loader: str = ESP_LOADER) -> list[Entry]:
    """The EFI system partition's contents: the UKI where removable media's loader goes, and the extra files.

    `loader` is that place for the target architecture (EFI/BOOT/BOOTAA64.EFI on arm64).
    """
    return with_folders([(loader, uki), *files])


def folder_entries(folder: Path) -> list[Entry]:
    """A data folder as FAT entries: every file and folder in it, in sorted order.

    FAT holds plain files and folders only, and compares names without case:
    a link, a device or two names differing only in case are refused rather
    than silently dropped or merged.
    """
    out: list[Entry] = []
    seen: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = p.relative_to(folder).as_posix()
            st = os.lstat(p)
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a plain file or folder"
                raise die(f"[disk] data: {p} is {kind}, which a FAT file system cannot hold",
                          "put a copy of the file itself in the data folder")
            if name.endswith((".", " ")) or set(name) & set('"*:<>?\\|'):
                raise die(f"[disk] data: {p}: the name {name!r} is not valid on FAT",
                          'rename it: no " * : < > ? \\ |, and no dot or space at the end')
            other = seen.setdefault(rel.upper(), rel)
            if other != rel:
                raise die(f"[disk] data: {rel!r} and {other!r} differ only in case, which FAT cannot tell apart",
                          "rename one of them")
            out.append(Entry(rel, None if stat.S_ISDIR(st.st_mode) else p))
    return sorted(out, key=lambda e: PurePosixPath(e.path).parts)


def name_slots(name: str) -> int:
    """Directory entries a name takes on FAT: the short entry plus one long-name entry per 13 characters."""
    return 1 + -(-len(name) // 13)


def root_entries(entries: Sequence[Entry]) -> int:
    """Room to ask mkfs.fat for in a FAT12/16 root directory, whose size is fixed when it is made (16 per sector)."""
    used = sum(name_slots(PurePosixPath(e.path).name) for e in entries if "/" not in e.path)
    return max(512, -(-used // 16) * 16)


def content_bytes(entries: Sequence[Entry]) -> int:
    """What the entries take on a FAT volume, counted generously: 4 KiB clusters, a cluster per folder, the names."""
    total = 0
    for e in entries:
        size = 0 if e.source is None else e.source.stat().st_size
        total += max(1, -(-size // 4096)) * 4096 + 32 * name_slots(PurePosixPath(e.path).name)
    return total


def fit_mib(content: int) -> int:
    """The automatic size of a FAT partition for `content` bytes: a quarter more, plus the FAT's tables."""
    return -(-(content * 5 // 4) // MIB) + SPARE_MIB


def fat_bits(size_mib: int) -> int:
    """FAT32 where the size allows (the UEFI spec's choice for an ESP), FAT16 or FAT12 below, as it permits."""
    if size_mib >= FAT32_MIN_MIB:
        return 32
    return 16 if size_mib >= FAT16_MIN_MIB else 12


# ---------------------------------------------------------------- the layout


@dataclass(frozen=True)
class Partition:
    role: str  # "esp" or "data"
    start_mib: int
    size_mib: int
    fat: int | None  # FAT12/16/32, or None for an unformatted partition
    uuid: str  # GPT partition GUID (unused on a DOS label)
    name: str

    @property
    def offset(self) -> int:
        return self.start_mib * MIB

    @property
    def size(self) -> int:
        return self.size_mib * MIB

    def gpt_type(self) -> str:
        if self.role == "esp":
            return GPT_ESP
        return GPT_BASIC_DATA if self.fat else GPT_LINUX_DATA

    def mbr_type(self) -> int:
        if self.role == "esp":
            return MBR_ESP
        return MBR_FAT[self.fat] if self.fat else MBR_LINUX

    def describe(self) -> str:
        what = f"FAT{self.fat}" if self.fat else "unformatted"
        return f"{self.role} {self.size_mib} MiB at {self.start_mib} MiB, {what}"


@dataclass(frozen=True)
class Layout:
    table: str
    disk_id: str  # the GPT disk GUID, or the DOS label's id as 0x12345678
    partitions: tuple[Partition, ...]
    size_mib: int

    @property
    def size(self) -> int:
        return self.size_mib * MIB


def _id_bytes(seed: str, role: str) -> bytes:
    return hashlib.sha256(f"tinyuki disk {role}\0{seed}".encode()).digest()


def guid(seed: str, role: str) -> str:
    """A GUID derived from the contents' seed and a role, with the version-4 bits set (as systemd's derived ids)."""
    return str(uuid.UUID(bytes=_id_bytes(seed, role)[:16], version=4)).upper()


def dos_id(seed: str) -> str:
    """The DOS label's 32-bit disk id, derived like the GUIDs (never 0, which means "none")."""
    value = int.from_bytes(_id_bytes(seed, "dos-id")[:4], "little") or 1
    return f"0x{value:08x}"


def volume_id(epoch: int, role: str) -> str:
    """A FAT volume id from the build's epoch (as mkfs.fat derives one from the clock), distinct per partition."""
    value = int.from_bytes(hashlib.sha256(f"tinyuki fat {role}\0{epoch}".encode()).digest()[:4], "little")
    return f"{value:08X}"


def seed_of(*, table: str, esp: Sequence[Entry], data: Sequence[Entry] | None, esp_size: int | None,
            data_size: int | None, epoch: int) -> str:
    """A hash of everything that goes into the image: names, contents and sizes, never where the inputs live."""
    def listing(entries: Sequence[Entry]) -> list[list[str]]:
        return [[e.path, "dir" if e.source is None else _sha256(e.source)] for e in entries]

    material = {"table": table, "esp": listing(esp), "data": None if data is None else listing(data),
                "esp_size": esp_size, "data_size": data_size, "epoch": epoch}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def plan(*, table: str, seed: str, esp_content: int, esp_size: int | None, data_content: int | None,
         data_size: int | None) -> Layout:
    """Where the partitions go. `data_content` None: no data folder (an empty partition only if data_size is set).

    An explicit size smaller than the contents is refused here, before any tool runs.
    """
    if table not in TABLES:
        raise die(f"[disk] table {table!r} is not one of {', '.join(TABLES)}", 'set [disk] table = "gpt" or "mbr"')
    if esp_size is None:
        esp_size = fit_mib(esp_content)
    elif esp_content + SPARE_MIB * MIB > esp_size * MIB:
        raise die(f"[disk] esp_size {esp_size} MiB is too small for the UKI and the files "
                  f"({human_size(esp_content)}; at least {fit_mib(esp_content)} MiB fits them with room to spare)",
                  SIZE_HINT_ESP)
    parts = [Partition("esp", FIRST_MIB, esp_size, fat_bits(esp_size), guid(seed, "esp"), "EFI system partition")]
    if data_content is not None or data_size is not None:
        if data_size is None:
            data_size = fit_mib(data_content or 0)
        elif data_content is not None and data_content + SPARE_MIB * MIB > data_size * MIB:
            raise die(f"[disk] data_size {data_size} MiB is too small for the data folder "
                      f"({human_size(data_content)}; at least {fit_mib(data_content)} MiB fits it)", SIZE_HINT_DATA)
        fat = fat_bits(data_size) if data_content is not None else None
        parts.append(Partition("data", FIRST_MIB + esp_size, data_size, fat, guid(seed, "data"), "tinyuki data"))
    end = parts[-1].start_mib + parts[-1].size_mib
    total = end + (GPT_TAIL_MIB if table == "gpt" else 0)
    disk_id = guid(seed, "disk") if table == "gpt" else dos_id(seed)
    return Layout(table, disk_id, tuple(parts), total)


def sfdisk_script(layout: Layout) -> str:
    """The partition table as an sfdisk script: every id given, nothing left for sfdisk to choose."""
    lines = [f"label: {'gpt' if layout.table == 'gpt' else 'dos'}", f"label-id: {layout.disk_id}",
             "unit: sectors", "sector-size: 512"]
    if layout.table == "gpt":
        lines += ["first-lba: 34", "table-length: 128"]
    lines.append("")
    for p in layout.partitions:
        where = f"start={p.start_mib * MIB // SECTOR}, size={p.size_mib * MIB // SECTOR}"
        if layout.table == "gpt":
            lines.append(f'{where}, type={p.gpt_type()}, uuid={p.uuid}, name="{p.name}"')
        else:
            lines.append(f"{where}, type={p.mbr_type():x}" + (", bootable" if p.role == "esp" else ""))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- making it


# mtools' settings that change what it writes (short names, case, VFAT), at their defaults: a user's
# ~/.mtoolsrc or MTOOLS_* variables would otherwise change the image's bytes.
MTOOLS_DEFAULTS = {"MTOOLS_SKIP_CHECK": "1", "MTOOLS_NO_VFAT": "0", "MTOOLS_LOWER_CASE": "0",
                   "MTOOLS_NAME_NUMERIC_TAIL": "1", "MTOOLS_DOTTED_DIR": "0", "MTOOLS_FAT_COMPATIBILITY": "0",
                   "MTOOLS_DEFAULT_CODEPAGE": "850"}


def _tool_env(epoch: int, home: Path | None = None) -> dict[str, str]:
    """The tools' environment: FAT stores local time, so TZ=UTC makes the epoch the same bytes everywhere;
    HOME is an empty folder so no ~/.mtoolsrc is read, and mtools' own variables are pinned."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTOOLS")}
    env.update(MTOOLS_DEFAULTS, TZ="UTC", SOURCE_DATE_EPOCH=str(epoch), LC_ALL="C")
    if home is not None:
        env["HOME"] = str(home)
    return env


def _stage(entries: Sequence[Entry], into: Path, epoch: int) -> dict[str, list[Path]]:
    """Copies of the entries under `into` (files mode 0644), with mtime `epoch`, grouped by their folder.

    mcopy -m then gives every FAT entry the epoch as its time, whatever the
    sources' own times and modes (the umask, a checkout's clock) were.
    """
    by_folder: dict[str, list[Path]] = {"": []}
    for i, e in enumerate(entries):
        parent = PurePosixPath(e.path).parent.as_posix()
        parent = "" if parent == "." else parent
        holder = into / str(i)
        holder.mkdir()
        item = holder / PurePosixPath(e.path).name
        if e.source is None:
            item.mkdir()
            by_folder.setdefault(e.path, [])
        else:
            shutil.copyfile(e.source, item)
            os.chmod(item, 0o644)
        os.utime(item, (epoch, epoch))
        by_folder.setdefault(parent, []).append(item)
    return by_folder


def _format(image: Path, part: Partition, label: str, entries: Sequence[Entry], epoch: int,
            log: Path | None) -> None:
    assert part.fat is not None
    root = ["-r", str(root_entries(entries))] if part.fat != 32 else []  # FAT32's root grows like any folder
    runner.run(["mkfs.fat", "--invariant", "-F", str(part.fat), *root, "-i", volume_id(epoch, part.role),
                "-n", label, "-h", str(part.offset // SECTOR), f"--offset={part.offset // SECTOR}", image,
                str(part.size // 1024)],
               env=_tool_env(epoch), what=f"formatting the {part.role} partition (FAT{part.fat})", log=log,
               hint=f"mkfs.fat's message is above; the log is {log}" if log else "mkfs.fat's message is above")


def _fill(image: Path, part: Partition, entries: Sequence[Entry], epoch: int, work: Path, log: Path | None,
          hint: str) -> None:
    """Copy the entries in, one folder at a time, each folder's children in sorted order."""
    staged = _stage(entries, work, epoch)
    target = f"{image}@@{part.offset}"
    for folder in sorted(staged, key=lambda f: PurePosixPath(f).parts):
        items = staged[folder]
        for i in range(0, len(items), MCOPY_BATCH):
            try:
                runner.run(["mcopy", "-s", "-m", "-Q", "-i", target, *items[i:i + MCOPY_BATCH],
                            f"::/{folder}"],
                           env=_tool_env(epoch, home=work), what=f"copying into the {part.role} partition", log=log,
                           input=b"", hint="mtools' message is above")
            except TinyukiError as err:
                if isinstance(err, runner.MissingTool):
                    raise
                if "disk full" in err.message.lower() or "no directory slots" in err.message.lower():
                    raise die(f"the {part.role} partition ({part.size_mib} MiB, FAT{part.fat}) is full", hint) from err
                raise


def make_image(out: Path, layout: Layout, esp: Sequence[Entry], data: Sequence[Entry] | None, *, epoch: int,
               log: Path | None = None) -> None:
    """Write the whole disk image to `out` (a new file; the caller renames it into place)."""
    with open(out, "wb") as f:
        f.truncate(layout.size)  # zeros: the gaps between partitions read the same everywhere
    runner.run(["sfdisk", "--no-reread", "--no-tell-kernel", "--wipe", "always", out],
               input=sfdisk_script(layout).encode(), env=_tool_env(epoch),
               what=f"writing the {layout.table.upper()} partition table", log=log,
               hint="sfdisk's message is above")
    with tempfile.TemporaryDirectory(prefix="tinyuki-disk-") as tmp:
        for part in layout.partitions:
            if part.fat is None:
                continue
            entries = esp if part.role == "esp" else (data or [])
            _format(out, part, ESP_LABEL if part.role == "esp" else DATA_LABEL, entries, epoch, log)
            work = Path(tmp) / part.role
            work.mkdir()
            _fill(out, part, entries, epoch, work, log, SIZE_HINT_ESP if part.role == "esp" else SIZE_HINT_DATA)
