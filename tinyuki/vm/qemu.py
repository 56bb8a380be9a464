"""QEMU for `doit boot`: the command line, the KVM verdict and what the serial console says.

Kept apart from the task so that every decision (which machine, which devices,
which accelerator, did the program run) is plain data in, plain data out, and
testable without starting a VM.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from tinyuki import arch as arches
from tinyuki.vm import net as vmnet

PANIC_RE = re.compile(r"Kernel panic - not syncing|end Kernel panic")
# How a program's result reaches the host, on every machine type (no device needed):
# - it exits: the kernel panics with init's wait status, which the console shows;
# - or it prints this line (then powers off, or exits): the helper for programs that power off themselves.
INIT_EXIT_RE = re.compile(r"Attempted to kill init! exitcode=0x([0-9a-fA-F]+)")
EXIT_LINE_RE = re.compile(r"^tinyuki: exit status (\d{1,3})\s*$")
# `doit boot`'s own exit codes when the boot went wrong (a program's status is passed through as it is).
EXIT_PANIC = 251      # the kernel panicked (not because the program exited)
EXIT_HANG = 252       # the VM neither powered off nor reported a result within [boot] timeout
EXIT_NO_MARKER = 253  # QEMU ended without the program's marker on the console
EXIT_QEMU = 254       # QEMU itself failed
KERNEL_LINE_RE = re.compile(r"^\s*\[\s*\d+\.\d+\]|Linux version \d")


@dataclass(frozen=True)
class BootSpec:
    """One boot: what to boot, on which machine, with which devices.

    Either `kernel` (direct -kernel boot, optionally with `initrd`) or `esp`
    (a FAT image holding EFI/BOOT/BOOTX64.EFI, or BOOTAA64.EFI, booted by OVMF
    or AAVMF) is set. `arch` is the guest's architecture (tinyuki/arch.py):
    it picks QEMU's binary and the CPU when `qemu` and `cpu` are not given.
    """

    machine: str
    memory: str
    accel: str
    cmdline: str = ""
    kernel: Path | None = None
    initrd: Path | None = None
    esp: Path | None = None
    ovmf_code: Path | None = None
    ovmf_vars: Path | None = None
    disk: Path | None = None
    # How the firmware sees `esp` (an ESP or a whole disk image): "virtio" (virtio-blk-pci), or "usb", a
    # usb-storage stick on an xHCI controller, as a PC sees a USB stick (tinyuki.img, `doit boot stick=1`).
    esp_bus: str = "virtio"
    virtio_mmio: bool = False
    tsc_khz: int | None = None
    extra: tuple[str, ...] = field(default_factory=tuple)
    qemu: str | None = None  # None: the architecture's (qemu-system-x86_64, qemu-system-aarch64)
    arch: str = arches.DEFAULT
    cpu: str | None = None  # -cpu; None: the architecture's default (none on x86_64, cortex-a57 on arm64)
    # The program's ways out (tinyuki/vm/net.py): QEMU's user network (none, user, isolated) with port forwards
    # on 127.0.0.1, a virtio-serial port (its name and the Unix socket of its host end), a vsock guest CID.
    net: str = "none"
    forwards: tuple[vmnet.Forward, ...] = ()
    channel: tuple[str, Path] | None = None
    vsock_cid: int | None = None

    @property
    def has_devices(self) -> bool:
        """Whether the guest gets virtio devices besides its console (on microvm: a PCIe host, or virtio-mmio)."""
        return (self.disk is not None or self.net != "none" or self.channel is not None
                or self.vsock_cid is not None)


def binary(spec: BootSpec) -> str:
    """The QEMU program that runs this guest."""
    return spec.qemu or arches.get(spec.arch).qemu


def cpu(spec: BootSpec) -> str | None:
    """-cpu for this boot: the profile's, else the architecture's for the accelerator (tinyuki/arch.py)."""
    if spec.cpu:
        return spec.cpu
    row = arches.get(spec.arch)
    return row.kvm_cpu if spec.accel == "kvm" else row.cpu


def foreign_guest(guest: str, host: str | None = None) -> str | None:
    """Why KVM cannot run this guest on this host (another architecture), or None when it might.

    KVM runs guests of the host's own architecture only: an arm64 guest on an
    x86_64 host is emulated by TCG, and there is nothing to probe.
    """
    row = arches.get(guest)
    machine = host or os.uname().machine
    if row.native(machine):
        return None
    return f"TCG: {row.name} guest on an {machine} host"


def firmware_name(guest: str) -> str:
    """What the architecture's UEFI firmware is called in messages (edk2's OVMF, its arm64 build AAVMF)."""
    return arches.get(guest).firmware_name


def firmware_machine(machine: str) -> str:
    """OVMF needs a PC chipset: microvm has its own minimal firmware, so UKI boots use q35 there."""
    return "q35" if machine == "microvm" else machine


def kernel_cmdline(spec: BootSpec) -> str:
    """The command line QEMU passes, plus what the machine needs to boot reliably.

    microvm has no PIT, HPET or PM timer to calibrate the TSC against; under TCG
    the calibration can then hang, so the host's TSC rate is given up front.
    """
    cmdline = vmnet.with_ip(spec.cmdline.strip(), spec.net)
    if spec.machine == "microvm" and spec.accel == "tcg" and spec.tsc_khz and "tsc_early_khz=" not in cmdline:
        cmdline = vmnet.kernel_argument(cmdline, f"tsc_early_khz={spec.tsc_khz}")
    return cmdline


def _machine_arg(spec: BootSpec) -> str:
    row = arches.get(spec.arch)
    options = [row.firmware_machine_options if spec.esp is not None else "",
               row.kvm_machine_options if spec.accel == "kvm" else ""]
    if any(options):
        return ",".join([spec.machine, *(o for o in options if o)])
    if spec.machine != "microvm":
        return spec.machine
    # Without virtio-mmio drivers the kernel needs microvm's PCIe host for its virtio devices (disk, card, ports).
    if spec.has_devices and not spec.virtio_mmio:
        return "microvm,pcie=on"
    return "microvm"


def _disk_device(spec: BootSpec) -> str:
    if spec.machine == "microvm" and spec.virtio_mmio:
        return "virtio-blk-device"
    return "virtio-blk-pci"


def drive_path(path: Path) -> str:
    """A path as one value of QEMU's comma-separated -drive options: a comma is written twice.

    Without it, a disk named `x,format=qcow2,file=/etc/shadow` would become options of the drive.
    """
    return str(path).replace(",", ",,")


ESP_BUSES = ("usb", "virtio")


def _esp_devices(spec: BootSpec) -> list[str]:
    """The device the firmware boots from: a removable USB stick on xHCI, or a virtio disk.

    On arm64's virt the virtio disk is on virt's virtio-mmio transport: AAVMF finds it through the device tree
    as it finds a PCI one, and a kernel without CONFIG_VIRTIO_MMIO (tinyuki's fragments) never sees it. On
    virtio-pci the kernel probed the ESP's disk in every UKI boot, a fifth of a second of its init under TCG
    that a direct boot does not pay. q35's OVMF has no virtio-mmio: x86_64 keeps virtio-pci.
    """
    if spec.esp_bus == "usb":
        return ["-device", "qemu-xhci,id=xhci",
                "-device", "usb-storage,bus=xhci.0,drive=esp,removable=on,bootindex=0"]
    if spec.esp_bus == "virtio":
        device = "virtio-blk-device" if spec.machine == "virt" else "virtio-blk-pci"
        return ["-device", f"{device},drive=esp,bootindex=0"]
    raise ValueError(f"the ESP's bus must be one of {', '.join(ESP_BUSES)}, not {spec.esp_bus!r}")


def command(spec: BootSpec) -> list[str]:
    """The full QEMU command line for `spec` (no shell quoting needed: one list item per argument)."""
    if (spec.kernel is None) == (spec.esp is None):
        raise ValueError("a boot needs exactly one of kernel or esp")
    if spec.accel not in ("kvm", "tcg"):
        raise ValueError(f"accelerator must be kvm or tcg, not {spec.accel!r}")
    cmd = [binary(spec), "-M", _machine_arg(spec)]
    model = cpu(spec)
    if model:
        cmd += ["-cpu", model]
    cmd += [
        "-accel", spec.accel,
        "-m", spec.memory,
        "-nographic", "-no-reboot", "-nodefaults",
        "-serial", "stdio",
    ]
    if spec.esp is not None:
        if spec.ovmf_code is None or spec.ovmf_vars is None:
            raise ValueError("an EFI boot needs OVMF code and vars")
        cmd += [
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={drive_path(spec.ovmf_code)}",
            "-drive", f"if=pflash,format=raw,unit=1,file={drive_path(spec.ovmf_vars)}",
            "-drive", f"file={drive_path(spec.esp)},format=raw,if=none,id=esp,readonly=on",
            *_esp_devices(spec),
            *arches.get(spec.arch).firmware_args,
        ]
    else:
        cmd += ["-kernel", str(spec.kernel)]
        if spec.initrd is not None:
            cmd += ["-initrd", str(spec.initrd)]
        line = kernel_cmdline(spec)
        if line:
            cmd += ["-append", line]
    if spec.disk is not None:
        cmd += [
            "-drive", f"file={drive_path(spec.disk)},format=raw,if=none,id=d0",
            "-device", f"{_disk_device(spec)},drive=d0",
        ]
    mmio = spec.machine == "microvm" and spec.virtio_mmio
    if spec.net != "none":
        cmd += vmnet.net_args(spec.forwards, spec.net, virtio_mmio=mmio)
    if spec.channel is not None:
        cmd += vmnet.channel_args(spec.channel[1], spec.channel[0], virtio_mmio=mmio)
    if spec.vsock_cid is not None:
        cmd += vmnet.vsock_args(spec.vsock_cid, virtio_mmio=mmio)
    cmd += list(spec.extra)
    return cmd


# ---------------------------------------------------------------- the host

def tsc_khz(cpuinfo: str) -> int | None:
    """The host's TSC rate in kHz, from /proc/cpuinfo's "cpu MHz" on a constant-TSC CPU.

    TCG's guest TSC follows the host's, so this is the rate the guest should assume.
    Without constant_tsc the reported MHz is the current clock, not the TSC's: None.
    """
    flags = re.search(r"^flags\s*:(.*)$", cpuinfo, re.M)
    if not flags or "constant_tsc" not in flags.group(1).split():
        return None
    mhz = re.search(r"^cpu MHz\s*:\s*([0-9]+(?:\.[0-9]+)?)\s*$", cpuinfo, re.M)
    if not mhz:
        return None
    khz = round(float(mhz.group(1)) * 1000)
    return khz if khz > 0 else None


@dataclass(frozen=True)
class KvmProbe:
    usable: bool
    reason: str


def kvm_verdict(*, saw_kernel: bool, timed_out: bool, returncode: int | None, output: str,
                seconds: float) -> KvmProbe:
    """Decide from a short KVM test boot whether KVM really runs guests.

    /dev/kvm can exist and QEMU can start while guests never get going (nested
    virtualization that hangs in the kernel's decompressor), so only a kernel
    log line seen on the console counts as working.
    """
    if saw_kernel:
        return KvmProbe(True, f"a KVM test boot reached the kernel in {seconds:.1f} s")
    err = next((ln.strip() for ln in output.splitlines() if "kvm" in ln.lower() and "qemu" in ln.lower()), "")
    if timed_out:
        return KvmProbe(False, f"a KVM test boot printed no kernel line within {seconds:.1f} s "
                               "(nested KVM that hangs guests)")
    if err:
        return KvmProbe(False, f"QEMU cannot use KVM: {err}")
    return KvmProbe(False, f"a KVM test boot exited (status {returncode}) before the kernel printed anything")


# ---------------------------------------------------------------- the console

@dataclass
class Console:
    """What the serial console has shown so far, fed line by line with the time each arrived."""

    marker: str
    lines: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # when each line arrived, for tinyuki/vm/boottime.py
    marker_at: float | None = None
    first_kernel_at: float | None = None
    panic_at: float | None = None
    # The program's result: its exit status (0-255), or the signal that killed it.
    exit_status: int | None = None
    exit_signal: int | None = None
    # Whether the status came from the kernel's panic at init's exit, rather than the program's own line.
    exited: bool = False

    def feed(self, line: str, at: float) -> None:
        line = clean(line)
        self.lines.append(line)
        self.times.append(at)
        if self.first_kernel_at is None and KERNEL_LINE_RE.search(line):
            self.first_kernel_at = at
        if self.marker_at is None and self.marker and self.marker in line:
            self.marker_at = at
        if self.panic_at is None and PANIC_RE.search(line):
            self.panic_at = at
        self._result(line)

    def _result(self, line: str) -> None:
        """The program's result, from its own `tinyuki: exit status N` line or the kernel's panic at init's exit."""
        if self.exit_status is not None or self.exit_signal is not None:
            return
        said = EXIT_LINE_RE.match(line)
        if said and int(said.group(1)) <= 255:
            self.exit_status = int(said.group(1))
            return
        died = INIT_EXIT_RE.search(line)
        if died:
            code = int(died.group(1), 16)  # a wait status: the exit status << 8, or the signal number
            self.exited = True
            if code & 0x7F:
                self.exit_signal = code & 0x7F
            else:
                self.exit_status = (code >> 8) & 0xFF

    @property
    def result_known(self) -> bool:
        """The program has reported how it ended: `doit boot` need not wait for the VM any longer."""
        return self.exit_status is not None or self.exit_signal is not None

    def tail(self, n: int = 25) -> list[str]:
        return self.lines[-n:]


ANSI_RE = re.compile(r"\x1b(?:\[[0-9;?=]*[A-Za-z]|c)")


def clean(line: str) -> str:
    """A console line without its CR and terminal escapes (SeaBIOS clears the screen)."""
    return ANSI_RE.sub("", line).replace("\r", "")


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str
    hint: str = ""
    # What `doit boot` exits with: the program's status when it reported one, else EXIT_* (1 if unset).
    code: int = 1
    status: int | None = None  # the program's own exit status, when it reported one


HINT_PANIC = ("the panic line above names the cause: \"Unable to mount root fs\" means no initramfs reached the "
              "kernel, \"No working init found\" a /init the kernel could not run")
HINT_TIMEOUT = "raise [boot] timeout for a slow host, or force accel=tcg if KVM is suspect"
HINT_MARKER = "make [init] marker match a line the program prints on its console (stdout to /dev/console)"


HINT_STATUS = "the program reported this status: its output above says why"


def verdict(console: Console, *, timed_out: bool, returncode: int | None, timeout: float) -> Verdict:
    """Did the program run, and how did it end? Each way a boot fails has its own reason and exit code.

    A program that printed its marker and then exited (the kernel's panic at
    init's exit carries the status) or printed `tinyuki: exit status N` has a
    result: status 0 is success, any other is passed on as doit boot's exit
    code. A panic for another reason, a hang and a missing marker are boot
    failures (EXIT_PANIC, EXIT_HANG, EXIT_NO_MARKER).
    """
    if console.marker_at is None:
        ended = ""
        if console.exit_status is not None:
            ended = f" (/init exited with status {console.exit_status} before printing it)"
        elif console.exit_signal is not None:
            ended = f" (/init was killed by signal {console.exit_signal} before printing it)"
        if console.panic_at is not None and not console.exited:
            return Verdict(False, "the kernel panicked before the program printed its marker", HINT_PANIC,
                           code=EXIT_PANIC)
        if timed_out:
            return Verdict(False, f"no sign of the program within {timeout:g} s", HINT_TIMEOUT, code=EXIT_HANG)
        return Verdict(False, f"QEMU exited (status {returncode}) without the program's marker "
                              f"{console.marker!r} on the console{ended}", HINT_MARKER, code=EXIT_NO_MARKER)
    if console.exit_signal is not None:
        return Verdict(False, f"the program was killed by signal {console.exit_signal}",
                       "a crash in the program (SIGSEGV is 11, SIGABRT 6); its last lines are above",
                       code=128 + console.exit_signal)
    if console.exit_status is not None:
        status = console.exit_status
        how = "exited with" if console.exited else "reported"
        if status == 0:
            return Verdict(True, f"the program ran and {how} status 0", code=0, status=0)
        return Verdict(False, f"the program {how} status {status}", HINT_STATUS, code=status, status=status)
    if console.panic_at is not None:
        return Verdict(False, "the kernel panicked after the program started", HINT_PANIC, code=EXIT_PANIC)
    if timed_out:
        return Verdict(False, "the program started but did not exit, and the VM did not power off"
                              f" within {timeout:g} s",
                       "end the program with exit(status), or power off (reboot(LINUX_REBOOT_CMD_POWER_OFF),"
                       " which needs ACPI)", code=EXIT_HANG)
    if returncode != 0:
        return Verdict(False, f"QEMU exited with status {returncode}", "QEMU's own message is in the console tail",
                       code=EXIT_QEMU)
    return Verdict(True, "the program ran and the VM powered off", code=0, status=0)


def summarize_times(start_to_marker: float | None, start_to_exit: float | None) -> str:
    parts = []
    if start_to_marker is not None:
        parts.append(f"QEMU start to program: {start_to_marker:.2f} s")
    if start_to_exit is not None:
        parts.append(f"to VM exit: {start_to_exit:.2f} s")
    return ", ".join(parts)


def has_option(config_text: str, option: str) -> bool:
    """Whether a kernel .config sets `option` to y."""
    return re.search(rf"^{re.escape(option)}=y$", config_text, re.M) is not None

