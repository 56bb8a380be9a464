"""Any static program as /init: the builders (glibc, Go, Rust, prebuilt), their keys, checks and kernel fragments.

Go and Rust are built for real with the toolchains scripts/setup.sh installs:
a missing toolchain fails these tests (it does not skip them), since the
builders are part of what tinyuki promises.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers.doit import ran, run_stages
from tests.helpers.stages import out, write_tree_record
from tinyuki.cache import keys
from tinyuki.config.context import Context, make_context
from tinyuki.errors import TinyukiError
from tinyuki.formats import elf, kconfig
from tinyuki.tasks import PIPELINE, configure, init
from tinyuki.toolchain import builders, program

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

PROFILE = """
[source]
urls = ["https://example.org/linux-6.1.tar.xz"]
sha256 = "{sha}"

[kernel]
fragments = ["base", "console"]
source_date_epoch = 1700000000

[init]
{init}
marker = "hello: started (test)"
"""


def need(tool: str, package: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed: scripts/setup.sh installs {package}")


def context(tmp_path: Path, init_lines: str, build: str = "build", tree: Path | None = None) -> Context:
    profile = tmp_path / f"{build}.toml"
    profile.write_text(PROFILE.format(sha="0" * 64, init=init_lines))
    ctx = make_context(str(profile), build_dir=str(tmp_path / build), cache_dir=str(tmp_path / "cache"), root=ROOT)
    ctx.paths.build.mkdir(parents=True, exist_ok=True)
    write_tree_record(ctx.paths.build, tree or tmp_path)
    return ctx


def copy_example(tmp_path: Path, name: str) -> Path:
    dest = tmp_path / name
    shutil.copytree(EXAMPLES / name, dest, ignore=shutil.ignore_patterns("target", "hello"))
    return dest


def build_init(ctx: Context) -> bytes:
    init.build(ctx)
    return out(ctx, "init").read_bytes()


def check_static(data: bytes) -> None:
    assert elf.elf_problem(data) is None
    assert elf.interpreter(data) is None
    assert b"/work/" not in data and str(ROOT).encode() not in data  # no path of this machine


# ---------------------------------------------------------------- the registry

def test_each_setting_picks_its_builder() -> None:
    assert builders.select("c", "nolibc", None).name == "nolibc"
    assert builders.select("c", "musl", None).name == "musl"
    assert builders.select("c", "glibc", None).name == "glibc"
    assert builders.select("go", "nolibc", None).name == "go"
    assert builders.select("rust", "musl", None).name == "rust"
    assert builders.select("go", "nolibc", Path("/x")).name == "prebuilt"  # a binary wins; language names its runtime
    assert set(builders.BUILDERS) == {"nolibc", "musl", "glibc", "go", "rust", "prebuilt"}
    # every tool a builder runs reaches the init stage's key
    assert set(builders.TOOLS) <= set(PIPELINE["init"].tools)
    assert {"go", "cargo", "rustc", "gcc", "musl-gcc"} <= set(PIPELINE["init"].tools)


def test_sources_in_another_language_than_the_setting_say_which_to_set(tmp_path: Path) -> None:
    with pytest.raises(TinyukiError) as e:
        builders.check_sources("c", (Path("x/main.go"),), None)
    assert "main.go, a go file" in e.value.message and 'language = "go"' in (e.value.hint or "")
    with pytest.raises(TinyukiError):
        builders.check_sources("go", (Path("src/main.rs"),), None)
    builders.check_sources("rust", (Path("src/main.rs"),), None)
    builders.check_sources("c", (Path("x/main.go"),), Path("/bin/prog"))  # a binary: sources do not matter


# ---------------------------------------------------------------- glibc, as gcc -static

def test_glibc_is_compiled_like_gcc_static_with_tinyukis_flags(tmp_path: Path) -> None:
    cmd = program.compile_command(libc="glibc", sources=["a.c"], output="o", marker="m")
    assert cmd[0] == "gcc" and "-static" in cmd and "-nostdlib" not in cmd
    for flag in ("-Os", "-Wl,--gc-sections", "-Wl,--build-id=none", "-s", "-no-pie"):
        assert flag in cmd
    need("gcc", "build-essential (libc6-dev for static glibc)")
    a = build_init(context(tmp_path, f'sources = ["{EXAMPLES}/hello-c/hello.c"]\nlanguage = "c"\nlibc = "glibc"', "a"))
    b = build_init(context(tmp_path, f'sources = ["{EXAMPLES}/hello-c/hello.c"]\nlanguage = "c"\nlibc = "glibc"', "b"))
    check_static(a)
    assert a == b  # reproducible
    assert b"hello from C (glibc)" in a and b"hello: started (test)" in a


# ---------------------------------------------------------------- Go

def test_go_builds_a_static_stripped_reproducible_program(tmp_path: Path) -> None:
    need("go", "golang-go")
    a = build_init(context(tmp_path, f'sources = ["{EXAMPLES}/hello-go/main.go"]\nlanguage = "go"', "a"))
    b = build_init(context(tmp_path, f'sources = ["{EXAMPLES}/hello-go/main.go"]\nlanguage = "go"', "b"))
    check_static(a)
    assert a == b
    assert b"hello: started (test)" in a  # the marker, set at link time
    assert b"Go build ID" not in a and b"vcs.revision" not in a
    assert struct.unpack_from("<H", a, 16)[0] == 2  # ET_EXEC: CGO off, no PIE


def test_go_command_and_environment_are_offline_static_and_without_stamps(tmp_path: Path) -> None:
    job = builders.Job(sources=(EXAMPLES / "hello-go" / "main.go",), output=tmp_path / "o", marker="it's \"up\"",
                       flags=(), root=ROOT, cache=tmp_path, epoch=1, log=tmp_path / "log",
                       environ={"GOFLAGS": "-race", "CGO_ENABLED": "1", "PATH": "/usr/bin"})
    with pytest.raises(TinyukiError) as e:  # both quotes: -ldflags cannot carry it
        builders.go_command(job)
    assert "quote" in e.value.message
    job = replace(job, marker="m: up")
    cmd = builders.go_command(job)
    assert "-trimpath" in cmd and "-buildvcs=false" in cmd
    assert "-ldflags=-s -w -buildid= -X 'main.tinyukiMarker=m: up'" in cmd
    env = builders.go_environ(job, EXAMPLES / "hello-go")
    assert env["CGO_ENABLED"] == "0" and env["GOPROXY"] == "off" and env["GOFLAGS"] == "-mod=readonly"
    assert env["GOTOOLCHAIN"] == "local" and env["PATH"] == "/usr/bin"


def test_go_error_without_go_mod(tmp_path: Path) -> None:
    (tmp_path / "main.go").write_text("package main\nfunc main() {}\n")
    ctx = context(tmp_path, f'sources = ["{tmp_path / "main.go"}"]\nlanguage = "go"')
    with pytest.raises(TinyukiError) as e:
        init.build(ctx)
    assert "no go.mod" in e.value.message


# ---------------------------------------------------------------- Rust

def test_rust_builds_a_static_stripped_reproducible_program(tmp_path: Path) -> None:
    need("cargo", "cargo and rustc")
    a = build_init(context(tmp_path, f'sources = ["{EXAMPLES}/hello-rust/src/main.rs"]\nlanguage = "rust"', "a"))
    shutil.rmtree(tmp_path / "cache")  # a cold target dir elsewhere: the same bytes
    b = build_init(context(tmp_path, f'sources = ["{EXAMPLES}/hello-rust/src/main.rs"]\nlanguage = "rust"', "b"))
    check_static(a)
    assert a == b
    assert b"hello: started (test)" in a
    assert b"/root/.cargo" not in a and b"/.rustup/" not in a


def test_rust_flags_and_a_missing_lock(tmp_path: Path) -> None:
    crate = copy_example(tmp_path, "hello-rust")
    job = builders.Job(sources=(crate / "src" / "main.rs",), output=tmp_path / "o", marker="m", flags=(),
                       root=ROOT, cache=tmp_path / "c", epoch=1, log=tmp_path / "log")
    flags = builders.rust_flags(job, crate, tmp_path / "t", Path("/h/.cargo"))
    assert "target-feature=+crt-static" in flags and f"--remap-path-prefix={crate}=." in flags
    assert "--locked" in builders.cargo_command(job, crate, tmp_path / "t")
    assert "--offline" in builders.cargo_command(job, crate, tmp_path / "t")
    (crate / "Cargo.lock").unlink()
    with pytest.raises(TinyukiError) as e:
        builders.build_rust(job)
    assert "no Cargo.lock" in e.value.message and "generate-lockfile" in (e.value.hint or "")


# ---------------------------------------------------------------- the key covers every file and the toolchain

@pytest.mark.parametrize("example,main,language,files", [
    ("hello-go", "main.go", "go", ("go.mod", "main.go", "go.sum")),
    ("hello-rust", "src/main.rs", "rust", ("Cargo.toml", "Cargo.lock", "src/main.rs", "src/util.rs")),
])
def test_the_key_covers_every_file_of_the_project(tmp_path: Path, example: str, main: str, language: str,
                                                 files: tuple[str, ...]) -> None:
    project = copy_example(tmp_path, example)
    for name in files:  # files the example may lack (go.sum, a second module)
        if not (project / name).exists():
            (project / name).write_text("\n")
    (project / "target").mkdir(exist_ok=True)
    (project / "target" / "junk").write_text("build output\n")
    ctx = context(tmp_path, f'sources = ["{project / main}"]\nlanguage = "{language}"')
    stage = PIPELINE["init"]
    assert {project / f for f in files} <= set(stage.input_files(ctx))
    assert project / "target" / "junk" not in stage.input_files(ctx)
    before = keys.compute(ctx, stage, PIPELINE)[0]
    for name in files:
        path = project / name
        old = path.read_bytes()
        path.write_bytes(old + b"\n// changed\n")
        assert keys.compute(ctx, stage, PIPELINE)[0] != before, f"{name} does not reach the key"
        path.write_bytes(old)
    assert keys.compute(ctx, stage, PIPELINE)[0] == before
    material = keys.material(ctx, stage, PIPELINE)
    assert {"go", "cargo", "rustc"} <= set(material["tools"])


# ---------------------------------------------------------------- the kernel follows the program

def test_configure_adds_the_runtime_fragment_of_the_language(tmp_path: Path) -> None:
    frag = ROOT / "configs" / "fragments"
    c = context(tmp_path, f'sources = ["{EXAMPLES}/hello-c/hello.c"]', "c")
    go = context(tmp_path, f'sources = ["{EXAMPLES}/hello-go/main.go"]\nlanguage = "go"', "go")
    rust = context(tmp_path, f'sources = ["{EXAMPLES}/hello-rust/src/main.rs"]\nlanguage = "rust"', "rust")
    prebuilt = context(tmp_path, f'binary = "{EXAMPLES / "hello-c" / "hello.c"}"\nlanguage = "go"', "pre")
    assert configure.fragments_of(c) == c.profile.kernel.fragments
    assert configure.fragments_of(go) == (*go.profile.kernel.fragments, frag / "go-runtime.config")
    assert configure.fragments_of(rust)[-1] == frag / "rust-runtime.config"
    assert configure.fragments_of(prebuilt)[-1] == frag / "go-runtime.config"  # a prebuilt Go program too
    stage = PIPELINE["configure"]
    assert frag / "go-runtime.config" in stage.input_files(go)
    assert frag / "go-runtime.config" not in stage.input_files(c)
    assert keys.compute(c, stage, PIPELINE)[0] != keys.compute(go, stage, PIPELINE)[0]
    # what each runtime needs, as configure will prove it
    go_wants = {r.symbol: r.value for r in kconfig.read_fragment(frag / "go-runtime.config", "go-runtime")}
    assert {"CONFIG_FUTEX", "CONFIG_EPOLL"} <= set(go_wants) and go_wants["CONFIG_FUTEX"] == "y"
    rust_wants = {r.symbol for r in kconfig.read_fragment(frag / "rust-runtime.config", "rust-runtime")}
    assert "CONFIG_FUTEX" in rust_wants


def test_a_fragment_already_listed_is_not_added_twice(tmp_path: Path) -> None:
    ctx = context(tmp_path, f'sources = ["{EXAMPLES}/hello-go/main.go"]\nlanguage = "go"')
    listed = (*ctx.profile.kernel.fragments, ROOT / "configs" / "fragments" / "go-runtime.config")
    profile = replace(ctx.profile, kernel=replace(ctx.profile.kernel, fragments=listed))
    ctx2 = replace(ctx, profile=profile)
    assert configure.fragments_of(ctx2) == listed


# ---------------------------------------------------------------- a prebuilt binary, checked before packing

def prebuilt_error(tmp_path: Path, data: bytes | None, name: str = "prog") -> TinyukiError:
    path = tmp_path / name
    if data is not None:
        path.write_bytes(data)
    with pytest.raises(TinyukiError) as e:
        ctx = context(tmp_path, f'binary = "{path}"')
        init.build(ctx)
    return e.value


def elf64(machine: int, e_type: int = 2) -> bytes:
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<HHIQQQIHHHHHH", header, 16, e_type, machine, 1, 0x401000, 64, 0, 0, 64, 56, 0, 64, 0, 0)
    return bytes(header)


def test_a_dynamic_binary_names_its_interpreter_and_the_fix(tmp_path: Path) -> None:
    e = prebuilt_error(tmp_path, Path("/bin/true").read_bytes())  # Debian's coreutils are dynamic
    assert "dynamically linked" in e.message and "/lib64/ld-linux-x86-64.so.2" in e.message
    assert "statically" in (e.hint or "") and "gcc -static" in (e.hint or "")


def test_a_binary_for_another_architecture(tmp_path: Path) -> None:
    e = prebuilt_error(tmp_path, elf64(183))
    assert "AArch64" in e.message and "x86-64" in e.message
    i386 = bytearray(elf64(3))
    i386[4] = 1
    e = prebuilt_error(tmp_path, bytes(i386), "i386")
    assert "32-bit" in e.message and "i386" in e.message


def test_a_script(tmp_path: Path) -> None:
    e = prebuilt_error(tmp_path, b"#!/bin/sh\necho hi\n")
    assert "a script (#!/bin/sh)" in e.message and "interpreter" in (e.hint or "")


def test_a_missing_file(tmp_path: Path) -> None:
    e = prebuilt_error(tmp_path, None, "nowhere")
    assert "[init] binary" in e.message and "does not exist" in e.message


def test_an_empty_file(tmp_path: Path) -> None:
    e = prebuilt_error(tmp_path, b"")
    assert "empty (0 bytes)" in e.message


def test_an_object_file_and_a_shared_library(tmp_path: Path) -> None:
    assert "object file" in prebuilt_error(tmp_path, elf64(62, e_type=1), "obj").message
    library = bytearray(elf64(62, e_type=3))
    struct.pack_into("<Q", library, 24, 0)  # no entry point
    assert "shared library" in prebuilt_error(tmp_path, bytes(library), "lib").message


def test_a_static_binary_is_packed_as_it_is_and_tracked_by_content(tmp_path: Path) -> None:
    need("gcc", "build-essential")
    prog = tmp_path / "prog"
    shutil.copy(init_binary(tmp_path), prog)
    ctx = context(tmp_path, f'binary = "{prog}"')
    assert build_init(ctx) == prog.read_bytes()
    stage = PIPELINE["init"]
    assert prog in stage.input_files(ctx)
    before = keys.compute(ctx, stage, PIPELINE)[0]
    prog.write_bytes(prog.read_bytes() + b"\0")
    assert keys.compute(ctx, stage, PIPELINE)[0] != before


def init_binary(tmp_path: Path) -> Path:
    """A static program made outside tinyuki, as examples/hello-prebuilt/build.sh makes one."""
    dest = tmp_path / "built"
    subprocess.run(["gcc", "-static", "-Os", "-s", "-o", str(dest), str(EXAMPLES / "hello-c" / "hello.c")], check=True)
    return dest


# ---------------------------------------------------------------- through doit: staleness follows go.mod

def test_doit_rebuilds_the_go_program_when_go_mod_changes(tmp_path: Path) -> None:
    need("go", "golang-go")
    module = copy_example(tmp_path, "hello-go")
    ctx = context(tmp_path, f'sources = ["{module / "main.go"}"]\nlanguage = "go"')
    assert run_stages(ctx, ("init",), ("init",))[0] == 0
    first = hashlib.sha256(out(ctx, "init").read_bytes()).hexdigest()
    report = tmp_path / "report.txt"
    code, text = run_stages(ctx, ("init",), ("init",), report=report)
    assert code == 0 and "init" not in ran(text)
    (module / "go.mod").write_text((module / "go.mod").read_text() + "\n// a comment\n")
    code, text = run_stages(ctx, ("init",), ("init",), report=report)
    assert code == 0 and "init" in ran(text)
    assert hashlib.sha256(out(ctx, "init").read_bytes()).hexdigest() == first  # a comment: the same program
