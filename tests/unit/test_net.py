"""The program's ways out of the VM (tinyuki/vm/net.py): forwards, ip=, QEMU's devices, the host checks, PortWatch."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from tests.helpers.profiles import MINIMAL
from tinyuki.config.profile import load_profile
from tinyuki.errors import TinyukiError
from tinyuki.vm import net, qemu

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text, want", [
    ("127.0.0.1:8080-:80", net.Forward(8080, 80)),
    ("8080-80", net.Forward(8080, 80)),
    ("localhost:8080-10.0.2.15:80", net.Forward(8080, 80)),
    (":2222-:22", net.Forward(2222, 22)),
    ("udp:5353-53", net.Forward(5353, 53, "udp")),
    ("tcp:127.0.0.1:1-:65535", net.Forward(1, 65535)),
])
def test_forwards_as_written(text: str, want: net.Forward) -> None:
    assert net.parse_forward(text, "here") == want
    assert net.parse_forward(str(want), "here") == want  # what tinyuki prints reads back the same


@pytest.mark.parametrize("text, says", [
    ("0.0.0.0:8080-:80", "listens on 0.0.0.0: forwards listen on 127.0.0.1 only"),
    ("192.168.1.5:8080-:80", "127.0.0.1 only"),
    ("8080-10.0.2.99:80", "the guest's address is 10.0.2.15"),
    ("8080", "is not HOST-GUEST"),
    ("8080:80", "is not HOST-GUEST"),
    ("sctp:8080-80", "is not HOST-GUEST"),
    ("8080-80-1", "is not HOST-GUEST"),
    ("0-80", "port 0 is not between 1 and 65535"),
    ("8080-70000", "port 70000 is not between 1 and 65535"),
    ("", "is not HOST-GUEST"),
])
def test_a_bad_forward_says_what_and_how(text: str, says: str) -> None:
    with pytest.raises(TinyukiError) as err:
        net.parse_forward(text, "p.toml: [boot] forward")
    assert says in err.value.message and err.value.message.startswith("p.toml: [boot] forward")
    assert err.value.hint


def test_a_host_port_is_forwarded_once() -> None:
    with pytest.raises(TinyukiError, match="host port 8080 is forwarded twice"):
        net.parse_forwards(["8080-80", "127.0.0.1:8080-:81"], "here")
    assert net.parse_forwards(["8080-80", "udp:8080-80"], "here")  # TCP and UDP are separate ports


def test_ip_is_added_only_for_a_network_and_only_once() -> None:
    assert net.with_ip("console=ttyS0", "none") == "console=ttyS0"
    assert net.with_ip("console=ttyS0", "isolated") == "console=ttyS0 ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off"
    mine = "console=ttyS0 ip=10.0.2.16::10.0.2.2:255.255.255.0::eth0:off"
    assert net.with_ip(mine, "user") == mine
    # words after " -- " are init's: the kernel's own arguments go before them
    assert net.with_ip("console=ttyS0 -- --port 80", "user") == (
        "console=ttyS0 ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off -- --port 80")
    assert net.with_ip("console=ttyS0 -- ip=mine", "user").startswith("console=ttyS0 ip=10.0.2.15:")
    line = qemu.kernel_cmdline(qemu.BootSpec(machine="microvm", memory="1G", accel="tcg", tsc_khz=1000,
                                             cmdline="console=ttyS0 -- HELLO", net="isolated"))
    assert line.endswith("eth0:off tsc_early_khz=1000 -- HELLO"), line


def test_a_kernel_without_the_fragment_is_refused_naming_it(tmp_path: Path) -> None:
    config = "CONFIG_NET=y\nCONFIG_INET=y\n# CONFIG_IP_PNP is not set\n"
    assert net.missing_options(config, "net") == ("net", ["CONFIG_IP_PNP", "CONFIG_VIRTIO_NET"])
    with pytest.raises(TinyukiError) as err:
        net.require_options(config, "net", "forward", tmp_path / "kernel.config")
    assert "needs the 'net' fragment" in err.value.message and "CONFIG_VIRTIO_NET=y" in err.value.message
    assert 'add "net" to [kernel] fragments' in (err.value.hint or "")
    with pytest.raises(TinyukiError, match="'channel' fragment"):
        net.require_options(config, "channel", "channel tinyuki.0", tmp_path / "kernel.config")
    net.require_options("CONFIG_VIRTIO_VSOCKETS=y\n", "vsock", "vsock", tmp_path / "kernel.config")


def test_nolapic_timer_on_microvm_would_hang_a_networked_boot() -> None:
    line = "console=ttyS0 panic=-1 nolapic_timer"
    assert "would hang" in (net.timer_problem(line, "microvm", "isolated") or "")
    assert net.timer_problem(line, "q35", "isolated") is None  # a PIT ticks there
    assert net.timer_problem(line, "microvm", "none") is None
    assert net.timer_problem("console=ttyS0 -- nolapic_timer", "microvm", "user") is None  # init's word


def test_a_busy_port_is_found_before_qemu_starts() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert net.port_taken(port) == "another program is listening on it"
        with pytest.raises(TinyukiError) as err:
            net.require_free((net.Forward(port, 80),))
        assert f"127.0.0.1:{port} (tcp) cannot be used" in err.value.message and "another host port" in err.value.hint
    assert net.port_taken(port) is None


def test_a_port_whose_last_connection_waits_out_time_wait_is_free() -> None:
    """A server that closed first leaves the host port in TIME_WAIT: QEMU can listen there, so may the check."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = server.accept()
        conn.close()  # the accepting side closes first: its end goes to TIME_WAIT
        time.sleep(0.1)
        client.close()
    assert net.port_taken(port) is None


def test_vsock_without_the_host_device_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TinyukiError) as err:
        net.require_vhost_vsock(tmp_path / "vhost-vsock")
    assert "vsock needs" in err.value.message and "modprobe vhost_vsock" in (err.value.hint or "")


def test_cids_and_channel_names() -> None:
    assert net.check_cid(3, "x") == 3
    for bad in (0, 1, 2, 2**32 - 1):
        with pytest.raises(TinyukiError, match="not a guest's CID"):
            net.check_cid(bad, "x")
    assert net.check_channel_name("org.example-data_0", "x")
    for bad in ("", "../up", "a b", "a,b", "x" * 65, ".hidden"):
        with pytest.raises(TinyukiError, match="not a plain name"):
            net.check_channel_name(bad, "x")


def test_a_channel_socket_path_must_fit_a_unix_socket(tmp_path: Path) -> None:
    assert net.channel_socket(tmp_path, "tinyuki.0") == tmp_path / "tinyuki.0.sock"
    with pytest.raises(TinyukiError, match="a Unix socket's path can be at most 107"):
        net.channel_socket(tmp_path / ("d" * 120), "tinyuki.0")


# ---------------------------------------------------------------- QEMU's command line

def spec(**kw: object) -> qemu.BootSpec:
    base: dict[str, object] = {"machine": "microvm", "memory": "128M", "accel": "tcg", "cmdline": "console=ttyS0",
                               "kernel": Path("/k/bzImage")}
    base.update(kw)
    return qemu.BootSpec(**base)  # type: ignore[arg-type]


def value(cmd: list[str], flag: str, start: str = "") -> str:
    return next(cmd[i + 1] for i, a in enumerate(cmd) if a == flag and cmd[i + 1].startswith(start))


def test_a_networked_boot_gets_the_user_network_forwards_on_loopback_and_ip() -> None:
    cmd = qemu.command(spec(net="isolated", forwards=(net.Forward(8080, 80), net.Forward(5353, 53, "udp"))))
    assert value(cmd, "-M") == "microvm,pcie=on"  # the card sits on microvm's PCIe host
    assert value(cmd, "-netdev") == ("user,id=net0,net=10.0.2.0/24,host=10.0.2.2,restrict=on,"
                                     "hostfwd=tcp:127.0.0.1:8080-10.0.2.15:80,hostfwd=udp:127.0.0.1:5353-10.0.2.15:53")
    assert value(cmd, "-device", "virtio-net") == "virtio-net-pci,netdev=net0,romfile="
    assert value(cmd, "-append").endswith(" ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off")
    user = qemu.command(spec(net="user"))
    assert "restrict=off" in value(user, "-netdev") and "hostfwd" not in value(user, "-netdev")
    plain = qemu.command(spec())
    assert "-netdev" not in plain and "ip=" not in value(plain, "-append") and value(plain, "-M") == "microvm"


def test_virtio_mmio_kernels_and_arm64_get_their_own_devices() -> None:
    mmio = qemu.command(spec(net="user", virtio_mmio=True, channel=("tinyuki.0", Path("/b/c.sock")), vsock_cid=3))
    assert value(mmio, "-M") == "microvm"
    assert {"virtio-net-device,netdev=net0", "virtio-serial-device", "vhost-vsock-device,guest-cid=3"} <= set(mmio)
    arm = qemu.command(spec(machine="virt", arch="arm64", cmdline="console=ttyAMA0", net="isolated",
                            forwards=(net.Forward(8082, 80),)))
    assert value(arm, "-M") == "virt" and "virtio-net-pci,netdev=net0,romfile=" in arm
    assert "hostfwd=tcp:127.0.0.1:8082-10.0.2.15:80" in value(arm, "-netdev")


def test_a_channel_and_vsock_on_pci() -> None:
    cmd = qemu.command(spec(channel=("tinyuki.0", Path("/b,x/channel/tinyuki.0.sock")), vsock_cid=7))
    assert value(cmd, "-chardev") == "socket,id=channel0,path=/b,,x/channel/tinyuki.0.sock,server=on,wait=off"
    assert "virtio-serial-pci" in cmd and "virtserialport,chardev=channel0,name=tinyuki.0" in cmd
    assert "vhost-vsock-pci,guest-cid=7" in cmd
    assert value(cmd, "-M") == "microvm,pcie=on" and "ip=" not in value(cmd, "-append")


def test_a_uki_boot_takes_its_ip_from_the_uki_not_from_append() -> None:
    cmd = qemu.command(spec(kernel=None, esp=Path("/e.img"), ovmf_code=Path("/c"), ovmf_vars=Path("/v"),
                            machine="q35", net="isolated", forwards=(net.Forward(8080, 80),)))
    assert "-append" not in cmd and "virtio-net-pci,netdev=net0,romfile=" in cmd


# ---------------------------------------------------------------- the profile

def write_profile(folder: Path, boot: str = "", name: str = "p") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(MINIMAL + (f"\n[boot]\n{boot}\n" if boot else ""))
    return path


def test_the_profile_takes_net_forwards_channel_and_vsock(tmp_path: Path) -> None:
    path = write_profile(tmp_path, boot='net = "isolated"\nforward = ["127.0.0.1:8080-:80"]\nchannel = "tinyuki.0"\n'
                                        "vsock = 3\n")
    p = load_profile(str(path), tmp_path)
    assert (p.boot.net, p.boot.forward, p.boot.channel, p.boot.vsock) == ("isolated", (net.Forward(8080, 80),),
                                                                          "tinyuki.0", 3)
    assert p.uki_cmdline.endswith(" ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off")
    plain = load_profile(str(write_profile(tmp_path, name="plain")), tmp_path)
    assert plain.uki_cmdline == plain.kernel.cmdline  # no network: the UKI's command line is as it was


@pytest.mark.parametrize("boot, says", [
    ('forward = ["8080-80"]', '[boot] forward needs a network: [boot] net is "none"'),
    ('net = "isolated"\nforward = ["0.0.0.0:8080-:80"]', "[boot] forward: forward '0.0.0.0:8080-:80' listens on"),
    ('net = "isolated"\nforward = "8080-80"', "[boot] forward must be a list of strings"),
    ('net = "bridge"', "[boot] net"),
    ("vsock = 2", "[boot] vsock: vsock CID 2 is not a guest's CID"),
    ('channel = "a/b"', "[boot] channel: channel name 'a/b' is not a plain name"),
])
def test_bad_ways_out_in_a_profile_name_the_file_and_key(tmp_path: Path, boot: str, says: str) -> None:
    with pytest.raises(TinyukiError) as err:
        load_profile(str(write_profile(tmp_path, boot=boot)), tmp_path)
    assert says in err.value.message and "p.toml" in err.value.message, err.value.message


# ---------------------------------------------------------------- is the program answering?

def serve(behaviour: str) -> tuple[socket.socket, threading.Event]:
    """A listener on 127.0.0.1 that acts as QEMU's user network does: `close` (nothing listens in the guest),
    `hold` (the program accepted and waits for a request) or `greet` (the program speaks first)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(10)
    done = threading.Event()

    def run() -> None:
        held = []
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            if behaviour == "close":
                conn.close()
            elif behaviour == "greet":
                conn.sendall(b"220 hello\r\n")
                held.append(conn)
            else:
                held.append(conn)
        for conn in held:
            conn.close()

    threading.Thread(target=run, daemon=True).start()
    return server, done


def watch_until(watch: net.PortWatch, seconds: float) -> list[tuple[net.Forward, float]]:
    start = time.monotonic()
    while time.monotonic() - start < seconds and not watch.done:
        watch.poll(time.monotonic() - start)
        time.sleep(0.02)
    watch.close()
    return watch.ready


@pytest.mark.parametrize("behaviour, accepting", [("close", False), ("hold", True), ("greet", True)])
def test_port_watch_tells_a_listening_program_from_qemu_closing(behaviour: str, accepting: bool) -> None:
    server, done = serve(behaviour)
    port = server.getsockname()[1]
    try:
        ready = watch_until(net.PortWatch((net.Forward(port, 80), net.Forward(port, 53, "udp"))), 1.5)
    finally:
        done.set()
        server.close()
    assert [f.host_port for f, _ in ready] == ([port] if accepting else [])


def test_port_watch_waits_through_a_refused_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        assert watch_until(net.PortWatch((net.Forward(port, 80),)), 0.6) == []
