"""manifest.json: what the build produced and everything that went into it.

A user who gets a tinyuki.efi can check each artifact's sha256 and see which
tarball (and how it was trusted), which fragments, patches, program sources,
profile and tools made it. The file is deterministic: sorted keys, no times but
the build's own epoch, paths relative to the build dir, so two builds of the
same inputs give the same manifest.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pefile

from tinyuki.arch import Arch
from tinyuki.config.context import Context
from tinyuki.errors import TinyukiError, die
from tinyuki.formats import pe
from tinyuki.formats.series import read_series
from tinyuki.records import Tree, Verified
from tinyuki.resources import DATA
from tinyuki.stage import Output, Pipeline, Stage, remove_stale
from tinyuki.toolchain import tools
from tinyuki.util import fs as fsutil
from tinyuki.util.fmt import text_table

MANIFEST = Output("manifest.json")

SOURCE_KEYS = ("sha256", "filename", "trust", "package", "package_version")


def tools_of(target: Arch) -> dict[str, list[str]]:
    """The tools whose versions the manifest records: the target's compiler and linker, and its QEMU."""
    prefix = target.compiler_prefix()
    return {
        "gcc": [f"{prefix}gcc", "--version"],
        "ld": [f"{prefix}ld", "--version"],
        "make": ["make", "--version"],
        "qemu": [target.qemu, "--version"],
    }


def artifacts(ctx: Context, pipeline: Pipeline) -> dict[str, Path]:
    """The files a build hands out, by the name the manifest and the summary use: the named outputs of every
    stage that is on for this profile (no signed UKI without [sign])."""
    return {name: out.at(ctx) for name, _stage, out in pipeline.artifacts_of(ctx)}


def file_entry(path: Path, base: Path) -> dict[str, Any]:
    try:
        shown = str(path.relative_to(base))
    except ValueError:
        shown = str(path)
    return {"path": shown, "size": path.stat().st_size, "sha256": fsutil.sha256_file(path)}


LOADER_INFO = re.compile(rb"#### LoaderInfo: ([^#\0]+?) ####")


def stub_version(stub: bytes) -> str | None:
    """The stub's own version, from the LoaderInfo string systemd puts in its .sdmagic section.

    systemd's arm64 stub (made with gnu-efi's objcopy method) carries the
    string in its file but in no PE section: then it is found in the bytes.
    """
    try:
        magic = pe.read_sections(stub, "the stub").get(".sdmagic", b"")
    except (TinyukiError, pefile.PEFormatError):
        return None  # a stub we cannot parse simply has no version to report
    if not magic:
        found = LOADER_INFO.search(stub)
        return found.group(1).decode(errors="replace").strip() if found else None
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
    reports: Mapping[str, Any] | None = None,
    given: Mapping[Path, str] | None = None,
    extends: tuple[Path, ...] = (),
) -> dict[str, Any]:
    """The manifest as plain data; every file is named relative to the build dir or the project.

    A file outside the project is named as the profile wrote it (`given`: "../lib/util.c", or an absolute
    path), one of tinyuki's own as `tinyuki:configs/...` (not where this copy of tinyuki happens to be
    installed); `reports` are the sections the stages add about their outputs (tinyuki/stage.py's `report`).
    """

    def rel(path: Path) -> str:
        real = path.resolve()
        if real.is_relative_to(root.resolve()):
            return str(real.relative_to(root.resolve()))
        if given and path in given:
            return given[path]
        if real.is_relative_to(DATA.resolve()):
            return "tinyuki:" + str(real.relative_to(DATA.resolve()))
        return str(path)

    def inputs(paths: list[Path]) -> list[dict[str, str]]:
        return [{"path": rel(p), "sha256": fsutil.sha256_file(p)} for p in paths]

    stub_bytes = stub.read_bytes()
    return {
        **(reports or {}),
        "format": 1,
        "source_date_epoch": source_date_epoch,
        "artifacts": {name: file_entry(path, build_dir) for name, path in artifacts.items()},
        "inputs": {
            "source": {k: source.get(k) for k in SOURCE_KEYS},
            "fragments": inputs(fragments),
            "patches": patches,
            "init_sources": inputs(init_sources),
            "profile": {"name": profile_name, "path": rel(profile_path),
                        "sha256": fsutil.sha256_file(profile_path),
                        **({"extends": inputs(list(extends))} if extends else {})},
            "stub": {"path": str(stub), "sha256": fsutil.sha256_bytes(stub_bytes),
                     "version": stub_version(stub_bytes)},
            "toolchain": dict(tools),
        },
    }


def render(manifest: Mapping[str, Any]) -> str:
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def summary(manifest: Mapping[str, Any]) -> str:
    """A short table of the artifacts: what a user checks at a glance after `doit`."""
    rows = [(e["path"], f"{e['size']:,}", e["sha256"][:16])
            for e in sorted(manifest["artifacts"].values(), key=lambda e: e["path"])]
    return text_table(("artifact", "size", "sha256"), rows, align_right=(1,))


def patch_inputs(ctx: Context) -> list[dict[str, Any]]:
    """The patches applied to the tree (as the patch stage recorded them), each with its sha256."""
    applied = Tree.load(ctx.paths.build).patches
    series = read_series(ctx.profile.kernel.patches)
    hashes = {name: fsutil.sha256_file(p) for name, p in zip(series.names, series.patches, strict=True)}
    return [{"path": name, "sha256": hashes.get(name)} for name in applied]


def write_manifest(ctx: Context, pipeline: Pipeline) -> dict[str, Any]:
    for path in remove_stale(ctx, pipeline.stages):
        print(f"manifest: removed {path}: profile {ctx.profile.name} no longer makes it")
    files = artifacts(ctx, pipeline)
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise die(f"cannot write the manifest: missing {', '.join(missing)}", "run `doit` to build every stage")
    manifest = build_manifest(
        artifacts=files,
        build_dir=ctx.paths.build,
        root=ctx.root,
        given=ctx.profile.given,
        source=dataclasses.asdict(Verified.load(ctx.paths.build)),
        patches=patch_inputs(ctx),
        fragments=list(ctx.profile.kernel.fragments),
        init_sources=list(ctx.profile.init.sources),
        profile_name=ctx.profile.name,
        profile_path=ctx.profile.path,
        extends=ctx.profile.extends,
        tools={name: tools.command_version(cmd) for name, cmd in tools_of(ctx.arch).items()},
        stub=ctx.profile.uki.stub,
        source_date_epoch=ctx.profile.kernel.source_date_epoch,
        reports={"arch": ctx.arch.name,
                 **{k: v for s in pipeline.stages if s.report is not None and s.active(ctx)
                    for k, v in s.report(ctx).items()}},
    )
    fsutil.atomic_write(MANIFEST.at(ctx), render(manifest))
    return manifest


def declare(pipeline: Pipeline) -> Stage:
    """The manifest stage of a pipeline: it needs every stage that hands out an artifact."""
    producers = tuple(dict.fromkeys(s.name for _name, s, _out in pipeline.artifacts()))

    def inputs(ctx: Context) -> list[Path]:
        return [ctx.profile.path, *ctx.profile.extends, ctx.profile.uki.stub, *ctx.profile.kernel.fragments,
                *ctx.profile.init.sources]

    return Stage(
        name="manifest",
        doc="Write manifest.json (every artifact's size and sha256, and the inputs) and print a summary.",
        build=lambda ctx: write_manifest(ctx, pipeline),
        needs=("verify", "patch", *producers),
        outputs=(MANIFEST,),
        inputs=inputs,
    )
