"""The tools whose versions reach an artifact's bytes, one row each.

A stage names the tools it uses (tinyuki/stage.py); their full versions go
into its cache key when it runs, and a cheap stamp of each resolved binary
(path, size, mtime) into doit's staleness, so a no-op `doit` never starts a
compiler just to ask its version while an upgrade still reruns the stage.
"""

from __future__ import annotations

import functools
import os
import shutil
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from tinyuki.errors import TinyukiError
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
    Tool("musl-gcc", ("musl-gcc", "--version")),
    # programs in Go and Rust (tinyuki/toolchain/builders.py)
    Tool("go", ("go", "version")),
    Tool("cargo", ("cargo", "--version")),
    # Kconfig probes these and records what it found (CONFIG_PAHOLE_VERSION, Rust support)
    Tool("pahole", ("pahole", "--version")),
    Tool("rustc", ("rustc", "--version")),
    Tool("bindgen", ("bindgen", "--version")),
    Tool("pefile", python="pefile"),
    # the disk image (tinyuki/formats/disk.py)
    Tool("sfdisk", ("sfdisk", "--version")),
    Tool("mkfs.fat", ("mkfs.fat", "--help"), line="mkfs.fat "),
    Tool("mtools", ("mtools", "--version")),
    # signing the UKI (tinyuki/secureboot.py)
    Tool("sbsign", ("sbsign", "--version")),
    Tool("openssl", ("openssl", "version")),
)}


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
    if tool.line is None:
        return tool_version(cmd)
    try:
        text = output(cmd, ok_codes=None, timeout=60.0)
    except TinyukiError:
        return "missing"
    return next((ln.strip() for ln in text.splitlines() if ln.startswith(tool.line)), "unknown")


def stamp(name: str, prefix: str = "") -> Any:
    """What identifies the installed tool without running it: a stat of its resolved binary."""
    tool = TOOLS[name]
    if tool.python:
        return version(name)
    exe = shutil.which(tool.command(prefix)[0])
    if exe is None:
        return None
    real = os.path.realpath(exe)
    st = os.stat(real)
    return [real, st.st_size, st.st_mtime_ns]
