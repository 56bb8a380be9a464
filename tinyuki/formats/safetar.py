"""Extracting a tarball without trusting its member names.

A tarball can name `../../etc/cron.d/x`, `/etc/passwd`, a symlink to `/` or a
hard link to a file outside the tree. Verification says who made the tarball,
not that it is harmless, so every member is checked here and the archive is
refused outright (rather than silently "fixed") at the first hostile one.
The members are then written by tinyuki itself with the rules of Python's
`data` filter (no owners, no setuid/setgid, no write for others) and never
through a symlink (each path is walked with O_NOFOLLOW, files are created
with O_EXCL): that needs no extraction filter from tarfile, which Debian 12's
own Python 3.11.2 does not have. The archive is read as a stream in one pass
and hashed as it is read, so the bytes extracted are the bytes verified;
it is decompressed by an external xz/gzip/bzip2 when available so
decompression and writing use two cores (run by tinyuki/util/runner.py's
`reading`, which stops it when extraction is refused and reports its own error
when the stream is corrupt).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import posixpath
import shutil
import stat
import tarfile
import threading
from pathlib import Path
from typing import IO

from tinyuki.errors import TinyukiError, die
from tinyuki.util import runner
from tinyuki.util.fs import open_dir

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


class NotVerified(TinyukiError):
    """The archive's bytes are not the ones verify checked (their sha256 differs)."""


CHUNK = 1 << 20


class _Feeder(threading.Thread):
    """Reads the archive once, hashing it, into a pipe that the decompressor reads as its stdin.

    So the bytes extracted are exactly the bytes hashed: nothing reads the
    file a second time (a file replaced or rewritten meanwhile would otherwise
    be hashed as one version and extracted as another).
    """

    def __init__(self, archive: Path) -> None:
        super().__init__(daemon=True, name="tinyuki-tar-feeder")
        self.file = open(archive, "rb")  # noqa: SIM115 - closed by run() or close()
        self.read_fd, self._write_fd = os.pipe()
        self.sha256 = hashlib.sha256()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while chunk := self.file.read(CHUNK):
                self.sha256.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(self._write_fd, view):]
        except BrokenPipeError:
            pass  # the decompressor stopped reading (it failed, or extraction did): its error is the one shown
        except BaseException as e:  # handed to the extracting thread
            self.error = e
        finally:
            self.close()

    def close(self) -> None:
        self.file.close()
        with contextlib.suppress(OSError):
            os.close(self._write_fd)


class _Hashing(io.RawIOBase):
    """The archive read through a hash, for the in-process decompressors."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._raw.read(len(b))
        b[: len(data)] = data
        self.sha256.update(data)
        return len(data)


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


def extract(archive: Path, dest: Path, expect_sha256: str | None = None) -> int:
    """Extract `archive` into the new directory `dest`, dropping its single top-level directory.

    Returns the number of members written. The archive is hashed as it is
    read; with `expect_sha256`, an archive with other bytes is refused
    (NotVerified) once read. On a hostile member, or a mismatch, the partial
    `dest` is left for the caller to remove (it is a temporary directory that
    is never renamed into place).
    """
    dest.mkdir(parents=True)
    kind = compression(archive)
    tool = {"xz": "xz", "gzip": "gzip", "bzip2": "bzip2"}.get(kind or "")
    stream: IO[bytes]
    feeder: _Feeder | None = None
    hashing: _Hashing | None = None
    try:
        with contextlib.ExitStack() as stack:
            if tool and shutil.which(tool):
                # tarfile pulls from the decompressor's stdout: the runner's `reading` kills it if extraction
                # fails, and raises its error if it fails itself (a corrupt stream reads as a truncated tar).
                # The decompressor reads the archive from a pipe that the feeder fills and hashes.
                feeder = _Feeder(archive)
                try:
                    stream = stack.enter_context(runner.reading([tool, "-dc", "-"], what=tool, stdin=feeder.read_fd,
                                                                hint=f"{archive} may be damaged: fetch it again"))
                except BaseException:
                    feeder.close()
                    raise
                finally:
                    os.close(feeder.read_fd)  # the decompressor has its own copy; ours would hide its death
                feeder.start()
                mode = "r|"
            else:
                hashing = _Hashing(stack.enter_context(open(archive, "rb")))
                stream = io.BufferedReader(hashing, CHUNK)
                mode = "r|*"
            try:
                tf = tarfile.open(fileobj=stream, mode=mode)  # noqa: SIM115 - closed by the with below
            except tarfile.TarError as e:
                raise die(f"{archive} is not a readable tar archive ({e})",
                          "the download may be damaged: delete it and fetch again") from e
            try:
                with tf:
                    count = _extract_members(tf, archive, dest)
                if hashing is not None:
                    while stream.read(CHUNK):  # what follows the tar's end still belongs to the file
                        pass
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise die(f"no space left on the device while extracting {archive} into {dest}",
                              f"free some space under {dest.parent} (or use another cache_dir=), then run the"
                              " same command again") from e
                raise die(f"extracting {archive} failed: {e}",
                          "the file may be truncated or damaged: fetch it again") from e
            except (tarfile.TarError, EOFError) as e:
                raise die(f"extracting {archive} failed: {e}",
                          "the file may be truncated or damaged: fetch it again") from e
    except TinyukiError as e:
        if tool and e.message.startswith(f"{tool} failed"):  # the decompressor's own error, read from a pipe:
            raise die(f"{e.message}\n    (decompressing {archive})", e.hint) from e  # name the file it read
        raise
    finally:
        if feeder is not None and feeder.is_alive():
            feeder.join()
    if feeder is not None and feeder.error is not None:
        raise die(f"reading {archive} failed: {feeder.error}", "check the file and the disk it is on")
    digest = (feeder or hashing).sha256.hexdigest()  # type: ignore[union-attr]
    if expect_sha256 is not None and digest != expect_sha256:
        raise NotVerified(f"{archive} does not hold the bytes that were verified:\n    expected {expect_sha256}\n"
                          f"    got      {digest}",
                          "it was replaced or damaged after verify; it is removed: run `doit` again, and fetch"
                          " and verify get and check it afresh")
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
            _write_member(tf, m, dest)
        except HostileMember as e:
            raise die(f"refusing to extract {archive}: {e.message}", hostile) from None
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


def _safe_mode(m: tarfile.TarInfo) -> int:
    """What Python's `data` filter keeps of a file's mode: no setuid, setgid or sticky bit, no write for
    others; read and write for the owner, execute only where the owner had it."""
    mode = m.mode & 0o755
    if not mode & 0o100:
        mode &= ~0o111
    return mode | 0o600


def _write_member(tf: tarfile.TarFile, m: tarfile.TarInfo, dest: Path) -> None:
    """Write one checked member (a directory, a file or a hard link) below `dest`.

    What tarfile's extract with the `data` filter did, done here so that it
    works the same on Python 3.11.2 (Debian 12's own), which has no filters:
    owners are not restored, modes are tamed, the tar's mtime is kept (make
    decides by it), and nothing is written through a symlink or over another
    member.
    """
    *parents, leaf = m.name.split("/")
    root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            parent_fd = open_dir(root_fd, parents, create=True, mode=0o777)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise HostileMember(f"member {m.name!r} would be written through a symlink or a file") from None
            raise
    finally:
        os.close(root_fd)
    try:
        if m.isdir():
            with contextlib.suppress(FileExistsError):
                os.mkdir(leaf, 0o777, dir_fd=parent_fd)
            try:
                dfd = os.open(leaf, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise HostileMember(f"directory {m.name!r} repeats a member that is not a directory") from None
                raise
            try:
                os.utime(dfd, (m.mtime, m.mtime))
            finally:
                os.close(dfd)
        elif m.islnk():
            try:
                st = os.lstat(dest / m.linkname)
            except FileNotFoundError:
                raise HostileMember(f"hard link {m.name!r} -> {m.linkname!r}: the archive has no such member"
                                    " before it") from None
            if not stat.S_ISREG(st.st_mode):
                raise HostileMember(f"hard link {m.name!r} -> {m.linkname!r} is not to a regular file")
            try:
                os.link(dest / m.linkname, leaf, dst_dir_fd=parent_fd, follow_symlinks=False)
            except FileExistsError:
                raise HostileMember(f"member {m.name!r} appears twice") from None
        else:
            src = tf.extractfile(m)
            assert src is not None
            try:
                out = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                              dir_fd=parent_fd)
            except FileExistsError:
                raise HostileMember(f"member {m.name!r} appears twice") from None
            try:
                while chunk := src.read(CHUNK):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(out, view):]
                os.fchmod(out, _safe_mode(m))
                os.utime(out, (m.mtime, m.mtime))
            finally:
                os.close(out)
    finally:
        os.close(parent_fd)
