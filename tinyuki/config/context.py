"""Where a build reads and writes: the selected profile, the build dir and the cache.

The shared places (the verified store, the trees, kbuild's out-of-tree dir)
are written down once in `Paths`; each stage declares its own outputs relative
to the build dir (tinyuki/stage.py), so a build can live anywhere
(`doit build_dir=... cache_dir=...`).
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tinyuki.arch import ARCHES, Arch
from tinyuki.config.profile import Profile, load_profile
from tinyuki.errors import die
from tinyuki.resources import CLONE, DATA
from tinyuki.toolchain import tools

KBUILD_DIR = "kbuild"

# tinyuki's own files (the clone, or the installed package's data): see tinyuki/resources.py
ROOT = DATA
DEFAULT_PROFILE = "debian"
# A project's own profile: used when no profile= is given and the project has one (`tinyuki init` writes it).
PROJECT_PROFILE = "tinyuki.toml"


def user_cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The cache all of one user's projects share: $XDG_CACHE_HOME/tinyuki, else ~/.cache/tinyuki.

    Everything in it is named by content (verified tarballs, trees, stages' artifacts), so a second
    project reuses what the first one verified and built.
    """
    xdg = environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path(environ.get("HOME") or Path.home()) / ".cache"
    return base / "tinyuki"


def default_cache_dir(root: Path, environ: Mapping[str, str] = os.environ) -> Path:
    """tinyuki's own clone keeps its cache/ (its tests, benchmark and CI cache carry it); a project the user's."""
    return root / "cache" if CLONE is not None and root.resolve() == CLONE else user_cache_dir(environ)


class _Place:
    """A fixed place below the cache dir or the build dir: one line of the layout."""

    def __init__(self, base: str, name: str, doc: str) -> None:
        self.base, self.name, self.__doc__ = base, name, doc

    def __get__(self, paths: Paths | None, owner: type) -> Path:
        if paths is None:
            raise AttributeError(self.name)
        return getattr(paths, self.base) / self.name


@dataclass(frozen=True)
class Paths:
    """The layout of one build dir and of the shared cache.

    cache/ is shared by all profiles and build dirs and holds only things named
    by their content: verified tarballs, extracted trees, trust records.
    build/<profile>/ holds everything one profile produces; each stage declares
    its own outputs there (tasks/).
    """

    build: Path
    cache: Path

    # ---- shared cache
    store = _Place("cache", "sha256", "Verified tarballs by sha256: store/ab/abcd... (content-addressed).")
    incoming = _Place("cache", "incoming", "Downloads in progress (resumable .part files), not yet verified.")
    locks = _Place("cache", "locks", "Trust-on-first-use records: the sha256 first seen for an unpinned source.")
    trees = _Place("cache", "trees", "Extracted (and patched) source trees, named by the hashes that made them.")
    tool_versions = _Place("cache", "tool-versions.json",
                           "Each tool binary's version line, by its path, size and times: asked once, not every run.")
    # ---- one build
    db = _Place("build", ".doit.db", "doit's record of what ran, by content (Sha256Checker).")
    logs = _Place("build", "logs", "Every tool's full output, one log per stage.")
    kbuild = _Place("build", KBUILD_DIR, "Kbuild's out-of-tree output (O=): configure, kernel and embed work in it.")
    channels = _Place("build", "channel",
                      "The host ends of the VM's virtio-serial ports (`doit boot channel=NAME`): NAME.sock.")
    keys = _Place("build", "keys", "The key each cached stage last ran under (tinyuki/cache/keys.py).")

    def stored(self, sha256: str) -> Path:
        return self.store / sha256[:2] / sha256


@dataclass(frozen=True)
class Context:
    root: Path
    profile: Profile
    paths: Paths
    jobs: int
    # doit's command-line variables that tune how (never what) a build compiles: ccache=, distcc_hosts=
    variables: Mapping[str, str | None] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def arch(self) -> Arch:
        """The target architecture's row (tinyuki/arch.py): what differs between x86_64 and arm64."""
        return ARCHES[self.profile.kernel.arch]


def _jobs(value: str | None) -> int:
    if value is None:
        return len(os.sched_getaffinity(0)) or 1
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise die(f"jobs={value!r} is not a positive number", "use jobs=N, for example jobs=2")
    return n


def make_context(
    profile: str | None = None,
    build_dir: str | None = None,
    cache_dir: str | None = None,
    jobs: str | None = None,
    root: Path | None = None,
    variables: Mapping[str, str | None] | None = None,
) -> Context:
    """Resolve doit's command-line variables into a Context.

    `root` is the project: where doit runs (the directory of its dodo.py) unless given. Relative dirs
    are taken from the cwd; with no profile named, the project's own tinyuki.toml, else the default.
    """
    root = (root or Path.cwd()).absolute()
    name = profile or os.environ.get("TINYUKI_PROFILE")
    if not name:
        name = str(root / PROJECT_PROFILE) if (root / PROJECT_PROFILE).is_file() else DEFAULT_PROFILE
    prof = load_profile(name, root)
    build = Path(build_dir) if build_dir else root / "build" / prof.name
    cache = Path(cache_dir or os.environ.get("TINYUKI_CACHE_DIR") or default_cache_dir(root))
    return Context(
        root=root,
        profile=prof,
        paths=Paths(build=build.absolute(), cache=cache.absolute()),
        jobs=_jobs(jobs),
        variables=dict(variables or {}),
    )


def _usable_dir(path: Path, variable: str, what: str) -> None:
    """Create `path` if needed and prove it can be written, or raise naming the variable that chose it."""
    hint = f"give a writable directory: doit {variable}=DIR"
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                where = "" if p == path else f" ({p} is a file)"
                raise die(f"{variable} {path} is not a directory{where}; it cannot hold the {what}", hint)
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".tinyuki-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        why = "no space left on the device" if e.errno in (errno.ENOSPC, errno.EDQUOT) else (e.strerror or str(e))
        raise die(f"{variable} {path} cannot be written ({why}); it must hold the {what}", hint) from e


def prepare_dirs(ctx: Context) -> None:
    """Make the build dir and the cache dir, or say which one is unusable and why, before any stage runs.

    Without this, a build_dir that is a file or a read-only cache_dir shows up
    much later as a confusing failure inside some stage (a trust record that
    "cannot be read", a traceback from a download).
    """
    _usable_dir(ctx.paths.build, "build_dir", "build's outputs")
    _usable_dir(ctx.paths.cache, "cache_dir", "shared cache (tarballs, trees, artifacts)")
    tools.remember_versions(ctx.paths.tool_versions)  # the tools' answers, kept where every build dir sees them


def variable_or_env(variables: Mapping[str, str | None], environ: Mapping[str, str], var: str,
                    env: str) -> tuple[str | None, str]:
    """A how-to-build setting: the doit variable wins over the environment; empty counts as unset.

    Returns the value and where it came from (the variable's or the environment variable's name),
    so an error can name what the user typed.
    """
    for value, where in ((variables.get(var), var), (environ.get(env), env)):
        if value is not None and value.strip():
            return value.strip(), where
    return None, var
