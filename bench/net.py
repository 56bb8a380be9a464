"""Network benchmark: QEMU start to the first HTTP answer a client on the host gets, against the program's first line.

  python -m bench net [--runs N]

bench/profiles/fast-boot-net.toml is fast-boot's kernel plus the net fragment,
running examples/http-c's server. Each run boots it under TCG as `doit boot`
does (tinyuki/vm/run.py), with a forward from a free port on 127.0.0.1 to the
program's port 80, while a client on the host starts a GET every
ATTEMPT_EVERY seconds. Two figures per run, from the same boot: QEMU start to
the program's marker on the console, and QEMU start to the first complete
HTTP answer; the ratio is taken per run. The client then asks the program to
exit (GET /exit), which ends the VM. What the fragment costs in size is the
kernel's symbols against fast-boot's (scripts/bloat-o-meter), beside the
image sizes: the program differs too (musl's server against nolibc's init),
so the image difference is not all the fragment's.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bench import report
from bench import size as bsize
from tinyuki.config.context import ROOT, Context
from tinyuki.tasks import PIPELINE
from tinyuki.vm import net as vmnet
from tinyuki.vm import qemu
from tinyuki.vm import run as vmrun

PROFILE = ROOT / "bench" / "profiles" / "fast-boot-net.toml"
NAME = "HTTP server (C, musl) behind a forward: QEMU start to the first answer on the host"
ATTEMPT_EVERY = 0.02  # a new GET this often until one is answered: the figure's resolution
ATTEMPT_SECONDS = 2.0  # how long one GET may wait for its answer
GREETING = b"hello from C (musl)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((vmnet.LOOPBACK, 0))
        return s.getsockname()[1]


def get(port: int, path: str, seconds: float) -> bytes:
    """One HTTP/1.0 GET on 127.0.0.1:port: the whole answer, or b"" when there was none."""
    try:
        with socket.create_connection((vmnet.LOOPBACK, port), timeout=seconds) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: tinyuki\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    return data
                data += chunk
    except OSError:
        return b""


@dataclass
class Client:
    """GETs started every ATTEMPT_EVERY seconds, each in its own thread, until one is answered."""

    port: int
    start: float
    answered_at: float | None = None
    answer: bytes = b""
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _attempt(self) -> None:
        data = get(self.port, "/", ATTEMPT_SECONDS)
        at = time.monotonic() - self.start
        if b" 200 " in data.split(b"\r\n", 1)[0] and GREETING in data:
            with self.lock:
                if self.answered_at is None or at < self.answered_at:
                    self.answered_at, self.answer = at, data
            self.done.set()

    def run(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.done.is_set() and time.monotonic() < deadline:
            threading.Thread(target=self._attempt, daemon=True).start()
            self.done.wait(ATTEMPT_EVERY)
        if self.done.is_set():
            get(self.port, "/exit", 10.0)  # the program exits, and the VM with it


def direct_spec(ctx: Context, **ways: Any) -> qemu.BootSpec:
    """The profile's kernel booted directly under TCG, as `doit boot` does; `ways` are the BootSpec's ways out."""
    b = ctx.profile.boot
    return qemu.BootSpec(
        machine=b.machine, memory=b.memory, accel="tcg", cmdline=ctx.profile.kernel.cmdline, arch=ctx.arch.name,
        kernel=PIPELINE.path(ctx, "vmlinux" if ctx.profile.kernel.image == "vmlinux" else ctx.arch.image_name),
        tsc_khz=vmrun.host_tsc_khz(), **ways,
    )


def boot_once(ctx: Context, config: str) -> dict[str, float | None]:
    """One boot: QEMU start to the program's marker, and to the first HTTP answer on the host."""
    b = ctx.profile.boot
    port = free_port()
    spec = direct_spec(ctx, virtio_mmio=qemu.has_option(config, "CONFIG_VIRTIO_MMIO"), net=b.net,
                       forwards=(vmnet.Forward(port, 80),))
    console = qemu.Console(ctx.profile.init.marker)
    start = time.monotonic()
    client = Client(port, start)
    thread = threading.Thread(target=client.run, args=(b.timeout,), daemon=True)
    thread.start()
    ran = vmrun.stream(qemu.command(spec), timeout=b.timeout, console=console, stop=lambda c: c.result_known,
                       quiet=True)
    client.done.set()
    thread.join(timeout=15)
    ok = console.exit_status == 0 and client.answered_at is not None
    return {"to_program": console.marker_at, "to_answer": client.answered_at if ok else None,
            "seconds": ran.seconds}


def plain_once(ctx: Context) -> float | None:
    """The profile without a network, as `doit boot` boots it: QEMU start to the program's marker."""
    console = qemu.Console(ctx.profile.init.marker)
    vmrun.stream(qemu.command(direct_spec(ctx)), timeout=ctx.profile.boot.timeout, console=console,
                 stop=lambda c: c.result_known, quiet=True)
    return console.marker_at


def _ratio_summary(values: list[float]) -> tuple[float | None, list[float] | None]:
    if not values:
        return None, None
    return round(statistics.median(values), 3), [round(min(values), 3), round(max(values), 3)]


def measure(ctx: Context, fast: Context | None, runs: int) -> dict[str, Any]:
    """`runs` rounds, each booting the server and (when built) fast-boot without a network, one after the other."""
    config_path = PIPELINE.path(ctx, "kernel.config")
    config = config_path.read_text(encoding="utf-8") if config_path.is_file() else ""
    to_program: list[float] = []
    to_answer: list[float] = []
    ratios: list[float] = []
    plain: list[float] = []
    failures = plain_failures = 0
    for _ in range(runs):
        one = boot_once(ctx, config)
        if one["to_program"] is None or one["to_answer"] is None:
            failures += 1
        else:
            to_program.append(one["to_program"])
            to_answer.append(one["to_answer"])
            ratios.append(one["to_answer"] / one["to_program"])
        if fast is not None:
            seconds = plain_once(fast)
            if seconds is None:
                plain_failures += 1
            else:
                plain.append(seconds)
    program, answer = report.summarize(to_program), report.summarize(to_answer)
    ratio, ratio_range = _ratio_summary(ratios)
    case = {
        "profile": ctx.profile.name, "name": NAME, "runs": runs, "failures": failures,
        "to_program": program.as_dict() if program else None,
        "to_answer": answer.as_dict() if answer else None,
        "ratio": ratio, "ratio_range": ratio_range,
    }
    cases = [case]
    if fast is not None:
        base = report.summarize(plain)
        cases.append({"profile": fast.profile.name, "name": "the same kernel without net, its own program: QEMU"
                      " start to the program", "runs": runs, "failures": plain_failures,
                      "to_program": base.as_dict() if base else None, "to_answer": None,
                      "ratio": None, "ratio_range": None})
        if base and answer:
            case["answer_vs_plain"] = round(answer.median / base.median, 3)
    sizes = bsize.profile_sizes(ctx)
    cost = None
    if fast is not None:
        fast_sizes = bsize.profile_sizes(fast)
        cost = {"against": fast.profile.name, "bloat": bsize.bloat(fast, ctx),
                "vmlinux_file": _delta(sizes, fast_sizes, "vmlinux_file"), "uki": _delta(sizes, fast_sizes, "uki"),
                "init": _delta(sizes, fast_sizes, "init")}
    notes = [f"A client on the host starts a GET of / every {ATTEMPT_EVERY:g} s (each may wait {ATTEMPT_SECONDS:g} s);"
             " 'to first answer' is QEMU start to the first complete 200 answer, 'answer vs program' its ratio to the"
             " program's first line in the same boot.",
             "QEMU's user network accepts the host's connection at once and connects to the guest; before the"
             " guest's card is up the GET waits, after it the program answers."]
    notes.append(f"{fast.profile.name if fast else 'fast-boot'} is booted in the same rounds, without a network and"
                 " with its own command line (nolapic_timer included): 'answer vs plain' puts the first answer"
                 " against its time to the program.")
    return {"cases": cases, "sizes": sizes, "cost": cost, "notes": notes}


def _delta(new: dict[str, Any] | None, old: dict[str, Any] | None, key: str) -> int | None:
    if not new or not old or new.get(key) is None or old.get(key) is None:
        return None
    return int(new[key]) - int(old[key])
