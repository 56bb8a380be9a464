"""Each stage reads only the settings its declaration says reach it.

A setting that a stage reads but whose row does not name that stage would be
missing from the stage's cache key, and the artifact cache would restore stale
output without a word. So every stage of the real pipeline runs here, on the
fake kernel tree, with a profile that records which settings are read, and the
reads are compared with the `reaches` column of the profile table.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.helpers import tarballs
from tinyuki import secureboot
from tinyuki.config.context import make_context
from tinyuki.config.profile import FIELDS, SECTIONS, Profile
from tinyuki.tasks import PIPELINE

FAKE = ROOT / "tests" / "fakekernel"
# Settings a stage reads that change how it works, never the bytes it writes (their rows reach no stage).
HOW_NOT_WHAT = {"fetch": {"[source] retries", "[source] timeout", "[source] deadline", "[source] max_size"},
                "sign": {"[sign] passphrase"}}
# Settings a stage reads only to pick which upstream output it uses: the bytes of that output reach its key
# (the disk stage takes the signed UKI when [sign] is on; the sign stage's output is in the disk's key).
VIA_UPSTREAM = {"disk": {"[sign] key"}}
# Properties computed from a setting count as reading that setting.
DERIVED = {"[source] filename": "[source] urls", "[sign] enabled": "[sign] key", "[sign] pkcs11": "[sign] key"}


class Section:
    def __init__(self, obj: Any, name: str, recorder: Recorder) -> None:
        self._obj, self._name, self._recorder = obj, name, recorder

    def __getattr__(self, key: str) -> Any:
        self._recorder.read(f"[{self._name}] {key}")
        return getattr(self._obj, key)


class Recorder:
    """Stands in for the Profile, noting every setting read while a stage builds."""

    def __init__(self, profile: Profile) -> None:
        self._profile = profile
        self.stage = ""
        self.reads: dict[str, set[str]] = {}

    def read(self, label: str) -> None:
        self.reads.setdefault(self.stage, set()).add(DERIVED.get(label, label))

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._profile, name)
        if name in SECTIONS:
            return Section(value, name, self)
        if name == "description":
            self.read("description")
        return value


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    files = {str(p.relative_to(FAKE)): p.read_bytes() for p in sorted(FAKE.rglob("*")) if p.is_file()}
    tar = tarballs.write(tmp_path / "linux-9.9.tar.xz", tarballs.tar_bytes("linux-9.9", files))
    init = tmp_path / "init.c"
    shutil.copy(ROOT / "init" / "init.c", init)
    extra = tmp_path / "motd"
    extra.write_text("hello\n")
    key, cert = secureboot.key_paths(tmp_path / "keys", "db")
    secureboot.make_keys(tmp_path / "keys")
    path = tmp_path / "reads.toml"
    path.write_text("\n".join([
        "[source]", f'urls = ["{tar}"]', f'sha256 = "{hashlib.sha256(tar.read_bytes()).hexdigest()}"', "",
        "[kernel]", 'fragments = ["base", "initramfs", "console", "block", "efi", "size"]', "",
        "[init]", f'sources = ["{init}"]', 'libc = "musl"', f'files = {{ "/etc/motd" = "{extra}" }}', "",
        "[sign]", f'key = "{key}"', f'cert = "{cert}"', "",
    ]))
    return path


def test_stages_read_only_the_settings_that_reach_them(tmp_path: Path, profile: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("musl-gcc") is None:
        pytest.fail("musl-gcc is missing: scripts/setup.sh installs musl-tools")
    monkeypatch.setenv("TINYUKI_CCACHE", "0")
    ctx = make_context(str(profile), str(tmp_path / "build"), str(tmp_path / "cache"), "2", root=ROOT)
    recorder = Recorder(ctx.profile)
    recording = dataclasses.replace(ctx, profile=recorder)  # type: ignore[arg-type]
    for stage in PIPELINE:
        recorder.stage = stage.name
        stage.build(recording)
    labels = {f.label for f in FIELDS}
    assert set().union(*recorder.reads.values()) <= labels
    for stage in PIPELINE:
        if ctx.profile.path in stage.input_files(ctx):
            continue  # the profile file itself is an input (the manifest records it): every setting reaches it
        declared = {f.label for f in FIELDS if stage.name in f.reaches}
        undeclared = (recorder.reads.get(stage.name, set()) - declared - HOW_NOT_WHAT.get(stage.name, set())
                      - VIA_UPSTREAM.get(stage.name, set()))
        assert not undeclared, (f"stage {stage.name} reads {sorted(undeclared)}, which its rows do not say reach it:"
                                " add the stage to their `reaches` in tinyuki/config/profile.py")
    # and the check can see a read: every stage that compiles reads the build's epoch (not embed here: the kernel
    # stage's link already carries the program, so embed runs no make)
    for name in ("configure", "kernel", "init", "initramfs"):
        assert "[kernel] source_date_epoch" in recorder.reads[name], name
