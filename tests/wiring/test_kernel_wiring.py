"""configure, kernel and embed as real doit tasks, against the fake kernel tree (tests/fakekernel).

The tree reaches the tasks the way it does in a build: packed into a tarball,
unpacked, and named by tree.json. The fake kbuild logs every target and step
to kbuild/fakekernel.log, so a test can tell a full build from a relink from
nothing at all.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.doit import run_stages
from tests.helpers.fakekernel import FAKE
from tests.helpers.stages import write_tree_record
from tinyuki.cache.compile import VARIABLES
from tinyuki.config.context import make_context
from tinyuki.formats import pe, safetar
from tinyuki.util.fs import read_json

ROOT = Path(__file__).resolve().parents[2]
EPOCH = 1700000000

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def newc(name: str, data: bytes) -> bytes:
    """A one-file newc cpio, enough for the fake kernel to embed (it only copies bytes)."""
    def entry(n: str, body: bytes, mode: int) -> bytes:
        fields = [1, mode, 0, 0, 1, EPOCH, len(body), 0, 0, 0, 0, len(n) + 1, 0]
        head = b"070701" + b"".join(b"%08X" % f for f in fields) + n.encode() + b"\0"
        head += b"\0" * (-len(head) % 4)
        return head + body + b"\0" * (-len(body) % 4)
    return entry(name, data, 0o100755) + entry("TRAILER!!!", b"", 0)


@dataclass
class Build:
    top: Path
    tree: Path
    build: Path
    profile: Path
    report: str = ""

    @property
    def kbuild(self) -> Path:
        return self.build / "kbuild"

    def log(self) -> list[str]:
        path = self.kbuild / "fakekernel.log"
        return path.read_text().splitlines() if path.exists() else []

    def steps_since(self, mark: int) -> Counter[str]:
        return Counter(line.split()[0] if line.startswith("compile") else line for line in self.log()[mark:])

    def write_cpio(self, program: bytes, mtime: int | None = None) -> bytes:
        data = newc("init", program)
        path = self.build / "initramfs.cpio"
        path.write_bytes(data)
        (self.build / "initrd.img").write_bytes(gzip.compress(data, mtime=0))  # the stage's other output
        if mtime is not None:
            os.utime(path, (mtime, mtime))
        return data

    def doit(self, *args: str) -> int:
        """Run the configure, kernel and embed tasks (embed unless told), keeping doit's report in `.report`."""
        # name=value arguments are doit variables, which dodo.py hands to the context as it loads
        variables = dict(a.split("=", 1) for a in args if "=" in a and not a.startswith("-"))
        ctx = make_context(str(self.profile), str(self.build), str(self.top / "cache"), "2", root=ROOT,
                           variables={k: variables.get(k) for k in VARIABLES})
        code, self.report = run_stages(ctx, ("configure", "kernel", "embed"), args or ("embed",), default=("embed",),
                                       report=self.top / "doit-report.txt")
        return code


def write_profile(path: Path, fragments: list[str], build_user: str = "tinyuki") -> None:
    path.write_text(
        '[source]\nurls = ["/nonexistent/linux.tar.xz"]\nsha256 = "' + "0" * 64 + '"\n'
        f"[kernel]\nfragments = {json.dumps(fragments)}\nsource_date_epoch = {EPOCH}\n"
        f'build_user = "{build_user}"\n'
    )


def unpack_fake_tree(top: Path, name: str = "tree") -> Path:
    """Pack tests/fakekernel into a tarball and unpack it, as fetch and extract would."""
    top.mkdir(parents=True, exist_ok=True)
    tarball = top / f"{name}.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(FAKE, arcname="linux-fake")
    dest = top / name
    safetar.extract(tarball, dest)  # as the extract stage does (it drops the top dir); works on Python 3.11.2
    return dest


def snapshot(tree: Path) -> dict[str, tuple[str, float]]:
    return {str(p.relative_to(tree)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir",
                                       p.stat().st_mtime)
            for p in sorted(tree.rglob("*"))}


def make_build(top: Path, tree: Path, name: str = "build", fragments: list[str] | None = None) -> Build:
    build = top / name
    build.mkdir(parents=True)
    write_tree_record(build, tree)
    profile = top / f"{name}.toml"
    write_profile(profile, fragments or ["base", "initramfs", "console", "block", "efi", "size"])
    return Build(top, tree, build, profile)


@pytest.fixture
def b(tmp_path: Path) -> Build:
    return make_build(tmp_path, unpack_fake_tree(tmp_path))


def test_full_pipeline_then_nothing_to_do(b: Build) -> None:
    before = snapshot(b.tree)
    cpio = b.write_cpio(b"program v1")
    assert b.doit() == 0
    steps = b.steps_since(0)
    assert steps["make tinyconfig"] == 1 and steps["merge_config 6"] == 1
    # one link: the kernel stage's, with the program's cpio already there; embed checks it and copies
    assert steps["compile"] == 3 and steps["initramfs"] == 1 and steps["link"] == 1, steps
    bzimage = (b.build / "bzImage").read_bytes()
    assert bzimage.startswith(b"FAKEBZIMAGE") and cpio in bzimage
    assert (b.build / "vmlinux").read_bytes() == (b.kbuild / "vmlinux").read_bytes()
    config = (b.build / "kernel.config").read_text()
    assert "CONFIG_VIRTIO_BLK=y" in config and 'CONFIG_INITRAMFS_SOURCE=""' in config
    requested = read_json(b.build / "kernel.requested.json")
    assert {"symbol": "CONFIG_ATA_PIIX", "value": "y", "file": "configs/fragments/block.config",
            "line": _line_of("block.config", "CONFIG_ATA_PIIX=y")} in requested
    stamp = read_json(b.build / "kernel.json")
    assert stamp["tree"] == str(b.tree) and len(stamp["objects_sha256"]) == 64
    assert (b.build / "logs" / "kernel.log").read_text().count("  CC      ") == 3
    assert snapshot(b.tree) == before, "the build wrote into the source tree"

    mark = len(b.log())
    assert b.doit() == 0
    assert b.log()[mark:] == [], "an up-to-date build must not run make at all"

    # touching inputs without changing them reruns nothing
    for p in [b.build / "initramfs.cpio", b.build / "tree.json", b.build / "kernel.config", b.profile]:
        os.utime(p)
    assert b.doit() == 0
    assert b.log()[mark:] == []


def _line_of(fragment: str, text: str) -> int:
    lines = (ROOT / "configs" / "fragments" / fragment).read_text().splitlines()
    return lines.index(text) + 1


def test_changed_program_only_relinks_even_with_the_same_mtime(b: Build) -> None:
    """The mtime pitfall: a new cpio with the old, fixed mtime must still reach the image.

    (The new program differs in size: doit's checker, like make, trusts an
    unchanged mtime and size, so the initramfs stage must not fix the cpio's mtime.)
    """
    old = b.write_cpio(b"program v1", mtime=EPOCH)
    assert b.doit() == 0
    mark = len(b.log())
    new = b.write_cpio(b"program v2, a bigger one", mtime=EPOCH)
    assert b.doit() == 0
    steps = b.steps_since(mark)
    # kbuild's .config already names the cpio: no olddefconfig, and make's own syncconfig has nothing to do
    assert steps == Counter({"make bzImage": 1, "make vmlinux": 1, "initramfs": 1, "link": 1}), steps
    bzimage = (b.build / "bzImage").read_bytes()
    assert new in bzimage and old not in bzimage


def test_embed_never_reconfigures_the_kernel(b: Build) -> None:
    """kbuild's .config names the cpio by a name inside the build dir from the kernel stage on: a program edit
    leaves it as it is, byte for byte, and no kconfig runs; a .config that names something else is set back."""
    b.write_cpio(b"program v1")
    assert b.doit() == 0
    config = (b.kbuild / ".config").read_bytes()
    assert b'CONFIG_INITRAMFS_SOURCE="initramfs.cpio"' in config
    mark = len(b.log())
    new = b.write_cpio(b"program v2")
    assert b.doit() == 0
    assert b.steps_since(mark)["make olddefconfig"] == 0
    assert (b.kbuild / ".config").read_bytes() == config
    assert new in (b.build / "bzImage").read_bytes()

    # someone (a user, an older tinyuki) left a .config without it: embed sets it back and relinks
    (b.kbuild / ".config").write_text((b.kbuild / ".config").read_text().replace(
        'CONFIG_INITRAMFS_SOURCE="initramfs.cpio"', 'CONFIG_INITRAMFS_SOURCE=""'))
    mark = len(b.log())
    newer = b.write_cpio(b"program v3")
    assert b.doit() == 0
    assert b.steps_since(mark)["link"] == 1
    assert (b.kbuild / ".config").read_bytes() == config and newer in (b.build / "bzImage").read_bytes()


def test_fake_kbuild_really_keeps_a_stale_initramfs_by_mtime(b: Build) -> None:
    """The fake reproduces kbuild's mtime rule, so the test above would catch an embed that forgot it."""
    b.write_cpio(b"program v1", mtime=EPOCH)
    assert b.doit() == 0
    b.write_cpio(b"program v2, a bigger one", mtime=EPOCH)
    env = {**os.environ, "MAKEFLAGS": ""}
    subprocess.run(["make", "-s", "-C", str(b.tree), f"O={b.kbuild}", "bzImage"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    image = (b.kbuild / "arch/x86/boot/bzImage").read_bytes()
    assert b"program v1" in image and b"program v2" not in image


def test_dropped_option_fails_configure_with_file_line_and_dependency(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    frag = tmp_path / "disk.config"
    frag.write_text("# a disk without its bus\nCONFIG_BLOCK=y\nCONFIG_VIRTIO_MENU=y\nCONFIG_VIRTIO_PCI=y\n")
    b = make_build(tmp_path, unpack_fake_tree(tmp_path), fragments=["base", str(frag)])
    assert b.doit("configure") != 0
    err = capsys.readouterr()
    text = err.out + err.err + b.report
    assert f"CONFIG_VIRTIO_PCI: asked =y at {frag}:4, became absent" in text
    assert "inside `if VIRTIO_MENU` (Kconfig)" in text and "depends on PCI (Kconfig)" in text
    assert "Traceback" not in text
    assert not (b.build / "kernel.config").exists()

    frag.write_text(frag.read_text() + "CONFIG_PCI=y\n")
    assert b.doit("configure") == 0


def test_fragment_change_reconfigures_and_rebuilds(b: Build) -> None:
    b.write_cpio(b"program v1")
    assert b.doit() == 0
    mark = len(b.log())
    extra = b.top / "extra.config"
    extra.write_text("# turn off timestamps\n# CONFIG_PRINTK_TIME is not set\n")
    write_profile(b.profile, ["base", "initramfs", "console", "block", "efi", "size", str(extra)])
    assert b.doit() == 0
    steps = b.steps_since(mark)
    # tinyconfig's result is remembered; the kernel compiles and links once, with the program: embed only checks
    assert steps["make tinyconfig"] == 0 and steps["make olddefconfig"] == 1
    assert steps["compile"] == 3 and steps["link"] == 1, steps
    assert "# CONFIG_PRINTK_TIME is not set" in (b.build / "kernel.config").read_text()


def test_a_fragment_edit_that_leaves_the_config_as_it_was_reruns_configure_only(b: Build) -> None:
    """The options the fragments ask for change (configure's own record), .config does not: no make after it."""
    b.write_cpio(b"program v1")
    assert b.doit() == 0
    config = (b.build / "kernel.config").read_bytes()
    requested = (b.build / "kernel.requested.json").read_bytes()
    mark = len(b.log())
    extra = b.top / "restated.config"
    printk = [ln for ln in config.decode().splitlines() if ln.startswith("CONFIG_PRINTK=")]
    assert printk, "the fake kernel's config has CONFIG_PRINTK"
    extra.write_text(f"# asks for what the config has already\n{printk[0]}\n")
    write_profile(b.profile, ["base", "initramfs", "console", "block", "efi", "size", str(extra)])
    assert b.doit() == 0
    steps = b.steps_since(mark)
    assert steps["make tinyconfig"] == 0 and steps["make olddefconfig"] == 1  # configure ran, tinyconfig remembered
    assert steps["compile"] == 0 and steps["link"] == 0, steps  # neither the kernel nor embed ran
    assert (b.build / "kernel.config").read_bytes() == config
    assert (b.build / "kernel.requested.json").read_bytes() != requested


def test_build_error_shows_the_compiler_error_and_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frag = tmp_path / "broken.config"
    frag.write_text("CONFIG_FAKE_BUILD_ERROR=y\n")
    b = make_build(tmp_path, unpack_fake_tree(tmp_path), fragments=["base", "initramfs", str(frag)])
    b.write_cpio(b"x")
    assert b.doit() != 0
    out = capsys.readouterr()
    text = out.out + out.err + b.report
    assert "error: 'oops' undeclared" in text and "In function 'start_kernel'" in text
    assert f"full log: {b.build / 'logs' / 'kernel.log'}" in text
    assert "Traceback" not in text
    assert not (b.build / "kernel.json").exists() and not (b.build / "bzImage").exists()


def test_a_kernel_rebuild_links_the_program_it_finds_and_embed_only_checks(b: Build) -> None:
    b.write_cpio(b"program v1")
    assert b.doit() == 0
    write_profile(b.profile, ["base", "initramfs", "console", "block", "efi", "size"], build_user="someone")
    mark = len(b.log())
    assert b.doit("kernel") == 0
    assert b.steps_since(mark)["compile"] == 3 and b.steps_since(mark)["link"] == 1
    assert b"program v1" in (b.kbuild / "vmlinux").read_bytes()  # the cpio the initramfs stage left
    assert b.doit() == 0
    assert b.steps_since(mark)["link"] == 1  # embed found the link done
    image = (b.build / "bzImage").read_bytes()
    assert b"program v1" in image and b"(someone@tinyuki)" in image
    assert read_json(b.build / "kernel.json")["objects_sha256"] != ""


def test_a_kernel_built_before_the_program_links_a_placeholder_and_embed_relinks(b: Build) -> None:
    assert b.doit("kernel") == 0  # no initramfs yet: kbuild's default one
    vmlinux = (b.kbuild / "vmlinux").read_bytes()
    assert b"TRAILER!!!" in vmlinux and b"program" not in vmlinux
    stamp = read_json(b.build / "kernel.json")
    mark = len(b.log())
    b.write_cpio(b"program v1")
    assert b.doit() == 0
    assert b.steps_since(mark)["link"] == 1 and b"program v1" in (b.build / "bzImage").read_bytes()
    assert read_json(b.build / "kernel.json") == stamp  # the record holds nothing of the program


def test_removed_build_dir_is_rebuilt(b: Build) -> None:
    b.write_cpio(b"program v1")
    assert b.doit() == 0
    shutil.rmtree(b.kbuild)
    assert b.doit() == 0
    assert b.steps_since(0)["compile"] == 3 and b"program v1" in (b.build / "bzImage").read_bytes()


def test_same_image_from_different_tree_and_build_paths(tmp_path: Path) -> None:
    """Reproducible settings reach make: other paths, same bytes."""
    one = make_build(tmp_path / "1", unpack_fake_tree(tmp_path / "1", "src-a"), "out-a")
    two = make_build(tmp_path / "2", unpack_fake_tree(tmp_path / "2", "somewhere-else"), "out-b")
    for x in (one, two):
        x.write_cpio(b"same program")
        assert x.doit() == 0
    a, c = (one.build / "bzImage").read_bytes(), (two.build / "bzImage").read_bytes()
    assert a == c
    assert b"/usr/src/linux/init/main.c" in a and b"@1700000000" in a


def test_an_arm64_build_cross_compiles_and_writes_its_own_image(tmp_path: Path) -> None:
    """ARCH=arm64 and the cross compiler reach every make (the objects are AArch64), and the image is Image."""
    b = make_build(tmp_path, unpack_fake_tree(tmp_path), fragments=["base", "initramfs"])
    b.profile.write_text(b.profile.read_text().replace("[kernel]\n", '[kernel]\narch = "arm64"\n'))
    cpio = b.write_cpio(b"arm64 program")
    assert b.doit() == 0, b.report
    image = (b.build / "Image").read_bytes()
    assert image.startswith(b"FAKEIMAGE") and cpio in image
    assert not (b.build / "bzImage").exists() and not (b.kbuild / "arch" / "x86").exists()
    objects = sorted(b.kbuild.rglob("*.o"))
    assert objects and all(o.read_bytes()[18] == 183 for o in objects)  # e_machine EM_AARCH64
    assert "make Image" in b.log() and "make bzImage" not in b.log()
    mark = len(b.log())
    b.write_cpio(b"arm64 program v2")
    assert b.doit() == 0, b.report
    assert b.steps_since(mark)["compile"] == 0  # the relink kept every object: same ARCH, same CC


def test_arm64_packs_the_efi_zboot_image_when_asked_and_refuses_a_kernel_without_it(tmp_path: Path) -> None:
    """[kernel] image = "vmlinuz.efi": make builds the zboot image beside the Image, embed hands it out, and a
    program edit remakes it; without CONFIG_EFI_ZBOOT one error names the fragment before make runs."""
    b = make_build(tmp_path, unpack_fake_tree(tmp_path), fragments=["base", "initramfs"])
    zboot_profile = '[kernel]\narch = "arm64"\nimage = "vmlinuz.efi"\n'
    b.profile.write_text(b.profile.read_text().replace("[kernel]\n", zboot_profile))
    b.write_cpio(b"arm64 program")
    assert b.doit() != 0
    assert 'packs vmlinuz.efi ([kernel] image = "vmlinuz.efi"), but the kernel is configured without' \
           ' CONFIG_EFI_ZBOOT' in b.report and 'add the "zboot" fragment' in b.report, b.report
    assert "make vmlinuz.efi" not in b.log()

    b.profile.write_text(b.profile.read_text().replace('"initramfs"]', '"initramfs", "zboot"]'))
    cpio = b.write_cpio(b"arm64 program")
    assert b.doit() == 0, b.report
    zboot, image = (b.build / "vmlinuz.efi").read_bytes(), (b.build / "Image").read_bytes()
    assert pe.is_efi_zboot(zboot) and zboot.endswith(image) and cpio in image
    mark = len(b.log())
    cpio = b.write_cpio(b"arm64 program v2")
    assert b.doit() == 0, b.report
    assert b.steps_since(mark)["zboot"] == 1 and cpio in (b.build / "vmlinuz.efi").read_bytes()


def test_switching_arch_in_one_build_dir_starts_kbuild_afresh(tmp_path: Path) -> None:
    """x86_64 then arm64 in the same build dir: no x86 file survives, in the build dir or in the arm64 kernel."""
    b = make_build(tmp_path, unpack_fake_tree(tmp_path), fragments=["base", "initramfs"])
    b.write_cpio(b"program")
    assert b.doit() == 0, b.report
    assert (b.build / "bzImage").is_file() and (b.kbuild / "arch" / "x86" / "boot" / "bzImage").is_file()
    b.profile.write_text(b.profile.read_text().replace("[kernel]\n", '[kernel]\narch = "arm64"\n'))
    assert b.doit() == 0, b.report
    assert (b.build / "Image").is_file() and not (b.build / "bzImage").exists()
    assert not (b.kbuild / "arch" / "x86").exists()
    objects = sorted(b.kbuild.rglob("*.o"))
    assert objects and all(o.read_bytes()[18] == 183 for o in objects)
    # and back: the x86_64 kernel comes from the artifact cache, the arm64 files go
    b.profile.write_text(b.profile.read_text().replace('arch = "arm64"\n', ""))
    assert b.doit() == 0, b.report
    assert (b.build / "bzImage").is_file() and not (b.build / "Image").exists()
    assert not (b.kbuild / "arch" / "arm64").exists()
