"""The pipeline as data: every stage declared once, and everything else derived from the declarations.

The property tests here change each profile setting in turn and check that
exactly the stages the setting's row names (its `reaches`) see a new cache key
and a new doit staleness value, and no others; and that what a stage declares
as its outputs is what doit targets, the artifact cache stores, the manifest
lists and `doit repro` compares.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tinyuki.cache import artifacts, keys
from tinyuki.cache.store import Store
from tinyuki.cli.stages import off as stage_off
from tinyuki.cli.stages import task_dict
from tinyuki.config.context import Context, make_context
from tinyuki.config.profile import FIELDS, REQUIRED, Field
from tinyuki.records import Tree
from tinyuki.stage import CHECKS, Check, Output, Pipeline, Stage, remove_stale
from tinyuki.tasks import PIPELINE, STAGES, manifest
from tinyuki.tasks.embed import efi_image_output

ROOT = Path(__file__).resolve().parents[2]
FPR_A = "647F28654894E3BD457199BE38DBBDC86092693E"
FPR_B = "B8868C80BA62A1FFFAF5FDA9632D3A06589DA6B1"


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{toml_value(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def write(path: Path, data: dict[str, Any]) -> Path:
    lines = [f"{k} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for section, table in data.items():
        if isinstance(table, dict):
            lines += [f"[{section}]", *(f"{k} = {toml_value(v)}" for k, v in table.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Two of each kind of file a setting may name, with different contents."""
    out = {}
    for name in ("key-a.asc", "key-b.asc", "a.c", "b.c", "stub-a", "stub-b", "extra-a", "extra-b",
                 "ovmf-a", "ovmf-b", "prog-a", "prog-b", "db-a.key", "db-b.key", "db-a.crt", "db-b.crt"):
        (tmp_path / name).write_text(f"{name}\n")
        out[name] = tmp_path / name
    for name in ("one", "two"):
        d = tmp_path / f"series-{name}"
        d.mkdir()
        (d / f"{name}.patch").write_text(f"--- a/{name}\n+++ b/{name}\n")
        (d / "series").write_text(f"{name}.patch\n")
        out[f"series-{name}"] = d / "series"
        data = tmp_path / f"data-{name}"
        (data / "sub").mkdir(parents=True)
        (data / "sub" / f"{name}.txt").write_text(f"{name}\n")
        out[f"data-{name}"] = data
    return out


def base_profile(files: dict[str, Path]) -> dict[str, Any]:
    """A profile that sets every field, each to a value from which another valid value is one step away."""
    return {
        "description": "every setting",
        "source": {
            "urls": ["https://example.org/linux.tar.xz"], "sha256": "a" * 64,
            "signature": "https://example.org/linux.tar.sign", "signature_over": "uncompressed",
            "signers": [FPR_A], "keyrings": [str(files["key-a.asc"])],
            "sha256sums": "https://example.org/sha256sums.asc", "sha256sums_signers": [FPR_A],
            "sha256sums_keyrings": [str(files["key-a.asc"])], "package": "linux-source-6.1",
            "retries": 4, "timeout": 30, "size": 1000, "deadline": 3600, "max_size": 2048,
        },
        "kernel": {
            "arch": "x86_64", "fragments": ["base"], "patches": str(files["series-one"]), "cmdline": "panic=-1",
            "source_date_epoch": 1700000000, "build_user": "u", "build_host": "h", "build_version": "1",
            "image": "bzImage", "initramfs": "embedded",
        },
        "init": {"sources": [str(files["a.c"])], "language": "c", "libc": "nolibc", "binary": str(files["prog-a"]),
                 "cflags": [], "marker": "m",
                 "files": {"/etc/a": str(files["extra-a"])}},
        "uki": {"stub": str(files["stub-a"]), "os_release": {"ID": "x"}},
        "boot": {"machine": "auto", "cpu": "max", "memory": "128M", "accel": "auto", "timeout": 60, "qemu_args": [],
                 "ovmf_code": str(files["ovmf-a"]), "ovmf_vars": str(files["ovmf-a"]), "net": "user",
                 "forward": [], "channel": "tinyuki.0", "vsock": 3},
        "disk": {"table": "gpt", "esp_size": "8M", "files": {"/EFI/tinyuki/a.txt": str(files["extra-a"])},
                 "data": str(files["data-one"]), "data_size": "4M"},
        "sign": {"key": str(files["db-a.key"]), "cert": str(files["db-a.crt"]), "passphrase": "env:TINYUKI_PASS"},
    }


def changed(f: Field, value: Any, files: dict[str, Path]) -> Any:
    """Another valid value for the field, of the same kind."""
    kind = f.kind
    if kind == "str":
        return value + "-changed"
    if kind == "int":
        return value + 1
    if kind == "choice":  # another concrete value ("auto" resolves to one of them); an image x86_64 has
        return next(c for c in f.choices if c not in (value, "auto", "Image"))
    if kind == "str_list":
        return [*value, "-DCHANGED"]
    if kind == "url":
        return value + ".other"
    if kind == "url_list":
        return ["https://mirror.example.org/linux.tar.xz"]
    if kind == "sha256":
        return "b" * 64
    if kind == "fingerprint_list":
        return [FPR_B]
    if kind == "path":
        return str(files["stub-b"] if "stub" in value else files["prog-b"] if "prog" in value else files["ovmf-b"])
    if kind == "keyring_list":
        return [str(files["key-b.asc"])]
    if kind == "path_list":
        return [str(files["b.c"])]
    if kind == "fragment_list":
        return [*value, "console"]
    if kind == "series":
        return str(files["series-two"])
    if kind == "file_map":
        return {"/etc/b": str(files["extra-b"])}
    if kind == "str_map":
        return {**value, "VERSION_ID": "2"}
    if kind == "size":
        return f"{int(value.rstrip('M')) + 1}M"
    if kind == "esp_file_map":
        return {"/EFI/tinyuki/b.txt": str(files["extra-b"])}
    if kind == "dir":
        return str(files["data-two"])
    if kind == "key":
        return str(files["db-b.key"])
    if kind == "secret_source":
        return "file:" + str(files["extra-b"])
    if kind == "forward_list":
        return [*value, "8081-81"]
    if kind == "channel_name":
        return value + ".b"
    raise AssertionError(f"no changed value for kind {kind}")


def context(tmp_path: Path, data: dict[str, Any], name: str) -> Context:
    ctx = make_context(str(write(tmp_path / f"{name}.toml", data)), str(tmp_path / "build"),
                       str(tmp_path / "cache"), "1", root=ROOT)
    Tree(tree=str(tmp_path / "trees" / f"src-{'1' * 64}"), source_sha256="1" * 64, patches_sha256=None,
         patches=[]).save(ctx.paths.build)
    return ctx


def fingerprints(ctx: Context) -> dict[str, tuple[str, str, list[str]]]:
    """For every stage: its cache key, its doit staleness value and its file_dep."""
    return {s.name: (keys.compute(ctx, s, PIPELINE)[0], keys.digest(keys.staleness(ctx, s)),
                     task_dict(ctx, s, PIPELINE)["file_dep"])
            for s in PIPELINE}


def test_every_field_names_only_real_stages() -> None:
    for f in FIELDS:
        assert set(f.reaches) <= set(PIPELINE.names), f.label
        assert len(set(f.reaches)) == len(f.reaches), f.label


# `extends` is no setting of its own: what a profile takes from another is its settings (tested below)
SETTINGS = [f for f in FIELDS if f.key != "extends"]


@pytest.mark.parametrize("field", [f for f in SETTINGS if f.default is not REQUIRED or f.kind != "url_list"] +
                         [f for f in SETTINGS if f.default is REQUIRED and f.kind == "url_list"],
                         ids=lambda f: f.label)
def test_a_setting_changes_exactly_the_stages_it_reaches(tmp_path: Path, files: dict[str, Path],
                                                         field: Field) -> None:
    base = base_profile(files)
    table = base if not field.section else base[field.section]
    if field.label == "[kernel] arch":
        table["image"] = "auto"  # the architecture's own image: bzImage on x86_64, as before
    before = fingerprints(context(tmp_path, base, "profile"))
    table[field.key] = changed(field, table[field.key], files)
    after = fingerprints(context(tmp_path, base, "profile"))
    # the manifest records the profile file itself (its sha256): every setting reaches it, by content
    assert before["manifest"][0] != after["manifest"][0]
    for stage in PIPELINE.names[:-1]:
        key_a, state_a, deps_a = before[stage]
        key_b, state_b, deps_b = after[stage]
        if stage in field.reaches:
            assert key_a != key_b, f"{field.label} reaches {stage}, but its cache key did not change"
            assert state_a != state_b, f"{field.label} reaches {stage}, but doit would not rerun it"
        else:
            assert key_a == key_b, f"{field.label} does not reach {stage}, but its key changed"
            assert state_a == state_b and deps_a == deps_b, f"{field.label} would rerun {stage}"


def test_a_profile_that_extends_another_and_changes_nothing_builds_the_same(tmp_path: Path,
                                                                             files: dict[str, Path]) -> None:
    """Every stage's key, staleness and inputs are the parent's: only the manifest (which records both files)
    differs."""
    (tmp_path / "a").mkdir()
    parent = context(tmp_path / "a", base_profile(files), "parent")
    child_file = tmp_path / "b" / "child.toml"
    child_file.parent.mkdir()
    child_file.write_text(f'extends = "{parent.profile.path}"\n')
    child = make_context(str(child_file), str(tmp_path / "a" / "build"), str(tmp_path / "a" / "cache"), "1",
                         root=ROOT)
    assert child.profile.extends == (parent.profile.path,)
    a, b = fingerprints(parent), fingerprints(child)
    assert {n for n in a if a[n] != b[n]} == {"manifest"}


def test_a_named_file_reaches_the_stage_by_its_content(tmp_path: Path, files: dict[str, Path]) -> None:
    """Editing a file a setting names (same path) changes the key of the stages that setting reaches."""
    ctx = context(tmp_path, base_profile(files), "p")
    before = {s.name: keys.compute(ctx, s, PIPELINE)[0] for s in PIPELINE}
    files["stub-a"].write_text("another stub\n")
    after = {s.name: keys.compute(ctx, s, PIPELINE)[0] for s in PIPELINE}
    assert {n for n in before if before[n] != after[n]} == {"uki", "manifest"}
    assert PIPELINE.names[-1] == "manifest"


@pytest.mark.parametrize("initramfs", ["embedded", "initrd"])
def test_doit_tasks_follow_the_declarations(tmp_path: Path, files: dict[str, Path], initramfs: str) -> None:
    profile = base_profile(files)
    profile["kernel"]["initramfs"] = initramfs
    ctx = context(tmp_path, profile, "p")
    for stage in PIPELINE:
        t = task_dict(ctx, stage, PIPELINE)
        assert t["basename"] == stage.name and t["doc"] == stage.doc
        assert t["targets"] == [str(o.at(ctx)) for o in stage.outputs if not o.tree and o.made_for(ctx)]
        for need in stage.needs:
            for o in PIPELINE[need].files_of(ctx):
                if need not in stage.needed(ctx):  # embed without the program, the UKI without the initrd
                    assert str(o.at(ctx)) not in t["file_dep"], f"{stage.name} depends on {o.path}"
                elif o.handed_on:
                    assert str(o.at(ctx)) in t["file_dep"], f"{stage.name} does not depend on {o.path}"
                else:  # a record only its own stage reads (configure's requested options)
                    assert str(o.at(ctx)) not in t["file_dep"], f"{stage.name} depends on {o.path}"
        for p in stage.input_files(ctx):
            assert str(p) in t["file_dep"]
        assert len(t["uptodate"]) == 1 + len(stage.checks)
    # the program reaches the kernel's link, or the UKI as its .initrd: never both
    assert ("initramfs" in PIPELINE["embed"].needed(ctx)) == (initramfs == "embedded")
    assert ("initramfs" in PIPELINE["uki"].needed(ctx)) == (initramfs == "initrd")


def test_stages_come_after_what_they_need_and_every_output_is_written_once() -> None:
    seen: set[str] = set()
    paths: set[str] = set()
    for stage in PIPELINE:
        assert set(stage.needs) <= seen, stage.name
        seen.add(stage.name)
        for o in stage.outputs:
            assert o.path not in paths, f"two stages write {o.path}"
            paths.add(o.path)


def test_the_manifest_lists_every_named_output_and_needs_its_stage() -> None:
    named = {o.manifest for s in STAGES for o in s.outputs if o.manifest}
    assert named == {name for name, _s, _o in PIPELINE.artifacts()}
    producers = {s.name for s in STAGES if any(o.manifest for o in s.outputs)}
    assert producers <= set(PIPELINE["manifest"].needs)


def test_the_cache_stores_what_a_stage_declares(tmp_path: Path, files: dict[str, Path]) -> None:
    """save() packs exactly the declared outputs (files and trees) of every cached stage."""
    ctx = context(tmp_path, base_profile(files), "p")
    store = Store(tmp_path / "store")
    cached = [s for s in PIPELINE if s.cache]
    assert {s.name for s in cached} == {"configure", "kernel", "init", "initramfs", "embed", "uki", "disk"}
    for stage in cached:
        for o in stage.outputs:
            path = o.at(ctx)
            if not o.made_for(ctx):
                continue
            if o.tree:
                (path / "sub").mkdir(parents=True, exist_ok=True)
                (path / "sub" / "file").write_text(stage.name)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(f"{stage.name} {o.path}\n")
        entry = artifacts.save(ctx, stage, "f" * 64, store, 1.0)
        assert entry is not None
        assert set(entry["files"]) == {o.path for o in stage.outputs if not o.tree and o.made_for(ctx)}
        assert set(entry["trees"]) == {o.path for o in stage.outputs if o.tree}


def test_each_architecture_writes_its_own_image(tmp_path: Path, files: dict[str, Path]) -> None:
    """The embed stage's targets, cache entry and manifest name are the target's image, never another's."""
    data = base_profile(files)
    data["kernel"]["image"] = "auto"
    (tmp_path / "x86").mkdir()
    (tmp_path / "arm").mkdir()
    x86 = context(tmp_path / "x86", data, "p")
    data["kernel"]["arch"] = "arm64"
    arm = context(tmp_path / "arm", data, "p")
    embed = PIPELINE["embed"]
    assert [o.path for o in embed.files_of(x86)] == ["vmlinux", "bzImage"]
    assert [o.path for o in embed.files_of(arm)] == ["vmlinux", "Image"]
    assert task_dict(arm, embed, PIPELINE)["targets"] == [str(arm.paths.build / "vmlinux"),
                                                         str(arm.paths.build / "Image")]
    assert "bzImage" not in {name for name, _s, _o in PIPELINE.artifacts_of(arm)}
    assert "Image" not in {name for name, _s, _o in PIPELINE.artifacts_of(x86)}
    assert str(arm.paths.build / "Image") in task_dict(arm, PIPELINE["uki"], PIPELINE)["file_dep"]
    # [kernel] image = "vmlinuz.efi": the EFI zboot image beside the Image, in the cache entry, the manifest and
    # the UKI's inputs; never for a profile that does not ask for it
    data["kernel"]["image"] = "vmlinuz.efi"
    (tmp_path / "zboot").mkdir()
    zboot = context(tmp_path / "zboot", data, "p")
    assert [o.path for o in embed.files_of(zboot)] == ["vmlinux", "Image", "vmlinuz.efi"]
    assert "vmlinuz.efi" in {name for name, _s, _o in PIPELINE.artifacts_of(zboot)}
    assert "vmlinuz.efi" not in {name for name, _s, _o in PIPELINE.artifacts_of(arm)}
    assert str(zboot.paths.build / "vmlinuz.efi") in task_dict(zboot, PIPELINE["uki"], PIPELINE)["file_dep"]
    assert efi_image_output(zboot).path == "vmlinuz.efi" and efi_image_output(arm).path == "Image"


def test_checks_are_registered_by_name() -> None:
    for stage in PIPELINE:
        for check in stage.checks:
            assert isinstance(check, Check) and CHECKS[check.name] is type(check)


# ---------------------------------------------------------------- adding a stage


def write_checksums(ctx: Context) -> None:
    uki = PIPELINE.path(ctx, "uki")
    CHECKSUMS.at(ctx).write_text(f"{keys.digest(uki.read_bytes().hex())}  {uki.name}\n")


CHECKSUMS = Output("SHA256SUMS", manifest="sha256sums")
# What a new stage module declares; adding it to the pipeline is one line in tasks/__init__.py.
EXAMPLE = Stage(name="checksums", doc="List the artifacts' checksums.", build=write_checksums,
                needs=("uki",), outputs=(CHECKSUMS,), cache=True)


def test_adding_a_stage_is_one_declaration_and_one_line(tmp_path: Path, files: dict[str, Path]) -> None:
    stages = Pipeline((*STAGES, EXAMPLE))  # the one line
    pipeline = Pipeline((*stages, manifest.declare(stages)))
    ctx = context(tmp_path, base_profile(files), "p")
    # a doit task, in pipeline order, depending on what it needs
    t = task_dict(ctx, pipeline["checksums"], pipeline)
    assert t["targets"] == [str(CHECKSUMS.at(ctx))] and str(PIPELINE.path(ctx, "uki")) in t["file_dep"]
    assert pipeline.names.index("checksums") == len(STAGES)
    # a cache key of its own, covering the stage it needs
    keys.record(ctx, "uki", "1" * 64, {})
    first = keys.compute(ctx, EXAMPLE, pipeline)[0]
    keys.record(ctx, "uki", "2" * 64, {})
    assert keys.compute(ctx, EXAMPLE, pipeline)[0] != first
    # the manifest lists it, the manifest stage waits for it, and repro compares it after the UKI
    assert ("sha256sums", EXAMPLE, CHECKSUMS) in pipeline.artifacts()
    assert "checksums" in pipeline["manifest"].needs
    order = [name for name, _s, _o in pipeline.artifacts()]
    assert order[-1] == "sha256sums" and order.index("uki") < order.index("sha256sums")
    # and the artifact cache stores it
    PIPELINE.path(ctx, "uki").write_bytes(b"uki")
    write_checksums(ctx)
    entry = artifacts.save(ctx, EXAMPLE, "e" * 64, Store(tmp_path / "store"), 0.1)
    assert entry is not None and set(entry["files"]) == {"SHA256SUMS"}
    os.unlink(CHECKSUMS.at(ctx))


# ---------------------------------------------------------------- a stage that is off for a profile


def without_sign(files: dict[str, Path]) -> dict[str, Any]:
    data = base_profile(files)
    del data["sign"]
    return data


def test_signing_is_off_without_sign_and_nothing_depends_on_it(tmp_path: Path, files: dict[str, Path]) -> None:
    """A profile without [sign] needs no key: the sign task has no targets, no deps, and the manifest skips it."""
    ctx = context(tmp_path, without_sign(files), "p")
    sign = PIPELINE["sign"]
    assert not sign.active(ctx) and not ctx.profile.sign.enabled
    t = task_dict(ctx, sign, PIPELINE)
    assert t["targets"] == [] and t["file_dep"] == [] and len(t["uptodate"]) == 1
    signed = str(sign.output("uki-signed").at(ctx))
    assert signed not in task_dict(ctx, PIPELINE["manifest"], PIPELINE)["file_dep"]
    assert "uki-signed" not in {name for name, _s, _o in PIPELINE.artifacts_of(ctx)}
    assert "uki" in {name for name, _s, _o in PIPELINE.artifacts_of(ctx)}
    # every other stage is on, and the declarations still list the signed UKI for profiles that sign
    assert [s.name for s in PIPELINE if not s.active(ctx)] == ["sign"]
    assert "uki-signed" in {name for name, _s, _o in PIPELINE.artifacts()}
    # with [sign], the manifest waits for the signed UKI
    on = context(tmp_path, base_profile(files), "q")
    assert sign.active(on)
    assert str(sign.output("uki-signed").at(on)) in task_dict(on, PIPELINE["manifest"], PIPELINE)["file_dep"]
    assert task_dict(on, sign, PIPELINE)["file_dep"] == sorted(
        {str(files["db-a.key"]), str(files["db-a.crt"]), str(PIPELINE.path(on, "uki"))})


def test_turning_signing_off_reruns_the_task_and_removes_the_old_signed_uki(
        tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    on = context(tmp_path, base_profile(files), "p")
    off = context(tmp_path, without_sign(files), "p")
    sign = PIPELINE["sign"]
    assert keys.staleness(on, sign) != keys.staleness(off, sign)  # doit reruns the task when [sign] goes away
    signed = sign.output("uki-signed").at(off)
    signed.parent.mkdir(parents=True, exist_ok=True)
    signed.write_bytes(b"signed by a profile that had [sign]")
    stage_off(off, sign)
    assert not signed.exists()
    assert "sign: off for profile p" in capsys.readouterr().out
    # the manifest stage does the same for every stage that is off, and leaves the others' files alone
    signed.write_bytes(b"again")
    uki = PIPELINE.path(off, "uki")
    uki.write_bytes(b"unsigned")
    assert remove_stale(off, PIPELINE.stages) == [signed]
    assert not signed.exists() and uki.is_file()
    signed.write_bytes(b"kept while [sign] is on")
    assert remove_stale(on, PIPELINE.stages) == [] and signed.is_file()


def test_the_signing_key_reaches_the_sign_stage_by_its_content(tmp_path: Path, files: dict[str, Path]) -> None:
    ctx = context(tmp_path, base_profile(files), "p")
    before = {s.name: keys.compute(ctx, s, PIPELINE)[0] for s in PIPELINE}
    files["db-a.key"].write_text("another key\n")
    after = {s.name: keys.compute(ctx, s, PIPELINE)[0] for s in PIPELINE}
    assert {n for n in before if before[n] != after[n]} == {"sign"}


def test_a_pkcs11_key_names_no_file(tmp_path: Path, files: dict[str, Path]) -> None:
    data = base_profile(files)
    data["sign"]["key"] = "pkcs11:token=tinyuki;object=db;type=private"
    ctx = context(tmp_path, data, "p")
    assert ctx.profile.sign.pkcs11 and ctx.profile.sign.enabled
    assert PIPELINE["sign"].input_files(ctx) == [files["db-a.crt"]]


def test_a_changed_recipe_reruns_the_stage_as_it_changes_its_key(tmp_path: Path, files: dict[str, Path],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A build dir made by an earlier tinyuki reruns a stage whose code changed (as its cache key changes)."""
    ctx = context(tmp_path, base_profile(files), "p")
    stage = PIPELINE["uki"]
    assert set(keys.staleness(ctx, stage)["recipe"]) == {"tinyuki.tasks.uki", *stage.recipe}
    before = (keys.digest(keys.staleness(ctx, stage)), keys.compute(ctx, stage, PIPELINE)[0])
    real = keys.module_hash
    monkeypatch.setattr(keys, "module_hash", lambda m: "changed" if m == "tinyuki.formats.pe" else real(m))
    after = (keys.digest(keys.staleness(ctx, stage)), keys.compute(ctx, stage, PIPELINE)[0])
    assert before[0] != after[0] and before[1] != after[1]
