"""What differs per target architecture, one row each: the rest of tinyuki asks this table.

A profile picks its row with `[kernel] arch`. Everything that used to be
hard-wired to x86-64 (kbuild's ARCH and cross compiler, the image kbuild
makes, the ELF machine /init must have, the systemd EFI stub and the name the
firmware looks for on a stick, QEMU, its machine and CPU, the firmware, the
console and how the VM powers off) is a field here.

The x86-64 row built on an x86-64 host adds nothing to the kernel's make
command or to the compiler names, so its bytes are what they were before
there was a table. Another architecture is one more row (plus its config
fragments under configs/fragments/<arch>/): see `ARCHES`.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tinyuki.errors import die

# The C libraries a cross gcc builds /init against (nolibc: headers from the kernel tree; glibc: Debian's
# libc6-dev-<arch>-cross). musl-gcc (musl-tools) builds for the host only.
CROSS_LIBCS = ("nolibc", "glibc")
# Where Debian's systemd-boot-efi puts its stubs.
SYSTEM_STUB_DIR = "/usr/lib/systemd/boot/efi"


@dataclass(frozen=True)
class Arch:
    name: str  # as [kernel] arch spells it
    uname: str  # `uname -m` of a host of this architecture (no cross compiler needed there)
    debian_arch: str  # dpkg's name for it (systemd-boot-efi:arm64 carries arm64's stub)
    # kbuild
    kbuild_arch: str  # make ARCH=
    cross_prefix: str  # make CROSS_COMPILE= (and the compiler the program is built with) on another host
    cross_package: str  # the Debian package that has the cross compiler
    image_target: str  # the make target of the bootable image
    image: str  # where it lands in the build dir
    compressed: bool  # whether the image decompresses itself (an EFI stub can start it either way)
    images: tuple[str, ...]  # what [kernel] image may name: the image, and vmlinux where QEMU boots it (x86's PVH)
    # the program
    elf_machine: int  # e_machine /init must have
    elf_name: str
    go_env: tuple[tuple[str, str], ...]  # GOARCH and its level
    rust_target: str
    libc_package: str  # headers and static libc for the cross compiler (nolibc needs the kernel UAPI headers)
    # the UKI and the stick
    stub_name: str  # systemd-boot-efi's stub for this architecture
    efi_boot_file: str  # what firmware starts from a removable disk: /EFI/BOOT/<this>
    pe_machine: int  # IMAGE_FILE_MACHINE_* of the stub and the UKI
    # booting
    qemu: str
    qemu_package: str
    machines: tuple[str, ...]  # the first is the default
    cpu: str | None  # -cpu, when the machine has no sensible default
    firmware_code: str
    firmware_vars: str
    firmware_package: str
    firmware_name: str  # for messages: edk2's OVMF, its arm64 build AAVMF
    firmware_args: tuple[str, ...]  # what a firmware boot adds to QEMU's command line
    firmware_machine_options: str  # -M options of a firmware boot ("" for none)
    kvm_machine_options: str  # -M options under KVM ("" for none)
    kvm_cpu: str | None  # -cpu under KVM (TCG uses `cpu`)
    secure_boot: bool  # whether `doit keys` / `doit boot secureboot=1` have a firmware setup for it
    console: str  # the serial console's device name, for console= on the command line
    power_off: str  # how the guest's power-off reaches QEMU, for documentation and errors
    # Where kbuild writes the EFI zboot image (`make vmlinuz.efi`, CONFIG_EFI_ZBOOT): an EFI application that
    # decompresses the image and starts it, for [kernel] image = "vmlinuz.efi"; None where there is none.
    efi_zboot: str | None = None

    @property
    def image_name(self) -> str:
        """The image's file name (bzImage, Image): its name in the build dir and in manifest.json."""
        return Path(self.image).name

    @property
    def srcarch(self) -> str:
        """kbuild's SRCARCH, the directory under arch/ (x86 for x86_64): Kconfig files of other ones do not apply."""
        return Path(self.image).parts[1]

    def native(self, host: str | None = None) -> bool:
        """Whether a host of this machine (`uname -m`) builds for this architecture without a cross compiler."""
        return (host or os.uname().machine) == self.uname

    def compiler_prefix(self, host: str | None = None) -> str:
        """The prefix of gcc, ld, objcopy, ... for this architecture on the host: empty when native."""
        return "" if self.native(host) else self.cross_prefix

    def make_vars(self, host: str | None = None) -> list[str]:
        """ARCH= and CROSS_COMPILE= for kbuild: none for a native x86-64 build, as before the table existed.

        kbuild records the command line, so these are the same for every make
        in one build dir (configure's, the kernel's, embed's relink).
        """
        if self.native(host) and self.name == "x86_64":
            return []
        out = [f"ARCH={self.kbuild_arch}"]
        prefix = self.compiler_prefix(host)
        if prefix:
            out.append(f"CROSS_COMPILE={prefix}")
        return out

    def require_compiler(self, host: str | None = None, path: str | None = None) -> None:
        """Fail before minutes of make when the cross compiler is not installed (on `path`, default $PATH),
        naming the package."""
        prefix = self.compiler_prefix(host)
        if prefix and shutil.which(prefix + "gcc", path=path) is None:
            raise die(f"the {self.name} cross compiler {prefix}gcc is not installed"
                      f" (this host is {os.uname().machine})",
                      f"apt-get install {self.cross_package} {self.libc_package} (scripts/setup.sh installs them)")

    @property
    def stub_dir(self) -> str:
        """Where `tinyuki doctor --install` (and scripts/setup.sh) unpacks another architecture's systemd-boot-efi,
        relative to tinyuki's own files (tinyuki/resources.py)."""
        return f".deps/{self.name}/{SYSTEM_STUB_DIR.lstrip('/')}"

    def stub(self, root: Path, host: str | None = None) -> Path:
        """The default stub: the host's systemd-boot-efi for its own architecture, else setup.sh's unpacked copy.

        Debian installs only the host's own stub; another architecture's comes
        from its systemd-boot-efi package, downloaded and unpacked (never
        installed) under .deps/<arch>/. Either one is used where it exists.
        """
        system, unpacked = Path(SYSTEM_STUB_DIR) / self.stub_name, root / self.stub_dir / self.stub_name
        first, second = (system, unpacked) if self.native(host) else (unpacked, system)
        return second if not first.is_file() and second.is_file() else first

    def identity(self) -> dict[str, object]:
        """What of this row reaches an artifact's bytes: part of the cache key of every stage [kernel] arch reaches.

        Only the build's fields: how QEMU boots it (the CPU, the firmware's
        arguments) changes no artifact, so editing those rebuilds nothing.
        """
        return {"name": self.name, "kbuild_arch": self.kbuild_arch, "cross_prefix": self.cross_prefix,
                "image_target": self.image_target, "image": self.image, "elf_machine": self.elf_machine,
                "go_env": [list(kv) for kv in self.go_env], "rust_target": self.rust_target,
                "stub_name": self.stub_name, "efi_boot_file": self.efi_boot_file, "pe_machine": self.pe_machine}


ARCHES: dict[str, Arch] = {a.name: a for a in (
    Arch(
        name="x86_64", uname="x86_64", debian_arch="amd64",
        kbuild_arch="x86_64", cross_prefix="x86_64-linux-gnu-", cross_package="gcc-x86-64-linux-gnu",
        image_target="bzImage", image="arch/x86/boot/bzImage", compressed=True, images=("bzImage", "vmlinux"),
        elf_machine=62, elf_name="x86-64",
        go_env=(("GOARCH", "amd64"), ("GOAMD64", "v1")), rust_target="x86_64-unknown-linux-gnu",
        libc_package="libc6-dev-amd64-cross",
        stub_name="linuxx64.efi.stub", efi_boot_file="BOOTX64.EFI",
        pe_machine=0x8664,
        qemu="qemu-system-x86_64", qemu_package="qemu-system-x86", machines=("microvm", "pc", "q35"), cpu=None,
        firmware_code="/usr/share/OVMF/OVMF_CODE_4M.fd", firmware_vars="/usr/share/OVMF/OVMF_VARS_4M.fd",
        firmware_package="ovmf", firmware_name="OVMF",
        # OVMF's own boot timeout is 0 already
        firmware_args=(), firmware_machine_options="", kvm_machine_options="", kvm_cpu=None, secure_boot=True,
        console="ttyS0", power_off="ACPI (the efi fragment), or a restart that QEMU's -no-reboot ends",
    ),
    Arch(
        name="arm64", uname="aarch64", debian_arch="arm64",
        kbuild_arch="arm64", cross_prefix="aarch64-linux-gnu-", cross_package="gcc-aarch64-linux-gnu",
        # arm64's EFI stub cannot decompress: the UKI carries the plain Image, or the EFI zboot image that
        # wraps it compressed (vmlinuz.efi, CONFIG_EFI_ZBOOT), which QEMU's -kernel cannot start
        image_target="Image", image="arch/arm64/boot/Image", compressed=False, images=("Image", "vmlinuz.efi"),
        elf_machine=183, elf_name="AArch64",
        go_env=(("GOARCH", "arm64"),), rust_target="aarch64-unknown-linux-gnu",
        libc_package="libc6-dev-arm64-cross",
        stub_name="linuxaa64.efi.stub", efi_boot_file="BOOTAA64.EFI",
        pe_machine=0xAA64,
        qemu="qemu-system-aarch64", qemu_package="qemu-system-arm", machines=("virt",), cpu="cortex-a57",
        firmware_code="/usr/share/AAVMF/AAVMF_CODE.fd", firmware_vars="/usr/share/AAVMF/AAVMF_VARS.fd",
        firmware_package="qemu-efi-aarch64", firmware_name="AAVMF",
        # AAVMF counts down PcdPlatformBootTimeOut (5 s) before it boots; `-boot menu=on,splash-time=0` is
        # QEMU's fw_cfg etc/boot-menu-wait = 0, which edk2's QemuBootOrderLib takes as the timeout instead
        # (measured under TCG: the UKI reaches the program in 1.4-2.2 s instead of 6.3-7.0 s). A Timeout
        # variable of 0 in the vars copy would do too, but virt-fw-vars fails on AAVMF's 64 MiB store.
        firmware_args=("-boot", "menu=on,splash-time=0"),
        # With ACPI tables from QEMU, AAVMF hands the OS ACPI and hides the device tree: the EFI stub then
        # makes an empty DTB, and a kernel without CONFIG_ACPI (tinyuki's) finds no console and no devices.
        # acpi=off keeps the device tree, as a direct -kernel boot gets it from QEMU.
        firmware_machine_options="acpi=off",
        # Under KVM (a native arm64 host) virt's interrupt controller must be one the host's can back, and
        # the CPU the host's own: an emulated model works with KVM only on a host that has that very core.
        kvm_machine_options="gic-version=host", kvm_cpu="host",
        secure_boot=False,
        console="ttyAMA0", power_off="PSCI SYSTEM_OFF (arm64 always has the PSCI driver)",
        efi_zboot="arch/arm64/boot/vmlinuz.efi",
    ),
)}
DEFAULT = "x86_64"


def get(name: str) -> Arch:
    try:
        return ARCHES[name]
    except KeyError:
        raise die(f"unknown architecture {name!r}", f"[kernel] arch is one of: {', '.join(ARCHES)}") from None
