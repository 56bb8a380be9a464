"""Which Debian packages a profile's stages and boots need, and which of them are missing.

`tinyuki doctor` and scripts/setup.sh install by need: a C program with nolibc needs the kernel's
build tools, the kernel source, the UKI stub, mtools and QEMU; Go adds golang-go, arm64 its cross
compiler and QEMU, [sign] sbsigntool and faketime. The test suite's own servers and checkers are
listed apart (SUITE), so a user's first build never installs nginx or redis.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from tinyuki import arch
from tinyuki.config.profile import Profile

# kbuild's own needs for a tinyconfig kernel, and the tools configure and the cpio use
KERNEL_BUILD = ("build-essential", "flex", "bison", "bc", "libelf-dev", "libssl-dev", "kmod", "cpio",
                "xz-utils", "gzip", "lz4", "patch")
# the default profiles' UKI, USB stick and boots on x86_64
UKI = ("systemd-boot-efi", "systemd")  # the stub, and systemd-measure for the UKI's expected PCR 11
STICK = ("mtools", "dosfstools", "fdisk")
PYTHON = ("python3", "python3-venv")

# What the whole test suite needs beyond every profile's packages: its servers (the remote caches,
# distcc), the checkers of signatures and reports, a PKCS#11 software token, and git.
SUITE = ("build-essential", "flex", "bison", "bc", "libelf-dev", "libssl-dev", "dwarves", "kmod", "cpio",
         "xz-utils", "gzip", "lz4", "patch", "musl-tools", "ccache", "golang-go", "rustc", "cargo", "gnupg",
         "dpkg", "systemd-boot-efi", "ovmf", "qemu-system-x86", "mtools", "dosfstools", "qemu-system-arm",
         "qemu-efi-aarch64", "fdisk", "gdisk", "sbsigntool", "osslsigncode", "openssl", "faketime", "systemd",
         "libengine-pkcs11-openssl", "softhsm2", "opensc", "python3", "python3-venv", "diffoscope-minimal",
         "redis-server", "distcc", "nginx", "git", "linux-source-6.1")


@dataclass(frozen=True)
class Need:
    package: str
    why: str


def for_profile(profile: Profile, host: str | None = None) -> list[Need]:
    """The packages this profile's build and `doit boot` use, each with the reason, in a stable order."""
    target = arch.ARCHES[profile.kernel.arch]
    needs = [Need(p, "Python for tinyuki itself") for p in PYTHON]
    needs += [Need(p, "building the kernel") for p in KERNEL_BUILD]
    if profile.source.package:
        needs.append(Need(profile.source.package, "the kernel tarball ([source] package)"))
        needs.append(Need("dpkg", "checking the tarball's package (dpkg --verify)"))
    if profile.source.signers or profile.source.sha256sums_signers:
        needs.append(Need("gnupg", "checking the kernel's OpenPGP signature"))
    init = profile.init
    if init.binary is None:
        if init.language == "go":
            needs.append(Need("golang-go", "building the Go program"))
        elif init.language == "rust":
            needs += [Need("rustc", "building the Rust program"), Need("cargo", "building the Rust program")]
        elif init.libc == "musl":
            needs.append(Need("musl-tools", "building the C program against musl"))
    if not target.native(host):
        needs.append(Need(target.cross_package, f"cross-compiling for {target.name}"))
        needs.append(Need(target.libc_package, f"{target.name}'s kernel and libc headers for the program"))
    needs += [Need(p, "packing the UKI") for p in UKI if p != "systemd-boot-efi" or target.native(host)]
    needs += [Need(p, "the USB stick image") for p in STICK]
    if profile.sign.enabled:
        needs += [Need("sbsigntool", "signing the UKI ([sign])"), Need("faketime", "signing at the build's epoch")]
        needs.append(Need("openssl", "reading the signing key"))
    needs.append(Need(target.qemu_package, "doit boot"))
    needs.append(Need(target.firmware_package, f"doit boot uki=1 / stick=1 ({target.firmware_name})"))
    seen: set[str] = set()
    return [n for n in needs if not (n.package in seen or seen.add(n.package))]


def installed(packages: list[str]) -> set[str]:
    """The packages of `packages` that dpkg says are installed (none where there is no dpkg)."""
    if not packages or shutil.which("dpkg-query") is None:
        return set()
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Package}\\t${Status}\\n", *packages], capture_output=True,
                          text=True, check=False)
    return {line.split("\t")[0].split(":")[0] for line in proc.stdout.splitlines()
            if line.endswith("install ok installed")}


def missing(packages: list[str]) -> list[str]:
    have = installed(packages)
    return [p for p in packages if p not in have]


def install_line(packages: list[str]) -> str:
    return "apt-get install --no-install-recommends " + " ".join(packages)
