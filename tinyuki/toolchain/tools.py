"""The tools whose versions reach an artifact's bytes, one row each.

A stage names the tools it uses (tinyuki/stage.py); their full versions go
into its cache key when it runs, and a cheap stamp of each resolved binary
(path, size, mtime) into doit's staleness, so a no-op `doit` never starts a
compiler just to ask its version while an upgrade still reruns the stage.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from tinyuki.errors import TinyukiError
from tinyuki.util import fs as fsutil
from tinyuki.util.runner import output, tool_version


@dataclass(frozen=True)
class Tool:
    name: str
    # The command printing the version; empty for a Python distribution.
    version_cmd: tuple[str, ...] = ()
    # The Python distribution (pefile): versioned by its metadata.
    python: str | None = None
    # The start of the output line that holds the version, for a tool that does not print it first (mkfs.fat).
    line: str | None = None
    # A compiler or binutil that exists per target: for another architecture, the cross one
    # (aarch64-linux-gnu-gcc) is the tool whose version reaches the bytes (tinyuki/arch.py).
    cross: bool = False
    # Whether the binary alone decides what it prints, so its answer can be remembered by the binary's
    # stat (remembered()). Not so for a wrapper script (musl-gcc) or a toolchain multiplexer: rustup's
    # cargo/rustc proxies and go pick a toolchain from the environment and the directory.
    by_binary: bool = True

    @property
    def binary(self) -> str | None:
        return self.version_cmd[0] if self.version_cmd else None

    def command(self, prefix: str = "") -> tuple[str, ...]:
        """The version command for a target whose compilers carry `prefix` (empty: the host's own)."""
        if not self.cross or not prefix:
            return self.version_cmd
        return (prefix + self.version_cmd[0], *self.version_cmd[1:])


TOOLS: dict[str, Tool] = {t.name: t for t in (
    Tool("gcc", ("gcc", "--version"), cross=True),
    Tool("binutils", ("ld", "--version"), cross=True),
    Tool("make", ("make", "--version")),
    Tool("gzip", ("gzip", "--version")),
    Tool("musl-gcc", ("musl-gcc", "--version"), by_binary=False),
    # programs in Go and Rust (tinyuki/toolchain/builders.py)
    Tool("go", ("go", "version"), by_binary=False),
    Tool("cargo", ("cargo", "--version"), by_binary=False),
    # Kconfig probes these and records what it found (CONFIG_PAHOLE_VERSION, Rust support)
    Tool("pahole", ("pahole", "--version")),
    Tool("rustc", ("rustc", "--version"), by_binary=False),
    Tool("bindgen", ("bindgen", "--version"), by_binary=False),
    Tool("pefile", python="pefile"),
    # the disk image (tinyuki/formats/disk.py)
    Tool("sfdisk", ("sfdisk", "--version")),
    Tool("mkfs.fat", ("mkfs.fat", "--help"), line="mkfs.fat "),
    Tool("mtools", ("mtools", "--version")),
    # signing the UKI (tinyuki/secureboot.py)
    Tool("sbsign", ("sbsign", "--version")),
    Tool("openssl", ("openssl", "version")),
)}


# ---------------------------------------------------------------- versions remembered across runs
#
# Every run that builds a stage asks its tools for their versions (the cache key holds them): ten-odd
# processes, 0.1 s of a program edit. The answer of a binary that alone decides it is kept in the shared
# cache dir, by the binary's resolved path, size, mtime and inode (what stamp() gives doit too): an upgrade
# replaces the binary, so it is asked again.

_remembered_in: Path | None = None
_remembered: dict[str, str] | None = None


def remember_versions(path: Path | None) -> None:
    """Keep version answers in `path` (a JSON file in the cache dir); None: ask every time."""
    global _remembered_in, _remembered
    _remembered_in, _remembered = path, None


# A binary changed less than this long ago is asked every time: file times come from a coarse clock, and a
# binary rewritten twice within one tick at the same size (a test's stand-in tool) would look unchanged.
SETTLED_NS = 2_000_000_000


def _resolved(binary: str) -> tuple[str, os.stat_result] | None:
    """The file a command name runs (symlinks followed, as `gcc` → x86_64-linux-gnu-gcc-12) and its stat."""
    exe = shutil.which(binary)
    if exe is None:
        return None
    real = os.path.realpath(exe)
    try:
        return real, os.stat(real)
    except OSError:
        return None


def _binary_key(cmd: Sequence[str]) -> str | None:
    found = _resolved(cmd[0])
    if found is None:
        return None
    real, st = found
    if time.time_ns() - st.st_ctime_ns < SETTLED_NS:
        return None
    return json.dumps([real, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, *cmd[1:]])


def remembered(cmd: Sequence[str], ask: Callable[[], str]) -> str:
    """What `ask()` says of the binary `cmd` runs: from the remembered answers while the binary is the same.

    A missing or unreadable file of answers only costs asking again; two runs writing it at once lose at
    most an answer (each file is written whole, by rename).
    """
    global _remembered
    key = _binary_key(cmd) if _remembered_in is not None else None
    if key is None or _remembered_in is None:
        return ask()
    if _remembered is None:
        try:
            loaded = json.loads(_remembered_in.read_text(encoding="utf-8"))
            _remembered = {k: v for k, v in loaded.items() if isinstance(v, str)} if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            _remembered = {}
    if (known := _remembered.get(key)) is not None:
        return known
    answer = ask()
    if answer in ("missing", "unknown") or answer.startswith("unknown "):
        return answer  # asked again next time: a tool that did not answer may answer later
    _remembered[key] = answer
    try:
        fsutil.atomic_write_json(_remembered_in, _remembered)
    except OSError:
        pass  # a read-only cache dir: the answer is still right, only asked again next run
    return answer


def command_version(cmd: Sequence[str]) -> str:
    """First line of `cmd` (a binary's --version), remembered by the binary as version() does."""
    return remembered(cmd, lambda: tool_version(list(cmd)))


@functools.cache
def version(name: str, prefix: str = "") -> str:
    """The tool's version line, once per process ('missing' when it is not installed).

    `prefix` is the target's compiler prefix (aarch64-linux-gnu-): a cross
    tool is asked under that name, a host tool (make, pahole) as it is.
    """
    tool = TOOLS[name]
    if tool.python:
        try:
            return metadata.version(tool.python)
        except metadata.PackageNotFoundError:
            return "missing"
    first, *rest = tool.command(prefix)
    cmd = [shutil.which(first) or first, *rest]

    def ask() -> str:
        if tool.line is None:
            return tool_version(cmd)
        try:
            text = output(cmd, ok_codes=None, timeout=60.0)
        except TinyukiError:
            return "missing"
        return next((ln.strip() for ln in text.splitlines() if ln.startswith(tool.line)), "unknown")

    return remembered(cmd, ask) if tool.by_binary else ask()


def stamp(name: str, prefix: str = "") -> Any:
    """What identifies the installed tool without running it: a stat of its resolved binary."""
    tool = TOOLS[name]
    if tool.python:
        return version(name)
    found = _resolved(tool.command(prefix)[0])
    if found is None:
        return None
    real, st = found
    return [real, st.st_size, st.st_mtime_ns]
