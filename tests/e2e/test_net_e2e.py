"""The program talks to the world, end to end: HTTP servers behind forwards, a virtio-serial channel, arm64.

The x86_64 servers run on the shared examples kernel (tests/e2e/conftest.py: the examples' fragments with
net, channel and vsock), so each costs its program, the initramfs and a relink. Each boots under TCG with
`doit boot` in the background; the test waits for `doit boot` to say the forwarded port accepts, fetches
http://127.0.0.1:PORT/ on the host (bounded retries), asks the program to exit over HTTP, and checks the
exit status `doit boot` ends with. arm64's Go server needs its own kernel (the arm64-6.12 profile plus net).
Every host end is on 127.0.0.1 or a Unix socket in the build dir; every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, TARBALL, doit, on_examples_kernel
from tests.helpers.doit import dodo_command, ran, variables
from tinyuki.config.profile import moved_profile_text

pytestmark = pytest.mark.skipif(not TARBALL.exists(), reason=f"{TARBALL} missing: scripts/setup.sh installs it")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Boot:
    """`doit boot` running in the background, its output collected line by line as it arrives."""

    def __init__(self, paths: dict[str, Path], profile: Path, *args: str) -> None:
        cmd = dodo_command("boot", "accel=tcg", *args, *variables(profile=profile, build_dir=paths["build"],
                                                                   cache_dir=paths["cache"]))
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, seconds: float) -> str:
        """The first line holding `text`, within `seconds`; fails with the output so far otherwise."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = next((line for line in list(self.lines) if text in line), None)
            if found is not None:
                return found
            if self.proc.poll() is not None and not self.reader.is_alive():
                break
            time.sleep(0.1)
        raise AssertionError(f"no {text!r} within {seconds:g} s (doit boot "
                             f"{'ended' if self.proc.poll() is not None else 'still running'}):\n{self.output[-4000:]}")

    def end(self, seconds: float) -> int:
        """doit boot's exit code, once it has ended by itself within `seconds`."""
        try:
            code = self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"doit boot did not end within {seconds:g} s:\n{self.output[-4000:]}") from None
        self.reader.join(timeout=10)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


def fetch(url: str, *, tries: int = 20, pause: float = 1.0) -> str:
    """GET `url`, retried a bounded number of times while the guest is not answering yet."""
    last: Exception | None = None
    for _ in range(tries):
        try:
            with urllib.request.urlopen(url, timeout=20) as answer:
                return answer.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            last = e
            time.sleep(pause)
    raise AssertionError(f"{url}: no answer after {tries} tries: {last}")


def serve_and_stop(paths: dict[str, Path], profile: Path, greeting: str, status: int) -> str:
    """Boot the server, fetch / and /exit?status=N through a forward, and return doit boot's whole output."""
    port = free_port()
    boot = Boot(paths, profile, f"forward=127.0.0.1:{port}-:80")
    try:
        ready = boot.wait_for(f"127.0.0.1:{port} accepts connections", 600)
        assert "the program's port 80" in ready
        assert "boot: net: guest 10.0.2.15" in boot.output
        answer = fetch(f"http://127.0.0.1:{port}/")
        assert greeting in answer and "to 10.0.2.2" in answer, answer  # the host's end, as the guest sees it
        assert fetch(f"http://127.0.0.1:{port}/exit?status={status}") == f"bye (exit status {status})\n"
        code = boot.end(120)
    finally:
        boot.stop()
    out = boot.output
    assert code == status, out[-4000:]
    assert f"boot: the program's exit status: {status}" in out and "Traceback" not in out
    return out


@pytest.fixture(scope="module")
def servers(examples_build: dict[str, Path]) -> Iterator[dict[str, Path]]:
    yield examples_build


@pytest.mark.parametrize("example, greeting, status", [
    ("http-go", "hello from Go's net/http (go1.", 0),
    ("http-c", "hello from C (musl) over HTTP/1.0 in tinyuki", 5),
])
def test_an_http_server_answers_on_the_host_and_exits_on_request(servers: dict[str, Path], example: str,
                                                                  greeting: str, status: int) -> None:
    profile = on_examples_kernel(example, servers["top"])
    out = doit(dict(servers, profile=profile), ["embed"], timeout=1800)
    assert "kernel" not in ran(out), f"{example} rebuilt the kernel:\n{out[-3000:]}"
    out = serve_and_stop(servers, profile, greeting, status)
    assert "IP-Config: Complete:" in out and "addr=10.0.2.15" in out  # the kernel's own ip= configuration


def test_the_channel_example_answers_over_its_unix_socket(servers: dict[str, Path]) -> None:
    profile = on_examples_kernel("channel-c", servers["top"])
    doit(dict(servers, profile=profile), ["embed"], timeout=1800)
    sock_path = servers["build"] / "channel" / "tinyuki.0.sock"
    boot = Boot(servers, profile)
    try:
        boot.wait_for("channel: waiting for a request on /dev/vport", 300)
        assert f"its host end is {sock_path}" in boot.output
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(60)
            s.connect(str(sock_path))
            s.sendall(b"ping from the host\n")
            got = b""
            while not got.endswith(b"\n"):
                chunk = s.recv(4096)
                assert chunk, f"the channel closed before the answer: {got!r}\n{boot.output[-3000:]}"
                got += chunk
        assert got == b"answer from tinyuki: ping from the host\n", boot.output[-3000:]
        code = boot.end(120)
    finally:
        boot.stop()
    assert code == 0 and "boot: the program's exit status: 0" in boot.output, boot.output[-4000:]
    assert not sock_path.exists()


def test_ways_out_a_kernel_does_not_have_are_refused_before_qemu(build: dict[str, Path]) -> None:
    """The default profile's kernel has no net, channel or vsock fragment: each is named, and QEMU never starts."""
    for args, fragment, option in ((["forward=127.0.0.1:18080-:80"], "net", "CONFIG_VIRTIO_NET=y"),
                                   (["channel=tinyuki.0"], "channel", "CONFIG_VIRTIO_CONSOLE=y"),
                                   (["forward=18080-80", "uki=1"], "net", "CONFIG_IP_PNP=y")):
        out = doit(build, ["boot", "accel=tcg", *args], check=False)
        assert f"needs the '{fragment}' fragment in the kernel" in out and option in out, out[-3000:]
        assert f'add "{fragment}" to [kernel] fragments' in out
        assert "+ qemu-system" not in out and "Traceback" not in out


# ---------------------------------------------------------------- arm64

@pytest.fixture(scope="module")
def arm64_server(tmp_path_factory: pytest.TempPathFactory, arm64_cache: Path) -> dict[str, Path]:
    """examples/http-go-arm64.toml built as shipped (the arm64-6.12 profile's kernel plus net, the Go server).

    Its cache is the arm64 e2e's: the tarball's tree is there, and the compile cache that `doit repro` warmed
    answers most of this kernel's compiles (net adds its own; the rest compile to the same preprocessed code).
    """
    top = tmp_path_factory.mktemp("arm64-http")
    profile = top / "http-go-arm64.toml"
    profile.write_text(moved_profile_text((ROOT / "examples" / "http-go-arm64.toml").read_text(), ROOT / "examples"))
    paths = {"profile": profile, "build": top / "build", "cache": arm64_cache, "top": top}
    doit(paths, ["uki"], timeout=3600)
    return paths


def test_the_go_server_on_arm64(arm64_server: dict[str, Path]) -> None:
    out = serve_and_stop(arm64_server, arm64_server["profile"], "hello from Go's net/http (go1.", 0)
    assert "on virt with tcg" in out
