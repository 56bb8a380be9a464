"""Fragments against kernels of other versions, on the fake kernel tree (its Makefile declares the version).

An option one kernel has and another lacks is one clear error naming the option, the fragment and the
kernel's version; a fragment that says which kernels an option is for (`# tinyuki: linux < 6.4`) gives
each kernel what it has.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.helpers import fakekernel
from tests.helpers.doit import environ, output, run_dodo, variables

pytestmark = [pytest.mark.wiring, fakekernel.NEEDS_MAKE_AND_MUSL]

SLOB = "# The slab allocator of tiny kernels, removed in 6.4.\nCONFIG_SLOB=y\n"
BOTH = "# tinyuki: linux < 6.4\n" + SLOB + "# Kernels since 6.4 get timestamps instead.\n# tinyuki: linux >= 6.4\n" \
       "CONFIG_PRINTK_TIME=y\n"


def project(tmp_path: Path, version: tuple[int, int, int], extra: str) -> dict[str, Path]:
    tar, sha = fakekernel.tarball(tmp_path, version=version)
    program = tmp_path / "init.c"
    shutil.copy(ROOT / "init" / "init.c", program)
    profile = fakekernel.write_profile(tmp_path / "fake.toml", tar, sha, program)
    (tmp_path / "allocator.config").write_text(extra)
    text = profile.read_text().replace('"size"]', '"size", "allocator.config"]')
    assert text != profile.read_text()
    profile.write_text(text)
    return {"profile": profile, "build": tmp_path / "build", "cache": tmp_path / "cache"}


def configure(paths: dict[str, Path]) -> tuple[int, str]:
    proc = run_dodo("configure", *variables(profile=paths["profile"], build_dir=paths["build"],
                                            cache_dir=paths["cache"]),
                    env=environ("TINYUKI_*", TINYUKI_CCACHE="0"), timeout=300)
    return proc.returncode, output(proc)


def test_an_option_the_kernel_lacks_names_option_fragment_and_version(tmp_path: Path) -> None:
    rc, out = configure(project(tmp_path, (6, 12, 3), SLOB))
    fragment = tmp_path / "allocator.config"
    assert rc != 0
    assert f"CONFIG_SLOB: asked =y at {fragment}:2, but Linux 6.12.3 for x86_64 has no such option" in out, out
    assert f"drop it from {fragment}, or keep it for the kernels that have it with `# tinyuki: linux < 6.12`" \
        in out, out
    assert "Traceback" not in out


def test_a_version_condition_gives_each_kernel_its_own_options(tmp_path: Path) -> None:
    new = project(tmp_path / "new", (6, 12, 3), BOTH)
    rc, out = configure(new)
    assert rc == 0, out
    left_out = f"CONFIG_SLOB ({tmp_path / 'new' / 'allocator.config'}:3) is for linux < 6.4, not Linux 6.12.3: left out"
    assert left_out in out, out
    requested = {r["symbol"]: r for r in json.loads((new["build"] / "kernel.requested.json").read_text())}
    assert "CONFIG_SLOB" not in requested and requested["CONFIG_PRINTK_TIME"]["condition"] == "linux >= 6.4"
    assert "CONFIG_SLOB" not in (new["build"] / "kernel.config").read_text()
    # merge_config.sh was handed the fragment without the line, never the option 6.12 lacks
    merged = (new["build"] / "configure-fragments").glob("*allocator.config")
    assert [p.read_text().count("CONFIG_SLOB") for p in merged] == [0]

    # the same fragment on an older kernel asks for SLOB, which this fake tree (like 6.12) does not have
    old = project(tmp_path / "old", (6, 1, 0), BOTH)
    rc, out = configure(old)
    kept = f"CONFIG_SLOB: asked =y at {tmp_path / 'old' / 'allocator.config'}:3, but Linux 6.1.0 for x86_64 has no such"
    assert rc != 0 and kept in out, out
    assert "CONFIG_PRINTK_TIME" not in out.split("did not hold")[-1], out
