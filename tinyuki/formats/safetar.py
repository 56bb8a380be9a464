"""Extracting a tarball without trusting its member names.

A tarball can name `../../etc/cron.d/x`, `/etc/passwd`, a symlink to `/` or a
hard link to a file outside the tree. Verification says who made the tarball,
not that it is harmless, so every member is checked here and the archive is
refused outright (rather than silently "fixed") at the first hostile one;
Python's `data` filter then applies as a second guard. The archive is read as a
stream in one pass, decompressed by an external xz/gzip/bzip2 when available so
decompression and writing use two cores (run by tinyuki/util/runner.py's
`reading`, which stops it when extraction is refused and reports its own error
when the stream is corrupt).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import tarfile
from pathlib import Path
from typing import IO

from tinyuki.errors import TinyukiError, die
from tinyuki.util import runner

_MAGIC = (
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
)


def compression(path: Path) -> str | None:
    """The compressor by magic number, not by file name (a .tar.xz can be anything)."""
    with open(path, "rb") as f:
        head = f.read(6)
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


class HostileMember(TinyukiError):
    pass


def check_member(m: tarfile.TarInfo, top: str) -> str:
    """Return the member's path below the top-level directory, or refuse the member.

    Refused: absolute names, `..` anywhere, names outside the single top-level
    directory, device and fifo nodes, and links (symbolic or hard) whose target
    resolves outside the tree.
    """
    name = m.name
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise HostileMember(f"member {name!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise HostileMember(f"member {name!r} contains '..'")
    if not parts:
        return ""
    if parts[0] != top:
        raise HostileMember(f"member {name!r} is outside the top-level directory {top!r}/")
    rel = "/".join(parts[1:])
    if m.isdev() or m.isfifo():
        raise HostileMember(f"member {name!r} is a device or fifo node")
    if not (m.isreg() or m.isdir() or m.issym() or m.islnk()):
        raise HostileMember(f"member {name!r} has an unsupported type {m.type!r}")
    if m.issym():
        target = m.linkname
        if target.startswith("/"):
            raise HostileMember(f"symlink {name!r} points to the absolute path {target!r}")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
        if resolved == ".." or resolved.startswith("../"):
            raise HostileMember(f"symlink {name!r} -> {target!r} points outside the tree")
    if m.islnk():
        target = m.linkname
        tparts = [p for p in target.split("/") if p not in ("", ".")]
        if target.startswith("/") or ".." in tparts or not tparts or tparts[0] != top:
            raise HostileMember(f"hard link {name!r} -> {target!r} points outside the tree")
    return rel


def top_dir(name: str) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts:
        raise HostileMember(f"member {name!r} has an empty name")
    return parts[0]


def extract(archive: Path, dest: Path) -> int:
    """Extract `archive` into the new directory `dest`, dropping its single top-level directory.

    Returns the number of members written. On a hostile member the partial
    `dest` is left for the caller to remove (it is a temporary directory that
    is never renamed into place).
    """
    dest.mkdir(parents=True)
    kind = compression(archive)
    tool = {"xz": "xz", "gzip": "gzip", "bzip2": "bzip2"}.get(kind or "")
    stream: IO[bytes]
    with contextlib.ExitStack() as stack:
        if tool and shutil.which(tool):
            # tarfile pulls from the decompressor's stdout: the runner's `reading` kills it if extraction
            # fails, and raises its error if it fails itself (a corrupt stream reads as a truncated tar).
            stream = stack.enter_context(runner.reading([tool, "-dc", str(archive)], what=tool,
                                                        hint="the file may be damaged: fetch it again"))
            mode = "r|"
        else:
            stream = stack.enter_context(open(archive, "rb"))
            mode = "r|*"
        try:
            tf = tarfile.open(fileobj=stream, mode=mode)  # noqa: SIM115 - closed by the with below
        except tarfile.TarError as e:
            raise die(f"{archive} is not a readable tar archive ({e})",
                      "the download may be damaged: delete it and fetch again") from e
        try:
            with tf:
                count = _extract_members(tf, archive, dest)
        except (tarfile.TarError, EOFError, OSError) as e:
            raise die(f"extracting {archive} failed: {e}",
                      "the file may be truncated or damaged: fetch it again") from e
    return count


def _through_link(rel: str, links: set[str]) -> str | None:
    """The symlink among rel's parent directories (or rel itself), if any."""
    parts = rel.split("/")
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        if prefix in links:
            return prefix
    return None


def _extract_members(tf: tarfile.TarFile, archive: Path, dest: Path) -> int:
    """Extract regular members first and symlinks last, never writing through a link.

    Name checks alone cannot see a path that walks through a symlink the same
    archive created earlier (the trick behind CVE-2025-4517, which defeats the
    `data` filter of older Pythons). So no member may live under, replace, or
    hard-link through a symlink of the archive; symlinks are only created once
    every other member is written, and each must then resolve inside the tree.
    """
    hostile = "the tarball is malformed or hostile; do not use it"
    count = 0
    top: str | None = None
    links: dict[str, tarfile.TarInfo] = {}
    for m in tf:
        if top is None:
            top = top_dir(m.name)
        try:
            rel = check_member(m, top)
            if rel:
                via = _through_link(rel, set(links))
                if via is not None:
                    raise HostileMember(f"member {m.name!r} would be written through the symlink {via!r}")
                if m.islnk():
                    m.linkname = "/".join(p for p in m.linkname.split("/") if p not in ("", "."))[len(top) + 1:]
                    via = _through_link(m.linkname, set(links))
                    if via is not None:
                        raise HostileMember(f"hard link {m.name!r} goes through the symlink {via!r}")
        except HostileMember as e:
            raise die(f"refusing to extract {archive}: {e.message}", hostile) from None
        if not rel:
            continue
        m.name = rel
        if m.issym():
            links[rel] = m
            continue
        try:
            tf.extract(m, dest, filter="data", set_attrs=True)
        except tarfile.FilterError as e:
            raise die(f"refusing to extract {archive}: {e}", hostile) from None
        count += 1
    if top is None:
        raise die(f"{archive} is an empty archive", "the download may be damaged: fetch it again")
    root = os.path.realpath(dest)
    for rel, m in links.items():
        path = dest / rel
        parent = os.path.realpath(path.parent)
        if os.path.commonpath([root, parent]) != root or os.path.lexists(path):
            raise die(f"refusing to extract {archive}: symlink {m.name!r} would be created outside or over"
                      " another member", hostile)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(m.linkname, path)
        count += 1
    for rel, m in links.items():
        if os.path.commonpath([root, os.path.realpath(dest / rel)]) != root:
            raise die(f"refusing to extract {archive}: symlink {rel!r} -> {m.linkname!r} resolves outside the tree",
                      hostile)
    return count
