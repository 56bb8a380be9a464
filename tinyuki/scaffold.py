"""`tinyuki init`: a new project of the user's own, ready for `doit` and `doit boot`.

It writes the project's tinyuki.toml (the shipped default profile's settings, commented), a hello
program in the language asked, a one-line dodo.py, a .gitignore and a GitHub workflow that builds,
boots and carries the shared cache. It never overwrites: every file is written under a temporary
name first, and only when all of them are complete are they renamed into place, so an error (an
existing file, a full disk) leaves the directory as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tinyuki.errors import die
from tinyuki.resources import DATA
from tinyuki.util.fmt import human_size

LANGUAGES = ("c", "go", "rust")
LIBCS = ("nolibc", "musl", "glibc")
MARKER = "hello: started"


@dataclass(frozen=True)
class Plan:
    """What `tinyuki init` will write: file name (relative to the project) -> bytes, and their modes."""

    files: dict[str, bytes]
    executable: frozenset[str] = frozenset()


def _example(*parts: str) -> bytes:
    return (DATA / "examples").joinpath(*parts).read_bytes()


def _profile(language: str, libc: str, sources: str) -> str:
    """The default profile's settings (configs/profiles/debian.toml), for the user's own program."""
    init = [f'sources = ["{sources}"]']
    if language != "c":
        init.append(f'language = "{language}"')
    else:
        init.append(f'libc = "{libc}"               # nolibc (tiny), musl or glibc (as gcc -static builds it)')
    return f"""\
# tinyuki profile of this project: `doit` builds the UKI, `doit boot` boots it in QEMU.
# Relative paths are taken from this file's directory. Every setting: README "Profiles" of tinyuki.
description = "my program, booted straight as /init"

[source]
# Debian's own kernel source (apt's signed archive is the trust anchor): dpkg must own the file and
# `dpkg --verify` must pass; its sha256 is recorded on first use and required from then on.
urls = ["/usr/src/linux-source-6.1.tar.xz"]
package = "linux-source-6.1"

[kernel]
# names are tinyuki's shipped fragments (tinyconfig plus these); a path names a fragment of yours
fragments = ["base", "initramfs", "console", "block", "efi", "size", "lz4"]
patches = "boot-time"
cmdline = "console=ttyS0 panic=-1 nolapic_timer"
source_date_epoch = 1700000000
# while writing the program: the kernel without it, the program as an initrd; an edit then rebuilds no
# kernel (`doit auto boot` boots again on every save). Leave it out for the one-file artifact you ship.
# initramfs = "initrd"

[init]
{chr(10).join(init)}
marker = "{MARKER}"     # doit boot fails unless the program prints this line

[uki.os_release]
ID = "tinyuki"
NAME = "tinyuki"
VERSION_ID = "1"

[boot]
machine = "microvm"
memory = "128M"
accel = "auto"
timeout = 120
# A server: add "net" to [kernel] fragments, then (the host's 127.0.0.1:8080 to the program's port 80)
# net = "isolated"
# forward = ["127.0.0.1:8080-:80"]
"""


DODO = '''\
"""The tinyuki pipeline for this project: `doit` builds, `doit boot` boots, `doit list` shows the rest."""

from tinyuki.dodo import *  # noqa: F403
'''

GITIGNORE = """\
# tinyuki: build outputs, the doit database, a cache kept in the project, Secure Boot test keys
/build/
/cache/
/secureboot/
.doit.db*
target/
"""

WORKFLOW = """\
# Builds this project's UKI with tinyuki, boots it in QEMU, and carries tinyuki's shared cache
# (verified tarballs, artifact entries, the compile cache) from run to run.
name: tinyuki

on:
  push:
  pull_request:
  workflow_dispatch:

permissions:
  contents: read

jobs:
  build:
    runs-on: ubuntu-latest
    container: debian:bookworm
    timeout-minutes: 60
    env:
      TINYUKI_CACHE_DIR: ${{ github.workspace }}/.tinyuki-cache
      TINYUKI_SOURCE: git+https://github.com/tinyuki/tinyuki
    steps:
      - name: Tools to fetch and install tinyuki
        run: apt-get update -qq && apt-get install -y -qq --no-install-recommends git ca-certificates python3-venv
      - uses: actions/checkout@v5
      - name: Restore the cache
        id: cache
        uses: actions/cache/restore@v5
        with:
          @CACHED@
          restore-keys: tinyuki-
      - name: Install tinyuki and what this profile needs
        run: |
          python3 -m venv "$RUNNER_TEMP/tinyuki"
          "$RUNNER_TEMP/tinyuki/bin/pip" install -q "$TINYUKI_SOURCE"
          echo "$RUNNER_TEMP/tinyuki/bin" >> "$GITHUB_PATH"
          "$RUNNER_TEMP/tinyuki/bin/tinyuki" doctor --install
      - name: Build
        run: doit
      - name: Boot
        run: doit boot
      - name: Save the cache
        if: always() && steps.cache.outcome == 'success'
        uses: actions/cache/save@v5
        with:
          @CACHED@
      - uses: actions/upload-artifact@v6
        with:
          name: uki
          path: build/tinyuki/
"""


# What the workflow carries from run to run (never trees/, which extraction recreates), in both cache steps.
CACHED = ("sha256", "locks", "artifacts", "ccache")
WORKFLOW = WORKFLOW.replace("@CACHED@", "path: |\n" + "".join(f"            .tinyuki-cache/{d}\n" for d in CACHED)
                            + "          key: tinyuki-${{ github.ref_name }}-${{ github.run_id }}")


def plan(language: str = "c", libc: str = "nolibc") -> Plan:
    """The files of a new project, or one clear error for a language or libc tinyuki cannot build."""
    if language not in LANGUAGES:
        raise die(f"tinyuki init: unknown language {language!r}",
                  f"use --language {' | '.join(LANGUAGES)} (a program built elsewhere: [init] binary in tinyuki.toml)")
    if libc not in LIBCS:
        raise die(f"tinyuki init: unknown libc {libc!r}", f"use --libc {' | '.join(LIBCS)} (C programs only)")
    if language != "c" and libc != "nolibc":
        raise die(f"tinyuki init: --libc is for C programs; a {language} program brings its own runtime",
                  "drop --libc, or use --language c")
    files: dict[str, bytes]
    if language == "c":
        files = {"main.c": _example("hello-c", "hello.c"), "tinyuki.toml": _profile("c", libc, "main.c").encode()}
    elif language == "go":
        files = {"main.go": _example("hello-go", "main.go"),
                 "go.mod": _example("hello-go", "go.mod").replace(b"tinyuki.example/hello", b"myapp"),
                 "tinyuki.toml": _profile("go", libc, "main.go").encode()}
    else:
        files = {"src/main.rs": _example("hello-rust", "src", "main.rs"),
                 "Cargo.toml": _example("hello-rust", "Cargo.toml"),
                 "Cargo.lock": _example("hello-rust", "Cargo.lock"),
                 "tinyuki.toml": _profile("rust", libc, "src/main.rs").encode()}
    files |= {"dodo.py": DODO.encode(), ".gitignore": GITIGNORE.encode(),
              ".github/workflows/tinyuki.yml": WORKFLOW.encode()}
    return Plan(files)


def write(project: Path, todo: Plan, beside: bool = False) -> list[Path]:
    """Write the plan into `project`: all files, or none (an existing one is never touched).

    A directory that already holds something (a git repository's .git aside) is refused unless `beside`:
    a project is usually started empty, and files of another tool's project are a sign of a wrong cwd.
    """
    project = project.absolute()
    if project.exists() and not project.is_dir():
        raise die(f"tinyuki init: {project} is a file, not a directory", "give a directory: tinyuki init DIR")
    existing = sorted(name for name in todo.files if (project / name).exists() or (project / name).is_symlink())
    if existing:
        raise die(f"tinyuki init: {project} already has {', '.join(existing)}; nothing was written",
                  "run it in a new or empty directory, or move those files away first (tinyuki init never"
                  " overwrites)")
    others = sorted(p.name for p in project.iterdir() if p.name != ".git") if project.is_dir() else []
    if others and not beside:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise die(f"tinyuki init: {project} is not empty ({shown}); nothing was written",
                  "run it in a new or empty directory (tinyuki init DIR), or add the project's files beside"
                  " yours with --beside (an existing file is never overwritten)")
    try:
        project.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tinyuki-init-", dir=project))
    except OSError as e:
        raise die(f"tinyuki init: cannot write in {project}: {e.strerror or e}",
                  "choose a directory you can write to, or fix its permissions") from e
    placed: list[Path] = []
    made_dirs: list[Path] = []
    try:
        for name, data in todo.files.items():
            tmp = staging / name.replace("/", "%")
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for name in todo.files:
            dest = project / name
            for parent in reversed(dest.relative_to(project).parents[:-1]):
                d = project / parent
                if not d.exists():
                    d.mkdir()
                    made_dirs.append(d)
            os.link(staging / name.replace("/", "%"), dest)  # fails, never replaces, if dest appeared meanwhile
            placed.append(dest)
    except OSError as e:
        for p in placed:
            p.unlink(missing_ok=True)
        for d in reversed(made_dirs):
            shutil.rmtree(d, ignore_errors=True)
        why = "no space left on the device" if e.errno == 28 else (e.strerror or str(e))
        raise die(f"tinyuki init: cannot write {e.filename or project}: {why}; nothing was written",
                  "free space or fix the directory's permissions, then run tinyuki init again") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    fd = os.open(project, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return placed


def summary(project: Path, placed: list[Path]) -> str:
    lines = [f"tinyuki init: a new project in {project}"]
    lines += [f"  {p.relative_to(project)}  ({human_size(p.stat().st_size)})" for p in placed]
    lines += ["next:", f"  cd {project}", "  tinyuki doctor          # the Debian packages this profile needs",
              "  doit                    # build the UKI (or: tinyuki)", "  doit boot               # boot it in QEMU",
              "  doit auto boot          # rebuild and boot on every save"]
    return "\n".join(lines)
