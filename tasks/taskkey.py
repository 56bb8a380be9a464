"""Task keys: the sha256 of everything that goes into a task's outputs.

doit's state decides *whether* a task must run in this build dir; the key says
*what* its outputs are, anywhere: two build dirs, clones or machines that
compute the same key would produce the same bytes, so one can restore what the
other stored (tasks/artifacts.py). A key covers:

- the contents of the task's input files (never their paths or mtimes),
- the profile settings that reach its outputs, with project paths made relative,
- the keys of the tasks it depends on (read from build/<p>/keys/<task>.json),
- the environment variables the compiler or kbuild read (a ccache wrapper and
  CCACHE_* settings are left out: they change how fast, not what),
- the versions of the tools (gcc, binutils, make, ...), probed once per process,
- the source of tinyuki's own modules that run the step: a changed recipe is a
  changed output, as BitBake hashes its task functions.

Keys are computed only inside a task's action, that is when doit has already
decided the task must run: a no-op `doit` never probes a tool or hashes a file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.context import Context
from tasks.fsutil import atomic_write_json, read_json, sha256_file
from tasks.runner import tool_version

KEY_SCHEMA = 1

# Environment variables that change what the compiler, the linker or kbuild produce.
ENV_NAMES = ("SOURCE_DATE_EPOCH", "CC", "LD", "HOSTCC", "CROSS_COMPILE", "ARCH", "LLVM", "KCFLAGS", "KAFLAGS",
             "KCPPFLAGS", "CPATH", "C_INCLUDE_PATH", "LIBRARY_PATH", "GCC_EXEC_PREFIX", "COMPILER_PATH")
ENV_PREFIXES = ("KBUILD_",)
# Switches of kbuild that change only what it prints.
ENV_IGNORED = ("KBUILD_VERBOSE",)

TOOLS: dict[str, list[str]] = {
    "gcc": ["gcc", "--version"],
    "binutils": ["ld", "--version"],
    "make": ["make", "--version"],
    "gzip": ["gzip", "--version"],
    "musl-gcc": ["musl-gcc", "--version"],
    # Kconfig probes these and records what it found (CONFIG_PAHOLE_VERSION, Rust support)
    "pahole": ["pahole", "--version"],
    "rustc": ["rustc", "--version"],
    "bindgen": ["bindgen", "--version"],
}

CONTENT_TREE_RE = re.compile(r"^(src|patched)-[0-9a-f]{64}(-[0-9a-f]{64})?$")


@functools.cache
def tool(name: str) -> str:
    """First line of the tool's --version, once per process."""
    cmd = TOOLS[name]
    return tool_version([shutil.which(cmd[0]) or cmd[0], *cmd[1:]])


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
    """Settings with the project root spelled `@ROOT`, so a clone elsewhere computes the same key."""
    root = str(ctx.root)
    if isinstance(value, str):
        return "@ROOT" + value[len(root):] if value == root or value.startswith(root + "/") else value
    if isinstance(value, Path):
        return portable(str(value), ctx)
    if isinstance(value, (list, tuple)):
        return [portable(v, ctx) for v in value]
    if isinstance(value, dict):
        return {k: portable(v, ctx) for k, v in value.items()}
    return value


# ---------------------------------------------------------------- the key files

def key_file(ctx: Context, task: str) -> Path:
    return ctx.paths.build / "keys" / f"{task}.json"


def record(ctx: Context, task: str, key: str, material: Mapping[str, Any], restored: bool = False) -> None:
    """Written after the task succeeded (or was restored): downstream keys read it."""
    atomic_write_json(key_file(ctx, task), {"task": task, "key": key, "restored": restored, "material": material})


def recorded(ctx: Context, task: str) -> str | None:
    try:
        key = read_json(key_file(ctx, task))["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return key if isinstance(key, str) and re.fullmatch(r"[0-9a-f]{64}", key) else None


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
    tree = Path(read_json(ctx.paths.tree)["tree"])
    if CONTENT_TREE_RE.match(tree.name):
        return tree.name
    return "content-" + tree_hash(tree)


def upstream_key(ctx: Context, task: str) -> str:
    """The recorded key of an upstream task; without one (a build dir from before keys), its outputs' hashes."""
    key = recorded(ctx, task)
    if key is not None:
        return key
    files = OUTPUTS[task](ctx).files
    return "outputs-" + digest({str(p.relative_to(ctx.paths.build)): sha256_file(p) if p.is_file() else None
                                for p in files})


# ---------------------------------------------------------------- what each task reads and writes

@dataclass(frozen=True)
class Outputs:
    files: tuple[Path, ...]
    trees: tuple[Path, ...] = ()


def _modules(ctx: Context, *names: str) -> dict[str, str]:
    return {n: sha256_file(ctx.root / "tasks" / f"{n}.py") for n in names}


def _files(ctx: Context, paths: Mapping[str, Path]) -> dict[str, str]:
    return {name: sha256_file(p) for name, p in paths.items()}


def _kernel_settings(ctx: Context) -> dict[str, Any]:
    k = ctx.profile.kernel
    return {"source_date_epoch": k.source_date_epoch, "build_user": k.build_user,
            "build_host": k.build_host, "build_version": k.build_version}


def configure_material(ctx: Context) -> dict[str, Any]:
    fragments = ctx.profile.kernel.fragments
    return {
        "tree": tree_key(ctx),
        "fragments": [[str(portable(f, ctx)), sha256_file(f)] for f in fragments],
        "settings": _kernel_settings(ctx),  # make runs with the reproducible-build environment
        # .config records the compiler's version, pahole's, and whether Rust is available
        "tools": {t: tool(t) for t in ("gcc", "binutils", "make", "pahole", "rustc", "bindgen")},
        "env": relevant_env(os.environ),
        "recipe": _modules(ctx, "configure", "kbuild", "kconfig"),
    }


def kernel_material(ctx: Context) -> dict[str, Any]:
    return {
        "tree": tree_key(ctx),
        "upstream": {"configure": upstream_key(ctx, "configure")},
        "inputs": _files(ctx, {"kernel.config": ctx.paths.config}),
        "settings": _kernel_settings(ctx),
        "tools": {t: tool(t) for t in ("gcc", "binutils", "make")},
        "env": relevant_env(os.environ),
        "recipe": _modules(ctx, "kernel", "kbuild", "kconfig"),
    }


def init_material(ctx: Context) -> dict[str, Any]:
    init = ctx.profile.init
    sources = {str(portable(s, ctx)): sha256_file(s) for s in init.sources}
    headers = {str(portable(h, ctx)): sha256_file(h) for s in init.sources for h in sorted(s.parent.glob("*.h"))}
    compiler = "musl-gcc" if init.libc == "musl" else "gcc"
    return {
        "tree": tree_key(ctx) if init.libc == "nolibc" else None,
        "inputs": {**sources, **headers},
        "settings": {"init": portable(ctx.profile.settings("init"), ctx),
                     "source_date_epoch": ctx.profile.kernel.source_date_epoch},
        "tools": {compiler: tool(compiler), "binutils": tool("binutils")},
        "env": relevant_env(os.environ),
        "recipe": _modules(ctx, "init"),
    }


def initramfs_material(ctx: Context) -> dict[str, Any]:
    files = ctx.profile.init.files
    return {
        "upstream": {"init": upstream_key(ctx, "init")},
        "inputs": {"init": sha256_file(ctx.paths.init_bin), **{dest: sha256_file(src) for dest, src in files}},
        "settings": {"source_date_epoch": ctx.profile.kernel.source_date_epoch,
                     "files": [[dest, portable(src, ctx)] for dest, src in files],
                     "executable": [dest for dest, src in files if os.stat(src).st_mode & 0o111]},
        "tools": {"gzip": tool("gzip")},
        "recipe": _modules(ctx, "initramfs", "cpio"),
    }


def embed_material(ctx: Context) -> dict[str, Any]:
    return {
        "tree": tree_key(ctx),
        "upstream": {"kernel": upstream_key(ctx, "kernel"), "initramfs": upstream_key(ctx, "initramfs")},
        "inputs": _files(ctx, {"initramfs.cpio": ctx.paths.cpio}),
        "settings": _kernel_settings(ctx),
        "tools": {t: tool(t) for t in ("gcc", "binutils", "make")},
        "env": relevant_env(os.environ),
        "recipe": _modules(ctx, "embed", "kbuild", "kconfig"),
    }


def uki_material(ctx: Context) -> dict[str, Any]:
    from importlib.metadata import version

    from tasks import uki

    return {
        "upstream": {"embed": upstream_key(ctx, "embed")},
        "inputs": _files(ctx, {"bzImage": ctx.paths.bzimage, "stub": ctx.profile.uki.stub}),
        "settings": uki.settings(ctx),
        "tools": {"pefile": version("pefile")},
        "recipe": _modules(ctx, "uki", "pe"),
    }


MATERIALS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "configure": configure_material,
    "kernel": kernel_material,
    "init": init_material,
    "initramfs": initramfs_material,
    "embed": embed_material,
    "uki": uki_material,
}

OUTPUTS: dict[str, Callable[[Context], Outputs]] = {
    "configure": lambda ctx: Outputs((ctx.paths.config, ctx.paths.build / "kernel.requested.json")),
    # the build tree goes with the stamp: embed relinks in it
    "kernel": lambda ctx: Outputs((ctx.paths.kernel_stamp,), (ctx.paths.kbuild,)),
    "init": lambda ctx: Outputs((ctx.paths.init_bin,)),
    "initramfs": lambda ctx: Outputs((ctx.paths.cpio, ctx.paths.initrd)),
    "embed": lambda ctx: Outputs((ctx.paths.bzimage, ctx.paths.vmlinux)),
    "uki": lambda ctx: Outputs((ctx.paths.uki,)),
}


def material(ctx: Context, task: str) -> dict[str, Any]:
    return {"schema": KEY_SCHEMA, "task": task, **MATERIALS[task](ctx)}


def compute(ctx: Context, task: str) -> tuple[str, dict[str, Any]]:
    m = material(ctx, task)
    return digest(m), m


def locations(ctx: Context) -> dict[str, Path]:
    """Where this build lives: recorded paths in outputs are relocated between these.

    Only long, specific paths: a short one (the project root) could be a
    piece of an unrelated path such as kbuild's fixed /usr/src/linux.
    """
    locs = {"KBUILD": ctx.paths.kbuild, "BUILD": ctx.paths.build}
    try:
        locs["TREE"] = Path(read_json(ctx.paths.tree)["tree"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return locs


def toolchain_state() -> dict[str, Any]:
    """What doit's uptodate compares for compiling tasks: the relevant environment and the tools.

    Tools are identified by their resolved binary's size and mtime, a stat away, so a
    no-op `doit` stays fast while a gcc or binutils upgrade, or KCFLAGS=..., reruns
    the stage (the full versions go into the task key when it runs).
    """
    tools = {}
    for name in ("gcc", "ld", "make"):
        exe = shutil.which(name)
        if exe is None:
            tools[name] = None
            continue
        real = os.path.realpath(exe)
        st = os.stat(real)
        tools[name] = [real, st.st_size, st.st_mtime_ns]
    return {"env": relevant_env(os.environ), "tools": tools}
