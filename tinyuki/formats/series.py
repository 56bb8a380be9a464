"""Quilt-style patch series: which patches, in which order, what they touch, and what failed.

A series file lists one patch per line, relative to its own directory; `#`
starts a comment, and quilt's per-patch options (`-p1`) after the name are
accepted when they say -p1, the only level tinyuki applies.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from tinyuki.errors import die


@dataclass(frozen=True)
class Series:
    file: Path | None
    patches: tuple[Path, ...]

    @property
    def names(self) -> list[str]:
        base = self.file.parent if self.file else Path()
        return [str(p.relative_to(base)) if p.is_relative_to(base) else str(p) for p in self.patches]


def read_series(series_file: Path | None) -> Series:
    """Parse the series; a missing patch is named with the line that asks for it."""
    if series_file is None:
        return Series(None, ())
    try:
        text = series_file.read_text(encoding="utf-8")
    except OSError as e:
        raise die(f"cannot read patch series {series_file}: {e.strerror}", "fix [kernel] patches in the profile") from e
    out = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        name, opts = words[0], words[1:]
        if opts and opts != ["-p1"]:
            raise die(f"{series_file}:{lineno}: unsupported options {' '.join(opts)!r} for {name}",
                      "tinyuki applies every patch with -p1 (paths like a/file and b/file); regenerate the patch so")
        path = series_file.parent / name
        if not path.is_file():
            raise die(f"{series_file}:{lineno}: patch {name} not found ({path})",
                      "add the patch file next to the series file, or remove the line")
        out.append(path)
    return Series(series_file, tuple(out))


def patches_sha256(series: Series) -> str | None:
    """One hash for the ordered list of (name, content); None for an empty series."""
    if not series.patches:
        return None
    h = hashlib.sha256()
    for name, path in zip(series.names, series.patches, strict=True):
        h.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).hexdigest().encode() + b"\n")
    return h.hexdigest()


_UNIFIED = re.compile(rb"^(?:---|\+\+\+) (.+?)(?:\t.*)?$")
_CONTEXT = re.compile(rb"^\*\*\* (.+?)(?:\t.*)?$")
_RANGE = re.compile(rb"^(?:\*\*\*|---) \d+(?:,\d+)? (?:\*\*\*\*|----)\s*$")
_HUNK = re.compile(rb"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")
_GIT = re.compile(rb"^diff --git (\S+) (\S+)\s*$")
_NAMED = re.compile(rb"^(?:rename from|rename to|copy from|copy to|Index:) (.+?)\s*$")


def header_names(patch: bytes) -> list[tuple[str, bool]]:
    """Every file name the patch's headers give, as written, with whether -p1 applies to it.

    Unified and context headers, `diff --git`, git's rename/copy lines and
    `Index:`: whatever GNU patch may take a file name from (rename/copy lines
    name tree paths without the a/ and b/ that -p1 strips). Lines inside a
    unified hunk are content, even when a removed `-- x` reads `--- x`.
    """
    out: list[tuple[bytes, bool]] = []
    old_left = new_left = 0
    for line in patch.splitlines():
        if old_left > 0 or new_left > 0:
            tag = line[:1]
            if tag in (b" ", b""):
                old_left, new_left = old_left - 1, new_left - 1
                continue
            if tag == b"-":
                old_left -= 1
                continue
            if tag == b"+":
                new_left -= 1
                continue
            if tag == b"\\":
                continue
            old_left = new_left = 0  # a short hunk: back to headers
        hunk = _HUNK.match(line)
        if hunk:
            old_left = int(hunk.group(1)) if hunk.group(1) is not None else 1
            new_left = int(hunk.group(2)) if hunk.group(2) is not None else 1
            continue
        if _RANGE.match(line):
            continue
        m = _UNIFIED.match(line) or _CONTEXT.match(line)
        if m:
            out.append((m.group(1), True))
            continue
        m = _GIT.match(line)
        if m:
            out += [(m.group(1), True), (m.group(2), True)]
            continue
        m = _NAMED.match(line)
        if m:
            out.append((m.group(1), not line.startswith((b"rename ", b"copy "))))
    names = [(n.decode(errors="replace").strip(), p1) for n, p1 in out]
    return [(n, p1) for n, p1 in names if n and n != "/dev/null"]


def header_paths(patch: bytes) -> list[str]:
    """The file names of header_names, as written."""
    return [n for n, _ in header_names(patch)]


def strip1(name: str) -> str | None:
    """The name after -p1 (`a/init/main.c` -> `init/main.c`); None when there is nothing to strip."""
    parts = name.split("/", 1)
    return parts[1] if len(parts) == 2 and parts[1] else None


def touched_files(patch: bytes) -> set[str]:
    """Tree-relative paths (after -p1) a patch reads or writes."""
    out = set()
    for name, p1 in header_names(patch):
        rel = strip1(name) if p1 else name
        if rel and not escaping_path(name, p1):
            out.add(rel)
    return out


def escaping_path(name: str, p1: bool = True) -> str | None:
    """Why a header's file name leaves the tree (absolute, `..`), or None; `p1`: the name is stripped by -p1."""
    if name.startswith("/"):
        return "an absolute path"
    rel = (strip1(name) if p1 else name) or name
    if rel.startswith("/"):
        return "an absolute path after -p1"
    if ".." in rel.split("/"):
        return "a '..' component"
    return None


_FAILED = re.compile(r"Hunk #(\d+) FAILED at \d+")
_FILE = re.compile(r"^(?:patching|checking) file (.+)$")


def failed_hunks(patch: bytes, patch_output: str) -> str:
    """The text of the hunks GNU patch reported as FAILED, with their file headers.

    `patch --dry-run` writes no .rej file, so the rejected hunks are cut out of
    the patch itself from the "Hunk #N FAILED" lines, numbered per file.
    """
    failed: dict[str, set[int]] = {}
    current = None
    for line in patch_output.splitlines():
        fm = _FILE.match(line.strip())
        if fm:
            current = fm.group(1).strip("'\"")
            continue
        for hm in _FAILED.finditer(line):
            if current is not None:
                failed.setdefault(current, set()).add(int(hm.group(1)))
    if not failed:
        return ""
    out: list[str] = []
    file_hdr: list[str] = []
    file_name = None
    hunk_no = 0
    keep = False
    for line in patch.decode(errors="replace").splitlines():
        if line.startswith("--- "):
            file_hdr, keep, hunk_no = [line], False, 0
            continue
        if line.startswith("+++ ") and file_hdr:
            file_hdr.append(line)
            parts = line[4:].split()[0].split("/", 1)
            file_name = parts[1] if len(parts) == 2 else parts[0]
            continue
        if line.startswith("@@"):
            hunk_no += 1
            keep = hunk_no in failed.get(file_name or "", set())
            if keep and file_hdr:
                out.extend(file_hdr)
                file_hdr = []
        elif line.startswith("diff "):
            keep = False
        if keep:
            out.append(line)
    return "\n".join(out)
