"""Comparing two builds' manifests: the table, the first differing stage, and broken manifests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tinyuki import reprocheck
from tinyuki.errors import TinyukiError
from tinyuki.tasks import PIPELINE

# the order the pipeline produces the artifacts in, from the stage declarations
ORDER = tuple((name, stage.name) for name, stage, _out in PIPELINE.artifacts())
PATHS = {
    "bzImage": "bzImage", "init": "init/init", "initramfs.cpio": "initramfs.cpio", "initrd": "initrd.img",
    "kernel.config": "kernel.config", "uki": "tinyuki.efi", "vmlinux": "vmlinux",
}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def manifest_data(changed: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> dict:
    """A manifest like `doit manifest` writes; `changed` gives some artifacts other contents."""
    changed = changed or {}
    arts = {name: {"path": path, "size": 100 + i, "sha256": sha(changed.get(name, name))}
            for i, (name, path) in enumerate(PATHS.items()) if name not in drop}
    return {"format": 1, "source_date_epoch": 1700000000, "artifacts": arts, "inputs": {}}


def write(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def load_pair(tmp_path: Path, a: object, b: object) -> tuple[reprocheck.Manifest, reprocheck.Manifest]:
    return (reprocheck.load_manifest(write(tmp_path / "a" / "manifest.json", a)),
            reprocheck.load_manifest(write(tmp_path / "b" / "manifest.json", b)))


def test_identical_builds_are_all_same_in_pipeline_order(tmp_path):
    a, b = load_pair(tmp_path, manifest_data(), manifest_data())
    rows = reprocheck.compare(a, b, ORDER)
    assert [r.artifact for r in rows] == ["kernel.config", "init", "initramfs.cpio", "initrd", "vmlinux",
                                          "bzImage", "uki"]
    assert [r.stage for r in rows] == ["configure", "init", "initramfs", "initramfs", "embed", "embed", "uki"]
    assert all(r.status == "same" for r in rows)
    assert reprocheck.first_difference(rows) is None
    assert reprocheck.verdict(rows) == "reproducible: all 7 artifacts are bit-identical"
    text = reprocheck.table(rows)
    assert text.splitlines()[0].split() == ["stage", "artifact", "hash", "A", "hash", "B", "result"]
    assert f"uki             {sha('uki')}  {sha('uki')}  same" in text


def test_first_difference_is_the_earliest_stage_not_the_first_name(tmp_path):
    # init, the cpio embedding it, the kernel embedding the cpio and the UKI all differ:
    # the root cause is the init, though "bzImage" sorts first and "uki" is last.
    changed = {"init": "x", "initramfs.cpio": "x", "vmlinux": "x", "bzImage": "x", "uki": "x"}
    a, b = load_pair(tmp_path, manifest_data(), manifest_data(changed))
    rows = reprocheck.compare(a, b, ORDER)
    first = reprocheck.first_difference(rows)
    assert first is not None and (first.artifact, first.stage) == ("init", "init")
    assert first.a.sha256 == sha("init") and first.b.sha256 == sha("x")
    assert {r.artifact: r.status for r in rows} == {
        "kernel.config": "same", "init": "different", "initramfs.cpio": "different", "initrd": "same",
        "vmlinux": "different", "bzImage": "different", "uki": "different"}
    assert reprocheck.verdict(rows) == ("not reproducible: 5 of 7 artifacts differ; the first in pipeline order"
                                        " is init (stage init, different)")
    line = next(x for x in reprocheck.table(rows).splitlines() if x.startswith("init "))
    assert line.split() == ["init", "init", sha("init"), sha("x"), "different"]


def test_a_late_difference_alone_is_named(tmp_path):
    a, b = load_pair(tmp_path, manifest_data(), manifest_data({"uki": "other stub"}))
    first = reprocheck.first_difference(reprocheck.compare(a, b, ORDER))
    assert first is not None and first.artifact == "uki"
    assert a.file("uki") == tmp_path / "a" / "tinyuki.efi"
    assert b.file("uki") == tmp_path / "b" / "tinyuki.efi"


def test_missing_artifact_counts_as_a_difference_in_its_own_place(tmp_path):
    a, b = load_pair(tmp_path, manifest_data(drop=("initrd",)), manifest_data({"uki": "u"}))
    rows = reprocheck.compare(a, b, ORDER)
    assert {r.artifact: r.status for r in rows}["initrd"] == "missing in A"
    first = reprocheck.first_difference(rows)
    assert first is not None and first.artifact == "initrd" and first.a is None
    initrd_line = next(x for x in reprocheck.table(rows).splitlines() if " initrd " in x)
    assert initrd_line.split() == ["initramfs", "initrd", "-", sha("initrd"), "missing", "in", "A"]

    a, b = load_pair(tmp_path, manifest_data(), manifest_data(drop=("kernel.config",)))
    first = reprocheck.first_difference(reprocheck.compare(a, b, ORDER))
    assert first is not None and first.artifact == "kernel.config" and first.status == "missing in B"


def test_unknown_artifacts_are_compared_after_the_known_stages(tmp_path):
    data = manifest_data()
    data["artifacts"]["a-new-output"] = {"path": "new", "size": 1, "sha256": sha("n")}
    other = json.loads(json.dumps(data))
    other["artifacts"]["a-new-output"]["sha256"] = sha("m")
    a, b = load_pair(tmp_path, data, other)
    rows = reprocheck.compare(a, b, ORDER)
    assert rows[-1].artifact == "a-new-output" and rows[-1].stage == "other"
    assert reprocheck.first_difference(rows) is rows[-1]


def test_absolute_artifact_paths_are_kept(tmp_path):
    data = manifest_data()
    data["artifacts"]["uki"]["path"] = "/srv/out/tinyuki.efi"
    m = reprocheck.parse_manifest(data, tmp_path / "manifest.json")
    assert m.file("uki") == Path("/srv/out/tinyuki.efi")


@pytest.mark.parametrize(("content", "expected"), [
    ('{"artifacts": {"uki": ', "is not valid JSON (line 1"),
    ("[1, 2]", "the top level is not a JSON object"),
    ('{"format": 1}', 'it has no "artifacts" table'),
    ('{"artifacts": {}}', 'it has no "artifacts" table'),
    ('{"artifacts": {"uki": "tinyuki.efi"}}', "artifacts.uki is not an object"),
    ('{"artifacts": {"uki": {"size": 1, "sha256": "' + "a" * 64 + '"}}}', "artifacts.uki.path is missing"),
    ('{"artifacts": {"uki": {"path": "u", "size": "1", "sha256": "' + "a" * 64 + '"}}}', "artifacts.uki.size"),
    ('{"artifacts": {"uki": {"path": "u", "size": 1, "sha256": "abc"}}}', "artifacts.uki.sha256 'abc' is not"),
])
def test_malformed_manifest_is_a_clear_error(tmp_path, content, expected):
    path = write(tmp_path / "m" / "manifest.json", content)
    with pytest.raises(TinyukiError) as err:
        reprocheck.load_manifest(path)
    assert expected in err.value.message
    assert str(path) in err.value.message
    assert err.value.hint


def test_missing_manifest_file_is_a_clear_error(tmp_path):
    with pytest.raises(TinyukiError) as err:
        reprocheck.load_manifest(tmp_path / "nowhere" / "manifest.json")
    assert "does not exist" in err.value.message and "nowhere" in err.value.message


def test_the_second_build_differs_in_every_surrounding():
    base = Path("/srv/build/debian/repro")
    a, b = reprocheck.plan(base, 2, "alice", "box", ["C", "C.utf8", "POSIX"])
    assert a.build_dir == base / "a"
    assert len(str(b.build_dir)) > len(str(a.build_dir))
    for field in ("build_dir", "cwd", "umask", "tz", "locale", "jobs", "user", "host"):
        assert getattr(a, field) != getattr(b, field), field
    assert b.build_dir.parent == b.cwd and base in b.build_dir.parents
    assert a.locale == "C.UTF-8" and b.locale == "POSIX"  # C.utf8 is the same locale spelled differently
    assert b.jobs == 3


def test_a_language_locale_is_preferred_when_installed():
    assert reprocheck.pick_locale(["C", "C.utf8", "POSIX", "de_DE", "fr_FR.utf8"], "C.UTF-8") == "fr_FR.utf8"
    assert reprocheck.pick_locale(["C", "POSIX", "de_DE"], "C.UTF-8") == "de_DE"
    assert reprocheck.pick_locale(["C", "C.utf8"], "C.UTF-8") == "POSIX"
