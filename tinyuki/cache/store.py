"""The shared artifact cache: task outputs stored under the key of everything that made them.

Modelled on BitBake's sstate cache. A task's key (tinyuki/cache/keys.py) is the
sha256 of its inputs, settings, tools and upstream keys; after the task ran,
its outputs are stored under that key, and a later run anywhere (another build
dir, a fresh clone, another machine sharing cache/) restores them instead of
building. Layout under cache/artifacts/:

    blobs/ab/abcd...       file contents by sha256 (shared between entries)
    entries/<key>.json     what a task produced: relpath -> sha256/size/mode,
                           plus directory trees stored as one tar blob
    tmp/                   blobs being written

Every write is temp + fsync + rename and the entry is written last, so a
reader sees a whole entry or none; two writers of one key both finish and the
last rename wins (same key, same content). An entry whose JSON or blobs are
damaged is detected on restore (sha256 of every blob), deleted, and the task
rebuilt. An entry's mtime is its last use: restores touch it, prune keeps the
most recently used.

Paths recorded inside outputs (kbuild's .cmd files name the source tree and
the build dir) are replaced by placeholders when stored and by the new
locations when restored, as sstate does with its FIXMEDIR markers: that is
what lets a kernel build tree restored into another directory stay usable for
an incremental relink.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import glob
import hashlib
import io
import json
import os
import posixpath
import queue
import re
import secrets
import shutil
import stat
import struct
import tarfile
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tinyuki.util.fs import CHUNK, atomic_write_json, fsync_dir, open_dir, remove_tree, replace_dir, sweep

SCHEMA = 1
KEY_RE = re.compile(r"^[0-9a-f]{64}$")
# A compressed tar of a kernel build dir is a third of its size; level 1 costs
# seconds where the build costs minutes.
TREE_COMPRESSLEVEL = 1
# Unreferenced blobs younger than this may belong to an entry still being written.
PRUNE_GRACE = 3600.0
GIB = 1 << 30


class CorruptEntry(Exception):
    """An entry or one of its blobs does not match what was stored: never restore from it."""


class UnsafeDestination(OSError):
    """A directory on the way to an output is a symlink (or not a directory): nothing is written through it."""


# ---------------------------------------------------------------- relocation

def placeholder(name: str) -> bytes:
    return f"@@TINYUKI_{name}@@".encode()


@functools.lru_cache(maxsize=16)
def _pattern(pairs: tuple[tuple[bytes, bytes], ...]) -> tuple[re.Pattern[bytes], dict[bytes, bytes]]:
    """One regex for all locations, longest first; a match must end the path or a path component."""
    alternatives = b"|".join(re.escape(p) for p, _ in pairs)
    return re.compile(b"(?:" + alternatives + rb")(?![\w.\-])"), dict(pairs)


def _pairs(locations: Mapping[str, Path | str]) -> tuple[tuple[bytes, bytes], ...]:
    """(path, placeholder) pairs, longest path first so a path inside another is replaced first."""
    pairs = {}
    for name, path in locations.items():
        for p in (str(path), str(Path(path).resolve())):
            pairs[p.encode()] = placeholder(name)
    return tuple(sorted(pairs.items(), key=lambda x: -len(x[0])))


def relocate_out(data: bytes, locations: Mapping[str, Path | str],
                 pairs: tuple[tuple[bytes, bytes], ...] | None = None) -> bytes | None:
    """`data` with the given locations replaced by placeholders; None if unchanged or binary.

    Binary files are never rewritten: a path of another length would corrupt them. `pairs` is
    `_pairs(locations)` when the caller relocates many files (a tree): resolving the paths is not free.
    """
    if b"\0" in data:
        return None
    pairs = _pairs(locations) if pairs is None else pairs
    if not pairs or not any(p in data for p, _ in pairs):
        return None
    pattern, names = _pattern(pairs)
    new = pattern.sub(lambda m: names[m.group(0)], data)
    return new if new != data else None


def relocate_in(data: bytes, locations: Mapping[str, Path | str]) -> bytes:
    for name, path in locations.items():
        data = data.replace(placeholder(name), str(path).encode())
    return data


# ---------------------------------------------------------------- the store

class _HashingWriter:
    """A file object that hashes what passes through it (tarfile writes the tree blob through it)."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.h = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.h.update(data)
        self.size += len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


class _GzipBeside:
    """gzip's format (RFC 1952: one member, no name, no time), deflated by a second thread.

    zlib and sha256 release the GIL, so a tree's compression (and the hashing of what it writes) runs beside
    the reading, relocating and tar headers of the next files: a kernel's build tree stores in about two thirds
    of the time. Any gzip reader reads it (tarfile's "r:gz" on restore). An error in the thread is raised by
    the next write or by close(); the thread keeps draining until close(), so a writer never blocks on it.
    """

    BATCH = 1 << 20

    def __init__(self, out: _HashingWriter, level: int) -> None:
        self.out = out
        self.deflate = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
        self.crc = 0
        self.size = 0
        self.pending = bytearray()
        self.error: BaseException | None = None
        self.chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + (b"\x04" if level == 1 else b"\x00") + b"\xff")
        self.thread = threading.Thread(target=self._run, name="gzip", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (chunk := self.chunks.get()) is not None:
            if self.error is not None:
                continue  # drained, not written: close() reports the error
            try:
                self.crc = zlib.crc32(chunk, self.crc)
                self.size += len(chunk)
                self.out.write(self.deflate.compress(chunk))
            except BaseException as e:  # handed to the writing side, raised there
                self.error = e

    def write(self, data: bytes) -> int:
        if self.error is not None:
            raise self.error
        self.pending += data
        if len(self.pending) >= self.BATCH:
            self.chunks.put(bytes(self.pending))
            self.pending.clear()
        return len(data)

    def close(self) -> None:
        """Compress what is left and write gzip's trailer; raises what went wrong in the thread."""
        if self.pending:
            self.chunks.put(bytes(self.pending))
            self.pending.clear()
        self.chunks.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error
        self.out.write(self.deflate.flush() + struct.pack("<II", self.crc & 0xFFFFFFFF, self.size & 0xFFFFFFFF))

    def abandon(self) -> None:
        """Stop the thread after a failure on the writing side (nothing more is written)."""
        self.error = self.error or RuntimeError("abandoned")
        self.chunks.put(None)
        self.thread.join()


def _now() -> float:
    return time.time()


def sha256_path(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _holds(blob: Path, sha: str, size: int) -> bool:
    """Whether the blob already stored under `sha` has exactly those bytes (its size first: cheap)."""
    try:
        return blob.stat().st_size == size and sha256_path(blob) == sha
    except OSError:
        return False


@dataclass(frozen=True)
class Store:
    root: Path

    @property
    def blobs(self) -> Path:
        return self.root / "blobs"

    @property
    def entries(self) -> Path:
        return self.root / "entries"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def blob(self, sha: str) -> Path:
        return self.blobs / sha[:2] / sha

    def entry_path(self, key: str) -> Path:
        return self.entries / f"{key}.json"

    # -- writing
    @contextlib.contextmanager
    def _new_blob(self) -> Iterator[tuple[_HashingWriter, dict[str, Any]]]:
        """Yield a writer; when the block ends the content is fsync'd and renamed to its hash."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix="blob.")
        result: dict[str, Any] = {}
        try:
            with os.fdopen(fd, "wb") as f:
                w = _HashingWriter(f)
                yield w, result
                f.flush()
                os.fsync(f.fileno())
            sha = w.h.hexdigest()
            dest = self.blob(sha)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if _holds(dest, sha, w.size):  # the bytes, not just the size: a damaged blob is replaced
                os.utime(dest)  # young again: a concurrent prune keeps it for this entry
                os.unlink(tmp)
            else:
                os.chmod(tmp, 0o444)
                os.replace(tmp, dest)
                fsync_dir(dest.parent)
            result.update(sha256=sha, size=w.size)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        with self._new_blob() as (w, res):
            w.write(data)
        return res["sha256"], res["size"]

    def put_file(self, path: Path) -> tuple[str, int]:
        with self._new_blob() as (w, res), open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                w.write(chunk)
        return res["sha256"], res["size"]

    def put_tree(self, tree: Path, locations: Mapping[str, Path | str]) -> dict[str, Any]:
        """One compressed tar of `tree`, text files relocated; mtimes kept (make decides by them)."""
        with self._new_blob() as (w, res):
            gz = _GzipBeside(w, TREE_COMPRESSLEVEL)
            try:
                with tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT,  # type: ignore[call-overload]
                                  bufsize=_GzipBeside.BATCH) as tar:
                    files, relocated = self._add_tree(tar, tree, locations)
            except BaseException:
                gz.abandon()
                raise
            gz.close()
        return {"sha256": res["sha256"], "size": res["size"], "files": files, "relocated": relocated}

    @staticmethod
    def _add_tree(tar: tarfile.TarFile, tree: Path, locations: Mapping[str, Path | str]) -> tuple[int, int]:
        """Every file, symlink and directory of `tree` into `tar`, in sorted order; (files, relocated files)."""
        files = relocated = 0
        pairs = _pairs(locations)
        for path in sorted(_walk(tree)):
            rel = path.relative_to(tree).as_posix()
            info = tar.gettarinfo(str(path), arcname=rel)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.islnk():  # a second name of one inode: stored as a file of its own
                info.type, info.linkname = tarfile.REGTYPE, ""
            if info.issym():
                new = relocate_out(info.linkname.encode(), locations, pairs)
                if new is not None:
                    info.linkname = new.decode()
                tar.addfile(info)
            elif info.isfile():
                data = path.read_bytes()
                new = relocate_out(data, locations, pairs)
                if new is not None:
                    data = new
                    relocated += 1
                    info.pax_headers = {"TINYUKI.relocated": "1"}
                info.size = len(data)
                files += 1
                tar.addfile(info, io.BytesIO(data))
            elif info.isdir():
                tar.addfile(info)
        return files, relocated

    def save_entry(self, entry: dict[str, Any]) -> Path:
        """Write the entry last: before this rename nothing refers to the blobs."""
        path = self.entry_path(entry["key"])
        atomic_write_json(path, entry)
        return path

    # -- reading
    def load(self, key: str) -> dict[str, Any] | None:
        """The entry for `key`, None if absent; CorruptEntry if it cannot be trusted."""
        path = self.entry_path(key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            entry = json.loads(text)
        except ValueError as e:
            raise CorruptEntry(f"{path} is not valid JSON ({e}); a truncated write?") from e
        problem = entry_problem(entry, key)
        if problem:
            raise CorruptEntry(f"{path}: {problem}")
        return entry

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.entry_path(key))

    def touch(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.entry_path(key))

    def list(self) -> list[tuple[str, dict[str, Any] | None, os.stat_result]]:
        """(key, entry or None when unreadable, stat) of every entry, most recently used first."""
        out = []
        if not self.entries.is_dir():
            return out
        for p in self.entries.glob("*.json"):
            key = p.stem
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            try:
                entry = self.load(key)
            except CorruptEntry:
                entry = None
            out.append((key, entry, st))
        out.sort(key=lambda x: -x[2].st_mtime)
        return out

    # -- restoring
    def restore(self, entry: dict[str, Any], dest: Path, locations: Mapping[str, Path | str]) -> dict[str, Any]:
        """Put the entry's outputs under `dest`, each checked against its sha256 first.

        Everything is staged beside its final place and renamed only when all of
        it verified, so a corrupt entry changes nothing in `dest`. Nothing is
        written through a symlink below `dest` (the build dir's own links, such
        as kbuild/source, lead into the shared tree): each output's directory
        is walked from `dest` with O_NOFOLLOW, and its file is staged and
        renamed relative to that open directory.
        """
        staged: list[tuple[int, str, str]] = []  # (directory fd, staged name, final name)
        staged_trees: list[tuple[Path, Path]] = []
        dest.mkdir(parents=True, exist_ok=True)
        dest_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            try:
                for rel, meta in sorted(entry["files"].items()):
                    *parents, name = rel.split("/")
                    parent_fd = _open_dest(dest_fd, dest, parents)
                    tmp = f".{name}.{secrets.token_hex(6)}.restore"
                    staged.append((parent_fd, tmp, name))
                    data = self._read_blob(meta, rel)
                    if meta.get("relocated"):
                        data = relocate_in(data, locations)
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                                 dir_fd=parent_fd)
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                        f.flush()
                        os.fsync(f.fileno())
                        os.fchmod(f.fileno(), _mode(meta["mode"]))
                for rel, meta in sorted(entry.get("trees", {}).items()):
                    *parents, name = rel.split("/")
                    os.close(_open_dest(dest_fd, dest, parents))  # no symlink on the way
                    parent = dest.joinpath(*parents)
                    blob = self.blob(meta["sha256"])
                    self._check_blob(blob, meta, rel)
                    sweep(parent, f".{glob.escape(name)}.restore.*")  # what crashed restores left
                    tmp_dir = Path(tempfile.mkdtemp(dir=parent, prefix=f".{name}.restore."))
                    staged_trees.append((tmp_dir, parent / name))
                    _extract_tree(blob, tmp_dir, locations)
            except BaseException:
                for parent_fd, tmp, _ in staged:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp, dir_fd=parent_fd)
                for tmp_dir, _ in staged_trees:
                    remove_tree(tmp_dir)
                raise
            for parent_fd, tmp, name in staged:
                os.replace(tmp, name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
                os.fsync(parent_fd)
            for tmp_dir, final in staged_trees:
                replace_dir(tmp_dir, final)
        finally:
            for parent_fd, _, _ in staged:
                os.close(parent_fd)
            os.close(dest_fd)
        self.touch(entry["key"])
        return entry

    def _check_blob(self, blob: Path, meta: Mapping[str, Any], rel: str) -> None:
        try:
            size = blob.stat().st_size
        except FileNotFoundError:
            raise CorruptEntry(f"the blob of {rel} ({blob}) is missing") from None
        if size != meta["size"] or sha256_path(blob) != meta["sha256"]:
            raise CorruptEntry(f"the blob of {rel} ({blob}) does not match its sha256 {meta['sha256'][:12]}")

    def _read_blob(self, meta: Mapping[str, Any], rel: str) -> bytes:
        blob = self.blob(meta["sha256"])
        try:
            data = blob.read_bytes()
        except FileNotFoundError:
            raise CorruptEntry(f"the blob of {rel} ({blob}) is missing") from None
        if len(data) != meta["size"] or hashlib.sha256(data).hexdigest() != meta["sha256"]:
            raise CorruptEntry(f"the blob of {rel} ({blob}) does not match its sha256 {meta['sha256'][:12]}")
        return data

    def remove_blob_if_bad(self, entry: Mapping[str, Any] | None) -> None:
        """After a failed restore: drop the blobs that do not hash right, so a rebuild can store them anew."""
        if not entry:
            return
        metas = [*entry.get("files", {}).values(), *entry.get("trees", {}).values()]
        for meta in metas:
            blob = self.blob(meta["sha256"])
            with contextlib.suppress(FileNotFoundError, OSError):
                if blob.stat().st_size != meta["size"] or sha256_path(blob) != meta["sha256"]:
                    os.unlink(blob)

    # -- sizes and pruning
    def blob_sizes(self, entry: Mapping[str, Any]) -> dict[str, int]:
        metas = [*entry.get("files", {}).values(), *entry.get("trees", {}).values()]
        return {m["sha256"]: int(m["size"]) for m in metas}

    def prune(self, keep_bytes: int, grace: float = PRUNE_GRACE, now: float | None = None) -> dict[str, Any]:
        """Keep the most recently used entries whose blobs fit in `keep_bytes`; drop the rest.

        Blobs no kept entry refers to are deleted once older than `grace`
        (younger ones may belong to an entry being written right now).
        """
        now = _now() if now is None else now
        kept_blobs: dict[str, int] = {}
        removed_entries = 0
        total = 0
        full = False
        for key, entry, _st in self.list():
            if entry is None:
                self.delete(key)
                removed_entries += 1
                continue
            sizes = self.blob_sizes(entry)
            extra = sum(s for sha, s in sizes.items() if sha not in kept_blobs)
            if not full and total + extra <= keep_bytes:
                kept_blobs.update(sizes)
                total += extra
            else:
                full = True  # keep strictly by recency: nothing older than a dropped entry survives
                self.delete(key)
                removed_entries += 1
        removed_blobs = freed = 0
        if self.blobs.is_dir():
            for blob in self.blobs.glob("*/*"):
                if blob.name in kept_blobs:
                    continue
                try:
                    st = blob.stat()
                    if now - st.st_mtime < grace:
                        continue
                    blob.unlink()
                except FileNotFoundError:
                    continue
                removed_blobs += 1
                freed += st.st_size
        if self.tmp.is_dir():
            for t in self.tmp.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    if now - t.stat().st_mtime >= grace:
                        t.unlink()
        return {"kept_bytes": total, "removed_entries": removed_entries, "removed_blobs": removed_blobs,
                "freed_bytes": freed}

    def disk_usage(self) -> int:
        if not self.blobs.is_dir():
            return 0
        total = 0
        for blob in self.blobs.glob("*/*"):
            with contextlib.suppress(FileNotFoundError):
                total += blob.stat().st_size
        return total


def entry_problem(entry: Any, key: str) -> str | None:
    """Why this parsed entry cannot be trusted, or None."""
    if not isinstance(entry, dict):
        return "not a JSON object"
    if entry.get("schema") != SCHEMA:
        return f"schema {entry.get('schema')!r}, expected {SCHEMA}"
    if entry.get("key") != key:
        return f"records key {str(entry.get('key'))[:16]!r}, not its file name"
    if not isinstance(entry.get("task"), str):
        return "no task name"
    for section in ("files", "trees"):
        items = entry.get(section, {})
        if not isinstance(items, dict):
            return f"{section} is not an object"
        for rel, meta in items.items():
            if not _safe_rel(rel):
                return f"unsafe path {rel!r}"
            inside = [t for t in entry.get("trees", {}) if isinstance(t, str) and rel.startswith(t + "/")]
            if section == "files" and inside:
                return f"file {rel!r} lies inside the tree output {inside[0]!r}"
            if not isinstance(meta, dict) or not KEY_RE.match(str(meta.get("sha256", ""))) \
                    or not isinstance(meta.get("size"), int):
                return f"{section} {rel!r} has no valid sha256 and size"
            if section == "files" and not isinstance(meta.get("mode"), int):
                return f"{rel!r} has no mode"
    return None


def _safe_rel(rel: str) -> bool:
    """A plain relative path, exactly as a stage declares its outputs: no `.`, `..` or empty parts."""
    return isinstance(rel, str) and _canonical(rel)


def _walk(tree: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(tree):
        d = Path(dirpath)
        for name in dirnames:
            yield d / name
        for name in filenames:
            yield d / name


def _canonical(name: str) -> bool:
    """A member name exactly as put_tree writes it: relative, without empty, `.` or `..` parts."""
    return bool(name) and not name.startswith("/") and all(p not in ("", ".", "..") for p in name.split("/"))


def _placeholder_ok(target: str, locations: Mapping[str, Path | str]) -> bool:
    """`@@TINYUKI_NAME@@` or `@@TINYUKI_NAME@@/sub/path` naming a location this restore relocates to."""
    for name in locations:
        mark = placeholder(name).decode()
        if target == mark or (target.startswith(mark + "/") and ".." not in target[len(mark) + 1:].split("/")):
            return True
    return False


def _relative_ok(name: str, target: str) -> bool:
    """A relative link that stays inside the tree, read lexically from the link's own directory."""
    if not target or target.startswith("/"):
        return False
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    return resolved not in ("..", ".") and not resolved.startswith("../")


def _mode(mode: int) -> int:
    """What a restored file may be: rwx for its owner at most, r-x for the others; never setuid or sticky."""
    return stat.S_IMODE(mode) & 0o755


def _extract_tree(blob: Path, dest: Path, locations: Mapping[str, Path | str]) -> None:
    """Unpack a tree blob, relocating what was relocated, shifting mtimes so the newest is now.

    make compares mtimes with the source tree; a tree unpacked afresh (another
    machine) is newer than the build's objects, so the whole tree keeps its
    order but moves forward in time.

    The blob comes from the shared cache, which others can write, so it is
    unpacked as untrusted: every name must be plain and unique, nothing is
    written through a symlink (each path is walked from an open directory with
    O_NOFOLLOW, files are created with O_EXCL), and a symlink may only point
    inside the tree or, by placeholder, to a location this restore relocates
    to (the kernel tree, the build dir); modes lose setuid, setgid and write
    bits for others.
    """
    try:
        with tarfile.open(blob, mode="r:gz") as tar:
            members = tar.getmembers()
            shift = max(0.0, _now() - max((m.mtime for m in members if m.isfile()), default=0))
            seen: set[str] = set()
            links: list[str] = []
            dirs: list[tuple[str, tarfile.TarInfo]] = []
            root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                for m in members:
                    name = m.name
                    if not _canonical(name):
                        raise CorruptEntry(f"{blob}: member name {name!r} is not a plain relative path")
                    if name in seen:
                        raise CorruptEntry(f"{blob}: member {name!r} appears twice")
                    seen.add(name)
                    parts = name.split("/")
                    parent_fd = open_dir(root_fd, parts[:-1], create=True)
                    try:
                        leaf = parts[-1]
                        if m.isdir():
                            try:
                                os.mkdir(leaf, 0o700, dir_fd=parent_fd)
                            except FileExistsError:
                                if not stat.S_ISDIR(os.stat(leaf, dir_fd=parent_fd, follow_symlinks=False).st_mode):
                                    raise CorruptEntry(f"{blob}: directory {name!r} repeats another member") from None
                            dirs.append((name, m))
                        elif m.issym():
                            if not (_relative_ok(name, m.linkname) or _placeholder_ok(m.linkname, locations)):
                                raise CorruptEntry(f"{blob}: symlink {name!r} -> {m.linkname!r} points outside"
                                                   " the tree")
                            os.symlink(relocate_in(m.linkname.encode(), locations).decode(), leaf, dir_fd=parent_fd)
                            links.append(name)
                        elif m.isfile():
                            src = tar.extractfile(m)
                            assert src is not None
                            fd = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                         0o600, dir_fd=parent_fd)
                            with os.fdopen(fd, "wb") as out:
                                if m.pax_headers.get("TINYUKI.relocated"):
                                    out.write(relocate_in(src.read(), locations))
                                else:
                                    shutil.copyfileobj(src, out, CHUNK)
                                out.flush()
                                os.fchmod(out.fileno(), _mode(m.mode))
                                os.utime(out.fileno(), (m.mtime + shift, m.mtime + shift))
                        else:
                            raise CorruptEntry(f"{blob}: unexpected member type of {name!r}")
                    finally:
                        os.close(parent_fd)
                for name, m in reversed(dirs):
                    fd = open_dir(root_fd, name.split("/"), create=False)
                    try:
                        os.fchmod(fd, _mode(m.mode) | 0o700)
                        os.utime(fd, (m.mtime + shift, m.mtime + shift))
                    finally:
                        os.close(fd)
            finally:
                os.close(root_fd)
            _check_links(blob, dest, links, locations)
    except FileExistsError as e:
        raise CorruptEntry(f"{blob}: a member repeats another one ({e.filename or e})") from e
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise CorruptEntry(f"{blob}: a member would be written through a symlink ({e})") from e
        raise
    except (tarfile.TarError, EOFError, ValueError) as e:
        raise CorruptEntry(f"{blob}: cannot unpack ({e})") from e


def _check_links(blob: Path, dest: Path, links: Sequence[str], locations: Mapping[str, Path | str]) -> None:
    """Every symlink, followed to its end (through the others), lands inside the tree or a known location."""
    roots = [os.path.realpath(dest), *(os.path.realpath(p) for p in locations.values())]
    for name in links:
        real = os.path.realpath(dest / name)
        if not any(real == r or real.startswith(r + os.sep) for r in roots):
            raise CorruptEntry(f"{blob}: symlink {name!r} resolves to {real}, outside the tree")


def _open_dest(dest_fd: int, dest: Path, parents: Sequence[str]) -> int:
    """The output's directory below `dest`, walked without following a symlink, or UnsafeDestination."""
    try:
        return open_dir(dest_fd, parents, create=True)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeDestination(errno.ELOOP, f"refusing to restore below {dest}: {'/'.join(parents)} goes"
                                                 " through a symlink or a file") from e
        raise
