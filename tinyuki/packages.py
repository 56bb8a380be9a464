"""Which Debian packages a profile's stages and boots need, which of them are missing, and installing them.

`tinyuki doctor` and scripts/setup.sh install by need: a C program with nolibc needs the kernel's
build tools, the kernel source, the UKI stub, mtools and QEMU; Go adds golang-go, arm64 its cross
compiler and QEMU, [sign] sbsigntool and faketime. The test suite needs every shipped profile's and
example's packages plus its own servers and checkers (SUITE_EXTRA), so a user's first build never
installs nginx or redis.

This module runs before tinyuki's venv exists (scripts/setup.sh: `python3 -m tinyuki.packages`), so it
and what it imports use the standard library only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tinyuki import arch
from tinyuki.config.context import PROJECT_PROFILE, make_context
from tinyuki.config.profile import Profile, parse_profile
from tinyuki.errors import TinyukiError, die
from tinyuki.resources import DATA
from tinyuki.util.fs import atomic_copy

# kbuild's own needs for a tinyconfig kernel, and the tools configure, extract and the cpio use
KERNEL_BUILD = ("build-essential", "flex", "bison", "bc", "libelf-dev", "libssl-dev", "kmod", "cpio",
                "xz-utils", "gzip", "patch")
UKI = ("systemd-boot-efi", "systemd")  # the stub, and systemd-measure for the UKI's expected PCR 11
STICK = ("mtools", "dosfstools", "fdisk")
PYTHON = ("python3", "python3-venv")

# What the test suite needs beyond the shipped profiles' and examples' packages: the compile cache and
# its servers (redis, distcc), the remote artifact cache's nginx, signature and report checkers, a PKCS#11
# software token, a reader of partition tables, and git.
SUITE_EXTRA = ("ccache", "redis-server", "distcc", "nginx", "gnupg", "dwarves", "gdisk", "osslsigncode",
               "sbsigntool", "faketime", "openssl", "libengine-pkcs11-openssl", "softhsm2", "opensc",
               "diffoscope-minimal", "musl-tools", "golang-go", "rustc", "cargo", "git")


@dataclass(frozen=True)
class Need:
    package: str
    why: str


def for_profile(profile: Profile, host: str | None = None) -> list[Need]:
    """The packages this profile's build and `doit boot` use, each with the reason, in a stable order."""
    target = arch.ARCHES[profile.kernel.arch]
    needs = [Need(p, "Python for tinyuki itself") for p in PYTHON]
    needs += [Need(p, "building the kernel") for p in KERNEL_BUILD]
    if any(f.stem == "lz4" for f in profile.kernel.fragments):
        needs.append(Need("lz4", "the kernel compressed with LZ4 (the lz4 fragment)"))
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
    # another architecture's stub is unpacked from its own systemd-boot-efi (scripts/setup.sh), not installed
    needs += [Need(p, "packing the UKI") for p in UKI if p != "systemd-boot-efi" or target.native(host)]
    needs += [Need(p, "the USB stick image") for p in STICK]
    if profile.sign.enabled:
        needs += [Need("sbsigntool", "signing the UKI ([sign])"), Need("faketime", "signing at the build's epoch"),
                  Need("openssl", "reading the signing key")]
    needs.append(Need(target.qemu_package, "doit boot"))
    needs.append(Need(target.firmware_package, f"doit boot uki=1 / stick=1 ({target.firmware_name})"))
    return _unique(needs)


def shipped_profiles() -> list[Profile]:
    """Every profile tinyuki ships, parsed: configs/profiles/ and the examples."""
    out = []
    for path in sorted((DATA / "configs" / "profiles").glob("*.toml")) + sorted((DATA / "examples").glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        if "binary" in data.get("init", {}):  # a prebuilt example's binary is built by its script, later
            data["init"]["binary"] = str(path)
        out.append(parse_profile(data, path, DATA))
    return out


def for_suite(host: str | None = None, profiles: Iterable[Profile] | None = None) -> list[Need]:
    """What tinyuki's own test suite needs: every shipped profile's packages and the suite's own."""
    needs = [n for profile in (shipped_profiles() if profiles is None else profiles)
             for n in for_profile(profile, host)]
    return _unique([*needs, *(Need(p, "tinyuki's test suite") for p in SUITE_EXTRA)])


def _unique(needs: Iterable[Need]) -> list[Need]:
    """Each package once, with the first reason given for it."""
    seen: set[str] = set()
    return [n for n in needs if not (n.package in seen or seen.add(n.package))]


def installed(packages: Iterable[str]) -> set[str]:
    """The packages of `packages` that dpkg says are installed (none where there is no dpkg)."""
    packages = list(packages)
    if not packages or shutil.which("dpkg-query") is None:
        return set()
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Package}\\t${Status}\\n", *packages], capture_output=True,
                          text=True, check=False)
    return {line.split("\t")[0].split(":")[0] for line in proc.stdout.splitlines()
            if line.endswith("install ok installed")}


def missing(packages: Iterable[str]) -> list[str]:
    packages = list(packages)
    have = installed(packages)
    return [p for p in packages if p not in have]


def install_line(packages: Iterable[str]) -> str:
    return "apt-get install --no-install-recommends " + " ".join(packages)


def install(packages: list[str]) -> None:
    """apt-get install the packages (as root, else through sudo); one clear error when apt fails."""
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    if sudo and shutil.which("sudo") is None:
        raise die(f"installing {len(packages)} Debian packages needs root", f"as root, run: {install_line(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                                                *packages]):
        print("+ " + " ".join([*sudo, *cmd]), flush=True)
        if subprocess.run([*sudo, *cmd], env=env, check=False, stdout=subprocess.DEVNULL).returncode != 0:
            raise die(f"{' '.join(cmd[:2])} failed", f"run it yourself to see why: {install_line(packages)}")
    still = missing(packages)
    if still:
        raise die(f"still missing after apt-get: {', '.join(still)}", f"run: {install_line(still)}")


def foreign_stubs(profiles: Iterable[Profile], host: str | None = None) -> list[arch.Arch]:
    """The architectures whose EFI stub these profiles use but the host's packages cannot install."""
    out: list[arch.Arch] = []
    for profile in profiles:
        target = arch.ARCHES[profile.kernel.arch]
        if not target.native(host) and target not in out:
            out.append(target)
    return out


def stub_path(target: arch.Arch) -> Path:
    """Where another architecture's stub is unpacked: beside tinyuki's own files (the clone's .deps/, or the
    installed package's), where every profile's default [uki] stub looks for it."""
    return DATA / target.stub_dir / target.stub_name


def fetch_stub(target: arch.Arch) -> Path:
    """Download another architecture's systemd-boot-efi (the host's version), unpack its stub; install nothing.

    Debian installs only the host's own stub. Adding the architecture to dpkg lets apt-get download the
    package; on another distribution that would break apt-get update, so there the user is told what to do.
    """
    dest = stub_path(target)
    if dest.is_file():
        return dest
    if "ID=debian" not in Path("/etc/os-release").read_text(errors="replace").split():
        raise die(f"not Debian: cannot download systemd-boot-efi for {target.name}",
                  f"get {target.stub_name} from systemd-boot-efi for {target.name} and put it at {dest}")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    foreign = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True, text=True,
                             check=False).stdout.split()
    if target.debian_arch not in foreign:
        print(f"+ {' '.join([*sudo, 'dpkg', '--add-architecture', target.debian_arch])}", flush=True)
        for cmd in (["dpkg", "--add-architecture", target.debian_arch], ["apt-get", "update", "-qq"]):
            subprocess.run([*sudo, *cmd], env=env, check=False, stdout=subprocess.DEVNULL)
    version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "systemd-boot-efi"], capture_output=True,
                             text=True, check=False).stdout.strip()
    package = f"systemd-boot-efi:{target.debian_arch}"
    with tempfile.TemporaryDirectory(prefix="tinyuki-stub-") as tmp:
        # the host's version first (the same stub code on both architectures), else the newest
        for wanted in ([f"{package}={version}"] if version else []) + [package]:
            got = subprocess.run(["apt-get", "download", "-q", wanted], cwd=tmp, env=env, capture_output=True,
                                 check=False)
            if got.returncode == 0:
                break
        debs = sorted(Path(tmp).glob("systemd-boot-efi_*.deb"))
        if not debs:
            raise die(f"cannot download {package}: {got.stderr.decode(errors='replace').strip()[-300:]}",
                      f"is {target.debian_arch} in apt's sources? (`dpkg --add-architecture {target.debian_arch}`"
                      " and `apt-get update`, then try again)")
        unpacked = Path(tmp) / "unpacked"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], check=True)
        source = unpacked / arch.SYSTEM_STUB_DIR.lstrip("/") / target.stub_name
        if not source.is_file():
            raise die(f"{debs[0].name} has no {target.stub_name}", f"put {target.stub_name} at {dest} yourself")
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_copy(source, dest)
    print(f"unpacked {target.stub_name} of {debs[0].name} at {dest}")
    return dest


def doctor(argv: list[str], prog: str = "tinyuki doctor") -> int:
    """Name a profile's packages (or the suite's), say which are missing, install them when asked.

    Exit status: 0 when nothing is missing (or all of it was installed), 1 when something is missing.
    """
    ap = argparse.ArgumentParser(prog=prog, description="The Debian packages a profile's build and boots need;"
                                 " which are missing, and the one apt-get line that installs them.")
    ap.add_argument("settings", nargs="*", help=f"profile=NAME|PATH (default: ./{PROJECT_PROFILE}, else debian)")
    ap.add_argument("--install", action="store_true", help="install the missing ones with apt-get")
    ap.add_argument("--suite", action="store_true", help="what tinyuki's own test suite needs instead")
    ap.add_argument("--missing", action="store_true", help="print only the missing packages' names, one line")
    ap.add_argument("--stubs", action="store_true",
                    help="only unpack another architecture's EFI stub where it is missing (no apt-get install)")
    args = ap.parse_args(argv)
    bad = [s for s in args.settings if not s.startswith("profile=")]
    if bad:
        raise die(f"{prog}: unknown argument {bad[0]!r}",
                  "use profile=NAME|PATH, --install, --suite, --missing, --stubs")
    if args.suite:
        profiles = shipped_profiles()
        needs = for_suite(profiles=profiles)
        what = "tinyuki's test suite (every shipped profile and example, and the servers)"
        stubs = foreign_stubs(profiles)
    else:
        profile = args.settings[-1].split("=", 1)[1] if args.settings else None
        ctx = make_context(profile)
        needs, what = for_profile(ctx.profile), f"profile {ctx.profile.name} ({ctx.profile.path})"
        # a stub the profile names itself is its own business; the default one is unpacked here
        stubs = [t for t in foreign_stubs([ctx.profile]) if ctx.profile.uki.stub == t.stub(DATA)]
    absent = missing(n.package for n in needs)
    stubs_absent = [t for t in stubs if not stub_path(t).is_file()]
    if args.stubs:
        for t in stubs_absent:
            fetch_stub(t)
        return 0
    if args.missing:
        print(" ".join(absent))
        return 0
    print(f"{prog}: {what} needs {len(needs)} Debian packages")
    for n in needs:
        print(f"  {'missing' if n.package in absent else 'ok     '}  {n.package:26} {n.why}")
    for t in stubs:
        print(f"  {'missing' if t in stubs_absent else 'ok     '}  {t.stub_name:26} {t.name}'s EFI stub, unpacked from"
              f" systemd-boot-efi:{t.debian_arch} at {stub_path(t)} (not installed)")
    if not absent and not stubs_absent:
        print(f"{prog}: everything is installed")
        return 0
    if absent:
        print(f"{prog}: {len(absent)} missing; install them with:\n  {install_line(absent)}")
    if stubs_absent:
        print(f"{prog}: {' and '.join(t.stub_name for t in stubs_absent)} missing: {prog} --install unpacks it")
    if not args.install:
        return 1
    if absent:
        install(absent)
        print(f"{prog}: installed {len(absent)} packages")
    for t in stubs_absent:
        fetch_stub(t)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return doctor(sys.argv[1:] if argv is None else argv, prog="python3 -m tinyuki.packages")
    except TinyukiError as err:
        print(err.render(), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
