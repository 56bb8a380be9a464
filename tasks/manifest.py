"""manifest.json: what the build produced and everything that went into it.

A user who gets a tinyuki.efi can check each artifact's sha256 and see which
tarball (and how it was trusted), which fragments, patches, program sources,
profile and tools made it. The file is deterministic: sorted keys, no times but
the build's own epoch, paths relative to the build dir, so two builds of the
same inputs give the same manifest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pefile

from tasks import fsutil, pe, runner
from tasks.context import Context
from tasks.errors import TinyukiError, action, die
from tasks.series import read_series

SOURCE_KEYS = ("sha256", "filename", "trust", "package", "package_version")
TOOLS = {
    "gcc": ["gcc", "--version"],
    "ld": ["ld", "--version"],
    "make": ["make", "--version"],
    "qemu": ["qemu-system-x86_64", "--version"],
}


def artifacts(ctx: Context) -> dict[str, Path]:
    """The files a build hands out, by the name the manifest and the summary use."""
    p = ctx.paths
    return {
        "kernel.config": p.config,
        "vmlinux": p.vmlinux,
        "bzImage": p.bzimage,
        "init": p.init_bin,
        "initramfs.cpio": p.cpio,
        "initrd": p.initrd,
        "uki": p.uki,
    }


def file_entry(path: Path, base: Path) -> dict[str, Any]:
    try:
        shown = str(path.relative_to(base))
    except ValueError:
        shown = str(path)
    return {"path": shown, "size": path.stat().st_size, "sha256": fsutil.sha256_file(path)}


def stub_version(stub: bytes) -> str | None:
    """The stub's own version, from the LoaderInfo string systemd puts in its .sdmagic section."""
    try:
        magic = pe.read_sections(stub, "the stub").get(".sdmagic", b"")
    except (TinyukiError, pefile.PEFormatError):
        return None  # a stub we cannot parse simply has no version to report
    text = magic.split(b"\0", 1)[0].decode(errors="replace").strip("# ").strip()
    prefix = "LoaderInfo:"
    return text[len(prefix):].strip() if text.startswith(prefix) else (text or None)


def build_manifest(
    *,
    artifacts: Mapping[str, Path],
    build_dir: Path,
    root: Path,
    source: Mapping[str, Any],
    patches: list[dict[str, Any]],
    fragments: list[Path],
    init_sources: list[Path],
    profile_name: str,
    profile_path: Path,
    tools: Mapping[str, str],
    stub: Path,
    source_date_epoch: int,
) -> dict[str, Any]:
    """The manifest as plain data; every file is named relative to the build dir or the project."""

    def rel(path: Path) -> str:
        try:
            return str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            return str(path)

    def inputs(paths: list[Path]) -> list[dict[str, str]]:
        return [{"path": rel(p), "sha256": fsutil.sha256_file(p)} for p in paths]

    stub_bytes = stub.read_bytes()
    return {
        "format": 1,
        "source_date_epoch": source_date_epoch,
        "artifacts": {name: file_entry(path, build_dir) for name, path in artifacts.items()},
        "inputs": {
            "source": {k: source.get(k) for k in SOURCE_KEYS},
            "fragments": inputs(fragments),
            "patches": patches,
            "init_sources": inputs(init_sources),
            "profile": {"name": profile_name, "path": rel(profile_path),
                        "sha256": fsutil.sha256_file(profile_path)},
            "stub": {"path": str(stub), "sha256": fsutil.sha256_bytes(stub_bytes),
                     "version": stub_version(stub_bytes)},
            "toolchain": dict(tools),
        },
    }


def render(manifest: Mapping[str, Any]) -> str:
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def summary(manifest: Mapping[str, Any]) -> str:
    """A short table of the artifacts: what a user checks at a glance after `doit`."""
    rows = [("artifact", "size", "sha256")]
    for entry in sorted(manifest["artifacts"].values(), key=lambda e: e["path"]):
        rows.append((entry["path"], f"{entry['size']:,}", entry["sha256"][:16]))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{r[0]:<{width[0]}}  {r[1]:>{width[1]}}  {r[2]}" for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def patch_inputs(ctx: Context) -> list[dict[str, Any]]:
    """The patches applied, as patch wrote them in tree.json, else read from the profile's series."""
    if ctx.paths.tree.is_file():
        tree = fsutil.read_json(ctx.paths.tree)
        if isinstance(tree, dict) and isinstance(tree.get("patches"), list):
            return tree["patches"]
    series = read_series(ctx.profile.kernel.patches)
    return [{"path": name, "sha256": fsutil.sha256_file(p)} for name, p in zip(series.names, series.patches,
                                                                               strict=True)]


def write_manifest(ctx: Context) -> dict[str, Any]:
    missing = [str(p) for p in artifacts(ctx).values() if not p.is_file()]
    if missing:
        raise die(f"cannot write the manifest: missing {', '.join(missing)}", "run `doit` to build every stage")
    if not ctx.paths.source.is_file():
        raise die(f"cannot write the manifest: {ctx.paths.source} is missing", "run `doit verify` first")
    manifest = build_manifest(
        artifacts=artifacts(ctx),
        build_dir=ctx.paths.build,
        root=ctx.root,
        source=fsutil.read_json(ctx.paths.source),
        patches=patch_inputs(ctx),
        fragments=list(ctx.profile.kernel.fragments),
        init_sources=list(ctx.profile.init.sources),
        profile_name=ctx.profile.name,
        profile_path=ctx.profile.path,
        tools={name: runner.tool_version(cmd) for name, cmd in TOOLS.items()},
        stub=ctx.profile.uki.stub,
        source_date_epoch=ctx.profile.kernel.source_date_epoch,
    )
    fsutil.atomic_write(ctx.paths.manifest, render(manifest))
    return manifest


def task(ctx: Context) -> Iterator[dict[str, Any]]:
    """Two steps: write the manifest when an input changed; show its summary on every run."""

    @action
    def write() -> None:
        write_manifest(ctx)

    @action
    def show() -> None:
        print(summary(fsutil.read_json(ctx.paths.manifest)))

    deps = [*artifacts(ctx).values(), ctx.paths.source, ctx.paths.tree, ctx.profile.path, ctx.profile.uki.stub,
            *ctx.profile.kernel.fragments, *ctx.profile.init.sources]
    yield {
        "name": "write",
        "actions": [write],
        "file_dep": sorted({str(p) for p in deps}),
        "targets": [str(ctx.paths.manifest)],
        "clean": True,
        "doc": "Write manifest.json: every artifact's size and sha256, and the inputs.",
        "verbosity": 2,
    }
    yield {
        "name": "summary",
        "actions": [show],
        "task_dep": ["manifest:write"],
        "uptodate": [False],
        "doc": "Print the artifacts' sizes and sha256 prefixes.",
        "verbosity": 2,
    }
