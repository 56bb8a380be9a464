"""Small kernel-like tarballs, well-formed or hostile, built in memory for tests."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

FILES = {
    "Makefile": b"VERSION = 9\nPATCHLEVEL = 9\n",
    "README": b"Linux kernel (test tree)\n",
    "init/main.c": b"int main(void)\n{\n\treturn 0;\n}\n",
    "scripts/setlocalversion": b"#!/bin/sh\necho\n",
}


def add_member(tf: tarfile.TarFile, name: str, data: bytes | None = None, **kw: object) -> None:
    """One member with a fixed mtime; `kw` sets any TarInfo field (type, mode, linkname, ...)."""
    ti = tarfile.TarInfo(name)
    ti.mtime = 1700000000
    for k, v in kw.items():
        setattr(ti, k, v)
    if data is not None:
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    else:
        tf.addfile(ti)


def tar_bytes(top: str = "linux-9.9", files: dict[str, bytes] | None = None, compress: str = "xz",
              extra: list[tuple[str, dict[str, object]]] | None = None) -> bytes:
    """A tarball with one top-level directory; `extra` appends raw members (name, TarInfo fields)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{compress}" if compress else "w") as tf:
        add_member(tf, top, type=tarfile.DIRTYPE, mode=0o755)
        dirs = set()
        for name, data in sorted((files or FILES).items()):
            parent = name.rsplit("/", 1)[0] if "/" in name else None
            if parent and parent not in dirs:
                dirs.add(parent)
                add_member(tf, f"{top}/{parent}", type=tarfile.DIRTYPE, mode=0o755)
            mode = 0o755 if data.startswith(b"#!") else 0o644
            add_member(tf, f"{top}/{name}", data, mode=mode)
        add_member(tf, f"{top}/scripts/link-to-makefile", type=tarfile.SYMTYPE, linkname="../Makefile")
        for name, fields in extra or []:
            data = fields.pop("data", None) if isinstance(fields.get("data"), bytes) else None
            add_member(tf, name, data if isinstance(data, bytes) else None, **fields)
    return buf.getvalue()


def uncompressed(data: bytes) -> bytes:
    import lzma

    return lzma.decompress(data)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
