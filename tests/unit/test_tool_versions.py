"""Tool versions are asked once per binary, and again when the binary changes (tools.remembered)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tinyuki.toolchain import tools


def fake_tool(bin_dir: Path, name: str, version: str) -> Path:
    """A stand-in tool that prints `version` and counts its runs."""
    tool = bin_dir / name
    tool.write_text(f'#!/bin/sh\necho run >> "{bin_dir}/{name}.runs"\necho "{version}"\n')
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return tool


def runs(bin_dir: Path, name: str) -> int:
    log = bin_dir / f"{name}.runs"
    return len(log.read_text().splitlines()) if log.exists() else 0


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    monkeypatch.setenv("PATH", f"{d}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(tools, "SETTLED_NS", 0)  # the stand-ins were just written
    return d


def test_a_binary_is_asked_once_across_runs(bin_dir: Path, tmp_path: Path) -> None:
    fake_tool(bin_dir, "sfdisk", "sfdisk from util-linux 2.38.1")
    store = tmp_path / "cache" / "tool-versions.json"
    store.parent.mkdir()
    tools.remember_versions(store)
    assert tools.command_version(["sfdisk", "--version"]) == "sfdisk from util-linux 2.38.1"
    tools.remember_versions(store)  # a new run: read back from the file
    assert tools.command_version(["sfdisk", "--version"]) == "sfdisk from util-linux 2.38.1"
    assert runs(bin_dir, "sfdisk") == 1
    assert list(json.loads(store.read_text()).values()) == ["sfdisk from util-linux 2.38.1"]


def test_a_replaced_binary_is_asked_again(bin_dir: Path, tmp_path: Path) -> None:
    store = tmp_path / "tool-versions.json"
    tools.remember_versions(store)
    fake_tool(bin_dir, "make", "GNU Make 4.3")
    assert tools.command_version(["make", "--version"]) == "GNU Make 4.3"
    (bin_dir / "make").unlink()
    fake_tool(bin_dir, "make", "GNU Make 4.4.1")  # an upgrade: new file, other size
    assert tools.command_version(["make", "--version"]) == "GNU Make 4.4.1"


def test_a_binary_changed_just_now_is_asked_every_time(bin_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools, "SETTLED_NS", 3_600 * 10**9)
    tools.remember_versions(tmp_path / "tool-versions.json")
    fake_tool(bin_dir, "mtools", "mtools (GNU mtools) 4.0.33")
    for _ in range(2):
        assert tools.command_version(["mtools", "--version"]) == "mtools (GNU mtools) 4.0.33"
    assert runs(bin_dir, "mtools") == 2


def test_without_a_store_or_for_a_multiplexer_every_run_asks(bin_dir: Path, tmp_path: Path) -> None:
    fake_tool(bin_dir, "openssl", "OpenSSL 3.0.11")
    for _ in range(2):
        assert tools.command_version(["openssl", "version"]) == "OpenSSL 3.0.11"
    assert runs(bin_dir, "openssl") == 2
    tools.remember_versions(tmp_path / "tool-versions.json")
    fake_tool(bin_dir, "cargo", "cargo 1.63.0")
    for _ in range(2):
        tools.version.cache_clear()
        assert tools.version("cargo") == "cargo 1.63.0"
    assert runs(bin_dir, "cargo") == 2  # rustup's proxy answers for whichever toolchain is active


def test_a_missing_tool_or_a_broken_store_costs_only_asking(bin_dir: Path, tmp_path: Path) -> None:
    store = tmp_path / "tool-versions.json"
    store.write_text("{not json")
    tools.remember_versions(store)
    assert tools.command_version(["no-such-tool-here", "--version"]) == "missing"
    fake_tool(bin_dir, "gzip", "gzip 1.12")
    assert tools.command_version(["gzip", "--version"]) == "gzip 1.12"
    tools.remember_versions(tmp_path / "read-only" / "tool-versions.json")  # its dir does not exist
    assert tools.command_version(["gzip", "--version"]) == "gzip 1.12"
