"""Safe extraction: a good tree loses its top directory; hostile tarballs write nothing outside."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import pytest

from tests.helpers import tarballs
from tinyuki.errors import TinyukiError
from tinyuki.formats import safetar
from tinyuki.util.fs import publish_dir

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


needs_xz = pytest.mark.skipif(shutil.which("xz") is None, reason="xz is not installed")


@needs_xz
def test_external_xz_is_echoed_and_its_error_is_the_one_shown(tmp_path, capsys):
    """A corrupt stream reads as a truncated tar; xz's own message says what is wrong."""
    data = tarballs.tar_bytes()
    with pytest.raises(TinyukiError) as e:
        extract(tmp_path, data[: len(data) // 2])
    assert e.value.message.startswith("xz failed (exit 1): xz -dc ")
    assert "xz:" in e.value.message  # xz's stderr
    assert capsys.readouterr().err.startswith("+ xz -dc ")


def test_without_the_external_tool_python_decompresses(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(safetar.shutil, "which", lambda name: None)
    dest = extract(tmp_path, tarballs.tar_bytes())
    assert (dest / "Makefile").read_bytes() == tarballs.FILES["Makefile"]
    assert "+ " not in capsys.readouterr().err  # nothing was run


def test_check_member_accepts_internal_links():
    ti = tarfile.TarInfo(f"{TOP}/arch/x86/boot/dts")
    ti.type, ti.linkname = tarfile.SYMTYPE, "../../../scripts/dtc"
    assert safetar.check_member(ti, TOP) == "arch/x86/boot/dts"


def _raw_tar(path: Path, members: list[tuple[str, str, str]]) -> Path:
    """(kind, name, link-or-content) entries, written in this order, under linux-9.9/."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        top = tarfile.TarInfo("linux-9.9")
        top.type = tarfile.DIRTYPE
        tf.addfile(top)
        for kind, name, value in members:
            ti = tarfile.TarInfo(f"linux-9.9/{name}")
            data = None
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, value
            elif kind == "hard":
                ti.type, ti.linkname = tarfile.LNKTYPE, f"linux-9.9/{value}"
            else:
                data = value.encode()
                ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return path


def test_symlink_chain_escape_is_refused(tmp_path):
    """CVE-2025-4517's shape: a link that is lexically inside but really outside, then writes through it."""
    (tmp_path / "victim").write_text("original\n")
    arc = _raw_tar(tmp_path / "evil.tar", [
        ("dir", "p/q/r", ""),
        ("sym", "escape", "p/q/r/s/../../../.."),  # lexically the tree's root
        ("sym", "p/q/r/s", "../../.."),            # makes `escape` point two levels above the tree
        ("hard", "grab", "escape/victim"),
        ("file", "escape/newfile", "x"),
    ])
    dest = tmp_path / "out" / "tree"
    with pytest.raises(TinyukiError, match="symlink"):
        safetar.extract(arc, dest)
    assert (tmp_path / "victim").read_text() == "original\n"
    assert not (tmp_path / "newfile").exists() and not (tmp_path / "out" / "newfile").exists()


def test_deferred_symlinks_must_resolve_inside(tmp_path):
    arc = _raw_tar(tmp_path / "evil.tar", [
        ("dir", "p/q/r", ""),
        ("sym", "escape", "p/q/r/s/../../../.."),
        ("sym", "p/q/r/s", "../../.."),
    ])
    with pytest.raises(TinyukiError, match="resolves outside the tree"):
        safetar.extract(arc, tmp_path / "out" / "tree")


def test_internal_symlinks_still_work(tmp_path):
    arc = _raw_tar(tmp_path / "ok.tar", [
        ("dir", "arch/arm/boot/dts", ""),
        ("file", "arch/arm/boot/dts/a.dts", "dts"),
        ("dir", "scripts/dtc/include-prefixes", ""),
        ("sym", "scripts/dtc/include-prefixes/arm", "../../../arch/arm/boot/dts"),
    ])
    dest = tmp_path / "out" / "tree"
    safetar.extract(arc, dest)
    assert (dest / "scripts/dtc/include-prefixes/arm/a.dts").read_text() == "dts"


def test_publish_dir_never_replaces_a_tree_in_use(tmp_path):
    final = tmp_path / "trees" / "src-abc"
    first, second = tmp_path / "t1", tmp_path / "t2"
    for d, text in ((first, "one"), (second, "two")):
        d.mkdir()
        (d / "Makefile").write_text(text)
    assert publish_dir(first, final) is True
    assert publish_dir(second, final) is False  # a concurrent run finished first: its tree stays
    assert (final / "Makefile").read_text() == "one"
