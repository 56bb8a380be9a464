"""Fragment parsing and the check that every requested option survived Kconfig."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinyuki.errors import TinyukiError
from tinyuki.formats import kconfig

ROOT = Path(__file__).resolve().parents[2]
FRAGMENTS = ROOT / "configs" / "fragments"


def test_parse_fragment_keeps_values_and_lines() -> None:
    text = '# comment\n\nCONFIG_PCI=y\n# CONFIG_MODULES is not set\nCONFIG_CMDLINE="a b"\n  CONFIG_NR_CPUS=4\n'
    reqs = kconfig.parse_fragment(text, "f.config")
    assert [(r.symbol, r.value, r.line) for r in reqs] == [
        ("CONFIG_PCI", "y", 3), ("CONFIG_MODULES", "n", 4), ("CONFIG_CMDLINE", '"a b"', 5),
        ("CONFIG_NR_CPUS", "4", 6),
    ]
    assert reqs[0].where == "f.config:3"


@pytest.mark.parametrize("line", ["CONFIG_PCI y", "PCI=y", "CONFIG_PCI=", "config PCI"])
def test_parse_fragment_rejects_lines_kconfig_would_ignore(line: str) -> None:
    with pytest.raises(TinyukiError) as e:
        kconfig.parse_fragment(f"CONFIG_A=y\n{line}\n", "x.config")
    assert "x.config:2" in e.value.message


def test_initramfs_source_belongs_to_embed() -> None:
    with pytest.raises(TinyukiError) as e:
        kconfig.parse_fragment('CONFIG_INITRAMFS_SOURCE="/x.cpio"\n', "f.config")
    assert "embed" in e.value.message and "f.config:1" in e.value.message


def test_later_fragment_overrides_earlier() -> None:
    a = kconfig.parse_fragment("CONFIG_A=y\nCONFIG_B=y\n", "a")
    b = kconfig.parse_fragment("# CONFIG_A is not set\n", "b")
    merged = kconfig.merge_requests([a, b])
    assert merged["CONFIG_A"].value == "n" and merged["CONFIG_A"].file == "b"
    assert merged["CONFIG_B"].file == "a"


def test_parse_config() -> None:
    cfg = kconfig.parse_config('CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_S=""\n# a comment\n')
    assert cfg == {"CONFIG_A": "y", "CONFIG_B": "n", "CONFIG_S": '""'}


def test_check_finds_dropped_and_changed_options() -> None:
    reqs = kconfig.merge_requests([kconfig.parse_fragment(
        "CONFIG_PCI=y\nCONFIG_ATA_PIIX=y\nCONFIG_NR=4\n# CONFIG_X is not set\n# CONFIG_HIDDEN is not set\n"
        "# CONFIG_ON is not set\n", "frag.config")])
    config = kconfig.parse_config("CONFIG_PCI=y\nCONFIG_NR=8\n# CONFIG_X is not set\nCONFIG_ON=y\n")
    bad = {m.request.symbol: m.actual for m in kconfig.check(reqs, config)}
    # HIDDEN is absent, which Kconfig means as off: that holds.
    assert bad == {"CONFIG_ATA_PIIX": None, "CONFIG_NR": "8", "CONFIG_ON": "y"}


def test_render_names_option_request_location_and_outcome() -> None:
    r = kconfig.Request("CONFIG_ATA_PIIX", "y", "configs/fragments/block.config", 12)
    text = kconfig.render([kconfig.Mismatch(r, None, ("depends on PCI (drivers/ata/Kconfig)",)),
                           kconfig.Mismatch(kconfig.Request("CONFIG_ON", "n", "f", 1), "y")])
    assert "CONFIG_ATA_PIIX: asked =y at configs/fragments/block.config:12, became absent" in text
    assert "depends on PCI (drivers/ata/Kconfig)" in text
    assert "CONFIG_ON: asked is not set at f:1, became =y" in text
    assert text.startswith("2 requested")


def test_set_option_replaces_every_form_and_appends() -> None:
    text = '# CONFIG_A is not set\nCONFIG_INITRAMFS_SOURCE="/old.cpio"\nCONFIG_B=y\n'
    out = kconfig.set_option(text, "CONFIG_INITRAMFS_SOURCE", kconfig.quote("/new.cpio"))
    assert out == '# CONFIG_A is not set\nCONFIG_INITRAMFS_SOURCE="/new.cpio"\nCONFIG_B=y\n'
    assert kconfig.set_option(out, "CONFIG_A", "y").splitlines()[0] == "CONFIG_A=y"
    assert kconfig.set_option("CONFIG_B=y\n", "CONFIG_C", '""') == 'CONFIG_B=y\nCONFIG_C=""\n'


def test_quote_escapes() -> None:
    assert kconfig.quote('a"b\\c') == '"a\\"b\\\\c"'


KCONFIG = """\
menuconfig VIRTIO_MENU
\tbool "Virtio drivers"
\thelp
\t  if you enable this, you get
\t  depends on nothing: this is help text

if VIRTIO_MENU

config VIRTIO_PCI
\tbool "PCI driver for virtio devices"
\tdepends on PCI
\tselect VIRTIO
\thelp
\t  depends on words in help are ignored

endif

config OTHER
\tdepends on VIRTIO_PCI
"""


def test_kconfig_depends_reads_depends_and_enclosing_ifs_not_help() -> None:
    assert kconfig.kconfig_depends(KCONFIG, "CONFIG_VIRTIO_PCI") == ["inside `if VIRTIO_MENU`", "depends on PCI"]
    assert kconfig.kconfig_depends(KCONFIG, "VIRTIO_MENU") == []
    assert kconfig.kconfig_depends(KCONFIG, "OTHER") == ["depends on VIRTIO_PCI"]


def test_tree_depends_skips_other_architectures(tmp_path: Path) -> None:
    (tmp_path / "drivers").mkdir()
    (tmp_path / "drivers" / "Kconfig").write_text(KCONFIG)
    (tmp_path / "arch" / "arm64").mkdir(parents=True)
    (tmp_path / "arch" / "arm64" / "Kconfig").write_text("config VIRTIO_PCI\n\tdepends on ARM\n")
    hints = kconfig.tree_depends(tmp_path, ["CONFIG_VIRTIO_PCI", "CONFIG_NOPE"])
    assert hints == {"CONFIG_VIRTIO_PCI": ["inside `if VIRTIO_MENU` (drivers/Kconfig)",
                                           "depends on PCI (drivers/Kconfig)"]}


def test_shipped_fragments_parse_and_cover_the_required_set() -> None:
    """The default profile's fragments ask for what a tinyuki kernel needs, each with its bus dependencies.

    (Other shipped fragments, such as the fast-boot and small profiles' no-* levers, turn options off.)
    """
    default = ("base", "initramfs", "console", "block", "efi", "size")
    reqs = kconfig.merge_requests(kconfig.read_fragment(FRAGMENTS / f"{n}.config") for n in default)
    wanted = {"64BIT", "BLK_DEV_INITRD", "PRINTK", "PRINTK_TIME", "TTY", "SERIAL_8250", "SERIAL_8250_CONSOLE",
              "DEVTMPFS", "BINFMT_ELF", "PROC_FS", "SYSFS", "BLOCK", "PCI", "VIRTIO_MENU", "VIRTIO_PCI",
              "VIRTIO_BLK", "ATA", "ATA_PIIX", "ACPI", "EFI", "EFI_STUB", "CC_OPTIMIZE_FOR_SIZE"}
    assert {f"CONFIG_{w}" for w in wanted} <= set(reqs)
    assert all(r.value == "y" for r in reqs.values())
    for p in FRAGMENTS.glob("*.config"):
        assert p.read_text().startswith("# "), f"{p.name} should open with a comment saying what it is for"
