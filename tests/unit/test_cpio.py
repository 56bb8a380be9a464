"""The newc writer against the kernel's gen_init_cpio and GNU cpio, and the initramfs layout."""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.helpers import stages
from tests.helpers.stages import out
from tinyuki.config.context import make_context
from tinyuki.errors import TinyukiError
from tinyuki.formats import cpio
from tinyuki.tasks import initramfs

ROOT = Path(__file__).resolve().parents[2]
EPOCH = 1700000000


@pytest.fixture(scope="module")
def gen_init_cpio(tmp_path_factory: pytest.TempPathFactory, ref_tree: Path) -> Path:
    """The kernel's own generator, compiled from the reference tree."""
    src = ref_tree / "usr" / "gen_init_cpio.c"
    assert src.is_file()
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    out = tmp_path_factory.mktemp("gen") / "gen_init_cpio"
    subprocess.run(["gcc", "-O2", "-o", str(out), str(src)], check=True)
    return out


def sample(tmp_path: Path) -> tuple[list[cpio.Entry], str]:
    """Entries covering every kind and padding case, and the same list in gen_init_cpio's syntax."""
    files = {
        "/init": (b"\x7fELF" + bytes(range(256)) * 5, 0o755),  # 1284 bytes: data already aligned
        "/etc/a": (b"x", 0o644),  # 1 byte: 3 bytes of padding
        "/etc/empty": (b"", 0o600),  # no data at all
        "/etc/three": (b"abc", 0o644),
    }
    entries = [
        cpio.directory("/dev"),
        cpio.char_device("/dev/console", 5, 1),
        cpio.block_device("/dev/vda", 254, 0, 0o660),
        cpio.directory("/proc", 0o555),
        cpio.directory("/etc"),
        cpio.symlink("/etc/link", "three"),
        cpio.symlink("/sbin", "/bin/x"),
    ]
    lines = [
        "dir /dev 0755 0 0",
        "nod /dev/console 0600 0 0 c 5 1",
        "nod /dev/vda 0660 0 0 b 254 0",
        "dir /etc 0755 0 0",
        "dir /proc 0555 0 0",
        "slink /etc/link three 0777 0 0",
        "slink /sbin /bin/x 0777 0 0",
    ]
    for name, (data, mode) in files.items():
        src = tmp_path / name.strip("/").replace("/", "_")
        src.write_bytes(data)
        os.utime(src, (EPOCH, EPOCH))  # gen_init_cpio takes a regular file's mtime from the file itself
        entries.append(cpio.regular(name, data, mode))
        lines.append(f"file {name} {src} {mode:04o} 0 0")
    # gen_init_cpio writes in list order; our writer sorts, so give it the sorted order.
    lines.sort(key=lambda line: line.split()[1].encode())
    return entries, "\n".join(lines) + "\n"


def test_byte_identical_to_gen_init_cpio(tmp_path: Path, gen_init_cpio: Path) -> None:
    entries, listing = sample(tmp_path)
    (tmp_path / "list").write_text(listing)
    ref = subprocess.run([str(gen_init_cpio), "-t", str(EPOCH), str(tmp_path / "list")],
                         check=True, stdout=subprocess.PIPE).stdout
    ours = cpio.pack(reversed(entries), EPOCH)  # input order must not matter
    assert ours == ref
    assert len(ours) % 512 == 0


def test_minimal_image_identical_to_gen_init_cpio(tmp_path: Path, gen_init_cpio: Path) -> None:
    """The image tinyuki ships, built both ways."""
    init = tmp_path / "init"
    init.write_bytes(b"\x7fELF program")
    os.utime(init, (EPOCH, EPOCH))
    listing = (f"dir /dev 0755 0 0\nnod /dev/console 0600 0 0 c 5 1\nfile /init {init} 0755 0 0\n"
               "dir /proc 0755 0 0\n")
    (tmp_path / "list").write_text(listing)
    ref = subprocess.run([str(gen_init_cpio), "-t", str(EPOCH), str(tmp_path / "list")],
                         check=True, stdout=subprocess.PIPE).stdout
    assert cpio.pack(initramfs.layout(init.read_bytes(), []), EPOCH) == ref


def test_gnu_cpio_lists_and_extracts(tmp_path: Path) -> None:
    if shutil.which("cpio") is None:
        pytest.skip("GNU cpio is not installed (apt-get install cpio)")
    entries, _ = sample(tmp_path)
    archive = tmp_path / "a.cpio"
    archive.write_bytes(cpio.pack(entries, EPOCH))
    listing = subprocess.run(["cpio", "-t", "-v", "--quiet", "-F", str(archive)], check=True,
                             stdout=subprocess.PIPE, env={**os.environ, "LC_ALL": "C", "TZ": "UTC"}).stdout.decode()
    rows = {}
    for line in listing.splitlines():
        cols = line.split()
        year = cols.index("2023")  # EPOCH is 2023-11-14 22:13:20 UTC
        assert cols[year - 2: year] == ["Nov", "14"], line
        assert cols[2] == cols[3] == "root", line
        rows[cols[year + 1]] = (cols[0], " ".join(cols[4: year - 2]), cols[year + 2:])
    names = list(rows)
    assert names == ["dev", "dev/console", "dev/vda", "etc", "etc/a", "etc/empty", "etc/link", "etc/three",
                     "init", "proc", "sbin"]
    assert rows["dev"][0] == "drwxr-xr-x"
    assert rows["dev/console"][:2] == ("crw-------", "5, 1")
    assert rows["dev/vda"][:2] == ("brw-rw----", "254, 0")
    assert rows["init"][:2] == ("-rwxr-xr-x", "1284")
    assert rows["etc/empty"][:2] == ("-rw-------", "0")
    assert rows["etc/a"][:2] == ("-rw-r--r--", "1")
    assert rows["etc/link"][0] == "lrwxrwxrwx" and rows["etc/link"][2] == ["->", "three"]
    assert rows["sbin"][2] == ["->", "/bin/x"]

    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["cpio", "-i", "-d", "-m", "--quiet", "--no-absolute-filenames", "-F", str(archive)],
                   cwd=out, check=True, capture_output=True)
    assert (out / "init").read_bytes() == b"\x7fELF" + bytes(range(256)) * 5
    assert (out / "etc" / "a").read_bytes() == b"x"
    assert (out / "etc" / "empty").read_bytes() == b""
    assert os.stat(out / "init").st_mtime == EPOCH
    assert stat.S_IMODE(os.stat(out / "init").st_mode) == 0o755


def test_layout_of_headers(tmp_path: Path) -> None:
    """Field by field: inode order, nlink, padding and the 512-byte trailer."""
    data = cpio.pack([cpio.directory("/d"), cpio.regular("/d/f", b"hello")], 0x12345678)
    first = data[:110]
    assert first[:6] == b"070701"
    fields = [int(first[6 + 8 * i: 14 + 8 * i], 16) for i in range(13)]
    assert fields[0] == 721 and fields[1] == stat.S_IFDIR | 0o755 and fields[4] == 2 and fields[5] == 0x12345678
    assert data[110:112] == b"d\0"  # leading slash stripped, NUL-terminated
    second = data.index(b"070701", 112)
    assert second % 4 == 0
    fields = [int(data[second + 6 + 8 * i: second + 14 + 8 * i], 16) for i in range(13)]
    assert fields[0] == 722 and fields[6] == 5 and fields[11] == len("d/f") + 1
    body = second + 110 + 4
    body += -body % 4
    assert data[second + 110: body] == b"d/f\0\0\0" and data[body: body + 5] == b"hello"
    assert data[body + 5: body + 8] == b"\0\0\0"
    trailer = data.index(b"TRAILER!!!")
    assert data[trailer - 110: trailer - 104] == b"070701"
    assert len(data) % 512 == 0 and set(data[trailer + 11:]) == {0}


def test_same_entries_same_bytes_and_epoch_changes_them() -> None:
    entries = [cpio.directory("/a"), cpio.regular("/a/b", b"1"), cpio.regular("/c", b"2")]
    assert cpio.pack(entries, EPOCH) == cpio.pack(list(reversed(entries)), EPOCH)
    assert cpio.pack(entries, EPOCH) != cpio.pack(entries, EPOCH + 1)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([cpio.regular("relative", b"")], "normalized absolute path"),
        ([cpio.regular("/a/../b", b"")], "normalized absolute path"),
        ([cpio.regular("/a/", b"")], "normalized absolute path"),
        ([cpio.regular("/", b"")], "normalized absolute path"),
        ([cpio.regular("/etc/motd", b"")], "parent /etc is not a directory"),
        ([cpio.regular("/etc", b""), cpio.regular("/etc/motd", b"")], "parent /etc is not a directory"),
        ([cpio.regular("/a", b""), cpio.regular("/a", b"")], "listed twice"),
        ([cpio.Entry("/p", stat.S_IFIFO, 0o644)], "unsupported file type"),
        ([cpio.regular("/a", b"", 0o100644)], "beyond the permissions"),
        ([cpio.symlink("/l", "")], "non-empty target"),
        ([cpio.Entry("/d", stat.S_IFDIR, 0o755, b"x")], "only files and symlinks"),
    ],
)
def test_rejects_bad_entries(entries: list[cpio.Entry], message: str) -> None:
    with pytest.raises(TinyukiError, match=message):
        cpio.pack(entries, EPOCH)


def test_rejects_mtime_beyond_2106() -> None:
    with pytest.raises(TinyukiError, match="source_date_epoch"):
        cpio.pack([], 1 << 32)
    assert cpio.pack([], 0).count(b"TRAILER!!!") == 1


# ---------------------------------------------------------------- the image tinyuki ships

def test_layout_adds_parents_and_modes() -> None:
    entries = initramfs.layout(b"prog", [("/etc/x/motd", b"hi", 0o644), ("/usr/bin/tool", b"t", 0o755)])
    kinds = {e.name: (e.kind, e.mode) for e in entries}
    assert kinds["/init"] == (stat.S_IFREG, 0o755)
    assert kinds["/dev"] == (stat.S_IFDIR, 0o755)
    assert kinds["/dev/console"] == (stat.S_IFCHR, 0o600)
    assert kinds["/proc"] == (stat.S_IFDIR, 0o755)
    assert kinds["/etc"] == kinds["/etc/x"] == kinds["/usr"] == kinds["/usr/bin"] == (stat.S_IFDIR, 0o755)
    assert kinds["/usr/bin/tool"] == (stat.S_IFREG, 0o755)
    console = next(e for e in entries if e.name == "/dev/console")
    assert console.rdev == (5, 1)
    cpio.pack(entries, EPOCH)  # a valid archive


@pytest.mark.parametrize("dest", ["/dev/console", "/proc", "/dev"])
def test_layout_rejects_clashes_with_the_base_image(dest: str) -> None:
    with pytest.raises(TinyukiError, match="already part of the image"):
        initramfs.layout(b"prog", [(dest, b"x", 0o644)])


def test_layout_rejects_file_under_a_file() -> None:
    with pytest.raises(TinyukiError, match="is a file"):
        initramfs.layout(b"prog", [("/etc", b"x", 0o644), ("/etc/motd", b"y", 0o644)])



# ---------------------------------------------------------------- the initramfs stage

def test_build_writes_cpio_and_gzip_n_9_initrd(tmp_path: Path) -> None:
    if shutil.which("gzip") is None:
        pytest.skip("gzip is not installed")
    motd = tmp_path / "motd"
    motd.write_text("hello\n")
    tool = tmp_path / "tool"
    tool.write_bytes(b"#!/bin/sh\n")
    tool.chmod(0o755)
    profile = tmp_path / "p.toml"
    profile.write_text(f"""
[source]
urls = ["https://example.org/linux.tar.xz"]
sha256 = "{"0" * 64}"
[kernel]
fragments = ["base"]
source_date_epoch = {EPOCH}
[init]
files = {{ "/etc/motd" = "{motd}", "/bin/tool" = "{tool}" }}
""")
    ctx = make_context(str(profile), build_dir=str(tmp_path / "build"), cache_dir=str(tmp_path / "cache"), root=ROOT)
    out(ctx, "init").parent.mkdir(parents=True)
    out(ctx, "init").write_bytes(b"\x7fELF init")

    initramfs.build(ctx)

    archive = out(ctx, "initramfs.cpio").read_bytes()
    extra = [("/bin/tool", b"#!/bin/sh\n", 0o755), ("/etc/motd", b"hello\n", 0o644)]
    expected = initramfs.layout(b"\x7fELF init", extra)
    assert archive == cpio.pack(expected, EPOCH)
    initrd = out(ctx, "initrd").read_bytes()
    assert gzip.decompress(initrd) == archive
    assert initrd == subprocess.run(["gzip", "-n", "-9"], input=archive, check=True, capture_output=True).stdout
    assert initrd[3] & 0x08 == 0 and initrd[4:8] == b"\0\0\0\0"  # no file name, no timestamp
    # the files themselves carry the time they were written: kbuild re-embeds by mtime
    assert out(ctx, "initramfs.cpio").stat().st_mtime > EPOCH + 86400
    leftovers = [p.name for p in ctx.paths.build.iterdir() if p.name.startswith(".")]
    assert leftovers == []

    t = stages.task(ctx, "initramfs")
    assert t["targets"] == [str(out(ctx, "initramfs.cpio")), str(out(ctx, "initrd"))]
    assert sorted(t["file_dep"]) == sorted([str(out(ctx, "init")), str(tool), str(motd)])


def test_build_without_init_says_what_to_run(tmp_path: Path) -> None:
    ctx = make_context("debian", build_dir=str(tmp_path / "b"), cache_dir=str(tmp_path / "c"), root=ROOT)
    with pytest.raises(TinyukiError, match="doit init"):
        initramfs.build(ctx)
