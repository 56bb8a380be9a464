"""QEMU command lines, the KVM verdict, console parsing, and streaming a (fake) VM's console (tinyuki/vm/run.py)."""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import pytest

from tinyuki.errors import TinyukiError
from tinyuki.vm import qemu
from tinyuki.vm import run as vmrun

K = Path("/b/bzImage")
MARKER = "tinyuki: init started"


def spec(**kw: object) -> qemu.BootSpec:
    args: dict = {"machine": "microvm", "memory": "128M", "accel": "tcg", "cmdline": "console=ttyS0", "kernel": K}
    args.update(kw)
    return qemu.BootSpec(**args)


def arg_after(cmd: list[str], flag: str) -> list[str]:
    return [cmd[i + 1] for i, c in enumerate(cmd) if c == flag]


def test_microvm_tcg_command() -> None:
    cmd = qemu.command(spec(tsc_khz=2596098, initrd=Path("/b/initrd.img")))
    assert cmd[0] == "qemu-system-x86_64"
    assert arg_after(cmd, "-M") == ["microvm"]
    assert arg_after(cmd, "-accel") == ["tcg"]
    assert arg_after(cmd, "-m") == ["128M"]
    for flag in ("-nographic", "-no-reboot", "-nodefaults"):
        assert flag in cmd
    assert arg_after(cmd, "-serial") == ["stdio"]
    assert arg_after(cmd, "-kernel") == ["/b/bzImage"]
    assert arg_after(cmd, "-initrd") == ["/b/initrd.img"]
    assert arg_after(cmd, "-append") == ["console=ttyS0 tsc_early_khz=2596098"]


def test_tsc_hint_only_for_microvm_under_tcg_and_never_twice() -> None:
    assert qemu.kernel_cmdline(spec(machine="pc", tsc_khz=1000)) == "console=ttyS0"
    assert qemu.kernel_cmdline(spec(accel="kvm", tsc_khz=1000)) == "console=ttyS0"
    assert qemu.kernel_cmdline(spec(tsc_khz=None)) == "console=ttyS0"
    assert qemu.kernel_cmdline(spec(cmdline="tsc_early_khz=5", tsc_khz=1000)) == "tsc_early_khz=5"


def test_disk_devices_per_machine() -> None:
    disk = Path("/d/disk.img")
    pc = qemu.command(spec(machine="pc", disk=disk))
    assert "file=/d/disk.img,format=raw,if=none,id=d0" in arg_after(pc, "-drive")
    assert arg_after(pc, "-device") == ["virtio-blk-pci,drive=d0"]
    mmio = qemu.command(spec(disk=disk, virtio_mmio=True))
    assert arg_after(mmio, "-M") == ["microvm"]
    assert arg_after(mmio, "-device") == ["virtio-blk-device,drive=d0"]
    pcie = qemu.command(spec(disk=disk, virtio_mmio=False))
    assert arg_after(pcie, "-M") == ["microvm,pcie=on"]
    assert arg_after(pcie, "-device") == ["virtio-blk-pci,drive=d0"]


def test_efi_boot_command() -> None:
    cmd = qemu.command(spec(machine=qemu.firmware_machine("microvm"), kernel=None, esp=Path("/t/esp.img"),
                            ovmf_code=Path("/fw/CODE.fd"), ovmf_vars=Path("/t/VARS.fd")))
    assert arg_after(cmd, "-M") == ["q35"]
    drives = arg_after(cmd, "-drive")
    assert "if=pflash,format=raw,unit=0,readonly=on,file=/fw/CODE.fd" in drives
    assert "if=pflash,format=raw,unit=1,file=/t/VARS.fd" in drives
    assert any(d.startswith("file=/t/esp.img,") for d in drives)
    assert "-kernel" not in cmd and "-append" not in cmd
    assert "-nodefaults" in cmd  # no NIC, so no PXE option ROM


def test_command_rejects_inconsistent_specs() -> None:
    with pytest.raises(ValueError):
        qemu.command(spec(kernel=None))
    with pytest.raises(ValueError):
        qemu.command(spec(esp=Path("/e")))
    with pytest.raises(ValueError):
        qemu.command(spec(accel="auto"))
    with pytest.raises(ValueError):
        qemu.command(spec(kernel=None, esp=Path("/e")))


def test_extra_args_come_last() -> None:
    assert qemu.command(spec(extra=("-smp", "2")))[-2:] == ["-smp", "2"]


CPUINFO = """processor\t: 0
model name\t: AMD EPYC
cpu MHz\t\t: 2596.098
flags\t\t: fpu tsc msr constant_tsc nonstop_tsc
"""


def test_tsc_khz() -> None:
    assert qemu.tsc_khz(CPUINFO) == 2596098
    assert qemu.tsc_khz(CPUINFO.replace(" constant_tsc", "")) is None
    assert qemu.tsc_khz("flags : constant_tsc\n") is None


def test_kvm_verdict() -> None:
    ok = qemu.kvm_verdict(saw_kernel=True, timed_out=False, returncode=None, output="", seconds=0.3)
    assert ok.usable and "0.3" in ok.reason
    hung = qemu.kvm_verdict(saw_kernel=False, timed_out=True, returncode=None, output="Booting from ROM..",
                            seconds=4.0)
    assert not hung.usable and "nested" in hung.reason
    denied = qemu.kvm_verdict(saw_kernel=False, timed_out=False, returncode=1, seconds=0.1,
                              output="qemu-system-x86_64: failed to initialize kvm: Permission denied")
    assert not denied.usable and "Permission denied" in denied.reason
    died = qemu.kvm_verdict(saw_kernel=False, timed_out=False, returncode=1, output="", seconds=0.1)
    assert not died.usable and "status 1" in died.reason


def feed(lines: list[str]) -> qemu.Console:
    console = qemu.Console(MARKER)
    for i, line in enumerate(lines):
        console.feed(line, float(i))
    return console


def test_console_success() -> None:
    console = feed(["\x1bc\x1b[?7l\x1b[2JSeaBIOS", "[    0.000000] Linux version 6.1.192\r", f"{MARKER}\r",
                    "[    0.25] reboot: Power down"])
    assert console.lines[0] == "SeaBIOS"
    assert console.first_kernel_at == 1.0
    assert console.marker_at == 2.0
    assert qemu.verdict(console, timed_out=False, returncode=0, timeout=60).ok


def test_console_panic_timeout_and_missing_marker() -> None:
    panic = feed(["[ 0.1] Kernel panic - not syncing: No working init found.", "---[ end Kernel panic ]---"])
    v = qemu.verdict(panic, timed_out=False, returncode=0, timeout=60)
    assert not v.ok and "panicked" in v.reason and v.hint == qemu.HINT_PANIC
    died = feed([MARKER, "[ 0.2] oops", "Kernel panic - not syncing: Oops: general protection fault"])
    v = qemu.verdict(died, timed_out=False, returncode=0, timeout=60)
    assert not v.ok and "after the program started" in v.reason and v.code == qemu.EXIT_PANIC
    silent = feed(["[ 0.1] Run /init as init process"])
    assert "no sign of the program within 5 s" in qemu.verdict(silent, timed_out=True, returncode=None,
                                                               timeout=5).reason
    stuck = feed([MARKER])
    assert "did not power off" in qemu.verdict(stuck, timed_out=True, returncode=None, timeout=5).reason
    exited = feed(["[ 0.1] reboot: Power down"])
    v = qemu.verdict(exited, timed_out=False, returncode=0, timeout=5)
    assert not v.ok and MARKER in v.reason
    failed = feed([MARKER])
    assert not qemu.verdict(failed, timed_out=False, returncode=1, timeout=5).ok


def test_has_option() -> None:
    text = "CONFIG_VIRTIO_MMIO=y\n# CONFIG_VIRTIO_PCI is not set\nCONFIG_VIRTIO_MMIO_CMDLINE=y\n"
    assert qemu.has_option(text, "CONFIG_VIRTIO_MMIO")
    assert not qemu.has_option(text, "CONFIG_VIRTIO_PCI")
    assert not qemu.has_option("CONFIG_VIRTIO_MMIO_CMDLINE=y\n", "CONFIG_VIRTIO_MMIO")


def fake_vm(body: str) -> list[str]:
    """A stand-in for QEMU: a process printing a console and exiting (or not)."""
    return [sys.executable, "-c", "import sys, time\n" + body]


def test_stream_passes_console_through_and_times_the_marker() -> None:
    out, log = io.StringIO(), io.BytesIO()
    console = qemu.Console(MARKER)
    ran = vmrun.stream(
        fake_vm(f"print('[ 0.0] Linux version 6\\r', flush=True); time.sleep(0.3); print({MARKER!r}, end='')"),
        timeout=10, console=console, echo_to=out, log=log)
    assert not ran.cut and ran.returncode == 0
    assert log.getvalue() == f"[ 0.0] Linux version 6\r\n{MARKER}".encode()
    assert out.getvalue() == log.getvalue().decode()
    assert console.lines == ["[ 0.0] Linux version 6", MARKER]
    assert console.marker_at is not None and 0.25 < console.marker_at <= ran.seconds
    assert console.first_kernel_at is not None and console.first_kernel_at < console.marker_at


def test_stream_echoes_utf8_split_across_chunks() -> None:
    out = io.StringIO()
    vmrun.stream(fake_vm("sys.stdout.buffer.write(b'caf\\xc3'); sys.stdout.flush(); time.sleep(0.2);"
                         " sys.stdout.buffer.write(b'\\xa9\\n')"),
                 timeout=10, console=qemu.Console(MARKER), echo_to=out, quiet=True)
    assert out.getvalue() == "café\n"


def test_stream_kills_at_the_deadline() -> None:
    console = qemu.Console(MARKER)
    start = time.monotonic()
    ran = vmrun.stream(fake_vm("print('hang', flush=True); time.sleep(30)"), timeout=0.5, console=console)
    assert ran.cut and ran.timed_out and ran.returncode is None
    assert time.monotonic() - start < 5
    assert console.lines == ["hang"]


def test_stream_stops_early_when_asked() -> None:
    console = qemu.Console(MARKER)
    ran = vmrun.stream(fake_vm("print('[ 0.0] x', flush=True); time.sleep(30)"), timeout=20, console=console,
                       stop=lambda c: c.first_kernel_at is not None)
    assert ran.stopped and ran.cut and ran.seconds < 5


def test_stream_without_qemu_says_how_to_install_it() -> None:
    with pytest.raises(TinyukiError) as e:
        vmrun.stream(["tinyuki-no-qemu-system"], timeout=5, console=qemu.Console(MARKER), quiet=True)
    assert "tinyuki-no-qemu-system, which is not installed" in e.value.message
    assert e.value.hint == vmrun.QEMU_HINT


def test_qemu_reads_no_terminal() -> None:
    """QEMU with -serial stdio would read the user's keystrokes: its stdin is /dev/null."""
    console = qemu.Console(MARKER)
    vmrun.stream(fake_vm("print(repr(sys.stdin.read()))"), timeout=10, console=console, quiet=True)
    assert console.lines == ["''"]


def test_kvm_verdict_is_remembered_per_host_boot(tmp_path) -> None:
    calls = []

    def probe() -> qemu.KvmProbe:
        calls.append(1)
        return qemu.KvmProbe(False, "a KVM test boot printed nothing")

    def Spec() -> qemu.BootSpec:
        return qemu.BootSpec(machine="microvm", memory="128M", accel="auto")

    store = tmp_path / "kvm-probe.json"
    first = vmrun.remembered_probe(store, Spec(), probe)
    second = vmrun.remembered_probe(store, Spec(), probe)
    assert calls == [1]
    assert not first.usable and not second.usable
    assert "remembered for this host boot" in second.reason
    # another machine type is probed again

    vmrun.remembered_probe(store, qemu.BootSpec(machine="q35", memory="128M", accel="auto"), probe)
    assert calls == [1, 1]
    # a damaged record is ignored, not trusted
    store.write_text("{not json")
    vmrun.remembered_probe(store, Spec(), probe)
    assert calls == [1, 1, 1]


# ---------------------------------------------------------------- the program's result reaches the host

EXIT = "[    0.31] Kernel panic - not syncing: Attempted to kill init! exitcode=0x{:08x}"


@pytest.mark.parametrize("status", [0, 1, 3, 42, 255])
def test_an_exiting_program_hands_its_status_to_doit_boot(status: int) -> None:
    console = feed([MARKER, "hello", EXIT.format(status << 8), "---[ end Kernel panic - not syncing ]---"])
    assert console.result_known and console.exited
    v = qemu.verdict(console, timed_out=False, returncode=0, timeout=60)
    assert (v.ok, v.code, v.status) == (status == 0, status, status)
    assert f"exited with status {status}" in v.reason


def test_the_helper_line_reports_a_status_for_a_program_that_powers_off() -> None:
    console = feed([MARKER, "tinyuki: exit status 7", "[ 0.4] reboot: Power down"])
    v = qemu.verdict(console, timed_out=False, returncode=0, timeout=60)
    assert (v.ok, v.code, v.status) == (False, 7, 7) and "reported status 7" in v.reason
    # only the first result counts, and a status beyond a byte is no status
    assert feed([MARKER, "tinyuki: exit status 0", "tinyuki: exit status 9"]).exit_status == 0
    assert feed([MARKER, "tinyuki: exit status 300"]).exit_status is None
    assert feed([MARKER, "the tinyuki: exit status 5 line quoted"]).exit_status is None


def test_a_program_killed_by_a_signal_is_neither_a_status_nor_a_panic() -> None:
    console = feed([MARKER, EXIT.format(11)])
    v = qemu.verdict(console, timed_out=False, returncode=0, timeout=60)
    assert (v.ok, v.code, v.status) == (False, 128 + 11, None) and "signal 11" in v.reason


def test_each_boot_failure_has_its_own_code_and_message() -> None:
    codes = {
        "panic": qemu.verdict(feed(["Kernel panic - not syncing: VFS: Unable to mount root fs"]),
                              timed_out=False, returncode=0, timeout=5),
        "hang": qemu.verdict(feed(["[ 0.1] Run /init as init process"]), timed_out=True, returncode=None, timeout=5),
        "hang after start": qemu.verdict(feed([MARKER]), timed_out=True, returncode=None, timeout=5),
        "no marker": qemu.verdict(feed(["[ 0.1] reboot: Power down"]), timed_out=False, returncode=0, timeout=5),
        "qemu": qemu.verdict(feed([MARKER]), timed_out=False, returncode=1, timeout=5),
    }
    assert {k: v.code for k, v in codes.items()} == {
        "panic": qemu.EXIT_PANIC, "hang": qemu.EXIT_HANG, "hang after start": qemu.EXIT_HANG,
        "no marker": qemu.EXIT_NO_MARKER, "qemu": qemu.EXIT_QEMU}
    assert not any(v.ok for v in codes.values())
    assert len({v.reason for v in codes.values()}) == len(codes)
    assert len({qemu.EXIT_PANIC, qemu.EXIT_HANG, qemu.EXIT_NO_MARKER, qemu.EXIT_QEMU}) == 4


def test_an_exit_before_the_marker_is_a_missing_marker_that_says_so() -> None:
    v = qemu.verdict(feed(["[ 0.1] Run /init", EXIT.format(2 << 8)]), timed_out=False, returncode=0, timeout=5)
    assert v.code == qemu.EXIT_NO_MARKER and "exited with status 2 before printing it" in v.reason


def test_a_powered_off_program_without_a_status_succeeds() -> None:
    v = qemu.verdict(feed([MARKER, "[ 0.4] reboot: Power down"]), timed_out=False, returncode=0, timeout=5)
    assert (v.ok, v.code) == (True, 0)
