"""Setup by need: the Debian packages a profile's stages and boots use, and the suite's, named by tinyuki."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tinyuki import arch, packages
from tinyuki.config.profile import load_profile, moved_profile_text

ROOT = Path(__file__).resolve().parents[2]
HOST = "x86_64"


def names(profile: str) -> list[str]:
    """The packages of a shipped profile (configs/profiles/NAME.toml) or example (examples/NAME.toml)."""
    path = ROOT / "configs" / "profiles" / f"{profile}.toml"
    path = path if path.is_file() else ROOT / "examples" / f"{profile}.toml"
    return [n.package for n in packages.for_profile(load_profile(str(path), ROOT), HOST)]


def variant(tmp_path: Path, text: str) -> list[str]:
    """The packages of examples/hello-nolibc.toml with `text` appended, written into tmp_path."""
    base = moved_profile_text((ROOT / "examples" / "hello-nolibc.toml").read_text(), ROOT / "examples")
    path = tmp_path / "p.toml"
    path.write_text(base + text)
    return [n.package for n in packages.for_profile(load_profile(str(path), tmp_path), HOST)]


def test_the_default_profile_needs_the_build_tools_its_source_the_stub_and_qemu_only() -> None:
    got = names("debian")
    for p in ("build-essential", "flex", "bison", "libelf-dev", "linux-source-6.1", "dpkg", "systemd-boot-efi",
              "mtools", "qemu-system-x86", "ovmf", "lz4", "python3-venv"):
        assert p in got, p
    for p in ("golang-go", "rustc", "musl-tools", "sbsigntool", "faketime", "nginx", "redis-server", "distcc",
              "gcc-aarch64-linux-gnu", "qemu-system-arm", "softhsm2", "diffoscope-minimal", "gnupg", "ccache"):
        assert p not in got, p
    assert len(got) == len(set(got))


def test_each_choice_adds_what_it_uses() -> None:
    nolibc = set(names("hello-nolibc"))
    assert "lz4" not in nolibc  # the example's fragments have no lz4
    assert set(names("hello-go")) - nolibc == {"golang-go"}
    assert set(names("hello-rust")) - nolibc == {"rustc", "cargo"}
    assert set(names("hello-musl")) - nolibc == {"musl-tools"}
    assert set(names("hello-glibc")) == nolibc  # static glibc is libc6-dev, in build-essential
    arm = names("arm64")
    assert {"gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross", "qemu-system-arm", "qemu-efi-aarch64"} <= set(arm)
    assert "systemd-boot-efi" not in arm and "qemu-system-x86" not in arm  # its stub is unpacked, not installed
    # a profile on 6.12 needs 6.12's source package, and not 6.1's
    assert set(names("debian-6.12")) ^ set(names("debian")) == {"linux-source-6.1", "linux-source-6.12"}
    kernel_org = names("kernel.org")
    assert "gnupg" in kernel_org and "linux-source-6.1" not in kernel_org and "dpkg" not in kernel_org


def test_signing_adds_sbsign_and_faketime(tmp_path: Path) -> None:
    (tmp_path / "db.key").write_text("k")
    (tmp_path / "db.crt").write_text("c")
    got = variant(tmp_path, '\n[sign]\nkey = "db.key"\ncert = "db.crt"\n')
    assert {"sbsigntool", "faketime", "openssl"} <= set(got)


def test_the_suite_needs_every_shipped_profile_and_its_servers() -> None:
    suite = [n.package for n in packages.for_suite(HOST)]
    for profile in ("debian", "arm64", "kernel.org", "small", "fast-boot", "debian-6.12", "arm64-6.12"):
        assert set(names(profile)) <= set(suite), profile
    assert {"linux-source-6.1", "linux-source-6.12"} <= set(suite)
    assert {"golang-go", "rustc", "cargo", "musl-tools", "nginx", "redis-server", "distcc", "softhsm2",
            "osslsigncode", "git"} <= set(suite)
    assert arch.ARCHES["arm64"].cross_package in suite


def test_the_setup_entry_point_runs_without_the_venv_and_renders_errors() -> None:
    """scripts/setup.sh asks `python3 -m tinyuki.packages` before the venv exists: the standard library only."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    ok = subprocess.run(["/usr/bin/python3", "-S", "-m", "tinyuki.packages", "--missing", "profile=debian"],
                        cwd=ROOT, env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "tinyuki.packages", "profile=nosuch"], cwd=ROOT,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "no profile named 'nosuch'" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("argv", [["--suite", "profile=debian", "boot"], ["jobs=2"]])
def test_unknown_arguments_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert packages.main(argv) == 2
    assert "unknown argument" in capsys.readouterr().err
