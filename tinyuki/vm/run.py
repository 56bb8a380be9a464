"""Running a VM: QEMU's serial console as it arrives, and whether KVM works on this host.

`doit boot` (cli/boot.py) and the boot benchmark (bench/boot.py) boot through
this same code, so a benchmark measures what a user gets; it lives in the
library so the benchmark needs no doit. The process itself is run by
tinyuki/util/runner.py's `stream`, which kills it at the deadline.
"""

from __future__ import annotations

import codecs
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO, TextIO

from tinyuki import arch as arches
from tinyuki.util import fs as fsutil
from tinyuki.util import runner
from tinyuki.vm import qemu

# A KVM test boot that shows no kernel line within this long is taken as KVM hanging (nested hosts).
KVM_PROBE_SECONDS = 4.0
QEMU_HINT = "install QEMU: apt-get install qemu-system-x86"
SETUP_INSTALLS = "scripts/setup.sh installs it"


def qemu_hint(program: str) -> str:
    """How to get a missing QEMU: the Debian package of the architecture whose QEMU it is."""
    row = next((a for a in arches.ARCHES.values() if a.qemu == program), None)
    if row is None or row.name == arches.DEFAULT:
        return QEMU_HINT
    return f"install QEMU for {row.name} guests: apt-get install {row.qemu_package} ({SETUP_INSTALLS})"


def firmware_hint(guest: str) -> str:
    """How to get the UEFI firmware of `guest`'s architecture, when its files are missing."""
    row = arches.get(guest)
    return (f"install it: apt-get install {row.firmware_package} ({SETUP_INSTALLS}),"
            " or set [boot] ovmf_code/ovmf_vars")


def require_qemu(spec: qemu.BootSpec) -> None:
    """Refuse, before anything else runs, a boot whose QEMU is not installed: named with its package."""
    program = qemu.binary(spec)
    if shutil.which(program) is None:
        raise runner.MissingTool(f"booting needs {program}, which is not installed", qemu_hint(program))
# One probe per command line and process: `doit boot` and the benchmark ask for every boot.
_kvm_probes: dict[tuple[str, ...], qemu.KvmProbe] = {}


def host_tsc_khz() -> int | None:
    """This host's TSC frequency, for tsc_early_khz (spares a TCG guest its slow calibration); None if unknown."""
    try:
        return qemu.tsc_khz(Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None


def stream(
    cmd: list[str],
    *,
    timeout: float,
    console: qemu.Console,
    echo_to: TextIO | None = None,
    log: BinaryIO | None = None,
    stop: Callable[[qemu.Console], bool] | None = None,
    quiet: bool = False,
) -> runner.Streamed:
    """Run QEMU, passing its console to `echo_to` and `log` as it arrives and feeding `console` line by line.

    The VM is killed at the deadline, or as soon as `stop(console)` holds; the
    result says which and how long it ran. QEMU's stdin is /dev/null: with
    `-serial stdio` it would otherwise read the user's terminal.
    """
    text = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def chunk(data: bytes, _at: float) -> None:
        if log is not None:
            log.write(data)
            log.flush()
        if echo_to is not None:
            echo_to.write(text.decode(data))
            echo_to.flush()

    return runner.stream(cmd, timeout=timeout, on_output=chunk, on_line=console.feed,
                         stop=(lambda: stop(console)) if stop is not None else None,
                         stdin=subprocess.DEVNULL, quiet=quiet, what="booting", missing_hint=qemu_hint(str(cmd[0])))


def probe_kvm(spec: qemu.BootSpec, marker: str) -> qemu.KvmProbe:
    """Is KVM usable for this boot? Once per run: /dev/kvm, then a short test boot of the same kernel.

    Only a kernel log line proves the guest runs: on nested hosts QEMU starts
    fine and the guest hangs silently in the kernel's decompressor. A guest of
    another architecture than the host's never gets KVM: that is said, not probed.
    """
    foreign = qemu.foreign_guest(spec.arch)
    if foreign:
        return qemu.KvmProbe(False, foreign)
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return qemu.KvmProbe(False, "/dev/kvm is missing or not accessible")
    if spec.kernel is None:
        return qemu.KvmProbe(False, f"no {arches.get(spec.arch).image_name} beside the UKI to test KVM with")
    # only the kernel: no disk, and no network, channel or vsock (a forward's port is the real boot's to take)
    test = replace(spec, accel="kvm", cmdline=f"{spec.cmdline} ignore_loglevel", disk=None, net="none", forwards=(),
                   channel=None, vsock_cid=None)
    cmd = qemu.command(test)
    key = tuple(cmd)
    if key not in _kvm_probes:
        console = qemu.Console(marker)
        result = stream(cmd, timeout=KVM_PROBE_SECONDS, console=console,
                        stop=lambda c: c.first_kernel_at is not None or c.marker_at is not None)
        saw = console.first_kernel_at is not None or console.marker_at is not None
        _kvm_probes[key] = qemu.kvm_verdict(
            saw_kernel=saw, timed_out=result.cut and not saw, returncode=result.returncode,
            output="\n".join(console.lines), seconds=console.first_kernel_at or result.seconds,
        )
    return _kvm_probes[key]


def _host_identity(spec: qemu.BootSpec) -> str:
    """What a KVM verdict depends on: this host's boot, the QEMU binary and the machine type."""
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""  # no boot id: never reuse a verdict
    exe = shutil.which(qemu.binary(spec)) or ""
    stamp = os.stat(exe).st_mtime_ns if exe else 0
    return f"{boot_id}:{exe}:{stamp}:{spec.machine}"


def remembered_probe(store: Path, spec: qemu.BootSpec, probe: Callable[[], qemu.KvmProbe]) -> qemu.KvmProbe:
    """Probe KVM once per host boot and remember the verdict in the cache.

    The probe is a test boot that costs up to a few seconds when KVM hangs; the
    answer only changes when the host reboots or QEMU changes, so every later
    `doit boot` on this host reuses it (and says so). A guest of another
    architecture is TCG without a probe, and nothing is stored for it.
    """
    foreign = qemu.foreign_guest(spec.arch)
    if foreign:
        return qemu.KvmProbe(False, foreign)
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
