"""What one stage hands the next: small typed records with load, save and a validity check.

Each record lives in one JSON file in the build dir, written by one stage. A
missing or damaged record is one clear error naming the stage to run, instead
of a KeyError somewhere downstream.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Self

from tinyuki.errors import die
from tinyuki.util.fs import atomic_write_json, read_json


@dataclasses.dataclass(frozen=True)
class Record:
    """A record is one JSON file in the build dir (FILE), written by one stage (STAGE)."""

    FILE: ClassVar[str] = ""
    STAGE: ClassVar[str] = ""

    def __init_subclass__(cls, file: str = "", stage: str = "", **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls.FILE, cls.STAGE = file, stage

    @classmethod
    def where(cls, build: Path) -> Path:
        return build / cls.FILE

    @classmethod
    def parse(cls, data: Any) -> Self:
        """Build the record from loaded JSON; ValueError says what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        hints = typing.get_type_hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                raise ValueError(f"no {f.name!r}")
            value = data[f.name]
            if not _fits(value, hints[f.name]):
                raise ValueError(f"{f.name!r} is {type(value).__name__}, not {hints[f.name]}")
            values[f.name] = value
        return cls(**values)

    @classmethod
    def load(cls, build: Path) -> Self:
        """The record, or an error that names the stage which writes it."""
        path = cls.where(build)
        try:
            return cls.parse(read_json(path))
        except FileNotFoundError:
            raise die(f"{path} is missing", f"run `doit {cls.STAGE}` (or the whole pipeline)") from None
        except (OSError, ValueError) as e:
            raise die(f"{path} is damaged ({e})", f"remove it and run `doit {cls.STAGE}` again") from None

    @classmethod
    def peek(cls, build: Path) -> Self | None:
        """The record, or None when it is missing or damaged (for freshness checks)."""
        try:
            return cls.parse(read_json(cls.where(build)))
        except (OSError, ValueError):
            return None

    def save(self, build: Path) -> None:
        atomic_write_json(self.where(build), dataclasses.asdict(self))


def _fits(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if hint is Any:
        return True
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


@dataclasses.dataclass(frozen=True)
class Fetched(Record, file="fetched.json", stage="fetch"):
    """The downloaded (not yet trusted) tarball and its signature files."""

    path: str
    sha256: str
    url: str
    signature: str | None = None
    sha256sums: str | None = None

    def present(self, stored: Path) -> bool:
        """The files still exist (verify may have moved the tarball to the store)."""
        if not (Path(self.path).is_file() or stored.is_file()):
            return False
        return all(p is None or Path(p).is_file() for p in (self.signature, self.sha256sums))


@dataclasses.dataclass(frozen=True)
class Verified(Record, file="source.json", stage="verify"):
    """The trusted tarball in the content-addressed store, and how it was trusted."""

    sha256: str
    path: str
    filename: str
    trust: list[str]
    package: str | None
    package_version: str | None


@dataclasses.dataclass(frozen=True)
class Extracted(Record, file="extracted.json", stage="extract"):
    """The pristine tree, shared by every build of this tarball."""

    tree: str
    source_sha256: str


@dataclasses.dataclass(frozen=True)
class Tree(Record, file="tree.json", stage="patch"):
    """The tree to build: pristine, or patched by the profile's series."""

    tree: str
    source_sha256: str
    patches_sha256: str | None
    patches: list[str]

    def location(self) -> Path:
        """The tree, checked to be a kernel tree."""
        tree = Path(self.tree)
        if not (tree / "Makefile").is_file():
            raise die(f"the kernel tree {tree} (from {self.FILE}) is missing or has no Makefile",
                      f"remove {self.FILE} from the build dir and run `doit` again to extract the tree afresh")
        return tree


@dataclasses.dataclass(frozen=True)
class KernelStamp(Record, file="kernel.json", stage="kernel"):
    """The kernel is compiled and linked; the record holds nothing of which cpio that link carried."""

    tree: str
    config_sha256: str
    objects_sha256: str
    release: str | None
    settings: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class StageKey(Record, file="", stage=""):
    """The key a cached stage last ran (or was restored) under; downstream keys read it."""

    task: str
    key: str
    restored: bool
    material: dict[str, Any]

    @staticmethod
    def file(build: Path, stage: str) -> Path:
        return build / "keys" / f"{stage}.json"
