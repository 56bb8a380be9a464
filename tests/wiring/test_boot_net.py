"""`doit boot`'s ways out, on the real doit command line with a stand-in QEMU: what it is given, what is refused.

Each refusal (a busy or malformed forward, a network for a UKI without ip=,
vsock without /dev/vhost-vsock) must come before QEMU starts: the stand-in
records its arguments, so "QEMU never ran" is checked, not assumed. Ctrl-C
during a server's boot stops the VM and ends with 130.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.doit import dodo_command, environ, output, run_dodo, variables
from tests.helpers.fakeqemu import KERNEL_LINES, boot_profile, died, fake_qemu
from tinyuki.vm import net

pytestmark = pytest.mark.wiring

MARKER = "http: started"
PROFILE = boot_profile(MARKER, "timeout = 30")
DIED = died(0)


def setup(tmp_path: Path, boot: str = "", console: list[str] | None = None, hang: bool = False) -> dict[str, Path]:
    argv = tmp_path / "qemu-argv"
    fake_qemu(tmp_path / "bin", console if console is not None else [*KERNEL_LINES, MARKER, DIED], argv=argv, hang=hang)
    profile = tmp_path / "p.toml"
    profile.write_text(PROFILE + boot)
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(b"MZ not a real kernel")
    return {"argv": argv, "profile": profile, "kernel": kernel, "build": tmp_path / "b", "cache": tmp_path / "c",
            "bin": tmp_path / "bin"}


def env(paths: dict[str, Path]) -> dict[str, str]:
    return environ("TINYUKI_*", PATH=f"{paths['bin']}{os.pathsep}{os.environ['PATH']}")


def boot(paths: dict[str, Path], *args: str) -> tuple[int, str]:
    proc = run_dodo("boot", f"kernel={paths['kernel']}", *args, *variables(
        profile=paths["profile"], build_dir=paths["build"], cache_dir=paths["cache"]), env=env(paths), timeout=120)
    return proc.returncode, output(proc)


def qemu_args(paths: dict[str, Path]) -> list[str]:
    return paths["argv"].read_text().splitlines()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_forward_on_the_command_line_gives_an_isolated_network_and_ip(tmp_path: Path) -> None:
    paths = setup(tmp_path)
    port = free_port()
    code, out = boot(paths, f"forward=127.0.0.1:{port}-:80")
    assert code == 0, out
    args = qemu_args(paths)
    netdev = args[args.index("-netdev") + 1]
    assert "restrict=on" in netdev and f"hostfwd=tcp:127.0.0.1:{port}-10.0.2.15:80" in netdev
    assert "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off" in args[args.index("-append") + 1].split()
    assert "boot: net: guest 10.0.2.15" in out and f"127.0.0.1:{port} -> :80" in out
    assert "the VM runs until the program exits, Ctrl-C, or 30 s" in out


def test_the_profiles_forwards_and_the_command_lines_replacing_them(tmp_path: Path) -> None:
    first, second = free_port(), free_port()
    paths = setup(tmp_path, f'net = "user"\nforward = ["{first}-80"]\n')
    code, out = boot(paths)
    assert code == 0 and f"hostfwd=tcp:127.0.0.1:{first}-10.0.2.15:80" in "\n".join(qemu_args(paths)), out
    code, out = boot(paths, f"forward={second}-8080,{first}-81")
    netdev = "\n".join(qemu_args(paths))
    assert code == 0 and "restrict=off" in netdev, out  # the profile's net = "user" stays
    assert f"{second}-10.0.2.15:8080" in netdev and f"{first}-10.0.2.15:81" in netdev and "-10.0.2.15:80," not in netdev
    code, out = boot(paths, "forward=none")  # the network stays, without forwards
    netdev = "\n".join(qemu_args(paths))
    assert code == 0 and "-netdev" in netdev and "hostfwd" not in netdev, out
    code, out = boot(paths, "net=none")  # no network at all: the profile's forwards go with it
    assert code == 0 and "-netdev" not in qemu_args(paths) and "ip=" not in "\n".join(qemu_args(paths)), out


@pytest.mark.parametrize("args, says", [
    (["forward=0.0.0.0:8080-:80"], "forward= on the command line: forward '0.0.0.0:8080-:80' listens on 0.0.0.0"),
    (["forward=8080"], "is not HOST-GUEST"),
    (["net=bridge"], "net='bridge' is not one of none, user, isolated"),
    (["forward=8080-80", "net=none"], "forward=8080-80 needs a network, and net=none was given"),
    (["vsock=abc"], "vsock='abc' is not a number"),
    (["vsock=\u00b3"], "is not a number"),
    (["vsock=2"], "vsock CID 2 is not a guest's CID"),
    (["channel=../x"], "channel name '../x' is not a plain name"),
])
def test_bad_ways_out_are_refused_before_qemu_starts(tmp_path: Path, args: list[str], says: str) -> None:
    paths = setup(tmp_path)
    code, out = boot(paths, *args)
    assert code != 0 and says in out and "hint:" in out, out
    assert "Traceback" not in out
    assert not paths["argv"].exists(), "QEMU was started"


def test_nolapic_timer_on_microvm_is_refused_for_a_network(tmp_path: Path) -> None:
    paths = setup(tmp_path)
    text = paths["profile"].read_text().replace('fragments = ["base"]',
                                                'fragments = ["base"]\ncmdline = "console=ttyS0 nolapic_timer"')
    paths["profile"].write_text(text)
    code, out = boot(paths, "forward=8080-80")
    assert code != 0 and "nolapic_timer on microvm leaves the kernel without a ticking timer" in out, out
    assert not paths["argv"].exists(), "QEMU was started"


def test_a_forward_to_a_busy_port_is_refused_before_qemu_starts(tmp_path: Path) -> None:
    paths = setup(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out = boot(paths, f"forward={port}-80")
    assert code != 0 and f"127.0.0.1:{port} (tcp) cannot be used: another program is listening on it" in out, out
    assert not paths["argv"].exists(), "QEMU was started"


def test_vsock_needs_the_hosts_vhost_device(tmp_path: Path) -> None:
    paths = setup(tmp_path)
    code, out = boot(paths, "vsock=1")
    if net.VHOST_VSOCK.exists():  # a host that has it: the device reaches QEMU
        assert code == 0 and "vhost-vsock-pci,guest-cid=3" in qemu_args(paths), out
    else:
        assert code != 0 and "vsock needs /dev/vhost-vsock on this host" in out and "modprobe vhost_vsock" in out
        assert not paths["argv"].exists(), "QEMU was started"


def test_a_channel_is_a_unix_socket_in_the_build_dir_and_is_removed_after(tmp_path: Path) -> None:
    paths = setup(tmp_path)
    code, out = boot(paths, "channel=tinyuki.0")
    sock = paths["build"] / "channel" / "tinyuki.0.sock"
    args = qemu_args(paths)
    assert code == 0, out
    assert args[args.index("-chardev") + 1] == f"socket,id=channel0,path={sock},server=on,wait=off"
    assert "virtserialport,chardev=channel0,name=tinyuki.0" in args
    assert f"boot: channel tinyuki.0: its host end is {sock}" in out
    assert not sock.exists()


def test_ctrl_c_stops_a_serving_vm_and_exits_130(tmp_path: Path) -> None:
    paths = setup(tmp_path, console=[*KERNEL_LINES, MARKER, "http: listening on :80"], hang=True)
    cmd = dodo_command("boot", f"kernel={paths['kernel']}", f"forward={free_port()}-80", *variables(
        profile=paths["profile"], build_dir=paths["build"], cache_dir=paths["cache"]))
    # SIGINT as a terminal leaves it: a suite started in the background (`cmd &`) hands its children SIGINT
    # ignored, and Python then installs no handler for it
    proc = subprocess.Popen(cmd, env=env(paths), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not paths["argv"].exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # the console reached doit boot
        os.kill(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, out
    assert "boot: stopped by Ctrl-C: the VM is stopped" in out and "Traceback" not in out
    log = paths["build"] / "logs" / "boot.log"
    assert f"the console so far is in {log}" in out and "http: listening on :80" in log.read_text()
    left = subprocess.run(["pgrep", "-f", str(paths["bin"] / "qemu-system-x86_64")], capture_output=True, text=True)
    assert left.stdout.strip() == "", "the VM is still running"
