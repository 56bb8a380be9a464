"""The disk stage (tasks/disk.py) in the real pipeline, on the fake kernel: tinyuki.img as doit builds it.

One build per module; each test changes the profile in a copy of that build
dir and checks what reruns, what the manifest and the artifact cache say, and
that bad settings fail with a message and a hint while leaving the image as
it was.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.helpers import fakekernel
from tests.helpers.doit import environ, output, ran, run_dodo, variables
from tinyuki.util.fs import read_json, sha256_file


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    top = tmp_path_factory.mktemp("disk")
    tar, sha = fakekernel.tarball(top)
    init = top / "init.c"
    shutil.copy(ROOT / "init" / "init.c", init)
    (top / "notes.txt").write_text("notes\n")
    (top / "data" / "sub").mkdir(parents=True)
    (top / "data" / "sub" / "hello.txt").write_text("hello, program\n")
    head = "\n".join(["[source]", f'urls = ["{tar}"]', f'sha256 = "{sha}"', "",
                      "[kernel]", 'fragments = ["base", "initramfs", "console", "block", "efi", "size"]', "",
                      "[init]", f'sources = ["{init}"]', 'libc = "musl"', "", ""])
    (top / "head.toml").write_text(head)
    paths = {"top": top, "head": top / "head.toml", "profile": top / "p.toml", "build": top / "build",
             "cache": top / "cache"}
    write_profile(paths, f'[disk]\nfiles = {{ "/EFI/tinyuki/notes.txt" = "{top / "notes.txt"}" }}\n'
                         f'data = "{top / "data"}"\n')
    out = doit(paths)
    assert "disk" in ran(out), out
    return paths


def write_profile(paths: dict[str, Path], disk: str) -> None:
    paths["profile"].write_text(paths["head"].read_text() + disk)


def doit(paths: dict[str, Path], *args: str, check: bool = True) -> str:
    env = environ("TINYUKI_*", "KCFLAGS", TINYUKI_CCACHE="0")
    proc = run_dodo(*args, *variables(profile=paths["profile"], build_dir=paths["build"], cache_dir=paths["cache"]),
                    env=env, timeout=300)
    out = output(proc)
    if check:
        assert proc.returncode == 0, out[-4000:]
    else:
        assert proc.returncode != 0, out[-4000:]
        assert "Traceback" not in out, out
    return out


def copy_build(built: dict[str, Path], name: str) -> dict[str, Path]:
    """The module's build in a fresh dir (same cache), so a test may change the profile freely."""
    paths = dict(built, profile=built["top"] / f"{name}.toml", build=built["top"] / f"build-{name}")
    shutil.copytree(built["build"], paths["build"], symlinks=True)
    shutil.copy(built["profile"], paths["profile"])
    return paths


def test_the_image_is_an_artifact(built: dict[str, Path]) -> None:
    image = built["build"] / "tinyuki.img"
    entry = read_json(built["build"] / "manifest.json")["artifacts"]["disk"]
    assert entry == {"path": "tinyuki.img", "size": image.stat().st_size, "sha256": sha256_file(image)}
    table = json.loads(subprocess.run(["sfdisk", "-J", str(image)], capture_output=True, text=True,
                                      check=True).stdout)["partitiontable"]
    assert table["label"] == "gpt" and len(table["partitions"]) == 2
    # the manifest names the layout and every file on the image, as the image itself has them
    described = read_json(built["build"] / "manifest.json")["disk"]
    assert described["disk_id"] == table["id"]
    assert [p["uuid"] for p in described["partitions"]] == [p["uuid"] for p in table["partitions"]]
    assert [f["path"] for f in described["esp_files"]] == ["/EFI/BOOT/BOOTX64.EFI", "/EFI/tinyuki/notes.txt"]
    assert described["esp_files"][0]["sha256"] == sha256_file(built["build"] / "tinyuki.efi")
    assert [f["path"] for f in described["data_files"]] == ["/sub/hello.txt"]
    out = doit(built)
    assert "disk" not in ran(out), "a second run rebuilt the image"


def test_a_new_build_dir_restores_the_image_from_the_cache(built: dict[str, Path]) -> None:
    paths = dict(built, build=built["top"] / "second")
    out = doit(paths, "disk")
    assert "disk: restored from artifact cache" in out, out
    assert sha256_file(paths["build"] / "tinyuki.img") == sha256_file(built["build"] / "tinyuki.img")


def test_a_disk_setting_reruns_only_the_disk(built: dict[str, Path]) -> None:
    original = built["profile"].read_text()
    image = built["build"] / "tinyuki.img"
    before = sha256_file(image)
    try:
        write_profile(built, '[disk]\ntable = "mbr"\nesp_size = "34M"\n')
        out = doit(built)
        assert [t for t in ran(out) if t != "summary"] == ["disk", "manifest"], out
        dump = subprocess.run(["sfdisk", "-d", str(image)], capture_output=True, text=True, check=True).stdout
        assert "label: dos" in dump and "type=ef" in dump and "size=       69632" in dump
    finally:
        built["profile"].write_text(original)
    out = doit(built)
    assert [t for t in ran(out) if t != "summary"] == ["disk", "manifest"], out
    assert "disk: restored from artifact cache" in out and sha256_file(image) == before


def test_a_data_file_change_reaches_the_image(built: dict[str, Path]) -> None:
    paths = copy_build(built, "data")
    data = paths["top"] / "data2"
    shutil.copytree(paths["top"] / "data", data)
    write_profile(paths, f'[disk]\ndata = "{data}"\n')
    doit(paths)
    before = sha256_file(paths["build"] / "tinyuki.img")
    (data / "sub" / "new.txt").write_text("new\n")
    out = doit(paths)
    assert "disk" in ran(out)
    assert sha256_file(paths["build"] / "tinyuki.img") != before
    (data / "sub" / "new.txt").unlink()
    out = doit(paths)
    assert "disk" in ran(out) and sha256_file(paths["build"] / "tinyuki.img") == before


@pytest.mark.parametrize(("disk", "message", "hint"), [
    ('[disk]\nesp_size = "1M"\n', "esp_size 1 MiB is too small", "auto"),
    ('[disk]\ntable = "apm"\n', "[disk] table is 'apm', which is not one of gpt, mbr", "gpt, mbr"),
    ('[disk]\nfiles = { "/x.txt" = "no/such/file" }\n', "no/such/file does not exist", "fix the path"),
])
def test_bad_settings_fail_clearly_and_change_nothing(built: dict[str, Path], disk: str, message: str,
                                                      hint: str) -> None:
    paths = copy_build(built, f"bad-{abs(hash(disk))}")
    image = paths["build"] / "tinyuki.img"
    before = (sha256_file(image), image.stat().st_mtime_ns)
    write_profile(paths, disk)
    out = doit(paths, check=False)
    assert message in out and "hint:" in out and hint in out.split("hint:", 1)[1], out
    assert (sha256_file(image), image.stat().st_mtime_ns) == before
    assert not list(paths["build"].glob(".tinyuki.img.*")), "a temp image was left behind"


def test_with_sign_the_stick_carries_the_signed_uki(built: dict[str, Path]) -> None:
    """A profile that signs puts the signed UKI on the stick, so it boots with Secure Boot on."""
    from tinyuki import secureboot

    paths = copy_build(built, "signed")
    key, cert = secureboot.key_paths(paths["top"] / "keys", "db")
    secureboot.make_keys(paths["top"] / "keys")
    write_profile(paths, f'[sign]\nkey = "{key}"\ncert = "{cert}"\n')
    doit(paths, "disk")
    image = paths["build"] / "tinyuki.img"
    copy = paths["top"] / "BOOTX64.EFI"
    subprocess.run(["mcopy", "-n", "-i", f"{image}@@1048576", "::/EFI/BOOT/BOOTX64.EFI", str(copy)], check=True,
                   env={**environ(), "MTOOLS_SKIP_CHECK": "1"})
    assert sha256_file(copy) == sha256_file(paths["build"] / "tinyuki.signed.efi")
    assert sha256_file(copy) != sha256_file(paths["build"] / "tinyuki.efi")
    # and without [sign] again, the plain UKI
    write_profile(paths, "")
    doit(paths, "disk")
    subprocess.run(["mcopy", "-n", "-i", f"{image}@@1048576", "::/EFI/BOOT/BOOTX64.EFI", str(copy)], check=True,
                   env={**environ(), "MTOOLS_SKIP_CHECK": "1"})
    assert sha256_file(copy) == sha256_file(paths["build"] / "tinyuki.efi")


@pytest.mark.parametrize(("args", "message", "hint"), [
    (("stick=1", "bus=scsi"), "bus='scsi' is not one of usb, virtio", "bus=virtio"),
    (("stick=1", "uki=1"), "uki=1 and stick=1 both ask for a boot through OVMF", "stick=1 boots tinyuki.img"),
    (("bus=usb",), "bus=usb applies to a boot through OVMF", "add stick=1"),
    (("stick=maybe",), "stick='maybe' is not a yes/no value", "stick=1"),
])
def test_boot_switches_are_checked_before_anything_boots(built: dict[str, Path], args: tuple[str, ...],
                                                          message: str, hint: str) -> None:
    out = doit(built, "boot", *args, check=False)
    assert message in out and hint in out.split("hint:", 1)[1], out
    assert "qemu-system" not in out


def test_a_data_folder_fat_cannot_hold_is_an_error_not_a_traceback(built: dict[str, Path]) -> None:
    paths = copy_build(built, "link")
    folder = paths["top"] / "linked-data"
    folder.mkdir()
    (folder / "real.txt").write_text("x")
    (folder / "alias.txt").symlink_to("real.txt")
    image = paths["build"] / "tinyuki.img"
    before = sha256_file(image)
    write_profile(paths, f'[disk]\ndata = "{folder}"\n')
    out = doit(paths, "disk", check=False)
    assert "alias.txt is a symbolic link, which a FAT file system cannot hold" in out and "hint:" in out, out
    assert sha256_file(image) == before
