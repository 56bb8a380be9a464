"""Stage keys: the sha256 of everything that goes into a stage's outputs.

doit's state decides *whether* a stage must run in this build dir; the key says
*what* its outputs are, anywhere: two build dirs, clones or machines that
compute the same key would produce the same bytes, so one can restore what the
other stored (tinyuki/cache/store.py). A key is derived from the stage's
declaration (tinyuki/stage.py) and covers:

- the contents of its input files (never their paths or mtimes),
- the profile settings that reach it, with project paths made relative,
- the keys of the stages it needs (read from build/<p>/keys/<stage>.json),
- the environment variables the compiler or kbuild read, when the stage compiles
  (a ccache wrapper and CCACHE_* settings are left out: they change how fast, not what),
- the versions of its tools, probed once per process,
- the source of the modules that run it: a changed recipe is a changed output,
  as BitBake hashes its task functions.

Keys are computed only inside a stage's action, that is when doit has already
decided the stage must run: a no-op `doit` never probes a tool or hashes a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from importlib import util as import_util
from pathlib import Path
from typing import Any

from tinyuki.cache.store import relocate_out
from tinyuki.config.context import Context
from tinyuki.errors import die
from tinyuki.records import StageKey, Tree
from tinyuki.resources import DATA
from tinyuki.stage import Pipeline, Stage
from tinyuki.toolchain import tools
from tinyuki.util.fs import atomic_write_json, read_json, sha256_file

KEY_SCHEMA = 2
KEY_RE = re.compile(r"^[0-9a-f]{64}$")

# Environment variables that change what the compiler, the linker or kbuild produce.
ENV_NAMES = ("SOURCE_DATE_EPOCH", "CC", "LD", "HOSTCC", "CROSS_COMPILE", "ARCH", "LLVM", "KCFLAGS", "KAFLAGS",
             "KCPPFLAGS", "CPATH", "C_INCLUDE_PATH", "LIBRARY_PATH", "GCC_EXEC_PREFIX", "COMPILER_PATH")
ENV_PREFIXES = ("KBUILD_",)
# Switches of kbuild that change only what it prints.
ENV_IGNORED = ("KBUILD_VERBOSE",)

CONTENT_TREE_RE = re.compile(r"^(src|patched)-[0-9a-f]{64}(-[0-9a-f]{64})?$")


def strip_ccache(value: str) -> str:
    """`ccache gcc` and `distcc gcc` compile what `gcc` compiles."""
    words = value.split()
    while words and os.path.basename(words[0]) in ("ccache", "distcc"):
        words = words[1:]
    return " ".join(words)


def relevant_env(environ: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for name, value in environ.items():
        if name in ENV_IGNORED or name.startswith("CCACHE_"):
            continue
        if name in ENV_NAMES or name.startswith(ENV_PREFIXES):
            out[name] = strip_ccache(value) if name in ("CC", "HOSTCC") else value
    return dict(sorted(out.items()))


def digest(material: Any) -> str:
    """The key of a material: sha256 of its canonical JSON."""
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def portable(value: Any, ctx: Context) -> Any:
    """Settings with tinyuki's own files spelled `@DATA` and the project's `@ROOT`.

    So a clone elsewhere, an installed wheel and a user's project compute the same key for the same
    fragments and patches, and a second project reuses the first one's kernel.
    """
    if isinstance(value, str):
        for spelled, base in (("@DATA", str(DATA)), ("@ROOT", str(ctx.root))):
            if value == base or value.startswith(base + "/"):
                return spelled + value[len(base):]
        return value
    if isinstance(value, Path):
        return portable(str(value), ctx)
    if isinstance(value, (list, tuple)):
        return [portable(v, ctx) for v in value]
    if isinstance(value, dict):
        return {k: portable(v, ctx) for k, v in value.items()}
    return value


# ---------------------------------------------------------------- the key files

def key_file(ctx: Context, stage: str) -> Path:
    return StageKey.file(ctx.paths.build, stage)


def record(ctx: Context, stage: str, key: str, material: Mapping[str, Any], restored: bool = False) -> None:
    """Written after the stage succeeded (or was restored): downstream keys read it."""
    atomic_write_json(key_file(ctx, stage), {"task": stage, "key": key, "restored": restored,
                                             "material": dict(material)})


def recorded(ctx: Context, stage: str) -> StageKey | None:
    try:
        rec = StageKey.parse(read_json(key_file(ctx, stage)))
    except (OSError, ValueError):
        return None
    return rec if KEY_RE.match(rec.key) else None


def tree_hash(tree: Path) -> str:
    """The content of a tree that is not named by its hash (a tree given by hand): every file's path and bytes."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            rel = p.relative_to(tree).as_posix()
            if p.is_symlink():
                h.update(f"L {rel} {os.readlink(p)}\n".encode())
            elif p.is_file():
                h.update(f"F {rel} {os.stat(p).st_mode & 0o111:o} {sha256_file(p)}\n".encode())
    return h.hexdigest()


def tree_key(ctx: Context) -> str:
    """The source tree's key: its name in cache/trees (made of the tarball's and the patches' hashes)."""
    tree = Path(Tree.load(ctx.paths.build).tree)
    if CONTENT_TREE_RE.match(tree.name):
        return tree.name
    return "content-" + tree_hash(tree)


def portable_hash(path: Path, locs: Mapping[str, Path]) -> str | None:
    """A file's sha256 with this build's locations (tree, build dir) spelled as placeholders."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    moved = relocate_out(data, locs)
    return hashlib.sha256(moved if moved is not None else data).hexdigest()


def upstream(ctx: Context, stage: Stage) -> dict[str, Any]:
    """What a downstream key records of a stage it needs: the same files doit tracks, and the stage's key.

    The files are hashed with this build's paths made placeholders, so a build
    dir elsewhere computes the same key; the key is the recorded one of a
    cached stage, or the identity a stage declares (the tree's content name).
    """
    locs = locations(ctx)
    key: str | None = None
    if stage.cache:
        rec = recorded(ctx, stage.name)
        key = rec.key if rec is not None else None
    elif stage.identity is not None:
        key = stage.identity(ctx)
    return {"key": key, "files": {o.path: portable_hash(o.at(ctx), locs) for o in stage.files_of(ctx) if o.handed_on}}


def module_hash(name: str) -> str:
    spec = import_util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ValueError(f"no source for module {name}")
    return sha256_file(spec.origin)


def recipe(stage: Stage) -> dict[str, str]:
    """The source of the modules that run the stage, by content: a changed recipe is a changed output."""
    return {m: module_hash(m) for m in sorted({stage.build.__module__, *stage.recipe})}


def input_hash(stage: Stage, path: Path) -> str:
    """An input's sha256; a missing one is the user's to fix (a system file not installed), never a traceback."""
    try:
        return sha256_file(path)
    except FileNotFoundError:
        raise die(f"{stage.name}: its input {path} does not exist",
                  "install what provides it (scripts/setup.sh installs what tinyuki's defaults name), or point the"
                  " profile setting that names it elsewhere") from None


def material(ctx: Context, stage: Stage, pipeline: Pipeline) -> dict[str, Any]:
    """Everything that reaches the stage's bytes, as plain data (recorded beside the key for diffing)."""
    return {
        "schema": KEY_SCHEMA,
        "task": stage.name,
        "upstream": {n: upstream(ctx, pipeline[n]) for n in stage.needed(ctx)},
        "inputs": {str(portable(p, ctx)): input_hash(stage, p)
                   for p in (*stage.input_files(ctx), *stage.discovered(ctx))},
        "settings": portable(stage.settings(ctx), ctx),
        "tools": {t: tools.version(t, ctx.arch.compiler_prefix()) for t in stage.tools},
        "env": relevant_env(os.environ) if stage.env else {},
        "recipe": recipe(stage),
    }


def compute(ctx: Context, stage: Stage, pipeline: Pipeline) -> tuple[str, dict[str, Any]]:
    m = material(ctx, stage, pipeline)
    return digest(m), m


def staleness(ctx: Context, stage: Stage) -> dict[str, Any]:
    """What doit compares between runs besides file contents: the same settings as the key, a stat of the tools,
    and the recipe, so that a build dir made by an earlier tinyuki reruns what a newer one makes differently.

    One value per task: doit keeps a single saved value for config_changed.
    """
    state: dict[str, Any] = {"settings": portable(stage.settings(ctx), ctx), "recipe": recipe(stage)}
    if stage.tools:
        state["tools"] = {t: tools.stamp(t, ctx.arch.compiler_prefix()) for t in stage.tools}
    if stage.env:
        state["env"] = relevant_env(os.environ)
    return state


def locations(ctx: Context) -> dict[str, Path]:
    """Where this build lives: recorded paths in outputs are relocated between these.

    Only long, specific paths: a short one (the project root) could be a
    piece of an unrelated path such as kbuild's fixed /usr/src/linux.
    """
    locs = {"KBUILD": ctx.paths.kbuild, "BUILD": ctx.paths.build}
    tree = Tree.peek(ctx.paths.build)
    if tree is not None:
        locs["TREE"] = Path(tree.tree)
    return locs
