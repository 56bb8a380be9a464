"""manifest.json: artifact hashes, recorded inputs, determinism, and the summary table."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tinyuki.config.context import make_context
from tinyuki.errors import TinyukiError
from tinyuki.formats.series import read_series
from tinyuki.records import Tree
from tinyuki.tasks import PIPELINE, manifest
from tinyuki.util.fs import sha256_file

STUB = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
SOURCE = {"sha256": "ab" * 32, "path": "/somewhere/cache/sha256/ab/abab", "filename": "linux-source-6.1.tar.xz",
          "trust": "dpkg", "package": "linux-source-6.1", "package_version": "6.1.192-2"}


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def inputs(tmp_path: Path) -> dict:
    build, root = tmp_path / "build", tmp_path / "project"
    arts = {name: write(build / rel, name.encode() * 10) for name, rel in
            [("bzImage", "bzImage"), ("init", "init/init"), ("uki", "tinyuki.efi")]}
    return {
        "artifacts": arts, "build_dir": build, "root": root, "source": SOURCE,
        "patches": [{"path": "0001-x.patch", "sha256": "cd" * 32}],
        "fragments": [write(root / "configs/fragments/base.config", b"CONFIG_64BIT=y\n")],
        "init_sources": [write(root / "init/init.c", b"int main(void){return 0;}\n")],
        "profile_name": "debian", "profile_path": write(root / "configs/profiles/debian.toml", b"[kernel]\n"),
        "tools": {"gcc": "gcc (Debian 12.2.0-14) 12.2.0", "ld": "GNU ld 2.40", "make": "GNU Make 4.3",
                  "qemu": "QEMU emulator version 7.2"},
        "stub": STUB, "source_date_epoch": 1700000000,
    }


def test_artifacts_and_inputs(inputs: dict) -> None:
    m = manifest.build_manifest(**inputs)
    uki = m["artifacts"]["uki"]
    assert uki == {"path": "tinyuki.efi", "size": 30,
                   "sha256": hashlib.sha256(b"uki" * 10).hexdigest()}
    assert m["artifacts"]["init"]["path"] == "init/init"
    src = m["inputs"]["source"]
    assert src == {k: SOURCE[k] for k in ("sha256", "filename", "trust", "package", "package_version")}
    assert m["inputs"]["fragments"] == [{"path": "configs/fragments/base.config",
                                         "sha256": hashlib.sha256(b"CONFIG_64BIT=y\n").hexdigest()}]
    assert m["inputs"]["init_sources"][0]["path"] == "init/init.c"
    assert m["inputs"]["profile"]["name"] == "debian"
    assert m["inputs"]["profile"]["sha256"] == hashlib.sha256(b"[kernel]\n").hexdigest()
    assert m["inputs"]["patches"] == inputs["patches"]
    assert m["inputs"]["toolchain"]["ld"] == "GNU ld 2.40"
    assert m["inputs"]["stub"]["sha256"] == hashlib.sha256(STUB.read_bytes()).hexdigest()
    assert m["source_date_epoch"] == 1700000000


def test_render_is_deterministic_and_follows_content(inputs: dict) -> None:
    first = manifest.render(manifest.build_manifest(**inputs))
    assert first == manifest.render(manifest.build_manifest(**inputs))
    assert json.loads(first)["format"] == 1
    keys = list(json.loads(first))
    assert keys == sorted(keys)
    inputs["artifacts"]["uki"].write_bytes(b"changed")
    assert manifest.render(manifest.build_manifest(**inputs)) != first


def test_stub_version_from_its_own_sdmagic() -> None:
    version = manifest.stub_version(STUB.read_bytes())
    assert version is not None and version.startswith("systemd-stub ")
    assert manifest.stub_version(b"not a PE") is None


def test_summary_table(inputs: dict) -> None:
    table = manifest.summary(manifest.build_manifest(**inputs)).splitlines()
    assert table[0].split() == ["artifact", "size", "sha256"]
    assert set(table[1]) == {"-"}
    rows = {line.split()[0]: line.split()[1:] for line in table[2:]}
    assert rows["tinyuki.efi"] == ["30", hashlib.sha256(b"uki" * 10).hexdigest()[:16]]
    assert len(rows) == 3


def test_patch_inputs_are_what_the_patch_stage_applied(tmp_path: Path, root: Path) -> None:
    ctx = make_context("debian", str(tmp_path / "build"), str(tmp_path / "cache"), "1", root=root)
    series = read_series(ctx.profile.kernel.patches)
    Tree(tree="/t", source_sha256="0" * 64, patches_sha256="1" * 64, patches=list(series.names)).save(ctx.paths.build)
    assert manifest.patch_inputs(ctx) == [{"path": n, "sha256": sha256_file(p)}
                                          for n, p in zip(series.names, series.patches, strict=True)]
    with pytest.raises(TinyukiError, match="doit patch"):
        manifest.patch_inputs(make_context("debian", str(tmp_path / "other"), str(tmp_path / "cache"), "1", root=root))


def test_write_manifest_names_what_is_missing(tmp_path: Path, root: Path) -> None:
    ctx = make_context("debian", str(tmp_path / "build"), str(tmp_path / "cache"), "1", root=root)
    with pytest.raises(TinyukiError, match="bzImage"):
        manifest.write_manifest(ctx, PIPELINE)
