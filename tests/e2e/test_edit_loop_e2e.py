"""The edit loop: [kernel] initramfs = "initrd" boots the same program on the same kernel as the embedded default.

A second build dir takes the default shape's profile (tests/e2e/conftest.py's `build`) with the program as an
external initrd (a copy of it, which the second test edits), on the same cache: its kernel stage is the shared
build's, restored, and embed links it once without the program. The program's own lines must be the same in
both modes, directly and as a UKI; then an edit of the program rebuilds init and the initramfs and boots it,
and never runs embed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, TARBALL, doit
from tests.helpers.doit import cache_outcomes, ran
from tinyuki.util.fs import read_json, sha256_file

MARKER = "tinyuki: init started"
# what the program prints (tinyuki's own lines start "boot:", the kernel's "[ "), but its uptime, which varies
PROGRAM_LINE = re.compile(r"^(tinyuki|init): (?!kernel uptime)")

pytestmark = pytest.mark.skipif(
    not TARBALL.exists(), reason=f"{TARBALL} missing: scripts/setup.sh installs linux-source-6.1"
)


def program_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if PROGRAM_LINE.match(line)]


@pytest.fixture(scope="module")
def loop(build: dict[str, Path]) -> dict[str, Path]:
    """The shared build's profile with [kernel] initramfs = "initrd" and a copy of its program, in a build dir
    of its own on the shared cache."""
    top = build["top"] / "loop"
    top.mkdir()
    source = top / "init.c"
    source.write_text((ROOT / "init" / "init.c").read_text())
    text = build["profile"].read_text().replace("[kernel]\n", '[kernel]\ninitramfs = "initrd"\n', 1)
    assert f'"{ROOT}/init/init.c"' in text
    profile = top / "mirror.toml"  # the same file name: the same profile name
    profile.write_text(text.replace(f'"{ROOT}/init/init.c"', f'"{source}"'))
    return {"profile": profile, "build": top / "build", "cache": build["cache"], "top": top, "source": source}


def test_the_initrd_loop_boots_the_same_program_on_the_same_kernel(build: dict[str, Path],
                                                                   loop: dict[str, Path]) -> None:
    out = doit(loop, [])
    assert cache_outcomes(out, ["kernel"])["kernel"] == "restored"  # the shared build's kernel, from the cache
    manifest = read_json(loop["build"] / "manifest.json")
    embedded = read_json(build["build"] / "manifest.json")
    assert manifest["artifacts"]["initrd"]["sha256"] == embedded["artifacts"]["initrd"]["sha256"]
    # the kernel without the program differs from the one with it; the program is the same initrd
    assert manifest["artifacts"]["bzImage"]["sha256"] != embedded["artifacts"]["bzImage"]["sha256"]

    direct = doit(loop, ["boot", "accel=tcg"])
    assert "bzImage + initrd.img" in direct
    same = program_lines(doit(build, ["boot", "accel=tcg"]))
    assert MARKER in same and program_lines(direct) == same
    # the UKI's .initrd section, through the stub, against the embedded UKI (both see their ESP as a disk)
    through_stub = program_lines(doit(loop, ["boot", "uki=1", "accel=tcg"]))
    assert MARKER in through_stub and through_stub == program_lines(doit(build, ["boot", "uki=1", "accel=tcg"]))


def test_an_edit_in_the_loop_boots_without_touching_the_kernel(loop: dict[str, Path]) -> None:
    source = loop["source"]
    doit(loop, [])  # up to date after the test above (built here when this test runs alone)
    kernel = sha256_file(loop["build"] / "bzImage")

    source.write_text(source.read_text().replace("powering off", "powering off after an edit"))
    out = doit(loop, ["boot", "accel=tcg"])  # `doit boot` rebuilds what the edit changed, then boots
    assert "powering off after an edit" in out
    assert {"init", "initramfs"} <= set(ran(out)) and "embed" not in ran(out) and "kernel" not in ran(out)
    assert sha256_file(loop["build"] / "bzImage") == kernel
