"""tinyuki.img (tinyuki/formats/disk.py): the layout as plain data, then real images checked by real readers.

The readers are the ones a user would trust: sfdisk and sgdisk for the
partition table, fsck.fat for each file system, mdir/mtype (mtools) for the
files. They are required (scripts/setup.sh installs them): a missing one
fails these tests rather than skipping them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tinyuki.errors import TinyukiError
from tinyuki.formats import disk

EPOCH = 1700000000
ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "TZ": "UTC"}
ROOT = Path(__file__).resolve().parents[2]


def read(cmd: list[str], ok: tuple[int, ...] = (0,)) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    assert proc.returncode in ok, f"{cmd}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def fake_uki(path: Path, size: int = 300_000) -> Path:
    """Incompressible but fixed bytes standing in for a UKI."""
    import hashlib
    blocks = [hashlib.sha256(i.to_bytes(4, "little")).digest() for i in range(size // 32 + 1)]
    path.write_bytes(b"MZ" + b"".join(blocks)[: size - 2])
    return path


def build(tmp: Path, *, table: str = "gpt", esp_size: int | None = None, files: list[tuple[str, Path]] | None = None,
          data: Path | None = None, data_size: int | None = None, uki: Path | None = None) -> tuple[Path, disk.Layout]:
    """What tasks/disk.py does, from plain arguments."""
    uki = uki or fake_uki(tmp / "uki.efi")
    esp = disk.esp_entries(uki, files or [])
    entries = disk.folder_entries(data) if data is not None else None
    seed = disk.seed_of(table=table, esp=esp, data=entries, esp_size=esp_size, data_size=data_size, epoch=EPOCH)
    layout = disk.plan(table=table, seed=seed, esp_content=disk.content_bytes(esp), esp_size=esp_size,
                       data_content=None if entries is None else disk.content_bytes(entries), data_size=data_size)
    out = tmp / "tinyuki.img"
    disk.make_image(out, layout, esp, entries, epoch=EPOCH)
    return out, layout


def partition(image: Path, part: disk.Partition, into: Path) -> Path:
    """One partition cut out of the image, for fsck.fat (which reads a whole device)."""
    with open(image, "rb") as f:
        f.seek(part.offset)
        into.write_bytes(f.read(part.size))
    return into


def fsck(image: Path, part: disk.Partition, tmp: Path) -> str:
    """fsck.fat's verdict (it exits non-zero on any error) and the FAT type the boot sector declares."""
    cut = partition(image, part, tmp / f"{part.role}.part")
    out = read(["fsck.fat", "-n", "-v", str(cut)])
    assert "differences between boot sector" not in out
    boot = cut.read_bytes()[:512]
    return out + (boot[82:90] if boot[82:87] == b"FAT32" else boot[54:62]).decode()


# ---------------------------------------------------------------- the plan, without tools


def test_auto_size_is_the_smallest_that_fits_with_room_to_spare() -> None:
    layout = disk.plan(table="gpt", seed="s", esp_content=1_500_000, esp_size=None, data_content=None, data_size=None)
    (esp,) = layout.partitions
    assert esp.size_mib == 3 and esp.start_mib == 1 and esp.fat == 12
    assert esp.size >= 1_500_000 * 5 // 4 + disk.MIB
    assert layout.size_mib == 5  # 1 MiB for the table, the ESP, 1 MiB for the GPT's backup
    assert disk.plan(table="mbr", seed="s", esp_content=1_500_000, esp_size=None, data_content=None,
                     data_size=None).size_mib == 4


@pytest.mark.parametrize(("mib", "bits"), [(1, 12), (15, 12), (16, 16), (32, 16), (33, 32), (1024, 32)])
def test_fat32_where_the_size_allows(mib: int, bits: int) -> None:
    assert disk.fat_bits(mib) == bits


def test_a_size_too_small_for_the_uki_is_refused_with_a_hint() -> None:
    with pytest.raises(TinyukiError) as err:
        disk.plan(table="gpt", seed="s", esp_content=3 * disk.MIB, esp_size=2, data_content=None, data_size=None)
    assert "esp_size 2 MiB is too small" in err.value.message and "at least 5 MiB" in err.value.message
    assert err.value.hint and "esp_size" in err.value.hint
    with pytest.raises(TinyukiError, match="data_size 1 MiB is too small"):
        disk.plan(table="gpt", seed="s", esp_content=1, esp_size=None, data_content=2 * disk.MIB, data_size=1)


def test_an_unknown_table_is_refused() -> None:
    with pytest.raises(TinyukiError) as err:
        disk.plan(table="apm", seed="s", esp_content=1, esp_size=None, data_content=None, data_size=None)
    assert "apm" in err.value.message and err.value.hint and "gpt" in err.value.hint


def test_ids_are_derived_from_the_contents() -> None:
    a, b = disk.guid("seed-a", "disk"), disk.guid("seed-b", "disk")
    assert a == disk.guid("seed-a", "disk") and a != b and a != disk.guid("seed-a", "esp")
    assert a[14] == "4" and a[19] in "89AB"  # an RFC 4122 version-4 GUID, as partitioning tools expect
    assert disk.dos_id("seed-a") == disk.dos_id("seed-a") != disk.dos_id("seed-b")
    assert len(disk.dos_id("x")) == 10 and int(disk.dos_id("x"), 16) != 0
    assert disk.volume_id(EPOCH, "esp") != disk.volume_id(EPOCH, "data")
    assert disk.volume_id(EPOCH, "esp") != disk.volume_id(EPOCH + 1, "esp")


def test_the_seed_covers_names_contents_and_sizes(tmp_path: Path) -> None:
    uki = fake_uki(tmp_path / "uki")
    note = tmp_path / "note"
    note.write_text("a")

    def seed(**kw: object) -> str:
        args = {"table": "gpt", "esp": disk.esp_entries(uki, [("/x", note)]), "data": None, "esp_size": None,
                "data_size": None, "epoch": EPOCH, **kw}
        return disk.seed_of(**args)  # type: ignore[arg-type]

    first = seed()
    assert seed() == first
    assert seed(table="mbr") != first and seed(esp_size=8) != first and seed(epoch=1) != first
    assert seed(esp=disk.esp_entries(uki, [("/y", note)])) != first
    note.write_text("b")
    assert seed() != first


def test_sfdisk_script_leaves_nothing_to_chance() -> None:
    layout = disk.plan(table="gpt", seed="s", esp_content=1, esp_size=8, data_content=None, data_size=4)
    script = disk.sfdisk_script(layout)
    assert f"label-id: {layout.disk_id}" in script
    assert "start=2048, size=16384, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B" in script
    assert f"uuid={layout.partitions[0].uuid}" in script
    assert "start=18432, size=8192, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4" in script  # empty: raw Linux data
    dos = disk.sfdisk_script(disk.plan(table="mbr", seed="s", esp_content=1, esp_size=8, data_content=1,
                                       data_size=4))
    assert "label: dos" in dos and "type=ef, bootable" in dos and "type=1\n" in dos  # a FAT12 data partition


def test_entries_are_sorted_with_their_folders_first(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    entries = disk.esp_entries(f, [("/b/z.txt", f), ("/a.txt", f), ("/EFI/tinyuki/n", f)])
    assert [e.path for e in entries] == ["EFI", "EFI/BOOT", "EFI/BOOT/BOOTX64.EFI", "EFI/tinyuki", "EFI/tinyuki/n",
                                         "a.txt", "b", "b/z.txt"]
    assert [e.is_dir for e in entries][:2] == [True, True]


def test_a_data_folder_with_what_fat_cannot_hold_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "ok").write_text("x")
    os.symlink("ok", tmp_path / "d" / "link")
    with pytest.raises(TinyukiError, match="symbolic link"):
        disk.folder_entries(tmp_path / "d")
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "Read.me").write_text("x")
    (tmp_path / "e" / "READ.ME").write_text("y")
    with pytest.raises(TinyukiError, match="differ only in case"):
        disk.folder_entries(tmp_path / "e")


# ---------------------------------------------------------------- real images, real readers


def test_gpt_image_is_accepted_by_every_reader(tmp_path: Path) -> None:
    note = tmp_path / "notes.txt"
    note.write_text("hello from the ESP\n")
    data = tmp_path / "data"
    (data / "deep" / "er").mkdir(parents=True)
    (data / "empty").mkdir()
    (data / "greeting.txt").write_text("hello, program\n")
    (data / "deep" / "er" / "A Long File Name.bin").write_bytes(bytes(range(256)) * 40)
    image, layout = build(tmp_path, files=[("/EFI/tinyuki/notes.txt", note)], data=data)
    assert image.stat().st_size == layout.size
    table = json.loads(read(["sfdisk", "-J", str(image)]))["partitiontable"]
    assert table["label"] == "gpt" and table["id"] == layout.disk_id
    esp, part2 = table["partitions"]
    assert esp["type"] == disk.GPT_ESP and esp["uuid"] == layout.partitions[0].uuid and esp["start"] == 2048
    assert part2["type"] == disk.GPT_BASIC_DATA
    assert "No problems found" in read(["sgdisk", "-v", str(image)])
    for part in layout.partitions:
        fsck(image, part, tmp_path)
    listing = read(["mdir", "-/", "-i", f"{image}@@{layout.partitions[0].offset}", "::/"])
    assert "BOOTX64  EFI" in listing and "notes    txt" in listing and "2023-11-14  22:13" in listing
    got = read(["mtype", "-i", f"{image}@@{layout.partitions[0].offset}", "::/EFI/tinyuki/notes.txt"])
    assert got == "hello from the ESP\n"
    copy = tmp_path / "copy.efi"
    read(["mcopy", "-i", f"{image}@@{layout.partitions[0].offset}", "::/EFI/BOOT/BOOTX64.EFI", str(copy)])
    assert copy.read_bytes() == (tmp_path / "uki.efi").read_bytes()
    data_dir = read(["mdir", "-/", "-i", f"{image}@@{layout.partitions[1].offset}", "::/"])
    assert "A Long File Name.bin" in data_dir and "empty" in data_dir and "TINYUKIDATA" in data_dir
    assert read(["mtype", "-i", f"{image}@@{layout.partitions[1].offset}", "::/greeting.txt"]) == "hello, program\n"


def test_mbr_image_has_a_type_ef_esp_and_fat32_where_asked(tmp_path: Path) -> None:
    image, layout = build(tmp_path, table="mbr", esp_size=40, data_size=2)
    dump = read(["sfdisk", "-d", str(image)])
    assert "label: dos" in dump and f"label-id: {layout.disk_id}" in dump
    assert "start=        2048, size=       81920, type=ef, bootable" in dump
    assert "type=83" in dump  # the empty second partition
    assert layout.partitions[0].fat == 32 and layout.partitions[1].fat is None
    assert "FAT32" in fsck(image, layout.partitions[0], tmp_path)
    # an empty partition is left as zeros for the program to use
    with open(image, "rb") as f:
        f.seek(layout.partitions[1].offset)
        assert f.read(layout.partitions[1].size) == bytes(layout.partitions[1].size)


def test_fat16_sizes_are_valid_too(tmp_path: Path) -> None:
    image, layout = build(tmp_path, esp_size=16)
    assert "FAT16" in fsck(image, layout.partitions[0], tmp_path)


BUILD_ELSEWHERE = """
import os, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from tests.unit.test_disk import build
os.umask(int(sys.argv[2], 8))
build(Path(sys.argv[1]), files=[("/EFI/tinyuki/notes.txt", Path(sys.argv[3]))], data=Path(sys.argv[4]))
"""


def test_same_inputs_same_bytes_in_other_folders_times_zones_and_umasks(tmp_path: Path) -> None:
    """Two builds seconds apart (FAT keeps 2-second times), in other folders, umasks, zones and mtools settings."""
    note = tmp_path / "notes.txt"
    note.write_text("n\n")
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "b").write_text("b")
    (data / "a").write_text("a")
    (data / "Mixed Case And A Long Name.Text").write_text("long")
    hostile = tmp_path / "home"
    hostile.mkdir()
    (hostile / ".mtoolsrc").write_text("mtools_no_vfat=1\nmtools_lower_case=1\n")
    digests = []
    for i, (umask, tz) in enumerate([("022", "UTC"), ("077", "Pacific/Chatham")]):
        where = tmp_path / ("a" if i == 0 else "b-with-a-much-longer-path/second")
        where.mkdir(parents=True)
        os.utime(note, (time.time() - 1000 * i, time.time() - 1000 * i))  # the sources' own times never count
        env = {**os.environ, "TZ": tz}
        if i == 1:  # a user's mtools settings must not reach the image either
            env.update(HOME=str(hostile), MTOOLS_NAME_NUMERIC_TAIL="0", MTOOLS_LOWER_CASE="1", LC_ALL="POSIX")
        subprocess.run([sys.executable, "-c", BUILD_ELSEWHERE.format(root=str(ROOT)), str(where), umask, str(note),
                        str(data)], check=True, env=env, cwd=where)
        digests.append(__import__("hashlib").sha256((where / "tinyuki.img").read_bytes()).hexdigest())
        if i == 0:
            time.sleep(2.1)
    assert digests[0] == digests[1]


def test_a_full_file_system_is_reported_as_such(tmp_path: Path) -> None:
    """Should the plan's estimate ever be short, mcopy's "Disk full" becomes an error naming the partition."""
    uki = fake_uki(tmp_path / "big.efi", 1_200_000)
    esp = disk.esp_entries(uki, [])
    part = disk.Partition("esp", 1, 1, 12, disk.guid("s", "esp"), "EFI system partition")
    layout = disk.Layout("gpt", disk.guid("s", "disk"), (part,), 3)
    with pytest.raises(TinyukiError) as err:
        disk.make_image(tmp_path / "img", layout, esp, None, epoch=EPOCH)
    assert "the esp partition (1 MiB, FAT12) is full" in err.value.message
    assert err.value.hint and "esp_size" in err.value.hint


def test_a_data_root_with_many_long_names_fits(tmp_path: Path) -> None:
    """A FAT12/16 root directory has a fixed size: it is made large enough for the folder's names."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(600):
        (data / f"a-long-file-name-number-{i:04d}.txt").write_text(str(i))
    image, layout = build(tmp_path, data=data)
    assert layout.partitions[1].fat in (12, 16)
    fsck(image, layout.partitions[1], tmp_path)
    listing = read(["mdir", "-/", "-i", f"{image}@@{layout.partitions[1].offset}", "::/"])
    assert "a-long-file-name-number-0599.txt" in listing and "600 files" in listing


# ---------------------------------------------------------------- the [disk] section of a profile


def parse_disk(tmp_path: Path, disk_table: dict[str, object]) -> object:
    import tomllib

    from tinyuki.config.profile import parse_profile
    data = tomllib.loads((ROOT / "configs" / "profiles" / "debian.toml").read_text())
    data["disk"] = disk_table
    data["init"]["sources"] = [str(ROOT / "init" / "init.c")]
    return parse_profile(data, ROOT / "p.toml", ROOT).disk  # relative paths: from the profile's dir, the clone


def test_disk_defaults_and_sizes(tmp_path: Path) -> None:
    d = parse_disk(tmp_path, {})
    assert (d.table, d.esp_size, d.files, d.data, d.data_size) == ("gpt", None, (), None, None)  # type: ignore[attr-defined]
    d = parse_disk(tmp_path, {"table": "mbr", "esp_size": "64M", "data_size": "2G", "data": "init"})
    assert (d.table, d.esp_size, d.data_size, d.data) == ("mbr", 64, 2048, ROOT / "init")  # type: ignore[attr-defined]


@pytest.mark.parametrize(("table", "message", "hint"), [
    ({"table": "apm"}, "[disk] table is 'apm', which is not one of gpt, mbr", "gpt, mbr"),
    ({"esp_size": "3K"}, "[disk] esp_size is '3K', which is not a size in whole MiB or GiB", '"64M"'),
    ({"esp_size": 64}, "[disk] esp_size is 64, which is not a size", '"64M"'),
    ({"files": {"/x.txt": "no/such/file"}}, "no/such/file does not exist", "fix the path"),
    ({"files": {"/x": "tests"}}, "is not a file", "[disk] data"),
    ({"files": {"/efi/boot/BootX64.efi": "README.md"}}, "clashes with the UKI's place", "/EFI/BOOT/BOOTX64.EFI"),
    ({"files": {"/a": "README.md", "/A/b": "README.md"}}, "clashes with another file or folder", "a path of its own"),
    ({"files": {"/what?.txt": "README.md"}}, "is not a file path a FAT file system can hold", "absolute path"),
    ({"files": {"relative.txt": "README.md"}}, "is not a file path a FAT file system can hold", "absolute path"),
    ({"data": "README.md"}, "[disk] data: ", "existing folder"),
    ({"size": "1G"}, "unknown key [disk] size", "keys allowed in [disk]"),
])
def test_bad_disk_settings_are_refused_with_a_hint(tmp_path: Path, table: dict[str, object], message: str,
                                                   hint: str) -> None:
    with pytest.raises(TinyukiError) as err:
        parse_disk(tmp_path, table)
    assert message in err.value.message
    assert err.value.hint and hint in err.value.hint
