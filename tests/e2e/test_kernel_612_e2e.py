"""Linux 6.12 (Debian's linux-source-6.12) on the real tarball: what the fake tree cannot show.

configure's proof against a kernel that dropped an option the fragments ask for: one clear error naming
the option, the fragment and the kernel's version, after the real tinyconfig, merge and olddefconfig.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import doit
from tinyuki.config.profile import load_profile

ROOT = Path(__file__).resolve().parents[2]
TARBALL_612 = Path("/usr/src/linux-source-6.12.tar.xz")

pytestmark = pytest.mark.skipif(not TARBALL_612.exists(), reason=f"{TARBALL_612} missing: scripts/setup.sh installs it")


def test_an_option_6_12_no_longer_has_is_one_clear_error(tmp_path: Path, arm64_cache: Path) -> None:
    fragment = tmp_path / "allocator.config"
    fragment.write_text("# the slab allocator of tiny kernels before 6.4\nCONFIG_SLOB=y\n")
    shipped = [str(f) for f in load_profile("debian-6.12", ROOT).kernel.fragments]
    profile = tmp_path / "slob.toml"
    profile.write_text('extends = "debian-6.12"\n[kernel]\nfragments = [' +
                       ", ".join(f'"{f}"' for f in [*shipped, str(fragment)]) + "]\n")
    paths = {"profile": profile, "build": tmp_path / "build", "cache": arm64_cache}
    out = doit(paths, ["configure"], check=False)
    assert "Traceback" not in out
    assert f"CONFIG_SLOB: asked =y at {fragment}:2, but Linux 6.12." in out, out[-3000:]
    assert "for x86_64 has no such option (no Kconfig file of the tree defines it)" in out, out[-3000:]
    assert f"drop it from {fragment}, or keep it for the kernels that have it with `# tinyuki: linux < 6.12`" in out
    assert not (paths["build"] / "kernel.config").exists()
