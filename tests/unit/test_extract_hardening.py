"""Safe extraction on Debian 12's own Python, and the tar failures that used to end in a traceback.

Python 3.11.2 (stock Debian 12) has no `filter=` for tarfile's extraction and
no FilterError (both came in 3.11.4): the extractor must not need them, its
own checks being the guard. A hard link to a member the archive never had,
and a full disk, are errors with a hint. Extraction hashes the bytes it reads
and refuses a tarball that is not the verified one.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from tests.helpers import tarballs
from tinyuki.errors import TinyukiError
from tinyuki.formats import safetar

TOP = "linux-9.9"


@pytest.fixture
def python_3_11_2(monkeypatch):
    """tarfile as Python 3.11.2 has it: no extraction filters."""
    for name in ("data_filter", "tar_filter", "fully_trusted_filter", "FilterError", "AbsolutePathError",
                 "OutsideDestinationError", "SpecialFileError", "AbsoluteLinkError", "LinkOutsideDestinationError"):
        monkeypatch.delattr(tarfile, name, raising=False)
    real_extract, real_extractall = tarfile.TarFile.extract, tarfile.TarFile.extractall

    def extract(self, member, path="", set_attrs=True, *, numeric_owner=False, **kw):
        if kw:
            raise TypeError(f"extract() got an unexpected keyword argument {next(iter(kw))!r}")
        return real_extract(self, member, path, set_attrs, numeric_owner=numeric_owner)

    def extractall(self, path=".", members=None, *, numeric_owner=False, **kw):
        if kw:
            raise TypeError(f"extractall() got an unexpected keyword argument {next(iter(kw))!r}")
        return real_extractall(self, path, members, numeric_owner=numeric_owner)

    monkeypatch.setattr(tarfile.TarFile, "extract", extract)
    monkeypatch.setattr(tarfile.TarFile, "extractall", extractall)


def write_tar(path: Path, members: list[tuple[str, dict]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        top = tarfile.TarInfo(TOP)
        top.type, top.mode = tarfile.DIRTYPE, 0o755
        tf.addfile(top)
        for name, fields in members:
            ti = tarfile.TarInfo(f"{TOP}/{name}")
            data = fields.pop("data", None)
            for k, v in fields.items():
                setattr(ti, k, v)
            if data is not None:
                ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return path


def test_a_good_tree_extracts_on_python_3_11_2(tmp_path, python_3_11_2):
    arc = tarballs.write(tmp_path / "t.tar.xz", tarballs.tar_bytes())
    dest = tmp_path / "out" / "tree"
    safetar.extract(arc, dest)
    assert (dest / "Makefile").read_bytes() == tarballs.FILES["Makefile"]
    assert (dest / "scripts" / "setlocalversion").stat().st_mode & 0o111
    assert os.readlink(dest / "scripts" / "link-to-makefile") == "../Makefile"


def test_modes_and_owners_are_tamed_without_the_stdlib_filter(tmp_path, python_3_11_2):
    arc = write_tar(tmp_path / "t.tar", [
        ("suid", {"data": b"#!/bin/sh\n", "mode": 0o6777, "uid": 4242, "gid": 4242, "uname": "evil", "gname": "evil"}),
        ("noexec", {"data": b"x", "mode": 0o000}),
    ])
    dest = tmp_path / "out" / "tree"
    safetar.extract(arc, dest)
    st = (dest / "suid").stat()
    assert st.st_mode & 0o7777 == 0o755 and st.st_uid == os.getuid() and st.st_gid == os.getgid()
    assert (dest / "noexec").stat().st_mode & 0o777 == 0o600


def test_hostile_members_are_still_refused_on_python_3_11_2(tmp_path, python_3_11_2):
    outside = tmp_path / "victim"
    outside.write_text("original\n")
    arc = write_tar(tmp_path / "t.tar", [("up", {"type": tarfile.SYMTYPE, "linkname": ".."}),
                                         ("up/victim", {"data": b"owned\n"})])
    with pytest.raises(TinyukiError) as e:
        safetar.extract(arc, tmp_path / "out" / "tree")
    assert "refusing to extract" in e.value.message
    assert outside.read_text() == "original\n"


def test_a_hard_link_to_a_missing_member_is_an_error(tmp_path):
    arc = write_tar(tmp_path / "t.tar", [("a", {"data": b"x"}),
                                         ("b", {"type": tarfile.LNKTYPE, "linkname": f"{TOP}/never-there"})])
    with pytest.raises(TinyukiError) as e:
        safetar.extract(arc, tmp_path / "out" / "tree")
    assert "hard link" in e.value.message and "never-there" in e.value.message and e.value.hint


def test_a_hard_link_to_an_earlier_member_works(tmp_path):
    arc = write_tar(tmp_path / "t.tar", [("a", {"data": b"x", "mode": 0o644}),
                                         ("b", {"type": tarfile.LNKTYPE, "linkname": f"{TOP}/a"})])
    dest = tmp_path / "out" / "tree"
    safetar.extract(arc, dest)
    assert (dest / "b").read_bytes() == b"x" and os.stat(dest / "a").st_ino == os.stat(dest / "b").st_ino


def test_a_full_disk_is_one_error_with_a_hint(tmp_path, monkeypatch):
    arc = tarballs.write(tmp_path / "t.tar.xz", tarballs.tar_bytes())
    real_write = os.write
    out = str(tmp_path / "out")

    def full(fd, data):
        if os.path.realpath(f"/proc/self/fd/{fd}").startswith(out):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(TinyukiError) as e:
        safetar.extract(arc, tmp_path / "out" / "tree")
    assert "no space left" in e.value.message and "free some space" in (e.value.hint or "")


def test_the_bytes_extracted_are_hashed_and_a_mismatch_refused(tmp_path):
    data = tarballs.tar_bytes()
    arc = tarballs.write(tmp_path / "t.tar.xz", data)
    good = hashlib.sha256(data).hexdigest()
    safetar.extract(arc, tmp_path / "ok" / "tree", expect_sha256=good)
    with pytest.raises(TinyukiError) as e:
        safetar.extract(arc, tmp_path / "bad" / "tree", expect_sha256="0" * 64)
    assert "does not hold the bytes that were verified" in e.value.message


def test_the_hash_covers_python_decompression_too(tmp_path, monkeypatch):
    monkeypatch.setattr(safetar.shutil, "which", lambda name: None)
    data = tarballs.tar_bytes(compress="gz")
    arc = tarballs.write(tmp_path / "t.tar.gz", data)
    safetar.extract(arc, tmp_path / "ok" / "tree", expect_sha256=hashlib.sha256(data).hexdigest())
    with pytest.raises(TinyukiError):
        safetar.extract(arc, tmp_path / "bad" / "tree", expect_sha256="0" * 64)
