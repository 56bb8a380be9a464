"""kbuild helpers: the reproducible environment, progress, error extraction, initramfs handling."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import shlex
import sys
from pathlib import Path

import pytest

from tinyuki.config.profile import Kernel
from tinyuki.errors import TinyukiError
from tinyuki.toolchain import kbuild


def _kernel(**kw: object) -> Kernel:
    base = {"fragments": (), "patches": None, "cmdline": "", "source_date_epoch": 1700000000,
            "build_user": "u", "build_host": "h", "build_version": "7", "image": "bzImage"}
    base.update(kw)
    return Kernel(**base)  # type: ignore[arg-type]


def test_make_env_is_reproducible_and_maps_paths(tmp_path: Path) -> None:
    tree, out = tmp_path / "tree", tmp_path / "kb"
    env = kbuild.make_env(_kernel(), tree, out, {"PATH": "/bin", "KCFLAGS": "-g0", "MAKEFLAGS": "-j9",
                                                 "LANG": "de_DE.UTF-8"})
    assert env["KBUILD_BUILD_TIMESTAMP"] == "@1700000000"
    assert env["SOURCE_DATE_EPOCH"] == "1700000000"
    assert (env["KBUILD_BUILD_USER"], env["KBUILD_BUILD_HOST"], env["KBUILD_BUILD_VERSION"]) == ("u", "h", "7")
    assert env["LC_ALL"] == "C" and env["TZ"] == "UTC" and env["PATH"] == "/bin"
    assert env["KCFLAGS"].startswith("-g0 ")  # the user's flags are kept
    assert f"-ffile-prefix-map={tree}={kbuild.SOURCE_PREFIX}" in env["KCFLAGS"]
    assert f"-ffile-prefix-map={out}={kbuild.BUILD_PREFIX}" in env["KCFLAGS"]
    assert "MAKEFLAGS" not in env


def test_make_env_same_for_any_paths_except_the_maps(tmp_path: Path) -> None:
    a = kbuild.make_env(_kernel(), tmp_path / "a", tmp_path / "ka", {})
    b = kbuild.make_env(_kernel(), tmp_path / "b", tmp_path / "kb", {})
    assert {k: v for k, v in a.items() if "FLAGS" not in k} == {k: v for k, v in b.items() if "FLAGS" not in k}


def test_make_cmd_is_out_of_tree() -> None:
    assert kbuild.make_cmd(Path("/t"), Path("/o"), "bzImage", jobs=3) == ["make", "-C", "/t", "O=/o", "-j3", "bzImage"]


def test_progress_counts_kbuild_steps() -> None:
    p = kbuild.Progress("kernel", start=0.0)
    lines = ["make[1]: Entering directory '/o'", "  SYNC    include/config/auto.conf", "  CC      init/main.o",
             "  AS      arch/x86/lib/memcpy_64.o", "  CC      kernel/fork.o", "warning: something"]
    assert [p.feed(x) for x in lines] == [False, True, True, True, True, False]
    assert (p.steps, p.compiled) == (4, 2)
    assert p.line(now=75.0) == "kernel: 4 steps (2 compiled), 1m15s, CC kernel/fork.o"


def test_reporter_prints_periodic_lines_without_a_tty() -> None:
    out = io.StringIO()
    p = kbuild.Progress("k", start=0.0)
    r = kbuild.Reporter(p, out, every=10.0, tty=False)
    for t in (10.0, 12.0, 19.0, 21.0):
        p.feed("  CC      a.o")
        r.update(now=t)
    r.finish(now=22.0)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("k: 4 steps")
    assert "\r" not in out.getvalue()


def test_reporter_rewrites_one_line_on_a_tty() -> None:
    out = io.StringIO()
    p = kbuild.Progress("k", start=0.0)
    r = kbuild.Reporter(p, out, tty=True)
    r.update(now=1.0)
    r.update(now=2.0)
    r.finish(now=3.0)
    assert out.getvalue().count("\r\x1b[K") == 3 and out.getvalue().endswith("\n")
    assert out.getvalue().count("\n") == 1


GCC_LOG = """\
  CC      init/main.o
  CC      kernel/fork.o
/usr/src/linux/init/main.c: In function 'start_kernel':
/usr/src/linux/init/main.c:3:9: error: 'oops' undeclared (first use in this function)
    3 |         oops;
      |         ^~~~
/usr/src/linux/init/main.c:3:9: note: each undeclared identifier is reported only once
  CC      mm/slab.o
make[2]: *** [scripts/Makefile.build:250: init/main.o] Error 1
make[1]: *** [Makefile:1992: init] Error 2
make[2]: *** [scripts/Makefile.build:250: init/main.o] Error 1
"""


def test_error_excerpt_keeps_errors_with_context_and_drops_noise() -> None:
    got = kbuild.error_excerpt(GCC_LOG.splitlines())
    assert got[0] == "/usr/src/linux/init/main.c: In function 'start_kernel':"
    assert "error: 'oops' undeclared" in got[1]
    assert got[2].strip() == "3 |         oops;"
    assert not any("CC" in x for x in got)
    assert got.count("make[2]: *** [scripts/Makefile.build:250: init/main.o] Error 1") == 1
    assert got[-1].startswith("make[1]: ***")


def test_error_excerpt_finds_link_errors() -> None:
    log = ["  LD      vmlinux", "ld: init/main.o: in function `start_kernel':",
           "main.c:(.text+0x5): undefined reference to `missing_fn'", "make[1]: *** [Makefile:1164: vmlinux] Error 1"]
    got = kbuild.error_excerpt(log)
    assert any("undefined reference to `missing_fn'" in x for x in got)
    assert kbuild.error_excerpt(["  CC a.o", "  LD vmlinux"]) == []


def test_embedded_payload_undoes_compression() -> None:
    cpio = b"070701" + b"0" * 100
    assert kbuild.embedded_payload(cpio) == cpio
    assert kbuild.embedded_payload(gzip.compress(cpio)) == cpio
    assert kbuild.embedded_payload(lzma.compress(cpio, format=lzma.FORMAT_XZ)) == cpio
    assert kbuild.embedded_payload(lzma.compress(cpio, format=lzma.FORMAT_ALONE)) == cpio
    assert kbuild.embedded_payload(bz2.compress(cpio)) == cpio
    assert kbuild.embedded_payload(b"BZhnot bzip2") is None
    assert kbuild.embedded_payload(b"\x04\x22\x4d\x18lz4") is None  # lz4: not readable here
    assert kbuild.embedded_payload(b"\x1f\x8bnot gzip") is None


def test_remove_initramfs_outputs(tmp_path: Path) -> None:
    usr = tmp_path / "usr"
    usr.mkdir()
    names = ["initramfs_data.cpio", "initramfs_data.cpio.gz", "initramfs_inc_data", "initramfs_data.o",
             "gen_init_cpio", ".initramfs_data.cpio.cmd"]
    for n in names:
        (usr / n).write_bytes(b"x")
    removed = kbuild.remove_initramfs_outputs(tmp_path)
    assert sorted(p.name for p in removed) == sorted(names[:4])
    assert sorted(p.name for p in usr.iterdir()) == [".initramfs_data.cpio.cmd", "gen_init_cpio"]
    assert kbuild.remove_initramfs_outputs(tmp_path / "nothing") == []


# ---------------------------------------------------------------- stream_make, with a stand-in for make

def fake_make(body: str) -> list[str]:
    return [sys.executable, "-c", "import json, os, sys\n" + body]


def quiet_reporter(out: io.StringIO):  # type: ignore[no-untyped-def]
    return lambda progress: kbuild.Reporter(progress, out, every=0.0, tty=False)


def test_stream_make_logs_everything_and_counts_steps(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "kernel.log"
    out = io.StringIO()
    cmd = fake_make("print('  CC      init/main.o')\nprint('make[1]: Leaving directory')\n"
                    "print('  LD      vmlinux')\nprint('  CC      kernel/fork.o', end='')")
    progress = kbuild.stream_make(cmd, env={**os.environ}, log=log, what="kernel build", hint="h",
                                  reporter_factory=quiet_reporter(out))
    assert (progress.steps, progress.compiled, progress.current) == (3, 2, "CC kernel/fork.o")
    assert log.read_text() == (f"$ {shlex.join(cmd)}\n  CC      init/main.o\nmake[1]: Leaving directory\n"
                               "  LD      vmlinux\n  CC      kernel/fork.o")
    shown = out.getvalue().splitlines()
    assert len(shown) == 4 and shown[-1].startswith("kernel build: 3 steps (2 compiled), 0s, CC kernel/fork.o")


def test_stream_make_passes_command_and_environment_unchanged(tmp_path: Path) -> None:
    """The make command line and its environment decide the kernel's bytes: nothing may be added or dropped."""
    seen = tmp_path / "seen.json"
    env = kbuild.make_env(_kernel(), tmp_path / "tree", tmp_path / "kb", {"PATH": os.environ.get("PATH", "/bin")})
    cmd = [*fake_make(f"json.dump({{'argv': sys.argv, 'env': dict(os.environ)}}, open({str(seen)!r}, 'w'))"),
           "O=/x y", "CC=ccache gcc", "bzImage"]
    kbuild.stream_make(cmd, env=env, log=tmp_path / "k.log", what="kernel build", hint="h",
                       reporter_factory=quiet_reporter(io.StringIO()))
    got = json.loads(seen.read_text())
    assert got["argv"][1:] == cmd[3:]
    assert got["env"] == env


def test_stream_make_failure_shows_the_compiler_error_and_the_log(tmp_path: Path) -> None:
    log = tmp_path / "kernel.log"
    cmd = fake_make(f"sys.stdout.write({GCC_LOG!r})\nsys.stdout.flush()\n"
                    "print('make: *** [Makefile:1] Error 2', file=sys.stderr)\nsys.exit(2)")
    with pytest.raises(TinyukiError) as e:
        kbuild.stream_make(cmd, env={**os.environ}, log=log, what="kernel build", hint="fix it",
                           reporter_factory=quiet_reporter(io.StringIO()))
    head = f"kernel build failed (make exit 2): {shlex.join(cmd)}\n"
    assert e.value.message.startswith(head)
    body = e.value.message[len(head):]
    assert "error: 'oops' undeclared" in body and "In function 'start_kernel'" in body
    assert "make: *** [Makefile:1] Error 2" in body  # stderr is in the excerpt too
    assert "CC      mm/slab.o" not in body  # progress lines are not errors
    assert body.endswith(f"full log: {log}") and e.value.hint == "fix it"


def test_stream_make_without_errors_in_the_log_shows_its_end(tmp_path: Path) -> None:
    cmd = fake_make("for i in range(30): print(f'noise {i}')\nsys.exit(1)")
    with pytest.raises(TinyukiError) as e:
        kbuild.stream_make(cmd, env={**os.environ}, log=tmp_path / "k.log", what="relink", hint="h",
                           reporter_factory=quiet_reporter(io.StringIO()))
    body = e.value.message.split(shlex.join(cmd), 1)[1]
    assert "noise 29" in body and "noise 15" in body and "noise 14" not in body


def test_stream_make_without_make_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(TinyukiError) as e:
        kbuild.stream_make(["tinyuki-no-make", "-j2"], env={}, log=tmp_path / "k.log", what="kernel build",
                           hint="h", reporter_factory=quiet_reporter(io.StringIO()))
    assert e.value.message == "kernel build needs tinyuki-no-make, which is not installed"
    assert "scripts/setup.sh" in (e.value.hint or "") and "flex bison" in (e.value.hint or "")
