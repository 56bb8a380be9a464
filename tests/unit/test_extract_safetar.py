"""Safe extraction: a good tree loses its top directory; hostile tarballs write nothing outside."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from tasks import safetar
from tasks.errors import TinyukiError
from tests.helpers import tarballs

TOP = "linux-9.9"


def extract(tmp_path: Path, data: bytes, compress_name: str = "t.tar.xz") -> Path:
    archive = tarballs.write(tmp_path / "in" / compress_name, data)
    dest = tmp_path / "box" / "tree"
    safetar.extract(archive, dest)
    return dest


def outside_snapshot(tmp_path: Path) -> set[str]:
    return {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if "box/tree" not in str(p)}


def test_good_tree_is_extracted_without_its_top_directory(tmp_path):
    dest = extract(tmp_path, tarballs.tar_bytes())
    assert (dest / "Makefile").read_bytes() == tarballs.FILES["Makefile"]
    assert (dest / "init" / "main.c").is_file()
    assert (dest / "scripts" / "setlocalversion").stat().st_mode & 0o111
    link = dest / "scripts" / "link-to-makefile"
    assert link.is_symlink() and link.resolve() == (dest / "Makefile").resolve()
    assert not (dest / TOP).exists()


@pytest.mark.parametrize("compress", ["gz", "bz2", ""])
def test_other_compressions(tmp_path, compress):
    dest = extract(tmp_path, tarballs.tar_bytes(compress=compress), f"t.tar.{compress or 'plain'}")
    assert (dest / "README").read_bytes() == tarballs.FILES["README"]


HOSTILE = {
    "dotdot": ([(f"{TOP}/../../escaped", {"data": b"x", "type": tarfile.REGTYPE})], "contains '..'"),
    "absolute": ([("/tmp/tinyuki-escaped-abs", {"data": b"x", "type": tarfile.REGTYPE})], "absolute path"),
    "symlink-escape": ([(f"{TOP}/evil", {"type": tarfile.SYMTYPE, "linkname": "../../.."})], "points outside"),
    "symlink-absolute": ([(f"{TOP}/evil", {"type": tarfile.SYMTYPE, "linkname": "/etc"})], "absolute path"),
    "hardlink-passwd": ([(f"{TOP}/passwd", {"type": tarfile.LNKTYPE, "linkname": "/etc/passwd"})],
                        "hard link"),
    "hardlink-dotdot": ([(f"{TOP}/passwd", {"type": tarfile.LNKTYPE, "linkname": "../../etc/passwd"})],
                        "hard link"),
    "device": ([(f"{TOP}/sda", {"type": tarfile.BLKTYPE, "devmajor": 8, "devminor": 0})], "device"),
    "second-top": ([("other/file", {"data": b"x", "type": tarfile.REGTYPE})], "outside the top-level"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_members_are_refused(tmp_path, case):
    extra, message = HOSTILE[case]
    data = tarballs.tar_bytes(extra=[(n, dict(f)) for n, f in extra])
    before = outside_snapshot(tmp_path)
    with pytest.raises(TinyukiError) as e:
        extract(tmp_path, data)
    assert "refusing to extract" in e.value.message and message in e.value.message
    after = outside_snapshot(tmp_path) - {"box", "box/tree", "in", "in/t.tar.xz"}
    assert after == before
    assert not Path("/tmp/tinyuki-escaped-abs").exists()


def test_symlink_then_file_through_it_is_refused(tmp_path):
    """A link that stays inside is fine, but nothing may be written through a link to outside."""
    data = tarballs.tar_bytes(extra=[(f"{TOP}/up", {"type": tarfile.SYMTYPE, "linkname": ".."}),
                                     (f"{TOP}/up/x", {"data": b"x", "type": tarfile.REGTYPE})])
    with pytest.raises(TinyukiError):
        extract(tmp_path, data)
    assert not (tmp_path / "box" / "x").exists()


def test_truncated_archive_is_an_error(tmp_path):
    data = tarballs.tar_bytes()
    with pytest.raises(TinyukiError) as e:
        extract(tmp_path, data[: len(data) // 2])
    assert "damaged" in (e.value.hint or "") and "t.tar.xz" in e.value.message


def test_check_member_accepts_internal_links():
    ti = tarfile.TarInfo(f"{TOP}/arch/x86/boot/dts")
    ti.type, ti.linkname = tarfile.SYMTYPE, "../../../scripts/dtc"
    assert safetar.check_member(ti, TOP) == "arch/x86/boot/dts"
