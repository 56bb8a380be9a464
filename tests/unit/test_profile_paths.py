"""A profile's relative paths are taken from its own directory (mkosi's rule), wherever doit runs.

A project keeps its tinyuki.toml beside its program; the same profile means the same files from any
cwd, from tinyuki's clone or from an installed copy. Names of shipped things (fragments, patch series,
keys) still name tinyuki's own files; a path that leaves the project is allowed and recorded as written.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tinyuki.config.context import make_context
from tinyuki.config.profile import load_profile, moved_profile_text
from tinyuki.errors import TinyukiError
from tinyuki.resources import DATA
from tinyuki.tasks import manifest

SOURCE = """\
[source]
urls = ["linux.tar.xz"]
sha256 = "362d07fe4938c415ce651aefee063a5c4151109b39c97be039bbaa8312ffc0e2"

[kernel]
fragments = ["base"]
"""


def project(tmp_path: Path, sources: str, extra: str = "") -> Path:
    """A project dir with main.c, a sibling dir with lib.c, and a tinyuki.toml naming `sources`."""
    proj = tmp_path / "work" / "myapp"
    (proj / "src").mkdir(parents=True)
    (proj / "main.c").write_text("int main(void) { return 0; }\n")
    (tmp_path / "work" / "common").mkdir()
    (tmp_path / "work" / "common" / "lib.c").write_text("int lib;\n")
    (proj / "tinyuki.toml").write_text(SOURCE + f"\n[init]\nsources = {sources}\n{extra}")
    return proj


def test_relative_paths_are_taken_from_the_profiles_directory_not_the_cwd(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    proj = project(tmp_path, '["main.c"]')
    monkeypatch.chdir(tmp_path)  # doit run elsewhere, the profile given by path
    p = load_profile(str(proj / "tinyuki.toml"), tmp_path)
    assert p.init.sources == (proj / "main.c",)
    assert p.source.urls == (str(proj / "linux.tar.xz"),)  # a plain path of a tarball too
    assert p.kernel.fragments == (DATA / "configs" / "fragments" / "base.config",)  # a name: tinyuki's own


def test_absolute_dotdot_inside_and_a_path_leaving_the_project_all_work(tmp_path: Path) -> None:
    proj = project(tmp_path, f'["{tmp_path}/work/myapp/main.c", "src/../main.c", "../common/lib.c"]')
    p = load_profile(str(proj / "tinyuki.toml"), proj)
    assert p.init.sources == (proj / "main.c", proj / "main.c", tmp_path / "work" / "common" / "lib.c")
    assert p.given[tmp_path / "work" / "common" / "lib.c"] == "../common/lib.c"


def test_a_missing_program_names_the_profile_the_key_and_the_resolved_path(tmp_path: Path) -> None:
    proj = project(tmp_path, '["main.c", "../nowhere/gone.c"]')
    with pytest.raises(TinyukiError) as info:
        load_profile(str(proj / "tinyuki.toml"), proj)
    err = info.value
    assert "tinyuki.toml" in err.message and "[init] sources[1]" in err.message
    assert str(tmp_path / "work" / "nowhere" / "gone.c") in err.message
    assert err.hint and "profile's directory" in err.hint and str(proj) in err.hint


def test_the_projects_own_profile_is_the_default_and_its_builds_stay_in_the_project(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proj = project(tmp_path, '["main.c"]')
    monkeypatch.delenv("TINYUKI_PROFILE", raising=False)
    monkeypatch.delenv("TINYUKI_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    ctx = make_context(root=proj)
    assert ctx.profile.path == proj / "tinyuki.toml" and ctx.profile.name == "tinyuki"
    assert ctx.paths.build == proj / "build" / "tinyuki"
    assert ctx.paths.cache == tmp_path / "xdg" / "tinyuki"  # one cache for all of the user's projects
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert make_context(root=proj).paths.cache == tmp_path / "home" / ".cache" / "tinyuki"


def test_shipped_keys_by_name_and_an_unknown_name_lists_them(tmp_path: Path) -> None:
    text = SOURCE.replace("[kernel]", 'signature = "https://example.org/linux.tar.sign"\n'
                          'signers = ["647F28654894E3BD457199BE38DBBDC86092693E"]\nkeyrings = ["gregkh"]\n\n[kernel]')
    proj = project(tmp_path, '["main.c"]')
    (proj / "tinyuki.toml").write_text(text)
    p = load_profile(str(proj / "tinyuki.toml"), proj)
    assert p.source.keyrings == (DATA / "configs" / "keys" / "gregkh.asc",)
    (proj / "tinyuki.toml").write_text(text.replace('["gregkh"]', '["gkh"]'))
    with pytest.raises(TinyukiError) as info:
        load_profile(str(proj / "tinyuki.toml"), proj)
    assert "no shipped key named 'gkh'" in info.value.message and "gregkh" in (info.value.hint or "")


def test_a_moved_copy_of_a_profile_names_the_same_files(tmp_path: Path) -> None:
    proj = project(tmp_path, '["main.c", "../common/lib.c"]')
    moved = tmp_path / "elsewhere" / "copy.toml"
    moved.parent.mkdir()
    moved.write_text(moved_profile_text((proj / "tinyuki.toml").read_text(), proj))
    original = load_profile(str(proj / "tinyuki.toml"), proj)
    assert load_profile(str(moved), tmp_path).init.sources == original.init.sources
    assert '"base"' in moved.read_text()  # names are left alone


def test_the_manifest_names_inputs_by_project_as_written_or_as_tinyukis_own(tmp_path: Path) -> None:
    proj = project(tmp_path, '["main.c", "../common/lib.c"]')
    p = load_profile(str(proj / "tinyuki.toml"), proj)
    stub = tmp_path / "stub.efi"
    stub.write_bytes(b"MZ")
    art = tmp_path / "build" / "tinyuki.efi"
    art.parent.mkdir()
    art.write_bytes(b"uki")
    m = manifest.build_manifest(
        artifacts={"uki": art}, build_dir=art.parent, root=proj, source={}, patches=[],
        fragments=list(p.kernel.fragments), init_sources=list(p.init.sources), profile_name=p.name,
        profile_path=p.path, tools={}, stub=stub, source_date_epoch=1, given=p.given)
    assert [i["path"] for i in m["inputs"]["init_sources"]] == ["main.c", "../common/lib.c"]
    assert m["inputs"]["profile"]["path"] == "tinyuki.toml"
    expected = "configs/fragments/base.config" if proj == DATA else "tinyuki:configs/fragments/base.config"
    assert m["inputs"]["fragments"][0]["path"] == expected
