"""The pieces of the one-link build and the edit loop that need no kernel: the placeholder initramfs, the
check that kbuild's link already carries a cpio, the check of kbuild's syncconfig, the conditional needs
of a stage, and the benchmark's profile rewrite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.build import with_initrd
from tinyuki.errors import TinyukiError
from tinyuki.stage import Output, Pipeline, Stage
from tinyuki.tasks.embed import already_linked
from tinyuki.tasks.kernel import check_synced
from tinyuki.toolchain.kbuild import KBUILD_CPIO, placeholder_cpio, put_cpio


def newc_entries(data: bytes) -> list[tuple[str, int, int]]:
    """(name, mode, rdevmajor) of each entry of a newc archive, read by the format's own rules."""
    out, at = [], 0
    while True:
        assert data[at:at + 6] == b"070701"
        fields = [int(data[at + 6 + 8 * i:at + 14 + 8 * i], 16) for i in range(13)]
        mode, size, major, namesize = fields[1], fields[6], fields[9], fields[11]
        name = data[at + 110:at + 110 + namesize - 1].decode()
        at = (at + 110 + namesize + 3) & ~3
        at = (at + size + 3) & ~3
        if name == "TRAILER!!!":
            return out
        out.append((name, mode, major))


def test_the_placeholder_is_kbuilds_default_initramfs_and_the_same_every_time() -> None:
    data = placeholder_cpio(1700000000)
    assert data == placeholder_cpio(1700000000) != placeholder_cpio(1)
    # usr/default_cpio_list; no /init: the external initrd brings it
    assert newc_entries(data) == [("dev", 0o40755, 0), ("dev/console", 0o20600, 5), ("root", 0o40700, 0)]


def test_put_cpio_replaces_the_file_and_kbuilds_copy(tmp_path: Path) -> None:
    usr = tmp_path / "usr"
    usr.mkdir()
    for name in ("initramfs_data.cpio", "initramfs_inc_data", "initramfs_data.o"):
        (usr / name).write_bytes(b"old")
    (usr / "built-in.a").write_bytes(b"kept")
    path = put_cpio(tmp_path, b"new cpio")
    assert path == tmp_path / KBUILD_CPIO and path.read_bytes() == b"new cpio"
    assert sorted(p.name for p in usr.iterdir()) == ["built-in.a"]


def linked(tmp_path: Path, payload: bytes, order: tuple[int, int, int] = (1, 2, 3)) -> Path:
    """A build dir as kbuild leaves it: the initramfs copy (uncompressed here), vmlinux and the image, with
    their mtimes in `order`."""
    files = [tmp_path / "usr" / "initramfs_inc_data", tmp_path / "vmlinux", tmp_path / "arch/x86/boot/bzImage"]
    for f, when in zip(files, order, strict=True):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(payload if f.name == "initramfs_inc_data" else b"ELF")
        os.utime(f, ns=(when * 10**9, when * 10**9))
    return tmp_path


def test_a_link_counts_as_done_only_for_the_same_cpio_and_in_make_s_order(tmp_path: Path) -> None:
    cpio = placeholder_cpio(0)
    assert already_linked(linked(tmp_path / "a", cpio), "arch/x86/boot/bzImage", cpio)
    assert not already_linked(linked(tmp_path / "b", cpio), "arch/x86/boot/bzImage", placeholder_cpio(1))
    # the cpio copy newer than the link: kbuild would relink, so must embed
    assert not already_linked(linked(tmp_path / "c", cpio, (3, 2, 3)), "arch/x86/boot/bzImage", cpio)
    assert not already_linked(linked(tmp_path / "d", cpio, (1, 3, 2)), "arch/x86/boot/bzImage", cpio)
    assert not already_linked(tmp_path / "nothing", "arch/x86/boot/bzImage", cpio)
    # a compression this side cannot read back is never taken for the program's
    assert not already_linked(linked(tmp_path / "e", b"\x04\x22\x4d\x18lz4 frame"), "arch/x86/boot/bzImage", cpio)


CHECKED = 'CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_BLK_DEV_INITRD=y\nCONFIG_INITRAMFS_SOURCE=""\n'


def test_syncconfig_may_add_only_the_initramfs_options(tmp_path: Path) -> None:
    synced = CHECKED.replace('""', '"initramfs.cpio"') + "CONFIG_INITRAMFS_ROOT_UID=0\n" \
        "CONFIG_INITRAMFS_COMPRESSION_GZIP=y\n"
    check_synced(CHECKED, synced, tmp_path)
    with pytest.raises(TinyukiError) as err:
        check_synced(CHECKED, synced.replace("# CONFIG_B is not set", "CONFIG_B=y"), tmp_path)
    assert "CONFIG_B" in err.value.message and "doit configure kernel" in err.value.hint


def test_a_conditional_need_is_a_need_only_where_it_holds() -> None:
    def build(ctx: object) -> None: ...

    a = Stage("a", "", build, outputs=(Output("a"),))
    b = Stage("b", "", build, outputs=(Output("b"),), needs=("a",), needs_if={"a": lambda ctx: ctx == "yes"})
    Pipeline([a, b])
    assert b.needed("yes") == ("a",) and b.needed("no") == ()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs_if"):
        Pipeline([a, Stage("c", "", build, outputs=(Output("c"),), needs_if={"a": lambda ctx: True})])


def test_the_benchmark_s_loop_profile_sets_initrd_in_kernel() -> None:
    raw = '[source]\nurls = ["x"]\n\n[kernel]\nfragments = ["base"]\n\n[init]\nsources = ["a.c"]\n'
    assert '[kernel]\ninitramfs = "initrd"\nfragments' in with_initrd(raw)
    with pytest.raises(TinyukiError):
        with_initrd(raw.replace("[kernel]\n", '[kernel]\ninitramfs = "embedded"\n'))
    with pytest.raises(TinyukiError):
        with_initrd('[source]\nurls = ["x"]\nkernel = {fragments = ["base"]}\n')
