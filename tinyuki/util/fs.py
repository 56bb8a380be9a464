"""Filesystem helpers every stage uses so no half-written file is ever taken for a good one."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import hashlib
import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

CHUNK = 1 << 20


# sha256 of the files hashed in this process, by what identifies their bytes: a stage's output is hashed by
# the artifact cache, by doit's checker and by the manifest in one run, and a 15 MB vmlinux costs 30 ms a time.
# A write gives a file a new ctime, but file times come from a coarse clock (a tick of up to 10 ms): a file
# rewritten within one tick of being hashed, at the same size (or a new file on a reused inode) could look
# the same. So a hash is kept only for a file whose ctime was already older than SETTLED when it was read:
# every later write then carries a later ctime.
_HASHED: dict[tuple[int, int, int, int, int], str] = {}
SETTLED_NS = 50_000_000


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def sha256_file(path: str | os.PathLike[str]) -> str:
    with open(path, "rb") as f:
        before = _identity(os.fstat(f.fileno()))
        if (known := _HASHED.get(before)) is not None:
            return known
        settled = time.time_ns() - before[4] > SETTLED_NS
        h = hashlib.sha256()
        while chunk := f.read(CHUNK):
            h.update(chunk)
        digest = h.hexdigest()
        if settled and _identity(os.fstat(f.fileno())) == before:
            _HASHED[before] = digest
    return digest


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename durable: the directory entry must reach the disk too."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], mode: int = 0o644) -> Iterator[Path]:
    """A temp file name beside `path` for a tool to write; on success it is fsynced and renamed into place.

    For outputs made by external programs (sfdisk, mkfs.fat) rather than
    written from Python: the same guarantee as atomic_open, no half-made file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: int = 0o644) -> Iterator[BinaryIO]:
    """Open a temp file beside `path`; on success fsync it and rename it into place.

    On any exception the temp file is removed, so readers see either the old
    file or the complete new one, never a truncated one.
    """
    with atomic_path(path, mode) as tmp, open(tmp, "wb") as f:
        yield f


def atomic_write(path: str | os.PathLike[str], data: bytes | str, mode: int = 0o644) -> None:
    if isinstance(data, str):
        data = data.encode()
    with atomic_open(path, mode) as f:
        f.write(data)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str], mode: int | None = None) -> str:
    """Copy src to dst atomically and return the sha256 of what was copied (one pass)."""
    h = hashlib.sha256()
    with open(src, "rb") as fin, atomic_open(dst, mode if mode is not None else os.stat(src).st_mode & 0o777) as fout:
        while chunk := fin.read(CHUNK):
            h.update(chunk)
            fout.write(chunk)
    return h.hexdigest()


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a fully built directory into place, replacing any previous one.

    The previous one is first renamed aside under a name no other run and no
    leftover can hold (pid plus random), so a `.NAME.old-PID` left by a
    crashed run that had the same pid cannot make the rename fail; such
    leftovers are swept (by age) first.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    _sweep_old(final)
    old = None
    if final.exists() or final.is_symlink():
        old = final.with_name(f".{final.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
        os.replace(final, old)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    if old is not None:
        remove_tree(old)


def _sweep_old(final: Path) -> None:
    """Remove `.NAME.old-PID...` dirs of runs that are gone (or old): replace_dir removes its own at once."""
    for path in final.parent.glob(f".{glob.escape(final.name)}.old-*"):
        pid_text = path.name[len(final.name) + 6:].split("-", 1)[0]
        pid = int(pid_text) if pid_text.isdigit() else None
        alive = pid is not None and pid != os.getpid() and _alive(pid)
        if alive:
            sweep(final.parent, glob.escape(path.name))  # another run's, maybe busy: only once it is old
            continue
        with contextlib.suppress(OSError):
            remove_tree(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------- what crashed runs leave behind

# A leftover without a lock is removed only once it is this old (seconds): far longer than any
# extraction, copy or restore takes, so a sweep never pulls a directory from under a running one.
LEFTOVER_GRACE = 3600.0
LOCK_NAME = ".tinyuki-lock"


@contextlib.contextmanager
def scratch_dir(parent: Path, prefix: str) -> Iterator[Path]:
    """A new temporary directory in `parent`, locked (flock) while the block runs, removed after it.

    The lock lives in a file inside it and dies with the process, so `sweep`
    can tell a crashed run's directory (no one holds the lock) from a running
    one's at once, without waiting for it to age.
    """
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    try:
        fd = os.open(tmp / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield tmp
        finally:
            os.close(fd)
    finally:
        remove_tree(tmp)


def _held(path: Path) -> bool | None:
    """Whether a running process holds the scratch dir's lock; None when it has none."""
    try:
        fd = os.open(path / LOCK_NAME, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def sweep(parent: Path, pattern: str, grace: float = LEFTOVER_GRACE, now: float | None = None) -> list[Path]:
    """Remove what crashed runs left in `parent` (glob `pattern`); return what was removed.

    A scratch dir whose lock nobody holds is removed at once; one without a
    lock (a temp file, a directory that becomes a tree by rename) only when
    older than `grace`. Entries that vanish meanwhile, or cannot be removed,
    are skipped: sweeping is housekeeping and never fails a build.
    """
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        matches = sorted(parent.glob(pattern))
    except OSError:
        return removed
    for path in matches:
        try:
            held = _held(path) if path.is_dir() and not path.is_symlink() else None
            if held or (held is None and now - path.lstat().st_mtime < grace):
                continue
            remove_tree(path)
            removed.append(path)
        except OSError:
            continue
    return removed


def remove_tree(path: Path) -> None:
    """Remove a tree, including read-only directories left by kernel tarballs."""
    if not (path.exists() or path.is_symlink()):
        return
    if path.is_symlink() or path.is_file():
        path.unlink()
        return

    def onerror(func, p, _exc):
        os.chmod(os.path.dirname(p), 0o755)
        func(p)

    shutil.rmtree(path, onerror=onerror)


def publish_dir(tmp: Path, final: Path) -> bool:
    """Rename a complete directory to its content-derived name; False if another run got there first.

    Such a directory is only ever created by this rename, so one that exists is
    complete, and another build may be using it: it is never replaced.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(tmp, final)
    except OSError as e:
        if e.errno in (errno.EEXIST, errno.ENOTEMPTY) and final.is_dir():
            return False
        raise
    fsync_dir(final.parent)
    return True


def open_dir(root_fd: int, parts: Sequence[str], create: bool, mode: int = 0o755) -> int:
    """An fd of root/parts, walked one component at a time with O_NOFOLLOW: never through a symlink.

    What restores and extractions write below a directory they do not trust
    (a cache entry, a tarball) is placed relative to such an fd, so a symlink
    planted in the tree cannot send a write elsewhere. With `create`, missing
    directories are made (with `mode`) on the way.
    """
    fd = os.dup(root_fd)
    try:
        for part in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, mode, dir_fd=fd)
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd
