"""The one program for the profile's architecture: each builder's command for x86_64 and arm64, the refusals.

The command lines are compared without compiling; the real cross-compiles
(nolibc, glibc, Go for arm64) take a few seconds and need the cross gcc that
scripts/setup.sh installs (gcc-aarch64-linux-gnu, libc6-dev-arm64-cross): a
missing one fails them, as a missing toolchain fails tests/unit/test_builders.py.
They run on an x86-64 host, where arm64 is the foreign architecture.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.stages import out, write_tree_record
from tinyuki.arch import ARCHES
from tinyuki.cache import keys
from tinyuki.config.context import Context, make_context
from tinyuki.errors import TinyukiError
from tinyuki.formats import elf
from tinyuki.tasks import PIPELINE, init
from tinyuki.toolchain import builders, program

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
X86, ARM = ARCHES["x86_64"], ARCHES["arm64"]

on_x86_host = pytest.mark.skipif(os.uname().machine != "x86_64",
                                 reason="written for an x86-64 host, where arm64 needs the cross compiler")

PROFILE = """
[source]
urls = ["https://example.org/linux-6.1.tar.xz"]
sha256 = "{sha}"

[kernel]
arch = "{arch}"
fragments = ["base", "console"]
source_date_epoch = 1700000000

[init]
{init}
marker = "hello: started (test)"
"""


def context(tmp_path: Path, arch: str, init_lines: str, build: str = "build", tree: Path | None = None) -> Context:
    profile = tmp_path / f"{build}.toml"
    profile.write_text(PROFILE.format(sha="0" * 64, arch=arch, init=init_lines))
    ctx = make_context(str(profile), build_dir=str(tmp_path / build), cache_dir=str(tmp_path / "cache"), root=ROOT)
    ctx.paths.build.mkdir(parents=True, exist_ok=True)
    write_tree_record(ctx.paths.build, tree or tmp_path)
    return ctx


def elf64(machine: int, e_type: int = 2) -> bytes:
    """A static executable's ELF header and nothing else: all elf_problem reads."""
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<HHIQQQIHHHHHH", header, 16, e_type, machine, 1, 0x401000, 64, 0, 0, 64, 56, 0, 64, 0, 0)
    return bytes(header)


def job(tmp_path: Path, arch: str, **changes: Any) -> builders.Job:
    base = builders.Job(sources=(EXAMPLES / "hello-go" / "main.go",), output=tmp_path / "o", marker="m", flags=(),
                        root=ROOT, cache=tmp_path / "c", epoch=1, log=tmp_path / "log", arch=ARCHES[arch])
    return replace(base, **changes)


# ---------------------------------------------------------------- C: the compiler is the target's, nothing else moves

@on_x86_host
@pytest.mark.parametrize("libc", ["nolibc", "glibc"])
def test_c_commands_differ_only_in_the_compiler(libc: str) -> None:
    tree = Path("/src/linux") if libc == "nolibc" else None

    def command(**arch: Any) -> list[str]:
        return program.compile_command(libc=libc, sources=["init/init.c"], output="out", marker="m",
                                       cflags=["-Werror"], tree=tree, root=Path("/p"), **arch)

    before = command()  # as every caller had it: no arch
    x86, arm = command(arch=X86), command(arch=ARM)
    assert x86 == before and x86[0] == "gcc"  # x86_64's bytes cannot move
    assert arm[0] == "aarch64-linux-gnu-gcc" and arm[1:] == x86[1:]
    assert "-static" in arm
    if libc == "nolibc":
        assert arm[-1] == "-lgcc" and "-nostdlib" in arm
    else:
        assert "-nostdlib" not in arm


@on_x86_host
def test_musl_is_refused_for_arm64_with_what_works(tmp_path: Path) -> None:
    """The profile refuses it on load (tests/unit/test_arch.py); the compiler lookup refuses it too."""
    assert program.compiler("musl", X86) == "musl-gcc"
    if ARCHES["arm64"].native():
        return
    with pytest.raises(TinyukiError) as e:
        program.compiler("musl", ARCHES["arm64"])
    assert 'libc = "musl" cannot build /init for arm64' in e.value.message
    assert "no musl cross toolchain" in e.value.message
    hint = e.value.hint or ""
    assert '"nolibc"' in hint and '"glibc"' in hint and "[init] binary" in hint


@on_x86_host
def test_musl_on_arm64_through_doit_is_one_clean_error(tmp_path: Path) -> None:
    from tests.helpers.doit import run_dodo

    prof = tmp_path / "musl-arm64.toml"
    prof.write_text(f'[source]\nurls = ["/nonexistent.tar.xz"]\nsha256 = "{"0" * 64}"\n'
                    '[kernel]\narch = "arm64"\nfragments = ["base"]\n'
                    f'[init]\nsources = ["{ROOT}/examples/hello-c/hello.c"]\nlibc = "musl"\n')
    done = run_dodo("init", f"profile={prof}", f"build_dir={tmp_path / 'build'}", f"cache_dir={tmp_path / 'cache'}")
    text = done.stdout + done.stderr
    assert done.returncode != 0
    assert "musl-gcc" in text and "builds for the host only" in text and "Traceback" not in text


@on_x86_host
def test_a_missing_cross_compiler_names_the_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = context(tmp_path, "arm64", f'sources = ["{EXAMPLES}/hello-c/hello.c"]\nlanguage = "c"\nlibc = "glibc"')
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(TinyukiError) as e:
        init.build(ctx)
    assert "aarch64-linux-gnu-gcc is not installed" in e.value.message and "arm64" in e.value.message
    assert "apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross" in (e.value.hint or "")
    assert "scripts/setup.sh" in (e.value.hint or "")
    # the host's gcc missing: its own package
    with pytest.raises(TinyukiError) as e:
        program.require_compiler("gcc", X86)
    assert "build-essential" in (e.value.hint or "")


# ---------------------------------------------------------------- Go: GOARCH from the table

def test_go_environment_per_arch(tmp_path: Path) -> None:
    host = {"PATH": "/usr/bin", "GOARCH": "riscv64", "GOAMD64": "v3"}  # the caller's own never leak in
    x86 = builders.go_environ(job(tmp_path, "x86_64", environ=host), EXAMPLES / "hello-go")
    arm = builders.go_environ(job(tmp_path, "arm64", environ=host), EXAMPLES / "hello-go")
    assert {k: x86[k] for k in ("GOOS", "GOARCH", "GOAMD64")} == {"GOOS": "linux", "GOARCH": "amd64", "GOAMD64": "v1"}
    assert arm["GOOS"] == "linux" and arm["GOARCH"] == "arm64" and "GOAMD64" not in arm
    assert {k: v for k, v in arm.items() if not k.startswith(("GOARCH", "GOAMD64"))} == \
           {k: v for k, v in x86.items() if not k.startswith(("GOARCH", "GOAMD64"))}
    assert builders.go_command(job(tmp_path, "arm64")) == builders.go_command(job(tmp_path, "x86_64"))
    assert builders.Job(sources=(), output=tmp_path, marker="m", flags=(), root=ROOT, cache=tmp_path, epoch=1,
                        log=tmp_path).arch == X86  # a Job that names no target is x86_64's, as before


# ---------------------------------------------------------------- Rust: --target, the cross linker, a missing std

@on_x86_host
def test_rust_target_and_linker_per_arch(tmp_path: Path) -> None:
    package, target = EXAMPLES / "hello-rust", tmp_path / "t"
    x86, arm = job(tmp_path, "x86_64"), job(tmp_path, "arm64")
    x86_cmd, arm_cmd = builders.cargo_command(x86, package, target), builders.cargo_command(arm, package, target)
    assert x86_cmd[x86_cmd.index("--target") + 1] == "x86_64-unknown-linux-gnu"
    assert arm_cmd[arm_cmd.index("--target") + 1] == "aarch64-unknown-linux-gnu"
    x86_flags = builders.rust_flags(x86, package, target, Path("/h/.cargo"))
    arm_flags = builders.rust_flags(arm, package, target, Path("/h/.cargo"))
    assert not any(f.startswith("linker=") for f in x86_flags)  # the host's cc, as before
    assert "linker=aarch64-linux-gnu-gcc" in arm_flags
    at = arm_flags.index("linker=aarch64-linux-gnu-gcc")
    assert arm_flags[at - 1] == "-C" and arm_flags[:at - 1] + arm_flags[at + 1:] == x86_flags  # nothing else moves


def fake_rustc(tmp_path: Path, sysroot: Path) -> Path:
    script = tmp_path / "rustc"
    script.write_text(f"#!/bin/sh\necho {sysroot}\n")
    script.chmod(0o755)
    return script


@on_x86_host
def test_rust_without_the_targets_std_or_linker(tmp_path: Path) -> None:
    sysroot = tmp_path / "sysroot"
    (sysroot / "lib" / "rustlib" / "x86_64-unknown-linux-gnu" / "lib").mkdir(parents=True)
    env = {"RUSTC": str(fake_rustc(tmp_path, sysroot)), "PATH": os.environ["PATH"]}
    arm = job(tmp_path, "arm64")
    with pytest.raises(TinyukiError) as e:
        builders.check_rust_target(arm, EXAMPLES / "hello-rust", env)
    assert "no standard library for aarch64-unknown-linux-gnu" in e.value.message
    hint = e.value.hint or ""
    assert "rustup target add aarch64-unknown-linux-gnu" in hint and "libstd-rust-dev:arm64" in hint
    # with the std in place, the cross linker is what is missing
    (sysroot / "lib" / "rustlib" / "aarch64-unknown-linux-gnu" / "lib").mkdir(parents=True)
    empty = tmp_path / "bin"
    empty.mkdir()
    with pytest.raises(TinyukiError) as e:
        builders.check_rust_target(arm, EXAMPLES / "hello-rust", {**env, "PATH": str(empty)})
    assert "aarch64-linux-gnu-gcc is not installed" in e.value.message
    assert "gcc-aarch64-linux-gnu" in (e.value.hint or "")
    if shutil.which("aarch64-linux-gnu-gcc"):
        builders.check_rust_target(arm, EXAMPLES / "hello-rust", env)  # std and linker: on to cargo


# ---------------------------------------------------------------- the ELF machine is the target's

def test_elf_machine_is_checked_against_the_target_both_ways() -> None:
    x86_prog, arm_prog = elf64(62), elf64(183)
    assert elf.elf_problem(x86_prog) is None and elf.elf_problem(x86_prog, 62) is None
    assert elf.elf_problem(arm_prog, 183) is None
    assert elf.elf_problem(x86_prog, 183) == "built for x86-64 (ELF machine 62), not the kernel's AArch64 (183)"
    assert elf.elf_problem(arm_prog) == "built for AArch64 (ELF machine 183), not the kernel's x86-64 (62)"
    assert elf.elf_problem(arm_prog, 62) == elf.elf_problem(arm_prog)
    assert elf.machine_of(arm_prog) == 183 and elf.machine_of(b"#!/bin/sh\n") is None


@pytest.mark.parametrize("arch,wrong,needed,other", [("arm64", 62, "AArch64", "x86_64"),
                                                      ("x86_64", 183, "x86-64", "arm64")])
def test_a_prebuilt_binary_for_the_other_architecture(tmp_path: Path, arch: str, wrong: int, needed: str,
                                                      other: str) -> None:
    prog = tmp_path / "prog"
    prog.write_bytes(elf64(wrong))
    with pytest.raises(TinyukiError) as e:
        init.build(context(tmp_path, arch, f'binary = "{prog}"'))
    assert f"not the kernel's {needed} ({ARCHES[arch].elf_machine})" in e.value.message
    hint = e.value.hint or ""
    assert f"give a static {needed} Linux executable" in hint and f'[kernel] arch = "{other}"' in hint


def test_a_prebuilt_binary_for_the_target_is_taken(tmp_path: Path) -> None:
    prog = tmp_path / "prog"
    prog.write_bytes(elf64(183))
    ctx = context(tmp_path, "arm64", f'binary = "{prog}"')
    init.build(ctx)
    assert out(ctx, "init").read_bytes() == prog.read_bytes()


# ---------------------------------------------------------------- the key names the cross compiler

@on_x86_host
def test_the_init_key_carries_the_cross_compilers_version(tmp_path: Path) -> None:
    if shutil.which("aarch64-linux-gnu-gcc") is None:
        pytest.fail("aarch64-linux-gnu-gcc is not installed: scripts/setup.sh installs gcc-aarch64-linux-gnu")
    lines = f'sources = ["{EXAMPLES}/hello-c/hello.c"]\nlanguage = "c"\nlibc = "glibc"'
    arm, x86 = context(tmp_path, "arm64", lines, "arm"), context(tmp_path, "x86_64", lines, "x86")
    stage = PIPELINE["init"]
    assert keys.material(arm, stage, PIPELINE)["tools"]["gcc"].startswith("aarch64-linux-gnu-gcc")
    assert keys.material(x86, stage, PIPELINE)["tools"]["gcc"].startswith("gcc")
    assert keys.compute(arm, stage, PIPELINE)[0] != keys.compute(x86, stage, PIPELINE)[0]


# ---------------------------------------------------------------- real cross-compiles

def need_cross() -> None:
    for tool in ("aarch64-linux-gnu-gcc",):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: scripts/setup.sh installs gcc-aarch64-linux-gnu"
                        " libc6-dev-arm64-cross")


def check_arm64(data: bytes, path: Path) -> None:
    assert elf.elf_problem(data, 183) is None
    assert elf.machine_of(data) == 183 and elf.interpreter(data) is None
    assert b"hello: started (test)" in data
    assert str(ROOT).encode() not in data and b"/tmp/" not in data
    if shutil.which("file"):
        desc = subprocess.run(["file", "-b", str(path)], check=True, stdout=subprocess.PIPE).stdout.decode()
        assert "ARM aarch64" in desc and "statically linked" in desc


@on_x86_host
@pytest.mark.parametrize("libc", ["nolibc", "glibc"])
def test_c_cross_compiles_for_arm64_reproducibly(tmp_path: Path, ref_tree: Path, libc: str) -> None:
    need_cross()
    lines = f'sources = ["{EXAMPLES}/hello-c/hello.c"]\nlanguage = "c"\nlibc = "{libc}"'
    built = []
    for name in ("a", "b"):
        ctx = context(tmp_path, "arm64", lines, name, tree=ref_tree)
        init.refresh(ctx)
        init.build(ctx)
        built.append(out(ctx, "init").read_bytes())
        check_arm64(built[-1], out(ctx, "init"))
        deps = json.loads((ctx.paths.build / init.DEPS).read_text())["files"]
        if libc == "glibc":  # the target's headers, not the host's, reach the key
            assert any("aarch64-linux-gnu" in f for f in deps), deps
            assert not any(f.startswith("/usr/include/") for f in deps), deps
    assert built[0] == built[1]
    assert len(built[0]) < (8 << 10 if libc == "nolibc" else 1 << 20)


@on_x86_host
def test_go_cross_compiles_for_arm64(tmp_path: Path) -> None:
    if shutil.which("go") is None:
        pytest.fail("go is not installed: scripts/setup.sh installs golang-go")
    ctx = context(tmp_path, "arm64", f'sources = ["{EXAMPLES}/hello-go/main.go"]\nlanguage = "go"')
    init.build(ctx)
    check_arm64(out(ctx, "init").read_bytes(), out(ctx, "init"))
