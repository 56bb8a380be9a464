"""Profiles: the shipped ones load, and every kind of bad input gets one clear error."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tinyuki.config.context import make_context
from tinyuki.config.profile import FIELDS, load_profile, parse_profile, reference_table
from tinyuki.errors import TinyukiError

ROOT = Path(__file__).resolve().parents[2]
GOOD = """
[source]
urls = ["https://example.org/linux-6.1.183.tar.xz"]
sha256 = "362d07fe4938c415ce651aefee063a5c4151109b39c97be039bbaa8312ffc0e2"

[kernel]
fragments = ["base"]
"""


def with_source(*lines: str) -> str:
    """GOOD with more [source] settings, one a line."""
    return GOOD.replace("[kernel]", "".join(line + "\n" for line in lines) + "\n[kernel]")


def signed(signers: str, keyring: str, signature: str = "https://example.org/x.tar.sign") -> str:
    """GOOD with a detached signature to check: by `signers`, with the public keys in `keyring`."""
    return with_source(f'signature = "{signature}"', f'signers = ["{signers}"]', f'keyrings = ["{keyring}"]')


def parse(text: str, tmp_path: Path) -> object:
    path = tmp_path / "p.toml"
    path.write_text(text)
    return load_profile(str(path), ROOT)


def error(text: str, tmp_path: Path) -> TinyukiError:
    with pytest.raises(TinyukiError) as info:
        parse(text, tmp_path)
    return info.value


@pytest.mark.parametrize("name", ["debian", "kernel.org"])
def test_shipped_profiles_load(name: str) -> None:
    p = load_profile(name, ROOT)
    assert p.name == name
    assert p.kernel.fragments and all(f.is_file() for f in p.kernel.fragments)
    assert "console=ttyS0" in p.kernel.cmdline


def test_kernel_org_profile_pins_source_and_signer() -> None:
    p = load_profile("kernel.org", ROOT)
    assert p.source.sha256 == "362d07fe4938c415ce651aefee063a5c4151109b39c97be039bbaa8312ffc0e2"
    assert p.source.signers == ("647F28654894E3BD457199BE38DBBDC86092693E",)
    assert p.source.signature and p.source.signature.endswith("linux-6.1.183.tar.sign")
    assert p.source.filename == "linux-6.1.183.tar.xz"


def test_debian_profile_trusts_dpkg_and_pins_nothing_in_git() -> None:
    p = load_profile("debian", ROOT)
    assert p.source.package == "linux-source-6.1"
    assert p.source.sha256 is None


def test_defaults_fill_in(tmp_path: Path) -> None:
    p = parse(GOOD, tmp_path)
    assert p.init.sources == (ROOT / "init" / "init.c",)
    assert p.init.libc == "nolibc"
    assert p.boot.accel == "auto"
    assert dict(p.uki.os_release)["ID"] == "tinyuki"
    assert p.kernel.fragments == (ROOT / "configs" / "fragments" / "base.config",)


def test_profile_by_path_and_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(TinyukiError) as info:
        load_profile("nosuch", ROOT)
    assert "no profile named 'nosuch'" in info.value.message
    assert "debian" in (info.value.hint or "")


def test_unknown_top_level_key(tmp_path: Path) -> None:
    e = error(GOOD + "\n[sorce]\nurls = []\n", tmp_path)
    assert "unknown key 'sorce'" in e.message and "did you mean 'source'" in e.message
    assert "p.toml" in e.message


def test_unknown_key_in_section(tmp_path: Path) -> None:
    e = error(GOOD.replace("sha256 =", "sha265 ="), tmp_path)
    assert "unknown key [source] sha265" in e.message
    assert "did you mean 'sha256'" in e.message
    assert "sha256" in (e.hint or "")


def test_wrong_type(tmp_path: Path) -> None:
    e = error(GOOD + '\n[boot]\ntimeout = "soon"\n', tmp_path)
    assert "[boot] timeout must be an integer, not a string" in e.message
    assert e.hint


def test_wrong_type_in_list(tmp_path: Path) -> None:
    e = error(GOOD.replace('fragments = ["base"]', 'fragments = ["base", 3]'), tmp_path)
    assert "[kernel] fragments[1] must be a string" in e.message


def test_bad_choice(tmp_path: Path) -> None:
    e = error(GOOD + '\n[init]\nlibc = "uclibc"\n', tmp_path)
    assert "[init] libc is 'uclibc'" in e.message and "nolibc" in e.message


def test_missing_required(tmp_path: Path) -> None:
    e = error(GOOD.replace('fragments = ["base"]', ""), tmp_path)
    assert "[kernel] fragments is required" in e.message


def test_missing_fragment_file(tmp_path: Path) -> None:
    e = error(GOOD.replace('"base"', '"nosuchfragment"'), tmp_path)
    assert "fragment 'nosuchfragment' not found" in e.message
    assert "base" in (e.hint or "")


def test_missing_keyring_file(tmp_path: Path) -> None:
    text = signed("647F28654894E3BD457199BE38DBBDC86092693E", "configs/keys/nobody.asc",
                  signature="https://example.org/linux-6.1.183.tar.sign")
    e = error(text, tmp_path)
    assert "[source] keyrings[0]" in e.message and "nobody.asc does not exist" in e.message


def test_missing_init_source(tmp_path: Path) -> None:
    e = error(GOOD + '\n[init]\nsources = ["init/missing.c"]\n', tmp_path)
    assert "[init] sources[0]" in e.message and "does not exist" in e.message


def test_malformed_sha256(tmp_path: Path) -> None:
    e = error(GOOD.replace("362d07fe", "zz2d07fe"), tmp_path)
    assert "[source] sha256" in e.message and "is not a sha256" in e.message
    assert "doit pin" in (e.hint or "")


def test_short_sha256(tmp_path: Path) -> None:
    e = error(GOOD.replace("362d07fe4938c415ce651aefee063a5c4151109b39c97be039bbaa8312ffc0e2", "362d07fe"), tmp_path)
    assert "is not a sha256 (64 hex digits)" in e.message


@pytest.mark.parametrize("fpr", ["38DBBDC86092693E", "647F28654894E3BD457199BE38DBBDC86092693X", "0x6092693E"])
def test_malformed_fingerprint(tmp_path: Path, fpr: str) -> None:
    e = error(signed(fpr, "gregkh"), tmp_path)
    assert "[source] signers[0]" in e.message and "is not an OpenPGP fingerprint" in e.message
    assert "long key ids are not accepted" in (e.hint or "")


def test_fingerprint_with_spaces_is_normalised(tmp_path: Path) -> None:
    text = signed("647f 2865 4894 e3bd 4571  99be 38db bdc8 6092 693e", "gregkh")
    assert parse(text, tmp_path).source.signers == ("647F28654894E3BD457199BE38DBBDC86092693E",)


def test_signature_needs_signers(tmp_path: Path) -> None:
    text = with_source('signature = "https://example.org/x.tar.sign"')
    e = error(text, tmp_path)
    assert "signature is set but signers is empty" in e.message


def test_source_needs_an_anchor_of_trust(tmp_path: Path) -> None:
    e = error(GOOD.replace('sha256 = "362d07fe4938c415ce651aefee063a5c4151109b39c97be039bbaa8312ffc0e2"', ""),
              tmp_path)
    assert "no anchor of trust" in e.message


def test_bad_url_scheme(tmp_path: Path) -> None:
    e = error(GOOD.replace("https://example.org", "ftp://example.org"), tmp_path)
    assert "unsupported scheme 'ftp'" in e.message


def test_invalid_toml(tmp_path: Path) -> None:
    e = error("[source\nurls = 3", tmp_path)
    assert "not valid TOML" in e.message and "line" in e.message


def test_section_must_be_table(tmp_path: Path) -> None:
    e = error('boot = "fast"\n' + GOOD, tmp_path)
    assert "boot must be a table" in e.message


def test_os_release_field_names(tmp_path: Path) -> None:
    e = error(GOOD + '\n[uki.os_release]\nid = "x"\n', tmp_path)
    assert "not an os-release field name" in e.message


def test_extra_file_must_not_replace_init(tmp_path: Path) -> None:
    e = error(GOOD + '\n[init]\nfiles = { "/init" = "init/init.c" }\n', tmp_path)
    assert "must be an absolute path inside the image, not /init" in e.message


def test_settings_are_plain_data(tmp_path: Path) -> None:
    p = parse(GOOD, tmp_path)
    assert p.stage_settings("configure")["[kernel] fragments"] == [str(ROOT / "configs" / "fragments" / "base.config")]
    assert p.stage_settings("kernel")["[kernel] source_date_epoch"] == 1700000000


def test_readme_settings_table_is_the_generated_one() -> None:
    """The README's table of settings is FIELDS, row for row, with the stages each setting reaches."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- settings:start")
    start = readme.index("\n", start) + 1
    table = readme[start:readme.index("<!-- settings:end -->")].strip()
    assert table == reference_table(), "regenerate the README's settings table from tinyuki.config.profile"
    for f in FIELDS:
        assert f"| `{f.key}` |" in table


def test_readme_example_profile_is_valid(tmp_path: Path) -> None:
    """The commented example in the README must itself be a valid profile."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("```toml\n") + len("```toml\n")
    example = readme[start: readme.index("```", start)]
    data = tomllib.loads(example)
    parse_profile(data, ROOT / "example.toml", ROOT)  # as a project's tinyuki.toml: paths from its directory


def test_context_defaults_and_overrides(tmp_path: Path) -> None:
    ctx = make_context("debian")
    assert ctx.paths.build == ROOT / "build" / "debian"
    assert ctx.paths.cache == ROOT / "cache"
    ctx = make_context("debian", str(tmp_path / "b"), str(tmp_path / "c"), "3")
    assert ctx.paths.build == tmp_path / "b" and ctx.paths.cache == tmp_path / "c" and ctx.jobs == 3
    with pytest.raises(TinyukiError, match="jobs='x' is not a positive number"):
        make_context("debian", jobs="x")


@pytest.mark.parametrize("key", ["timeout", "retries"])
def test_zero_timeout_or_retries_is_refused(tmp_path: Path, key: str) -> None:
    e = error(with_source(f"{key} = 0"), tmp_path)
    assert f"[source] {key} must be at least 1" in e.message


def test_negative_number_is_refused(tmp_path: Path) -> None:
    e = error(GOOD.replace("[kernel]", "[kernel]\nsource_date_epoch = -5"), tmp_path)
    assert "[kernel] source_date_epoch must be at least 0" in e.message
