"""The tree store's gzip writer: its output is what GNU gzip and Python read, and a failure never hangs."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
from pathlib import Path

import pytest

from tinyuki.cache.store import _GzipBeside, _HashingWriter


def test_gzip_and_python_read_back_exactly_what_was_written(tmp_path: Path) -> None:
    data = os.urandom(3 << 20) + b"text " * 400_000  # more than a few batches, incompressible and not
    blob = tmp_path / "blob.gz"
    with open(blob, "wb") as f:
        w = _HashingWriter(f)
        gz = _GzipBeside(w, 1)
        for i in range(0, len(data), 10_240):  # as tarfile writes: record by record
            gz.write(data[i:i + 10_240])
        gz.close()
    subprocess.run(["gzip", "-t", str(blob)], check=True)  # the real reader: header, CRC and size checked
    assert gzip.decompress(blob.read_bytes()) == data
    assert w.size == blob.stat().st_size


class Broken(io.RawIOBase):
    def write(self, data: bytes) -> int:  # type: ignore[override]
        raise OSError(28, "No space left on device")


def test_a_failed_write_in_the_thread_is_raised_on_the_writing_side() -> None:
    out = _HashingWriter(io.BytesIO())
    gz = _GzipBeside(out, 1)
    out.f = Broken()  # type: ignore[assignment]  # the disk fills up after the header
    with pytest.raises(OSError, match="No space left"):
        for _ in range(64):  # far more than the queue holds: the writer must not block on a dead consumer
            gz.write(b"x" * _GzipBeside.BATCH)
        gz.close()


def test_abandon_stops_the_thread() -> None:
    gz = _GzipBeside(_HashingWriter(io.BytesIO()), 1)
    gz.write(b"partial")
    gz.abandon()
    assert not gz.thread.is_alive()
