"""A pipeline stage, declared once.

Each module under tasks/ declares one `Stage`: its name and doc, the stages it
needs, its extra input files, the tools and environment that reach its bytes,
its outputs (with the names the manifest uses) and the function that builds it.
The profile settings that reach a stage are not listed here: each row of the
profile table (tinyuki/config/profile.py) names the stages it reaches.

Everything else is derived from the ordered list in tasks/__init__.py: the doit
tasks (file_dep, targets, uptodate), the artifact cache's key, what it stores
and restores, manifest.json, `doit repro`'s table and the tests that loop over
stages. So a setting that reaches a stage's bytes cannot be missing from its
key, and adding a stage is one module plus one line in that list.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tinyuki.config.context import Context


@dataclass(frozen=True)
class Output:
    """One thing a stage writes, relative to the build dir."""

    path: str
    # The artifact's name in manifest.json and in `doit repro`'s table; None for
    # records and other bookkeeping that a user is not handed.
    manifest: str | None = None
    # A directory: the artifact cache packs it as one tar, doit does not track it.
    tree: bool = False
    # The target architecture this output exists for (bzImage on x86_64, Image on arm64); None: every one.
    arch: str | None = None
    # The [kernel] image this output exists for (vmlinuz.efi, the EFI zboot image); None: every one.
    image: str | None = None
    # Whether the stages that need this one read it. A record only its own stage reads (configure's list of
    # the options the fragments asked for, which changes with any fragment edit) is neither a dependency
    # nor part of the key of a later stage: a fragment edit that leaves .config as it was reruns configure
    # and nothing after it.
    handed_on: bool = True

    def at(self, ctx: Context) -> Path:
        return ctx.paths.build / self.path

    def made_for(self, ctx: Context) -> bool:
        """Whether a build for ctx's profile writes this output (its architecture's image, not another's)."""
        return (self.arch is None or self.arch == ctx.profile.kernel.arch) and \
            (self.image is None or self.image == ctx.profile.kernel.image)


# ---------------------------------------------------------------- freshness checks

CHECKS: dict[str, type[Check]] = {}


def register(cls: type[Check]) -> type[Check]:
    """Add a check class to the registry, by its name (as doit registers its file checkers)."""
    CHECKS[cls.name] = cls
    return cls


class Check:
    """A condition beyond its inputs' contents under which a stage's outputs are still good.

    doit reruns a task when an input changed; these catch the other ways an
    output goes bad: a shared tree deleted, a build dir half removed.
    """

    name: ClassVar[str] = ""

    def __call__(self, ctx: Context) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


@register
class FilesPresent(Check):
    """Every listed path (relative to the build dir) is a file."""

    name = "files-present"

    def __init__(self, *paths: str) -> None:
        self.paths = paths

    def __call__(self, ctx: Context) -> bool:
        return all((ctx.paths.build / p).is_file() for p in self.paths)

    def describe(self) -> str:
        return f"{self.name}: {', '.join(self.paths)}"


@register
class Predicate(Check):
    """A stage's own test of its record (for example: the tree it names still exists)."""

    name = "predicate"

    def __init__(self, test: Callable[[Context], bool], what: str) -> None:
        self.test = test
        self.what = what

    def __call__(self, ctx: Context) -> bool:
        return self.test(ctx)

    def describe(self) -> str:
        return f"{self.name}: {self.what}"


# ---------------------------------------------------------------- the declaration

def _nothing(ctx: Context) -> dict[str, Any]:
    return {}


def _no_files(ctx: Context) -> list[Path]:
    return []


@dataclass(frozen=True)
class Stage:
    name: str
    doc: str
    build: Callable[[Context], object]
    outputs: tuple[Output, ...]
    needs: tuple[str, ...] = ()
    # A need that holds only for some profiles: embed needs the program only when the kernel carries it. For
    # a profile where the predicate is false, the stage neither depends on that stage's files nor keys on it.
    needs_if: Mapping[str, Callable[[Context], bool]] = field(default_factory=dict)
    # Input files beyond those the reaching settings name (headers, patches, a local tarball).
    inputs: Callable[[Context], Sequence[Path]] = _no_files
    # Input files only a tool can name (every header the compiler reads), for the cache key. They
    # cannot be doit file_deps: the list is known only after a first build, and doit reruns a task
    # whose file_dep list grew. So `refresh` lists them afresh when the stage must run (before its key
    # is computed), `discovered` reads that list back, and a check of the stage compares their contents.
    discovered: Callable[[Context], Sequence[Path]] = _no_files
    refresh: Callable[[Context], object] | None = None
    # Values that reach the bytes but are not a profile row (an extra file's executable bit).
    derived: Callable[[Context], Mapping[str, Any]] = _nothing
    # Names in tinyuki/toolchain/tools.py whose versions reach the bytes.
    tools: tuple[str, ...] = ()
    # Whether the compiler's environment (KCFLAGS, CC, KBUILD_*, ...) reaches the bytes.
    env: bool = False
    # Library modules whose code shapes the output (the stage's own module always counts).
    recipe: tuple[str, ...] = ()
    # Whether the artifact cache stores and restores the outputs.
    cache: bool = False
    checks: tuple[Check, ...] = ()
    # What downstream keys record of a stage without an artifact key (default: its outputs' hashes).
    identity: Callable[[Context], str] | None = None
    # Whether the profile asks for this stage (None: always). A stage that is off writes nothing and
    # needs nothing: its doit task has no targets and no file_dep and only says so, the manifest does
    # not list its outputs, and stages that need it do not depend on its files. Signing is off for a
    # profile without [sign], so such a profile never needs a key.
    when: Callable[[Context], bool] | None = None
    # What manifest.json records about the stage's outputs beyond their sizes and sha256s, as
    # top-level sections (the UKI's expected PCR 11, who signed it, the disk's layout).
    report: Callable[[Context], Mapping[str, Any]] | None = None

    def active(self, ctx: Context) -> bool:
        """Whether this stage runs (and its outputs exist) for ctx's profile."""
        return self.when is None or bool(self.when(ctx))

    def needed(self, ctx: Context) -> tuple[str, ...]:
        """The stages this one reads for ctx's profile, in declaration order."""
        return tuple(n for n in self.needs if n not in self.needs_if or self.needs_if[n](ctx))

    def settings(self, ctx: Context) -> dict[str, Any]:
        """The profile settings that reach this stage, and the stage's derived values."""
        return {**ctx.profile.stage_settings(self.name), **self.derived(ctx)}

    def input_files(self, ctx: Context) -> list[Path]:
        """Every input file whose contents reach the outputs, without duplicates, in a stable order."""
        seen: dict[str, Path] = {}
        for p in (*ctx.profile.stage_files(self.name), *self.inputs(ctx)):
            seen.setdefault(str(p), Path(p))
        return list(seen.values())

    def output(self, name: str) -> Output:
        """An output by its manifest name or its path."""
        for o in self.outputs:
            if name in (o.manifest, o.path):
                return o
        raise KeyError(f"stage {self.name} has no output {name!r}")

    @property
    def files(self) -> tuple[Output, ...]:
        return tuple(o for o in self.outputs if not o.tree)

    @property
    def trees(self) -> tuple[Output, ...]:
        return tuple(o for o in self.outputs if o.tree)

    def files_of(self, ctx: Context) -> tuple[Output, ...]:
        """The files this stage writes for ctx's profile (its target architecture's, when they differ)."""
        return tuple(o for o in self.files if o.made_for(ctx))

    def trees_of(self, ctx: Context) -> tuple[Output, ...]:
        return tuple(o for o in self.trees if o.made_for(ctx))


class Pipeline:
    """The ordered stages, looked up by name; checks the declarations hang together."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = tuple(stages)
        self.by_name: dict[str, Stage] = {}
        for s in self.stages:
            if s.name in self.by_name:
                raise ValueError(f"two stages are named {s.name!r}")
            if isinstance(s.recipe, str) or isinstance(s.tools, str) or isinstance(s.needs, str):
                raise ValueError(f"stage {s.name!r}: recipe, tools and needs are tuples (a trailing comma for one)")
            missing = [n for n in s.needs if n not in self.by_name]
            if set(s.needs_if) - set(s.needs):
                raise ValueError(f"stage {s.name!r}: needs_if names stages that are not in its needs")
            if missing:
                raise ValueError(f"stage {s.name!r} needs {', '.join(missing)}, which must come before it")
            self.by_name[s.name] = s
        names = [o.manifest for s in self.stages for o in s.outputs if o.manifest]
        if len(names) != len(set(names)):
            raise ValueError(f"two outputs share a manifest name: {sorted(names)}")

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.stages)

    def __getitem__(self, name: str) -> Stage:
        return self.by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self.by_name

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    def artifacts(self) -> tuple[tuple[str, Stage, Output], ...]:
        """(manifest name, stage, output) of every artifact, in pipeline order."""
        return tuple((o.manifest, s, o) for s in self.stages for o in s.outputs if o.manifest)

    def artifacts_of(self, ctx: Context) -> tuple[tuple[str, Stage, Output], ...]:
        """The artifacts this profile's build hands out: those of the stages that are on for it, for its arch."""
        return tuple(a for a in self.artifacts() if a[1].active(ctx) and a[2].made_for(ctx))

    def path(self, ctx: Context, name: str) -> Path:
        """Where an output lands in this build, by its manifest name or its path (uki, kernel.config, tree.json)."""
        for s in self.stages:
            if any(name in (o.manifest, o.path) for o in s.outputs):
                return s.output(name).at(ctx)
        raise KeyError(f"no stage writes {name!r}")


def remove_stale(ctx: Context, stages: Sequence[Stage]) -> list[Path]:
    """Delete the files that `stages` wrote for an earlier profile and do not write for this one.

    Those are the files of a stage that is off for ctx's profile, and another
    architecture's image. Left in place, an old output (a UKI signed before
    [sign] was removed, an x86_64 bzImage beside a new arm64 Image) would look
    current to a user and to `doit boot`, though nothing keeps it so.
    Returns what was removed.
    """
    removed = []
    for stage in stages:
        active = stage.active(ctx)
        for o in stage.files:
            if active and o.made_for(ctx):
                continue
            path = o.at(ctx)
            if path.is_file():
                path.unlink()
                removed.append(path)
    return removed
