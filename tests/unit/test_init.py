"""The shipped /init compiled for real with nolibc (from a kernel tree) and musl, and the init task's checks."""

from __future__ import annotations

import json
import shutil
import signal
import struct
import subprocess
from pathlib import Path

import pytest

from tests.helpers import stages
from tests.helpers.doit import run_stages
from tests.helpers.profiles import MINIMAL
from tests.helpers.stages import out, write_tree_record
from tinyuki.config.context import Context, make_context
from tinyuki.errors import TinyukiError
from tinyuki.formats import elf
from tinyuki.tasks import init
from tinyuki.toolchain import program

ROOT = Path(__file__).resolve().parents[2]
MARKER = "tinyuki: init started"

PROFILE = MINIMAL + """source_date_epoch = 1700000000

[init]
sources = {sources}
libc = "{libc}"
cflags = ["-Werror"]
marker = {marker}
"""


@pytest.fixture(scope="module")
def tree(ref_tree: Path) -> Path:
    """A kernel tree carrying nolibc, from Debian's tarball (the debian profile's source)."""
    assert (ref_tree / program.NOLIBC_HEADER).is_file()
    return ref_tree


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed (Debian: {'musl-tools' if tool == 'musl-gcc' else 'build-essential'})")


def context(tmp_path: Path, tree: Path | None, libc: str = "nolibc", sources: list[str] | None = None,
            marker: str = MARKER) -> Context:
    """A build dir in tmp_path with the patch stage's record pointing at `tree`."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    profile = tmp_path / "p.toml"
    profile.write_text(PROFILE.format(libc=libc, sources=json.dumps(sources or [str(ROOT / "init" / "init.c")]),
                                      marker=json.dumps(marker)))
    ctx = make_context(str(profile), build_dir=str(tmp_path / "build"), cache_dir=str(tmp_path / "cache"), root=ROOT)
    if tree is not None:
        ctx.paths.build.mkdir(parents=True, exist_ok=True)
        write_tree_record(ctx.paths.build, tree)
    return ctx


def program_headers(data: bytes) -> list[int]:
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    return [struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)]


def check_binary(path: Path, limit: int) -> bytes:
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF"
    assert elf.PT_INTERP not in program_headers(data)  # no dynamic loader needed
    assert elf.elf_problem(data) is None
    assert MARKER.encode() in data
    assert len(data) < limit, f"{path} is {len(data)} bytes"
    assert str(ROOT).encode() not in data and b"/tmp/" not in data  # no build paths leak
    if shutil.which("file"):
        desc = subprocess.run(["file", "-b", str(path)], check=True, stdout=subprocess.PIPE).stdout.decode()
        assert "statically linked" in desc and "x86-64" in desc
    assert path.stat().st_mode & 0o111
    return data


def test_nolibc_build_is_tiny_static_and_reproducible(tmp_path: Path, tree: Path) -> None:
    need("gcc")
    ctx = context(tmp_path / "a", tree)
    init.build(ctx)
    data = check_binary(out(ctx, "init"), 8192)
    assert list(out(ctx, "init").parent.iterdir()) == [out(ctx, "init")]  # no temp left behind
    other = context(tmp_path / "b", tree)
    init.build(other)
    assert out(other, "init").read_bytes() == data


def test_musl_build_is_static(tmp_path: Path) -> None:
    need("musl-gcc")
    ctx = context(tmp_path, None, libc="musl")
    init.build(ctx)
    check_binary(out(ctx, "init"), 32768)


def test_marker_reaches_the_program_verbatim(tmp_path: Path, tree: Path) -> None:
    need("gcc")
    marker = 'boot "ok" \\ 100% done'
    ctx = context(tmp_path, tree, marker=marker)
    init.build(ctx)
    data = out(ctx, "init").read_bytes()
    assert marker.encode() + b"\0" in data
    assert MARKER.encode() not in data


def test_compile_error_names_the_file_and_shows_the_compiler(tmp_path: Path, tree: Path) -> None:
    need("gcc")
    broken = tmp_path / "broken.c"
    broken.write_text("int main(void)\n{\n\treturn undefined_thing;\n}\n")
    ctx = context(tmp_path, tree, sources=[str(broken)])
    with pytest.raises(TinyukiError) as info:
        init.build(ctx)
    text = info.value.render()
    assert "compiling" in text and "broken.c" in text
    assert "broken.c:3" in text and "undefined_thing" in text and "error:" in text
    assert not out(ctx, "init").exists()


def test_warnings_fail_under_werror(tmp_path: Path) -> None:
    """The profile's cflags reach the compiler: -Werror turns an unused variable into a failure."""
    need("musl-gcc")
    src = tmp_path / "warn.c"
    src.write_text("int main(void)\n{\n\tint unused;\n\treturn 0;\n}\n")
    ctx = context(tmp_path, None, libc="musl", sources=[str(src)])
    with pytest.raises(TinyukiError, match="unused"):
        init.build(ctx)


def test_missing_tree_record_and_tree_without_nolibc(tmp_path: Path) -> None:
    ctx = context(tmp_path / "a", None)
    with pytest.raises(TinyukiError, match="doit patch"):
        init.build(ctx)
    empty = tmp_path / "empty-tree"
    empty.mkdir()
    ctx = context(tmp_path / "b", empty)
    with pytest.raises(TinyukiError, match="nolibc") as info:
        init.build(ctx)
    assert "musl" in (info.value.hint or "")


def test_runs_and_reports_errno_names(tmp_path: Path, tree: Path) -> None:
    """Run the program as PID 1 of a fresh user+PID namespace, chrooted into a copy of the image.

    Unprivileged there, mounting devtmpfs fails with EPERM: the program must say so by name, carry on,
    and end with reboot(2), which in a PID namespace ends the namespace instead of powering off.
    """
    need("gcc")
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare (util-linux) is not installed")
    ctx = context(tmp_path, tree)
    init.build(ctx)
    image = tmp_path / "image"
    image.mkdir()
    shutil.copy2(out(ctx, "init"), image / "init")
    cmd = [unshare, "--user", "--map-root-user", "--mount", "--pid", "--fork", "chroot", str(image), "/init"]
    proc = subprocess.run(cmd, capture_output=True, timeout=30, check=False)
    if proc.returncode != 0 and not proc.stdout:
        pytest.skip(f"user namespaces are not available here: {proc.stderr.decode().strip()}")
    lines = proc.stdout.decode().splitlines()
    assert lines[0] == MARKER
    assert "init: mount devtmpfs on /dev failed: EPERM (errno 1)" in lines
    assert "init: mounted proc on /proc" in lines
    uptime = next(line for line in lines if line.startswith("init: kernel uptime "))
    assert float(uptime.split()[3]) > 0
    assert "init: cannot look for a disk: /dev is not mounted" in lines
    assert lines[-1] == "init: 1 step failed, powering off"
    # reboot(POWER_OFF) in a PID namespace ends its init with SIGINT, which unshare passes on
    assert proc.returncode in (-signal.SIGINT, 128 + signal.SIGINT)


def test_command_lines() -> None:
    tree = Path("/src/linux")
    cmd = program.compile_command(libc="nolibc", sources=["init/init.c"], output="out", marker="m", tree=tree,
                               cflags=["-DX=1"], root=Path("/proj"))
    assert cmd[0] == "gcc"
    for flag in ("-static", "-nostdlib", "-Os", "-s", "-Wl,--build-id=none", "-fno-tree-loop-distribute-patterns",
                 "-ffunction-sections", "-fdata-sections", "-Wl,--gc-sections", "-fno-asynchronous-unwind-tables",
                 "-ffile-prefix-map=/src/linux=linux", "-ffile-prefix-map=/proj=.", '-DTINYUKI_MARKER="m"'):
        assert flag in cmd
    assert cmd[cmd.index("-include") + 1] == "/src/linux/tools/include/nolibc/nolibc.h"
    assert cmd.index("-DX=1") > cmd.index("-Os")  # the profile's flags come last and win
    musl = program.compile_command(libc="musl", sources=["a.c"], output="out", marker="m")
    assert musl[0] == "musl-gcc" and "-nostdlib" not in musl and "-include" not in musl and "-static" in musl
    with pytest.raises(TinyukiError, match="nolibc needs the kernel tree"):
        program.compile_command(libc="nolibc", sources=["a.c"], output="o", marker="m")


@pytest.mark.parametrize(
    ("text", "literal"),
    [("plain", '"plain"'), ('say "hi"', r'"say \"hi\""'), ("a\\b", r'"a\\b"'), ("é", r'"\303\251"')],
)
def test_c_string(text: str, literal: str) -> None:
    assert program.c_string(text) == literal


def test_elf_problem_on_other_files() -> None:
    assert elf.elf_problem(b"#!/bin/sh\n") == "a script (#!/bin/sh), not an ELF executable"
    assert elf.elf_problem(b"MZ\x90\x00") == "not an ELF file"
    true = Path("/bin/true").read_bytes()  # Debian's coreutils are dynamically linked
    assert "dynamically linked" in (elf.elf_problem(true) or "")
    elf32 = b"\x7fELF\x01\x01" + bytes(58)
    assert "64-bit" in (elf.elf_problem(elf32) or "")


def test_task_wiring(tmp_path: Path) -> None:
    ctx = context(tmp_path, None)
    t = stages.task(ctx, "init")
    assert t["targets"] == [str(out(ctx, "init"))]
    assert str(ROOT / "init" / "init.c") in t["file_dep"] and str(out(ctx, "tree.json")) in t["file_dep"]
    # headers beside the sources are inputs too
    assert str(ROOT / "init" / "small" / "init.c") not in t["file_dep"]


def run_doit(ctx: Context, *tasks: str) -> None:
    """Run the real init and initramfs tasks through doit, with the project's sha256 checker."""
    assert run_stages(ctx, ("init", "initramfs"), tasks, verbosity=0)[0] == 0


def test_staleness_by_content(tmp_path: Path, tree: Path) -> None:
    """Touching the source reruns nothing; an edit that leaves the binary alone stops at init."""
    need("gcc")
    need("gzip")
    src = tmp_path / "prog" / "init.c"
    src.parent.mkdir()
    shutil.copy2(ROOT / "init" / "init.c", src)
    ctx = context(tmp_path, tree, sources=[str(src)])

    def stamps() -> tuple[int, int]:  # every write is a rename of a new file, so a new inode
        return out(ctx, "init").stat().st_ino, out(ctx, "initramfs.cpio").stat().st_ino

    run_doit(ctx, "initramfs")
    first = stamps()
    run_doit(ctx, "initramfs")
    assert stamps() == first

    src.touch()
    out(ctx, "tree.json").touch()
    run_doit(ctx, "initramfs")
    assert stamps() == first

    src.write_text(src.read_text() + "\n/* a comment changes the source, not the program */\n")
    run_doit(ctx, "initramfs")
    second = stamps()
    assert second[0] != first[0] and second[1] == first[1]

    src.write_text(src.read_text().replace('"init: no disk attached"', '"init: no disk here"'))
    run_doit(ctx, "initramfs")
    third = stamps()
    assert third[0] != second[0] and third[1] != second[1]
    assert b"init: no disk here" in out(ctx, "initramfs.cpio").read_bytes()
