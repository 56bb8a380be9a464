"""`doit boot`: boot the kernel (or the UKI through OVMF) in QEMU and prove the program ran.

Success means two things seen from outside the VM: the program's marker line
on the serial console, and QEMU exiting on its own (the program powered the VM
off). Anything else (a panic, a timeout, a silent exit) fails with the end of
the console. Variables: uki=1, disk=FILE, accel=kvm|tcg, kernel=FILE, initrd=FILE.
"""

from __future__ import annotations

import codecs
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from doit import get_var

from cli import params
from cli.actions import action
from tasks.configure import CONFIG
from tasks.embed import IMAGE, VMLINUX
from tasks.uki import UKI
from tinyuki.config.context import Context
from tinyuki.errors import TinyukiError, die
from tinyuki.util import fs as fsutil
from tinyuki.util import runner
from tinyuki.util.flags import yes_no
from tinyuki.vm import boottime, qemu
from tinyuki.vm.esp import make_esp

KVM_PROBE_SECONDS = 4.0
_kvm_probes: dict[tuple[str, ...], qemu.KvmProbe] = {}


def _var_path(name: str) -> Path | None:
    value = get_var(name)
    if not value:
        return None
    path = Path(value).absolute()
    if not path.is_file():
        raise die(f"{name}={value}: no such file", f"give an existing file: doit boot {name}=path/to/file")
    return path


def profile_image(ctx: Context) -> Path:
    """The kernel `doit boot` starts by default: [kernel] image = "vmlinux" boots the ELF through PVH."""
    return (VMLINUX if ctx.profile.kernel.image == "vmlinux" else IMAGE).at(ctx)


def _want_uki() -> bool:
    return yes_no(get_var("uki"), "uki", hint="use uki=1 to boot the UKI through OVMF")


def host_tsc_khz() -> int | None:
    try:
        return qemu.tsc_khz(Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None


def stream(
    cmd: list[str],
    *,
    timeout: float,
    console: qemu.Console,
    echo_to: TextIO | None,
    log: BinaryIO | None,
    stop: Callable[[qemu.Console], bool] | None = None,
) -> tuple[bool, int | None, float]:
    """Run QEMU, passing its console to `echo_to` and `log` as it arrives and feeding `console`.

    Returns (timed out or stopped, exit status, seconds from start to exit). The
    VM is killed at the deadline, or as soon as `stop(console)` holds.
    """
    runner.echo(cmd)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except FileNotFoundError as e:
        raise die(f"{cmd[0]} is not installed", "install QEMU: apt-get install qemu-system-x86") from e
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    pending = b""
    text = codecs.getincrementaldecoder("utf-8")(errors="replace")
    cut = False
    try:
        while True:
            left = start + timeout - time.monotonic()
            if left <= 0:
                cut = True
                break
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            now = time.monotonic() - start
            if not chunk:
                break
            if log is not None:
                log.write(chunk)
                log.flush()
            if echo_to is not None:
                echo_to.write(text.decode(chunk))
                echo_to.flush()
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                console.feed(line.decode(errors="replace"), now)
            if stop is not None and stop(console):
                cut = True
                break
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if cut:
        proc.kill()
    returncode = proc.wait()
    if pending:
        console.feed(pending.decode(errors="replace"), time.monotonic() - start)
    return cut, (None if cut else returncode), time.monotonic() - start


def probe_kvm(spec: qemu.BootSpec, marker: str) -> qemu.KvmProbe:
    """Is KVM usable for this boot? Once per run: /dev/kvm, then a short test boot of the same kernel.

    Only a kernel log line proves the guest runs: on nested hosts QEMU starts
    fine and the guest hangs silently in the kernel's decompressor.
    """
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return qemu.KvmProbe(False, "/dev/kvm is missing or not accessible")
    if spec.kernel is None:
        return qemu.KvmProbe(False, "no bzImage beside the UKI to test KVM with")
    test = replace(spec, accel="kvm", cmdline=f"{spec.cmdline} ignore_loglevel", disk=None)
    cmd = qemu.command(test)
    key = tuple(cmd)
    if key not in _kvm_probes:
        console = qemu.Console(marker)
        cut, code, seconds = stream(
            cmd, timeout=KVM_PROBE_SECONDS, console=console, echo_to=None, log=None,
            stop=lambda c: c.first_kernel_at is not None or c.marker_at is not None,
        )
        saw = console.first_kernel_at is not None or console.marker_at is not None
        _kvm_probes[key] = qemu.kvm_verdict(
            saw_kernel=saw, timed_out=cut and not saw, returncode=code,
            output="\n".join(console.lines), seconds=console.first_kernel_at or seconds,
        )
    return _kvm_probes[key]


def _host_identity(spec: qemu.BootSpec) -> str:
    """What a KVM verdict depends on: this host's boot, the QEMU binary and the machine type."""
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""  # no boot id: never reuse a verdict
    exe = shutil.which("qemu-system-x86_64") or ""
    stamp = os.stat(exe).st_mtime_ns if exe else 0
    return f"{boot_id}:{exe}:{stamp}:{spec.machine}"


def remembered_probe(store: Path, spec: qemu.BootSpec, probe: Callable[[], qemu.KvmProbe]) -> qemu.KvmProbe:
    """Probe KVM once per host boot and remember the verdict in the cache.

    The probe is a test boot that costs up to a few seconds when KVM hangs; the
    answer only changes when the host reboots or QEMU changes, so every later
    `doit boot` on this host reuses it (and says so).
    """
    ident = _host_identity(spec)
    if ident:
        try:
            saved = json.loads(store.read_text())
            if saved.get("host") == ident:
                return qemu.KvmProbe(bool(saved["usable"]), f"{saved['reason']} (remembered for this host boot)")
        except (OSError, ValueError, KeyError, AttributeError):
            pass
    verdict = probe()
    if ident:
        fsutil.atomic_write_json(store, {"host": ident, "usable": verdict.usable, "reason": verdict.reason})
    return verdict


def choose_accel(ctx: Context, spec: qemu.BootSpec) -> tuple[str, str]:
    """The accelerator and why: accel= on the command line, the profile, or a KVM probe."""
    requested = get_var("accel") or ctx.profile.boot.accel
    if requested not in ("auto", "kvm", "tcg"):
        raise die(f"accel={requested!r} is not kvm, tcg or auto", "use accel=kvm, accel=tcg or leave it out")
    if requested != "auto":
        source = "accel= on the command line" if get_var("accel") else f"[boot] accel in {ctx.profile.path.name}"
        return requested, f"set by {source}"
    probe = remembered_probe(ctx.paths.cache / "kvm-probe.json", spec,
                             lambda: probe_kvm(replace(spec, accel="kvm"), ctx.profile.init.marker))
    if probe.usable:
        return "kvm", probe.reason
    return "tcg", f"KVM not usable: {probe.reason}"


def boot(ctx: Context) -> None:
    b = ctx.profile.boot
    use_uki = _want_uki()
    kernel = _var_path("kernel") or profile_image(ctx)
    initrd = _var_path("initrd")
    disk = _var_path("disk")
    config = CONFIG.at(ctx).read_text(encoding="utf-8") if CONFIG.at(ctx).is_file() else ""
    spec = qemu.BootSpec(
        machine=b.machine, memory=b.memory, accel="tcg", cmdline=ctx.profile.kernel.cmdline,
        kernel=kernel if kernel.is_file() or not use_uki else None, initrd=initrd, disk=disk,
        virtio_mmio=qemu.has_option(config, "CONFIG_VIRTIO_MMIO"),
        tsc_khz=host_tsc_khz(), extra=tuple(b.qemu_args),
    )
    needed = [UKI.at(ctx), b.ovmf_code, b.ovmf_vars] if use_uki else [kernel]
    for path in needed:
        if not Path(path).is_file():
            if path in (b.ovmf_code, b.ovmf_vars):
                raise die(f"OVMF firmware {path} does not exist",
                          "install it (apt-get install ovmf; scripts/setup.sh does) or set [boot] ovmf_code/ovmf_vars")
            raise die(f"{path} does not exist", "build it first: run `doit` (or `doit uki`)")
    accel, why = choose_accel(ctx, spec)
    spec = replace(spec, accel=accel)
    log_path = ctx.paths.logs / "boot.log"
    with tempfile.TemporaryDirectory(prefix="tinyuki-boot-") as tmp:
        if use_uki:
            work = Path(tmp)
            vars_copy = work / "OVMF_VARS.fd"
            shutil.copyfile(b.ovmf_vars, vars_copy)  # a fresh store: a reused one can drop into the UEFI shell
            esp = make_esp(UKI.at(ctx), work, ctx.paths.logs / "esp.log")
            spec = replace(spec, machine=qemu.firmware_machine(spec.machine), kernel=None, initrd=None, esp=esp,
                           ovmf_code=b.ovmf_code, ovmf_vars=vars_copy)
        what = "the UKI through OVMF" if use_uki else kernel.name + (f" + {initrd.name}" if initrd else "")
        print(f"boot: {what} on {spec.machine} with {accel} ({why})", flush=True)
        console = qemu.Console(ctx.profile.init.marker)
        with fsutil.atomic_open(log_path) as log:
            cut, code, seconds = stream(qemu.command(spec), timeout=b.timeout, console=console,
                                        echo_to=sys.stdout, log=log)
    result = qemu.verdict(console, timed_out=cut, returncode=code, timeout=b.timeout)
    times = qemu.summarize_times(console.marker_at, None if cut else seconds)
    if not result.ok:
        tail = "\n    ".join(console.tail())
        raise die(f"boot failed: {result.reason}" + (f" ({times})" if times else "")
                  + f"\n  console tail:\n    {tail}\n  full console: {log_path}",
                  result.hint)
    print(f"boot: ok: {result.reason} on {spec.machine}/{accel}; {times}", flush=True)
    # Where the time went, from the kernel's printk timestamps against the console's arrival times.
    split = boottime.split(console.lines, console.times, console.marker_at, seconds)
    direct_elf = not use_uki and boottime.is_elf(kernel)
    print(f"boot: time split: {boottime.describe(split, decompressor=not direct_elf)}", flush=True)


def task(ctx: Context) -> dict[str, Any]:
    @action
    def run_boot(uki: str, disk: str, accel: str, kernel: str, initrd: str) -> None:
        params.adopt({"uki": uki, "disk": disk, "accel": accel, "kernel": kernel, "initrd": initrd})
        boot(ctx)

    try:
        image = UKI.at(ctx) if _want_uki() else Path(get_var("kernel") or profile_image(ctx))
    except TinyukiError:
        image = profile_image(ctx)  # the action reports the bad value
    return {
        "basename": "boot",
        "doc": "Boot in QEMU and check the program ran: uki=1, disk=FILE, accel=kvm|tcg, kernel=, initrd= "
               "(doit help boot).",
        "actions": [run_boot],
        "file_dep": [str(image)],
        "uptodate": [False],
        "verbosity": 2,
        "params": [
            params.param("uki", "1: boot the UKI through OVMF instead of -kernel"),
            params.param("disk", "attach FILE as a raw disk; the program prints its first bytes"),
            params.param("accel", "kvm or tcg instead of probing KVM"),
            params.param("kernel", "boot this kernel image instead of the build's bzImage"),
            params.param("initrd", "pass FILE as an external initrd"),
        ],
    }
