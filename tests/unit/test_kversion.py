"""Kernel versions: the tree's Makefile, and the version conditions fragments put on options."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinyuki.errors import TinyukiError
from tinyuki.formats import kconfig, kversion
from tinyuki.formats.kversion import KernelVersion

pytestmark = pytest.mark.unit

MAKEFILE_6_12 = "# SPDX-License-Identifier: GPL-2.0\nVERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 118\nEXTRAVERSION =\n" \
                "NAME = Baby Opossum Posse\n"


def test_makefile_version_is_what_kbuild_declares() -> None:
    v = kversion.parse_makefile(MAKEFILE_6_12)
    assert v == KernelVersion(6, 12, 118) and str(v) == "6.12.118"
    rc = kversion.parse_makefile("VERSION = 6\nPATCHLEVEL = 13\nSUBLEVEL = 0\nEXTRAVERSION = -rc3\n")
    assert str(rc) == "6.13.0-rc3" and rc is not None and rc.numbers() == (6, 13, 0)
    assert kversion.parse_makefile("all:\n\techo\n") is None


def test_tree_version_reads_the_tree_and_tolerates_no_makefile(tmp_path: Path) -> None:
    assert kversion.tree_version(tmp_path) is None
    (tmp_path / "Makefile").write_text(MAKEFILE_6_12)
    assert kversion.tree_version(tmp_path) == KernelVersion(6, 12, 118)


@pytest.mark.parametrize(("condition", "version", "holds"), [
    ("linux >= 6.4", (6, 1, 192), False),
    ("linux >= 6.4", (6, 4, 0), True),
    ("linux >= 6.4", (6, 12, 118), True),
    ("linux < 6.4", (6, 3, 13), True),  # compared as far as written: every 6.3.x is below 6.4
    ("linux < 6.4", (6, 4, 1), False),
    ("linux >= 6.2, < 6.4", (6, 2, 0), True),
    ("linux >= 6.2, < 6.4", (6, 12, 0), False),
    ("linux < 6.12.50", (6, 12, 49), True),
    ("linux < 6.12.50", (6, 12, 50), False),
    ("linux >= 7", (6, 99, 0), False),
])
def test_conditions_compare_as_far_as_written(condition: str, version: tuple[int, int, int], holds: bool) -> None:
    c = kversion.parse_condition(f"# tinyuki: {condition}", "f:1")
    assert c.holds(KernelVersion(*version)) is holds


@pytest.mark.parametrize("line", ["# tinyuki: linux > 6.4", "# tinyuki: linux >= six", "# tinyuki: kernel >= 6.4",
                                  "# tinyuki: linux >= 6.4,", "# tinyuki: linux 6.4"])
def test_a_condition_that_cannot_be_read_is_an_error_never_a_comment(line: str) -> None:
    with pytest.raises(TinyukiError) as e:
        kconfig.parse_fragment(f"CONFIG_A=y\n{line}\nCONFIG_B=y\n", "x.config")
    assert "x.config:2" in e.value.message and "linux >= 6.4" in e.value.hint


def test_a_condition_governs_the_next_option_only() -> None:
    text = "# tinyuki: linux < 6.4\n# the slab allocator of tiny kernels, gone in 6.4\nCONFIG_SLOB=y\nCONFIG_PCI=y\n"
    reqs = kconfig.parse_fragment(text, "size.config")
    assert [(r.symbol, r.line, r.condition.text if r.condition else None) for r in reqs] == [
        ("CONFIG_SLOB", 3, "linux < 6.4"), ("CONFIG_PCI", 4, None)]
    assert reqs[0].to_json()["condition"] == "linux < 6.4" and "condition" not in reqs[1].to_json()
    old = kconfig.for_kernel(reqs, KernelVersion(6, 1, 192), "size.config")
    new = kconfig.for_kernel(reqs, KernelVersion(6, 12, 118), "size.config")
    assert [r.symbol for r in old] == ["CONFIG_SLOB", "CONFIG_PCI"] and [r.symbol for r in new] == ["CONFIG_PCI"]


@pytest.mark.parametrize("text", ["CONFIG_A=y\n# tinyuki: linux >= 6.4\n",
                                  "# tinyuki: linux >= 6.4\n# tinyuki: linux < 7\nCONFIG_A=y\n"])
def test_a_condition_without_its_own_option_is_an_error(text: str) -> None:
    with pytest.raises(TinyukiError) as e:
        kconfig.parse_fragment(text, "x.config")
    assert "x.config:" in e.value.message


def test_a_condition_needs_a_tree_that_declares_its_version() -> None:
    reqs = kconfig.parse_fragment("# tinyuki: linux >= 6.4\nCONFIG_A=y\n", "x.config")
    with pytest.raises(TinyukiError) as e:
        kconfig.for_kernel(reqs, None, "x.config")
    assert "CONFIG_A" in e.value.message and "no VERSION" in e.value.message
    plain = kconfig.parse_fragment("CONFIG_A=y\n", "x.config")
    assert kconfig.for_kernel(plain, None, "x.config") == plain


def test_lines_left_out_keep_the_others_where_they_were() -> None:
    text = "# tinyuki: linux < 6.4\nCONFIG_SLOB=y\n# tinyuki: linux >= 6.2\nCONFIG_SLUB_TINY=y\nCONFIG_PCI=y"
    out = kconfig.without_lines(text, {2})
    assert out.splitlines() == ["", "", "", "CONFIG_SLUB_TINY=y", "CONFIG_PCI=y"]
    # read back, the copy asks for what was kept, at the same lines, with no condition left to misapply
    assert [(r.symbol, r.line, r.condition) for r in kconfig.parse_fragment(out, "f")] == [
        ("CONFIG_SLUB_TINY", 4, None), ("CONFIG_PCI", 5, None)]


def test_an_option_the_kernel_lacks_is_named_with_the_kernel() -> None:
    r = kconfig.Request("CONFIG_SLOB", "y", "configs/fragments/size.config", 5)
    text = kconfig.render([kconfig.Mismatch(r, None, (), unknown=True)], "Linux 6.12.118 for x86_64")
    assert "of Linux 6.12.118 for x86_64" in text
    assert "CONFIG_SLOB: asked =y at configs/fragments/size.config:5, but Linux 6.12.118 for x86_64 has no such" \
           " option" in text
