"""Comparing two builds of the same inputs: which stages' outputs match, and where they first part.

A difference in one stage usually spreads to every stage after it (a changed
/init changes the cpio, the embedded kernel and the UKI), so the stage worth
reading is the first one in pipeline order that differs, not the first one
in a table sorted by name. This module knows that order, reads manifest.json
files defensively (they may come from another machine), and lays out the
two builds' surroundings so that each one differs on purpose.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyuki.errors import die
from tinyuki.util.fmt import text_table

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

# (manifest artifact name, stage that produced it), in the order the pipeline
# produces them: tasks.PIPELINE.artifacts() in the pipeline, any order in tests.
Order = Sequence[tuple[str, str]]


SAME, DIFFERENT, MISSING_A, MISSING_B = "same", "different", "missing in A", "missing in B"


@dataclass(frozen=True)
class Artifact:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """The part of a manifest.json the check needs; `base` is the build dir its paths are relative to."""

    source: Path
    base: Path
    artifacts: Mapping[str, Artifact]

    def file(self, name: str) -> Path:
        path = Path(self.artifacts[name].path)
        return path if path.is_absolute() else self.base / path


@dataclass(frozen=True)
class Row:
    stage: str
    artifact: str
    a: Artifact | None
    b: Artifact | None

    @property
    def status(self) -> str:
        if self.a is None:
            return MISSING_A
        if self.b is None:
            return MISSING_B
        return SAME if self.a.sha256 == self.b.sha256 else DIFFERENT

    @property
    def same(self) -> bool:
        return self.status == SAME


def parse_manifest(data: Any, source: Path) -> Manifest:
    """Check the shape of a loaded manifest.json; every problem names the file and the key."""
    where = str(source)
    hint = "compare manifest.json files written by `doit manifest` (format 1)"
    if not isinstance(data, dict):
        raise die(f"{where} is not a tinyuki manifest: the top level is not a JSON object", hint)
    arts = data.get("artifacts")
    if not isinstance(arts, dict) or not arts:
        raise die(f"{where} is not a tinyuki manifest: it has no \"artifacts\" table", hint)
    out: dict[str, Artifact] = {}
    for name, entry in arts.items():
        if not isinstance(entry, dict):
            raise die(f"{where}: artifacts.{name} is not an object with path, size and sha256", hint)
        path, size, sha = entry.get("path"), entry.get("size"), entry.get("sha256")
        if not isinstance(path, str) or not path:
            raise die(f"{where}: artifacts.{name}.path is missing or not a string", hint)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise die(f"{where}: artifacts.{name}.size is missing or not a byte count", hint)
        if not isinstance(sha, str) or not SHA256_RE.match(sha):
            raise die(f"{where}: artifacts.{name}.sha256 {sha!r} is not a sha256 (64 lower-case hex digits)", hint)
        out[name] = Artifact(path, size, sha)
    return Manifest(source=source, base=source.parent, artifacts=out)


def load_manifest(path: Path) -> Manifest:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise die(f"manifest {path} does not exist",
                  "give the path of a manifest.json (build/<profile>/manifest.json after `doit`)") from e
    except (OSError, UnicodeDecodeError) as e:
        raise die(f"cannot read manifest {path}: {e}", "give the path of a readable manifest.json") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise die(f"manifest {path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})",
                  "it may be truncated: copy it again, or rebuild it with `doit manifest`") from e
    return parse_manifest(data, path)


def stage_order(names: Sequence[str] | set[str], order: Order) -> list[tuple[str, str]]:
    """(artifact, stage) for every name: known ones in pipeline order, then unknown ones by name."""
    known = [(name, stage) for name, stage in order if name in names]
    pipeline_names = {name for name, _ in order}
    extra = sorted(n for n in names if n not in pipeline_names)
    return known + [(name, "other") for name in extra]


def compare(a: Manifest, b: Manifest, order: Order) -> list[Row]:
    """One row per artifact found in either manifest, in pipeline order."""
    names = set(a.artifacts) | set(b.artifacts)
    return [Row(stage, name, a.artifacts.get(name), b.artifacts.get(name))
            for name, stage in stage_order(names, order)]


def first_difference(rows: Sequence[Row]) -> Row | None:
    """The earliest stage whose outputs are not identical; the later ones usually only inherit it."""
    return next((r for r in rows if not r.same), None)


def table(rows: Sequence[Row], label_a: str = "hash A", label_b: str = "hash B") -> str:
    """The comparison as aligned text: stage, artifact, both sha256s in full, and the verdict."""
    header = ("stage", "artifact", label_a, label_b, "result")
    body = [(r.stage, r.artifact, r.a.sha256 if r.a else "-", r.b.sha256 if r.b else "-", r.status) for r in rows]
    return text_table(header, body)


def verdict(rows: Sequence[Row]) -> str:
    bad = [r for r in rows if not r.same]
    if not bad:
        return f"reproducible: all {len(rows)} artifacts are bit-identical"
    first = bad[0]
    return (f"not reproducible: {len(bad)} of {len(rows)} artifacts differ; the first in pipeline order is "
            f"{first.artifact} (stage {first.stage}, {first.status})")


# ---------------------------------------------------------------- the two builds' surroundings

@dataclass(frozen=True)
class Surroundings:
    """Everything about a build's environment that must not reach its output."""

    label: str
    build_dir: Path
    cwd: Path
    umask: int
    tz: str
    locale: str
    jobs: int
    user: str
    host: str
    # A compiles everything itself; B may take objects from the shared compile
    # cache, so the check also proves that ccache cannot change the output.
    ccache: bool = False


# B's second directory level makes its absolute path longer than A's, so a
# leaked path shows up as a different length too, not only different bytes.
B_SUBDIR = ("b-with-a-much-longer-path", "second-build")


def pick_locale(available: Sequence[str], avoid: str) -> str:
    """A locale other than `avoid` that this machine has: a real language one if any is installed."""
    norm = {x.lower().replace("-", "") for x in (avoid, avoid.split(".")[0])}
    others = [x for x in available if x.lower().replace("-", "") not in norm]
    languages = sorted(x for x in others if x.split(".")[0] not in ("C", "POSIX"))
    if languages:
        utf8 = [x for x in languages if x.lower().replace("-", "").endswith("utf8")]
        return (utf8 or languages)[0]
    return "POSIX"


def plan(base: Path, jobs: int, user: str, host: str, locales: Sequence[str]) -> tuple[Surroundings, Surroundings]:
    """Build A in ordinary surroundings, build B with each of them changed.

    A runs from its own build dir's parent with umask 022, UTC, C.UTF-8 and the
    requested -j; B from another directory with umask 077, a far-off time
    zone with a 45-minute offset, another locale, one more job, and another
    user and host name, and the compile cache allowed (A compiles without it).
    """
    a = Surroundings("A", base / "a", base, 0o022, "UTC", "C.UTF-8", jobs, user, host)
    b_dir = base.joinpath(*B_SUBDIR)
    b = Surroundings("B", b_dir, b_dir.parent, 0o077, "Pacific/Chatham", pick_locale(locales, a.locale),
                     jobs + 1, f"{user}-other" if user else "repro-other",
                     f"{host}-other" if host else "repro-other", ccache=True)
    return a, b
