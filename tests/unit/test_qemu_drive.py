"""QEMU's -drive takes comma-separated options: a path with a comma must stay one path.

QEMU reads `,,` as a literal comma inside an option value; without the
doubling, a disk named `a,readonly=off,file=/etc/shadow` would become options.
"""

from __future__ import annotations

from pathlib import Path

from tinyuki.vm import qemu


def options(value: str) -> list[str]:
    """Split a -drive value the way QEMU does: on single commas, `,,` being a comma."""
    parts, cur, i = [], "", 0
    while i < len(value):
        if value[i] == ",":
            if value[i + 1:i + 2] == ",":
                cur += ","
                i += 2
                continue
            parts.append(cur)
            cur = ""
        else:
            cur += value[i]
        i += 1
    parts.append(cur)
    return parts


def drives(cmd: list[str]) -> list[list[str]]:
    return [options(cmd[i + 1]) for i, word in enumerate(cmd) if word == "-drive"]


def test_a_disk_path_with_commas_stays_one_file_option():
    evil = Path("/tmp/x,format=qcow2,file=/etc/shadow/disk.img")
    cmd = qemu.command(qemu.BootSpec(machine="microvm", memory="128M", accel="tcg", kernel=Path("/k"), disk=evil))
    (disk,) = drives(cmd)
    assert f"file={evil}" in disk and disk.count("format=raw") == 1 and not any(o.startswith("format=q") for o in disk)
    assert [o for o in disk if o.startswith("file=")] == [f"file={evil}"]


def test_efi_drives_escape_their_paths_too():
    odd = Path("/srv/a,b")
    spec = qemu.BootSpec(machine="q35", memory="128M", accel="tcg", esp=odd / "esp.img",
                         ovmf_code=odd / "code.fd", ovmf_vars=odd / "vars.fd", disk=odd / "disk.img")
    found = {o for d in drives(qemu.command(spec)) for o in d if o.startswith("file=")}
    assert found == {f"file={odd}/esp.img", f"file={odd}/code.fd", f"file={odd}/vars.fd", f"file={odd}/disk.img"}


def test_plain_paths_are_unchanged():
    cmd = qemu.command(qemu.BootSpec(machine="microvm", memory="128M", accel="tcg", kernel=Path("/k"),
                                     disk=Path("/tmp/disk.img")))
    assert "file=/tmp/disk.img,format=raw,if=none,id=d0" in cmd
