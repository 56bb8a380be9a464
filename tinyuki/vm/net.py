"""The program's ways out of the VM: QEMU user networking with forwards, a virtio-serial channel, vsock.

Every host end is on this machine only: forwards listen on 127.0.0.1, the
channel is a Unix socket in the build dir, vsock is the host's own vhost
device. No tap device, bridge or host network setting is touched, so a boot
needs no privileges and nothing outside this host can connect to the program.
(The other way round is the profile's choice: with net = "user" the program may
connect out, to the internet and to the host's own 127.0.0.1 services through
10.0.2.2; "isolated" lets only the forwards in.)
Plain data in, QEMU arguments and messages out (tinyuki/vm/qemu.py puts them
on the command line); the few host checks (a port free, a device present)
are small functions of their own so a boot can refuse before QEMU starts.
"""

from __future__ import annotations

import errno
import os
import re
import select
import socket
from dataclasses import dataclass, field
from pathlib import Path

from tinyuki.errors import die

# QEMU's user network (slirp): its default addresses, stated so the kernel's ip= and the messages agree.
GUEST_ADDRESS = "10.0.2.15"
GATEWAY = "10.0.2.2"
NETMASK = "255.255.255.0"
NETWORK = "10.0.2.0/24"
LOOPBACK = "127.0.0.1"
# none: no network card; user: QEMU's user network, the guest may also connect out through the host
# (NAT); isolated: the same card, but the guest reaches nothing outside the VM: only the forwards come in.
NET_MODES = ("none", "user", "isolated")

# What each way out needs in the kernel, and the fragment that provides it (configs/fragments/).
NEEDS = {
    "net": ("net", ("CONFIG_INET", "CONFIG_IP_PNP", "CONFIG_VIRTIO_NET")),
    "channel": ("channel", ("CONFIG_VIRTIO_CONSOLE",)),
    "vsock": ("vsock", ("CONFIG_VIRTIO_VSOCKETS",)),
}
VHOST_VSOCK = Path("/dev/vhost-vsock")
# The host's CID is 2 and 0-1 are reserved: a guest's CID is 3 or more (and below 2**32 - 1, "any").
LEAST_CID = 3
MOST_CID = 0xFFFFFFFE
CHANNEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Longest path a Unix socket can have on Linux (sun_path is 108 bytes with its terminating NUL).
SOCKET_PATH_MAX = 107

FORWARD_RE = re.compile(r"^(?:(?P<proto>tcp|udp):)?(?:(?P<host>[0-9.]*|localhost):)?(?P<hport>\d+)"
                        r"-(?:(?P<guest>[0-9.]*):)?(?P<gport>\d+)$")
FORWARD_HINT = (f'write HOST-GUEST as in QEMU\'s hostfwd: "{LOOPBACK}:8080-:80" (host port 8080 to the program\'s'
                ' port 80), "8080-80" for short, "udp:5353-53" for UDP')


@dataclass(frozen=True, order=True)
class Forward:
    """One port forward: connections to 127.0.0.1:host_port on the host reach the guest's guest_port."""

    host_port: int
    guest_port: int
    proto: str = "tcp"

    def hostfwd(self) -> str:
        """QEMU's hostfwd= rule: bound to the host's loopback only."""
        return f"{self.proto}:{LOOPBACK}:{self.host_port}-{GUEST_ADDRESS}:{self.guest_port}"

    def __str__(self) -> str:
        prefix = "" if self.proto == "tcp" else f"{self.proto}:"
        return f"{prefix}{LOOPBACK}:{self.host_port}-:{self.guest_port}"


def parse_forward(text: str, where: str) -> Forward:
    """One forward as written in a profile or on doit's command line; `where` says which, for the error."""
    m = FORWARD_RE.match(text.strip())
    if not m:
        raise die(f"{where}: forward {text!r} is not HOST-GUEST", FORWARD_HINT)
    host = m.group("host")
    if host not in (None, "", LOOPBACK, "localhost"):
        raise die(f"{where}: forward {text!r} listens on {host}: forwards listen on {LOOPBACK} only",
                  f"so that nothing outside this machine reaches the VM; write {LOOPBACK}:PORT or just the port"
                  " (reach it from elsewhere through an SSH tunnel)")
    guest = m.group("guest")
    if guest not in (None, "", GUEST_ADDRESS):
        raise die(f"{where}: forward {text!r} goes to {guest}, but the guest's address is {GUEST_ADDRESS}",
                  "leave the guest's address out: \"8080-:80\"")
    ports = {}
    for side in ("hport", "gport"):
        port = int(m.group(side))
        if not 1 <= port <= 65535:
            raise die(f"{where}: forward {text!r}: port {port} is not between 1 and 65535", FORWARD_HINT)
        ports[side] = port
    return Forward(ports["hport"], ports["gport"], m.group("proto") or "tcp")


def parse_forwards(items: list[str] | tuple[str, ...], where: str) -> tuple[Forward, ...]:
    """Several forwards; one host port may be forwarded once."""
    out: list[Forward] = []
    for item in items:
        fwd = parse_forward(item, where)
        twin = next((f for f in out if (f.proto, f.host_port) == (fwd.proto, fwd.host_port)), None)
        if twin is not None:
            raise die(f"{where}: host port {fwd.host_port} is forwarded twice ({twin} and {fwd})",
                      "give each forward its own host port")
        out.append(fwd)
    return tuple(out)


def ip_argument() -> str:
    """The kernel's ip= for QEMU's user network: static, so the kernel needs no DHCP client and waits for no lease.

    ip=<client>:<server>:<gateway>:<netmask>:<hostname>:<device>:<autoconf>
    """
    return f"ip={GUEST_ADDRESS}::{GATEWAY}:{NETMASK}::eth0:off"


def kernel_argument(cmdline: str, argument: str) -> str:
    """`argument` added to the kernel's own part of a command line: before a ` -- `, after which words are init's."""
    kernel, sep, init = cmdline.partition(" -- ")
    return f"{kernel.strip()} {argument}".strip() + (f"{sep}{init}" if sep else "")


def with_ip(cmdline: str, net: str) -> str:
    """The command line with ip= for a networked boot; unchanged without a network or when it has its own ip=."""
    words = cmdline.partition(" -- ")[0].split()
    if net == "none" or any(w.startswith("ip=") for w in words):
        return cmdline
    return kernel_argument(cmdline, ip_argument())


def missing_options(config_text: str, need: str) -> tuple[str, list[str]]:
    """The fragment `need` (net, channel, vsock) asks for, and which of its options the kernel's .config lacks."""
    fragment, options = NEEDS[need]
    have = set(re.findall(r"^(CONFIG_[A-Za-z0-9_]+)=y$", config_text, re.M))
    return fragment, [o for o in options if o not in have]


def require_options(config_text: str, need: str, what: str, config_path: Path) -> None:
    """Refuse, before QEMU starts, a boot whose kernel was built without the fragment that `need` needs."""
    fragment, missing = missing_options(config_text, need)
    if missing:
        raise die(f"{what} needs the {fragment!r} fragment in the kernel, and {config_path} has no "
                  + ", ".join(f"{o}=y" for o in missing),
                  f"add \"{fragment}\" to [kernel] fragments in the profile, then run `doit` to build the kernel"
                  " with it")


def timer_problem(cmdline: str, machine: str, net: str) -> str | None:
    """Why this networked boot would hang before the program starts, or None.

    On microvm, nolapic_timer leaves the kernel with no ticking timer at all (no PIT or HPET clock
    event there), and the kernel's ip= setup sleeps: it would wait forever. q35 and pc have a PIT.
    """
    words = cmdline.partition(" -- ")[0].split()
    if net == "none" or machine != "microvm" or "nolapic_timer" not in words:
        return None
    return ("nolapic_timer on microvm leaves the kernel without a ticking timer, and the kernel's ip= setup sleeps:"
            " this boot would hang before the program starts")


def port_taken(port: int, proto: str = "tcp") -> str | None:
    """Why 127.0.0.1:port cannot be listened on right now (in use, not allowed), or None when it is free."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        # as QEMU binds it: a port whose last connection is in TIME_WAIT is free for a new listener
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return "another program is listening on it"
            return e.strerror or str(e)
    return None


def require_free(forwards: tuple[Forward, ...]) -> None:
    """Every forward's host port can be listened on: QEMU would only say "Could not set up host forwarding"."""
    for fwd in forwards:
        why = port_taken(fwd.host_port, fwd.proto)
        if why:
            raise die(f"forward {fwd}: {LOOPBACK}:{fwd.host_port} ({fwd.proto}) cannot be used: {why}",
                      f"pick another host port (forward={LOOPBACK}:PORT-:{fwd.guest_port}), or stop what uses it"
                      f" (`ss -ltnp 'sport = :{fwd.host_port}'` names it)")


def require_vhost_vsock(device: Path = VHOST_VSOCK) -> None:
    """vsock needs the host kernel's vhost-vsock device: without it QEMU fails with a bare errno."""
    if not device.exists():
        raise die(f"vsock needs {device} on this host, and it has none",
                  "it comes from the host kernel's vhost_vsock module: `modprobe vhost_vsock` as root (a container"
                  " must be given the device, a VM host needs nested vsock); without it, use forward= (TCP over"
                  " QEMU's user network) or channel= (a virtio-serial port), which need nothing of the host")
    if not os.access(device, os.R_OK | os.W_OK):
        raise die(f"vsock needs read and write access to {device}", f"add this user to the group owning {device}"
                  " (usually kvm), or boot as a user who has it")


def check_cid(cid: int, where: str) -> int:
    """A guest CID: 3 or more (0-1 reserved, 2 is the host)."""
    if not LEAST_CID <= cid <= MOST_CID:
        raise die(f"{where}: vsock CID {cid} is not a guest's CID",
                  f"use a number from {LEAST_CID} up (0 and 1 are reserved, 2 is the host)")
    return cid


def check_channel_name(name: str, where: str) -> str:
    """A virtio-serial port's name: it is also the socket's file name and the guest's sysfs name."""
    if not CHANNEL_NAME_RE.match(name):
        raise die(f"{where}: channel name {name!r} is not a plain name",
                  "use letters, digits, dots, dashes and underscores, at most 64, starting with a letter or digit"
                  " (tinyuki.0, org.example.data)")
    return name


def channel_socket(folder: Path, name: str) -> Path:
    """Where a channel's host end lives: a Unix socket in `folder` (the build dir's), refused when too long a path."""
    path = folder / f"{name}.sock"
    length = len(os.fsencode(path))
    if length > SOCKET_PATH_MAX:
        raise die(f"the channel's socket {path} is {length} bytes long; a Unix socket's path can be at most"
                  f" {SOCKET_PATH_MAX}", "use a shorter build dir (build_dir=/tmp/NAME) or a shorter channel name")
    return path


# ---------------------------------------------------------------- QEMU's devices

def _device(pci: str, mmio: str, virtio_mmio: bool) -> str:
    return mmio if virtio_mmio else pci


def net_args(forwards: tuple[Forward, ...], mode: str, *, virtio_mmio: bool = False) -> list[str]:
    """QEMU's user network and a virtio-net card (virtio-mmio on a microvm kernel with its drivers, else PCI)."""
    if mode not in NET_MODES or mode == "none":
        raise ValueError(f"net must be user or isolated here, not {mode!r}")
    restrict = "on" if mode == "isolated" else "off"
    options = ["user", "id=net0", f"net={NETWORK}", f"host={GATEWAY}", f"restrict={restrict}"]
    options += [f"hostfwd={f.hostfwd()}" for f in forwards]
    # romfile= (none): the firmware (OVMF) loads no iPXE option ROM for the card, so a UKI boot spends no time
    # on it and never tries a network boot
    card = "virtio-net-device,netdev=net0" if virtio_mmio else "virtio-net-pci,netdev=net0,romfile="
    return ["-netdev", ",".join(options), "-device", card]


def channel_args(sock: Path, name: str, *, virtio_mmio: bool = False) -> list[str]:
    """A virtio-serial port named `name`; QEMU listens on `sock` and the VM does not wait for a client."""
    path = str(sock).replace(",", ",,")
    return ["-chardev", f"socket,id=channel0,path={path},server=on,wait=off",
            "-device", _device("virtio-serial-pci", "virtio-serial-device", virtio_mmio),
            "-device", f"virtserialport,chardev=channel0,name={name}"]


def vsock_args(cid: int, *, virtio_mmio: bool = False) -> list[str]:
    """A vhost-vsock device: the guest is CID `cid`, the host CID 2."""
    return ["-device", f"{_device('vhost-vsock-pci', 'vhost-vsock-device', virtio_mmio)},guest-cid={cid}"]


# ---------------------------------------------------------------- is the program answering?

PROBE_SECONDS = 0.3  # an open connection that QEMU has not closed after this long reached a listening program
RETRY_SECONDS = 0.2


@dataclass
class _Probe:
    forward: Forward
    sock: socket.socket | None = None
    opened: float = 0.0
    last: float = -1.0


@dataclass
class PortWatch:
    """Says when each TCP forward reaches a program that accepts connections, without blocking the console.

    QEMU's user network accepts a connection on the host at once, whatever the
    guest does, then connects to the guest: if nothing listens there, it
    closes the host's end. So a connection still open after PROBE_SECONDS (or
    one the program already wrote to) is a program accepting; the time given
    is when that connection was opened. It is asked only once the program has
    started: while the kernel boots, the guest does not answer at all, and the
    open connection would look like a listener. The probe sends nothing; the
    program sees a client that closes at once.
    """

    forwards: tuple[Forward, ...]
    probes: list[_Probe] = field(default_factory=list)
    ready: list[tuple[Forward, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.probes = [_Probe(f) for f in self.forwards if f.proto == "tcp"]

    @property
    def done(self) -> bool:
        return not self.probes

    def poll(self, now: float) -> list[tuple[Forward, float]]:
        """Advance every probe by one non-blocking step; the forwards found accepting in this step."""
        found: list[tuple[Forward, float]] = []
        for probe in list(self.probes):
            opened = probe.opened
            if self._step(probe, now):
                self.probes.remove(probe)
                found.append((probe.forward, opened))
        self.ready.extend(found)
        return found

    def _step(self, probe: _Probe, now: float) -> bool:
        if probe.sock is None:
            if now - probe.last < RETRY_SECONDS:
                return False
            probe.last = now
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            code = sock.connect_ex((LOOPBACK, probe.forward.host_port))
            if code not in (0, errno.EINPROGRESS):
                sock.close()
                return False
            probe.sock, probe.opened = sock, now
            return False
        readable, _, failed = select.select([probe.sock], [], [probe.sock], 0)
        if readable or failed:
            try:
                data = probe.sock.recv(1)
            except OSError:
                data = b""
            if data:  # the program spoke first: it accepted
                self._close(probe)
                return True
            self._close(probe)  # closed by QEMU: nothing listens in the guest yet
            return False
        if now - probe.opened >= PROBE_SECONDS and probe.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            try:
                probe.sock.getpeername()
            except OSError:  # not connected (yet)
                return False
            self._close(probe)
            return True
        return False

    @staticmethod
    def _close(probe: _Probe) -> None:
        if probe.sock is not None:
            probe.sock.close()
        probe.sock = None

    def close(self) -> None:
        for probe in self.probes:
            self._close(probe)


def describe(forwards: tuple[Forward, ...], mode: str) -> str:
    """One line for `doit boot`: the guest's address and what reaches it."""
    parts = [f"guest {GUEST_ADDRESS} (gateway {GATEWAY}, QEMU user network"
             + (", isolated: no connections out)" if mode == "isolated" else ")")]
    if forwards:
        parts.append("forwards " + ", ".join(f"{LOOPBACK}:{f.host_port} -> :{f.guest_port}"
                                             + ("" if f.proto == "tcp" else f"/{f.proto}") for f in forwards))
    return "; ".join(parts)

