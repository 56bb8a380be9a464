"""The architecture table: what a profile's [kernel] arch changes, and the errors a mismatch gets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tinyuki import arch
from tinyuki.cache.compile import CompileSetup
from tinyuki.config.context import make_context
from tinyuki.config.profile import load_profile
from tinyuki.errors import TinyukiError
from tinyuki.formats import pe
from tinyuki.toolchain import tools

ROOT = Path(__file__).resolve().parents[2]
X86, ARM = arch.ARCHES["x86_64"], arch.ARCHES["arm64"]
PROFILE = """
[source]
urls = ["https://example.org/linux-6.1.183.tar.xz"]
sha256 = "362d07fe4938c415ce651aefee063a5c4151109b39c97be039bbaa8312ffc0e2"

[kernel]
arch = "{arch}"
fragments = {fragments}
{extra}
"""


def profile(tmp_path: Path, target: str, fragments: list[str], extra: str = "") -> object:
    path = tmp_path / "p.toml"
    path.write_text(PROFILE.format(arch=target, fragments=repr(fragments).replace("'", '"'), extra=extra))
    return load_profile(str(path), ROOT)


def error(tmp_path: Path, target: str, fragments: list[str], extra: str = "") -> TinyukiError:
    with pytest.raises(TinyukiError) as e:
        profile(tmp_path, target, fragments, extra)
    return e.value


# ---------------------------------------------------------------- kbuild's command line

def test_a_native_x86_64_build_gets_no_arch_variables() -> None:
    """What x86_64 builds ran before the table existed: no ARCH=, no CROSS_COMPILE=, plain gcc."""
    assert X86.make_vars("x86_64") == []
    assert X86.compiler_prefix("x86_64") == ""


def test_arm64_on_x86_64_is_a_cross_build() -> None:
    assert ARM.make_vars("x86_64") == ["ARCH=arm64", "CROSS_COMPILE=aarch64-linux-gnu-"]
    assert ARM.compiler_prefix("x86_64") == "aarch64-linux-gnu-"


def test_arm64_on_an_arm64_host_is_native_and_x86_64_there_is_cross() -> None:
    assert ARM.make_vars("aarch64") == ["ARCH=arm64"]
    assert X86.make_vars("aarch64") == ["ARCH=x86_64", "CROSS_COMPILE=x86_64-linux-gnu-"]


def test_kbuild_gets_arch_then_the_cached_cross_compiler(tmp_path: Path) -> None:
    ccache = CompileSetup(directory=tmp_path, ccache="ccache")
    host = os.uname().machine
    assert ccache.kbuild_vars(X86) == ([] if host == "x86_64" else X86.make_vars()) + [
        f"CC=ccache {X86.compiler_prefix()}gcc"]
    assert ccache.kbuild_vars(ARM)[-1] == f"CC=ccache {ARM.compiler_prefix()}gcc"


def test_the_source_directory_of_each_architecture() -> None:
    assert (X86.srcarch, ARM.srcarch) == ("x86", "arm64")
    assert (X86.image_name, ARM.image_name) == ("bzImage", "Image")


def test_a_missing_cross_compiler_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(arch.shutil, "which", lambda name, path=None: None)
    with pytest.raises(TinyukiError) as e:
        ARM.require_compiler("x86_64")
    assert "aarch64-linux-gnu-gcc is not installed" in str(e.value)
    assert "gcc-aarch64-linux-gnu libc6-dev-arm64-cross" in e.value.hint
    X86.require_compiler("x86_64")  # native: nothing to check, nothing raised


def test_cross_tools_are_versioned_under_the_target_name(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[list[str]] = []
    monkeypatch.setattr(tools, "tool_version", lambda cmd: asked.append(cmd) or "v")
    tools.version.cache_clear()
    try:
        tools.version("gcc", "aarch64-linux-gnu-")
        tools.version("make", "aarch64-linux-gnu-")
        tools.version("gcc")
    finally:
        tools.version.cache_clear()
    names = [Path(cmd[0]).name for cmd in asked]
    assert names == ["aarch64-linux-gnu-gcc", "make", "gcc"]


# ---------------------------------------------------------------- profiles

def test_the_shipped_arm64_profile_resolves_to_arm64_things() -> None:
    ctx = make_context("arm64", root=ROOT)
    p = ctx.profile
    assert ctx.arch is ARM
    assert p.kernel.image == "Image" and p.boot.machine == "virt"
    assert p.uki.stub == ROOT / ARM.stub_dir / "linuxaa64.efi.stub"
    assert p.boot.ovmf_code == Path("/usr/share/AAVMF/AAVMF_CODE.fd")
    by_name = {f.stem: f.relative_to(ROOT).as_posix() for f in p.kernel.fragments}
    assert by_name["console"] == "configs/fragments/arm64/console.config"
    assert by_name["efi"] == "configs/fragments/arm64/efi.config"
    assert by_name["base"] == "configs/fragments/base.config"


def test_x86_64_profiles_resolve_to_what_they_always_said() -> None:
    """Defaults left to the architecture come out as the values x86_64 profiles had spelled out."""
    p = make_context("debian", root=ROOT).profile
    assert p.kernel.arch == "x86_64" and p.kernel.image == "bzImage"
    assert p.kernel.cmdline.startswith("console=ttyS0 ")
    assert p.uki.stub == Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
    assert (p.boot.machine, p.boot.ovmf_code, p.boot.ovmf_vars) == (
        "microvm", Path("/usr/share/OVMF/OVMF_CODE_4M.fd"), Path("/usr/share/OVMF/OVMF_VARS_4M.fd"))
    assert all(f.parent.name != "arm64" for f in p.kernel.fragments)


def test_unset_settings_follow_the_architecture(tmp_path: Path) -> None:
    p = profile(tmp_path, "arm64", ["base"])
    assert p.kernel.cmdline == "console=ttyAMA0 panic=-1"
    assert p.kernel.image == "Image" and p.boot.machine == "virt"


def test_an_x86_only_fragment_on_arm64_is_named(tmp_path: Path) -> None:
    e = error(tmp_path, "arm64", ["base", "pvh"])
    assert "fragment 'pvh' is for x86_64 only (configs/fragments/x86_64/pvh.config)" in str(e)
    assert "[kernel] arch is arm64" in str(e)
    assert "drop 'pvh'" in e.hint and "console" in e.hint
    both = error(tmp_path, "arm64", ["base", "pvh", "lz4"])  # every one named at once, not one per run
    assert "'pvh' is for x86_64 only" in str(both) and "'lz4' is for x86_64 only" in str(both)
    assert "drop 'pvh', 'lz4'" in both.hint


def test_another_architectures_fragment_given_as_a_path_is_refused(tmp_path: Path) -> None:
    path = str(ROOT / "configs" / "fragments" / "x86_64" / "pvh.config")
    assert "'pvh' is for x86_64 only" not in str(error(tmp_path, "arm64", ["base", path]))  # named as given
    assert "is for x86_64 only" in str(error(tmp_path, "arm64", ["base", path]))
    arm64_console = str(ROOT / "configs/fragments/arm64/console.config")
    assert "is for arm64 only" in str(error(tmp_path, "x86_64", ["base", arm64_console]))


def test_musl_for_another_architecture_is_refused_before_anything_builds(tmp_path: Path) -> None:
    if ARM.native():
        pytest.skip("an arm64 host's musl-gcc builds arm64 programs")
    e = error(tmp_path, "arm64", ["base"], '[init]\nlibc = "musl"')
    assert "musl-gcc" in str(e) and "arm64" in str(e)
    assert "nolibc" in e.hint and "[init] binary" in e.hint
    profile(tmp_path, "x86_64", ["base"], '[init]\nlibc = "musl"')  # the host's own: fine


def test_the_other_architectures_loader_is_a_free_name_on_the_stick(tmp_path: Path) -> None:
    """A stick may carry an arm64 loader beside an x86_64 UKI; only the target's own name is reserved."""
    extra = f'[disk.files]\n"/EFI/BOOT/BOOTAA64.EFI" = "{ROOT / "README.md"}"'
    p = profile(tmp_path, "x86_64", ["base"], extra)
    assert p.disk.files[0][0] == "/EFI/BOOT/BOOTAA64.EFI"
    e = error(tmp_path, "arm64", ["base"], extra)
    assert "clashes with the UKI's place" in str(e) and "/EFI/BOOT/BOOTAA64.EFI on arm64" in e.hint


def test_an_arm64_fragment_is_not_offered_to_x86_64(tmp_path: Path) -> None:
    (ROOT / "configs" / "fragments" / "arm64").is_dir() or pytest.fail("no arm64 fragments shipped")
    p = profile(tmp_path, "x86_64", ["console"])
    assert p.kernel.fragments == (ROOT / "configs" / "fragments" / "console.config",)


def test_an_unknown_fragment_lists_the_architectures_own(tmp_path: Path) -> None:
    e = error(tmp_path, "x86_64", ["nosuch"])
    assert "fragment 'nosuch' not found" in str(e)
    assert "pvh" in e.hint and "for x86_64" in e.hint


@pytest.mark.parametrize(("target", "extra", "wanted"), [
    ("arm64", 'cmdline = "console=ttyS0 panic=-1"', "console=ttyAMA0"),
    ("x86_64", 'cmdline = "console=ttyAMA0"', "console=ttyS0"),
    ("arm64", 'image = "bzImage"', "auto, Image, vmlinuz.efi"),
    ("arm64", 'image = "vmlinux"', "auto, Image, vmlinuz.efi"),
    ("x86_64", 'image = "Image"', "auto, bzImage, vmlinux"),
    ("x86_64", 'image = "vmlinuz.efi"', "auto, bzImage, vmlinux"),
    ("arm64", '[boot]\nmachine = "microvm"', "auto, virt"),
    ("x86_64", '[boot]\nmachine = "virt"', "auto, microvm, pc, q35"),
])
def test_a_setting_of_another_architecture_is_refused(tmp_path: Path, target: str, extra: str,
                                                      wanted: str) -> None:
    e = error(tmp_path, target, ["base"], extra)
    assert target in str(e) and wanted in e.hint


def test_an_unknown_architecture_lists_the_known(tmp_path: Path) -> None:
    e = error(tmp_path, "riscv64", ["base"])
    assert "'riscv64'" in str(e) and "x86_64" in e.hint and "arm64" in e.hint


# ---------------------------------------------------------------- the UKI's machine

def test_an_efi_zboot_image_is_told_from_a_plain_one() -> None:
    zboot = b"MZ\0\0zimg" + bytes(56)
    assert pe.is_efi_zboot(zboot) and not pe.is_efi_zboot(b"MZ\0\0\0\0\0\0")  # arm64's Image: code at 4
    assert not pe.is_efi_zboot(b"MZ") and not pe.is_efi_zboot(b"\x7fELFzimg")


def test_pe_machine_of_the_stubs() -> None:
    x64 = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
    if not x64.is_file():
        pytest.fail("systemd-boot-efi is not installed (scripts/setup.sh installs it)")
    assert pe.pe_machine(x64.read_bytes()) == 0x8664
    aa64 = ARM.stub(ROOT)
    if not aa64.is_file():
        pytest.fail(f"{aa64} is missing: scripts/setup.sh unpacks systemd-boot-efi:arm64 there")
    assert pe.pe_machine(aa64.read_bytes()) == 0xAA64
    assert pe.pe_machine(b"\x7fELF" + bytes(100)) is None
    assert pe.machine_name(0xAA64) == "AArch64 (0xaa64)"


def test_a_missing_stub_is_one_clear_error_before_the_key_reads_it(tmp_path: Path) -> None:
    import dataclasses

    from tinyuki.cache import keys
    from tinyuki.tasks import PIPELINE, uki

    ctx = make_context("arm64", build_dir=str(tmp_path / "build"), cache_dir=str(tmp_path / "cache"), root=ROOT)
    gone = tmp_path / ".deps" / "linuxaa64.efi.stub"
    prof = dataclasses.replace(ctx.profile, uki=dataclasses.replace(ctx.profile.uki, stub=gone))
    ctx = dataclasses.replace(ctx, profile=prof)
    assert PIPELINE["uki"].refresh is uki.require_stub  # restore_or_build runs it before computing the key
    with pytest.raises(TinyukiError) as e:
        uki.require_stub(ctx)
    assert "EFI stub for arm64 is missing" in str(e.value) and "tinyuki doctor --install" in e.value.hint
    with pytest.raises(TinyukiError) as e:  # and any other missing input: named, never a traceback
        keys.input_hash(PIPELINE["uki"], gone)
    assert str(gone) in str(e.value)


def test_the_release_of_an_uncompressed_image_comes_from_its_banner() -> None:
    from tinyuki.tasks.uki import banner_release

    assert banner_release(b"\0\0Linux version 6.1.192 (tinyuki@tinyuki) (gcc ...) #1 ...") == "6.1.192"
    assert banner_release(b"no banner here") is None


def test_a_changed_boot_field_of_the_table_rebuilds_nothing() -> None:
    """How QEMU boots an architecture is not part of its identity: only the build's fields reach the keys."""
    import dataclasses

    assert ARM.identity() == dataclasses.replace(ARM, cpu="max", firmware_args=(), kvm_cpu=None).identity()
    assert ARM.identity() != dataclasses.replace(ARM, cross_prefix="aarch64-none-linux-gnu-").identity()
