"""Running kbuild: the reproducible environment, progress from its output, errors from its log.

A kernel build prints thousands of lines; the console shows one progress line
and the log file keeps everything. When the build fails, the lines a user
needs (compiler errors and their context, undefined references, make's
`***` lines) are picked out of the log and shown with its path.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import re
import shlex
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tinyuki.config.profile import Kernel
from tinyuki.errors import die
from tinyuki.formats import cpio
from tinyuki.util import fmt, runner
from tinyuki.util import fs as fsutil

# Fixed paths the tree and the build dir are known by inside the binaries.
SOURCE_PREFIX = "/usr/src/linux"
BUILD_PREFIX = "/usr/src/linux-build"


def make_env(kernel: Kernel, tree: Path, kbuild: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for every make in the kernel tree: same inputs give the same bytes.

    The build date, user, host and version end up in `uname -v` and in
    vmlinux; the source and build paths end up in __FILE__ strings and warnings,
    so both are mapped to fixed names (-ffile-prefix-map).
    """
    env = dict(os.environ if base is None else base)
    epoch = str(kernel.source_date_epoch)
    maps = f"-ffile-prefix-map={tree.resolve()}={SOURCE_PREFIX} -ffile-prefix-map={kbuild.resolve()}={BUILD_PREFIX}"
    env.update({
        "KBUILD_BUILD_TIMESTAMP": f"@{epoch}",
        "KBUILD_BUILD_USER": kernel.build_user,
        "KBUILD_BUILD_HOST": kernel.build_host,
        "KBUILD_BUILD_VERSION": kernel.build_version,
        "SOURCE_DATE_EPOCH": epoch,
        "LC_ALL": "C",
        "TZ": "UTC",
        "KCFLAGS": " ".join(x for x in (env.get("KCFLAGS", ""), maps) if x),
        "KAFLAGS": " ".join(x for x in (env.get("KAFLAGS", ""), maps) if x),
    })
    # A make started from inside another make (doit under make, CI) must not join its jobserver; and the
    # target is the profile's [kernel] arch alone (make's ARCH=/CROSS_COMPILE=), never the shell's.
    for var in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "ARCH", "CROSS_COMPILE", "SUBARCH"):
        env.pop(var, None)
    return env


def make_cmd(tree: Path, kbuild: Path, *targets: str, jobs: int = 1, make_vars: Sequence[str] = ()) -> list[str]:
    """`make` out of tree: -C the (read-only) source, O= the build dir.

    `make_vars` are VAR=value assignments such as the compile cache's CC
    (tinyuki/cache/compile.py); kbuild records each command line, so every make
    in one build dir must get the same ones, or it recompiles everything.
    """
    return ["make", "-C", str(tree), f"O={kbuild}", f"-j{jobs}", *make_vars, *targets]


# ---------------------------------------------------------------- progress

# kbuild's quiet lines: "  CC      init/main.o", "  LD      vmlinux", "  GEN     Makefile".
STEP_RE = re.compile(r"^\s{2}([A-Z][A-Z0-9_\[\]]{1,11})\s+(\S.*)$")


@dataclass
class Progress:
    """Counts kbuild's steps from its output and renders one status line."""

    label: str
    start: float = field(default_factory=time.monotonic)
    steps: int = 0
    compiled: int = 0
    current: str = ""

    def feed(self, line: str) -> bool:
        """Account for one output line; True when it was a build step."""
        m = STEP_RE.match(line.rstrip("\n"))
        if not m:
            return False
        self.steps += 1
        if m.group(1) == "CC":
            self.compiled += 1
        self.current = f"{m.group(1)} {m.group(2).strip()}"
        return True

    def line(self, now: float | None = None) -> str:
        elapsed = (time.monotonic() if now is None else now) - self.start
        return f"{self.label}: {self.steps} steps ({self.compiled} compiled), {fmt.elapsed(elapsed)}, {self.current}"


class Reporter:
    """Shows Progress: one rewritten line on a terminal, a line every `every` seconds otherwise."""

    def __init__(self, progress: Progress, stream: IO[str] | None = None, every: float = 15.0,
                 tty: bool | None = None) -> None:
        self.progress = progress
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.every = every if not self.tty else 0.2
        self.last = 0.0
        self.shown = False

    def update(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if now - self.last < self.every:
            return
        self.last = now
        self._show(now)

    def _show(self, now: float | None = None) -> None:
        text = self.progress.line(now)
        if self.tty:
            width = 150
            self.stream.write("\r\x1b[K" + text[:width])
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.shown = True

    def finish(self, now: float | None = None) -> None:
        self._show(now)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# ---------------------------------------------------------------- errors

ERROR_RE = re.compile(r"error:|\bError\b|undefined reference|\*\*\*|fatal:|No rule to make target")
CONTEXT_RE = re.compile(r"In function|In file included from|^\s+from |note:|^\s*\d+\s*\||^\s+\|")


def error_excerpt(lines: Iterable[str], limit: int = 30) -> list[str]:
    """The last meaningful error lines of a build log, each with the context gcc printed before it.

    Context is "In function", "In file included from", and the source-line
    and caret lines gcc prints after an error.
    """
    out: list[str] = []
    pending: list[str] = []  # context lines that may precede an error
    after = 0  # lines still belonging to the last error (source snippet, carets)
    for raw in lines:
        line = raw.rstrip("\n")
        if ERROR_RE.search(line):
            out.extend(pending)
            out.append(line)
            pending = []
            after = 3
        elif after and CONTEXT_RE.search(line):
            out.append(line)
            after -= 1
        elif CONTEXT_RE.search(line):
            after = 0
            pending = [*pending[-3:], line]
        else:
            after = 0
            pending = []
    seen: set[str] = set()
    unique = []
    for line in out:  # make repeats its *** lines once per recursion level
        if line.startswith("make") and line in seen:
            continue
        seen.add(line)
        unique.append(line)
    return unique[-limit:]


def stream_make(
    cmd: list[str],
    *,
    env: Mapping[str, str],
    log: Path,
    what: str,
    hint: str,
    reporter_factory: Callable[[Progress], Reporter] | None = None,
) -> Progress:
    """Run make echoing the command, sending its output to `log` and a progress line to the console.

    The command and environment go to the runner unchanged: they decide the
    kernel's bytes. On failure, raise with the compiler errors from the log
    and the log's path.
    """
    progress = Progress(what)
    reporter = (reporter_factory or Reporter)(progress)
    tail: deque[str] = deque(maxlen=4000)

    def line(text: str, _at: float) -> None:
        tail.append(text)
        if progress.feed(text):
            reporter.update()

    # stdin is never the terminal: kbuild's syncconfig then gives an option the .config does not mention yet
    # its default, as olddefconfig does, where on a terminal it would stop and ask.
    result = runner.stream(cmd, env=env, log=log, on_line=line, what=what, stdin=subprocess.DEVNULL,
                           missing_hint="run scripts/setup.sh to install the build tools (build-essential flex bison "
                                        "bc ...)")
    reporter.finish()
    if result.returncode != 0:
        excerpt = error_excerpt(tail) or list(tail)[-15:]
        body = "\n    ".join(excerpt)
        raise die(f"{what} failed (make exit {result.returncode}): {shlex.join(cmd)}\n    {body}\n  full log: {log}",
                  hint)
    return progress


# ---------------------------------------------------------------- tree and build dir

# Everything kbuild keeps of the embedded initramfs. kbuild rebuilds these by
# mtime, so a new cpio carrying an old, fixed mtime would be silently ignored.
INITRAMFS_OUTPUTS = ("initramfs_data.cpio*", "initramfs_inc_data", "initramfs_data.o")


# The cpio kbuild embeds, by its name inside the build dir: CONFIG_INITRAMFS_SOURCE names it relative to
# the build dir (kbuild resolves it there). So the kernel stage and embed build with one .config, the same
# in every build dir: the kernel stage puts a placeholder there and compiles, embed puts the program's cpio
# there and links. Changing the program never changes the .config, so no make has to run kconfig again.
KBUILD_CPIO = "initramfs.cpio"


def placeholder_cpio(mtime: int) -> bytes:
    """What the kernel stage compiles with, and what a kernel for an external initrd embeds: kbuild's own
    default initramfs (usr/default_cpio_list: /dev, /dev/console, /root), packed with the build's epoch."""
    return cpio.pack([cpio.directory("/dev"), cpio.char_device("/dev/console", 5, 1),
                      cpio.directory("/root", 0o700)], mtime)


def put_cpio(kbuild: Path, data: bytes) -> Path:
    """Make `data` the cpio the next link embeds: written anew (a fresh mtime), kbuild's old copy removed."""
    target = kbuild / KBUILD_CPIO
    fsutil.atomic_write(target, data)
    remove_initramfs_outputs(kbuild)
    return target


def remove_initramfs_outputs(kbuild: Path) -> list[Path]:
    """Delete kbuild's copy of the initramfs so the next make must rebuild it from the source."""
    removed = []
    usr = kbuild / "usr"
    for pattern in INITRAMFS_OUTPUTS:
        for p in sorted(usr.glob(pattern)):
            p.unlink()
            removed.append(p)
    return removed


def embedded_payload(data: bytes) -> bytes | None:
    """The cpio inside kbuild's initramfs_inc_data, undoing its compression; None if unknown.

    gzip, xz, lzma, bzip2 and none are read with Python's standard library;
    for lz4, lzo and zstd the removal of the old copy is the only guarantee.
    """
    try:
        if data[:2] == b"\x1f\x8b":
            return gzip.decompress(data)
        if data[:6] == b"\xfd7zXZ\x00":
            return lzma.decompress(data, format=lzma.FORMAT_XZ)
        if data[:3] == b"BZh":
            return bz2.decompress(data)
        if data[:3] == b"\x5d\x00\x00":
            return lzma.decompress(data, format=lzma.FORMAT_ALONE)
    except (OSError, EOFError, lzma.LZMAError, ValueError):
        return None
    if data[:6] in (b"070701", b"070702", b"070707"):
        return data
    return None
