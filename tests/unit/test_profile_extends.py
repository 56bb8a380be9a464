"""`extends`: a profile that starts from another one (the 6.12 profiles start from the 6.1 ones)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tinyuki.config.profile import load_profile
from tinyuki.errors import TinyukiError

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PARENT = """
description = "parent"
[source]
urls = ["https://example.org/linux-6.1.183.tar.xz"]
sha256 = "362d07fe4938c415ce651aefee063a5c4151109b39c97be039bbaa8312ffc0e2"

[kernel]
fragments = ["base", "console"]
cmdline = "console=ttyS0 quiet"

[init]
sources = ["src/init.c"]
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_child_takes_every_setting_it_does_not_give_and_paths_stay_the_parents(tmp_path: Path) -> None:
    parent = write(tmp_path / "shared" / "base.toml", PARENT)
    write(tmp_path / "shared" / "src" / "init.c", "int main(void) { return 0; }\n")
    child = write(tmp_path / "mine" / "child.toml",
                  'extends = "../shared/base.toml"\n[kernel]\ncmdline = "console=ttyS0"\n')
    p = load_profile(str(child), ROOT)
    assert p.name == "child" and p.extends == (parent,)
    assert p.kernel.cmdline == "console=ttyS0"  # the child's
    assert [f.name for f in p.kernel.fragments] == ["base.config", "console.config"]  # the parent's
    assert p.init.sources == (tmp_path / "shared" / "src" / "init.c",)  # from the parent's own directory
    assert p.source.sha256 == "362d07fe4938c415ce651aefee063a5c4151109b39c97be039bbaa8312ffc0e2"
    assert p.description == "parent"


def test_a_childs_source_replaces_the_parents_whole(tmp_path: Path) -> None:
    """The parent's sha256 pins the parent's tarball: with the child's urls it would pin the wrong file."""
    write(tmp_path / "base.toml", PARENT)
    write(tmp_path / "src" / "init.c", "int main(void) { return 0; }\n")
    child = write(tmp_path / "child.toml", 'extends = "base.toml"\n[source]\n'
                  'urls = ["/usr/src/linux-source-6.12.tar.xz"]\npackage = "linux-source-6.12"\n')
    p = load_profile(str(child), ROOT)
    assert p.source.urls == ("/usr/src/linux-source-6.12.tar.xz",)
    assert p.source.sha256 is None and p.source.package == "linux-source-6.12"


def test_the_shipped_6_12_profiles_are_their_6_1_shapes_on_another_source() -> None:
    for shape in ("debian", "fast-boot", "small", "arm64"):
        old, new = load_profile(shape, ROOT), load_profile(f"{shape}-6.12", ROOT)
        assert new.source.package == "linux-source-6.12" and new.source.urls == ("/usr/src/linux-source-6.12.tar.xz",)
        assert old.source.package == "linux-source-6.1"
        same = ("kernel", "init", "uki", "boot", "disk", "sign")
        assert {s: getattr(new, s) for s in same} == {s: getattr(old, s) for s in same}, shape
        assert new.extends == (old.path,)
        assert dataclasses.replace(new.source, urls=old.source.urls, package=old.source.package) == old.source


@pytest.mark.parametrize(("files", "words"), [
    ({"a.toml": 'extends = "b.toml"\n', "b.toml": 'extends = "a.toml"\n'}, ["cycle", "a.toml -> ", "b.toml -> "]),
    ({"a.toml": 'extends = "nope.toml"\n'}, ["extends 'nope.toml': no such profile"]),
    ({"a.toml": 'extends = "nosuchshipped"\n'}, ["no such profile", "debian"]),
    ({"a.toml": 'extends = 3\n'}, ["extends must be a profile's name or path"]),
    ({"a.toml": 'extends = "b.toml"\n', "b.toml": PARENT + "\n[kernel.x]\n"}, ["b.toml", "unknown key"]),
])
def test_a_bad_extends_is_one_clear_error(tmp_path: Path, files: dict[str, str], words: list[str]) -> None:
    for name, text in files.items():
        write(tmp_path / name, text)
    with pytest.raises(TinyukiError) as e:
        load_profile(str(tmp_path / "a.toml"), ROOT)
    for w in words:
        assert w in e.value.message + e.value.hint, e.value.message
