"""kbuild helpers: the reproducible environment, progress, error extraction, initramfs handling."""

from __future__ import annotations

import gzip
import io
import lzma
from pathlib import Path

from tinyuki.config.profile import Kernel
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
