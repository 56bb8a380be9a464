"""`doit boot`: boot the kernel (or the UKI through OVMF) in QEMU and prove the program ran.

Success means two things seen from outside the VM: the program's marker line
on the serial console, and the program's result: it exited with status 0 (the
kernel's panic at init's exit carries the status), printed `tinyuki: exit status 0`,
or powered the VM off. A program's other status is `doit boot`'s exit code; a
panic, a hang and a missing marker fail with the end of the console and codes of
their own (tinyuki/vm/qemu.py). Variables: uki=1, stick=1 (tinyuki.img as a USB stick),
bus=usb|virtio, disk=FILE, accel=kvm|tcg, kernel=FILE, initrd=FILE; secureboot=1 (efi=FILE,
keys_dir=DIR): OVMF enforcing Secure Boot must start the signed UKI and the kernel must report
Secure Boot on; the firmware's refusal is reported as such.
The program's ways out (tinyuki/vm/net.py): net=, forward=127.0.0.1:8080-:80 (QEMU's user
network, ports on the host's loopback only), channel=NAME (a virtio-serial port, its host end a
Unix socket in the build dir), vsock=CID. A program that serves keeps the VM up until it exits,
Ctrl-C (exit 130) or [boot] timeout; `doit boot` says when each forwarded port accepts connections.
The profile's [kernel] arch picks QEMU, the CPU, the firmware (OVMF on x86_64,
AAVMF on arm64) and the ESP's loader name (tinyuki/arch.py); an arm64 guest on
an x86_64 host is emulated (TCG), never probed for KVM.
Running QEMU and probing KVM live in tinyuki/vm/run.py, shared with the boot
benchmark; this module only reads doit's variables and reports.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from doit import get_var

from tinyuki import secureboot
from tinyuki.cli import params
from tinyuki.cli.actions import action
from tinyuki.cli.exitcode import exit_with_code
from tinyuki.cli.keys import keys_dir
from tinyuki.config.context import Context
from tinyuki.errors import TinyukiError, die
from tinyuki.formats import pe
from tinyuki.tasks.configure import CONFIG
from tinyuki.tasks.disk import DISK
from tinyuki.tasks.embed import VMLINUX, embeds_program, image_output
from tinyuki.tasks.initramfs import INITRD
from tinyuki.tasks.sign import SIGNED
from tinyuki.tasks.uki import UKI
from tinyuki.util import fs as fsutil
from tinyuki.util.flags import yes_no
from tinyuki.vm import boottime, qemu
from tinyuki.vm import net as vmnet
from tinyuki.vm import run as vmrun
from tinyuki.vm.esp import make_esp

# Ctrl-C: the shell's code for SIGINT, as if the program had been interrupted.
EXIT_INTERRUPTED = 130
# What `doit boot`'s exit codes say when the boot itself failed (a program's own status passes through).
EXIT_MEANINGS = {qemu.EXIT_PANIC: "kernel panic", qemu.EXIT_HANG: "no result within [boot] timeout",
                 qemu.EXIT_NO_MARKER: "no marker on the console", qemu.EXIT_QEMU: "QEMU failed",
                 secureboot.EXIT_SECURE_BOOT: "the firmware refused the image, or Secure Boot was not on",
                 EXIT_INTERRUPTED: "stopped by Ctrl-C"}


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
    return (VMLINUX if ctx.profile.kernel.image == "vmlinux" else image_output(ctx)).at(ctx)


def _is_zboot(path: Path) -> bool:
    with open(path, "rb") as f:
        return pe.is_efi_zboot(f.read(8))


def profile_initrd(ctx: Context) -> Path | None:
    """The program as an external initrd when the kernel does not carry it ([kernel] initramfs = "initrd")."""
    return None if embeds_program(ctx) else INITRD.at(ctx)


def refuse_secureboot(ctx: Context) -> None:
    """secureboot=1 needs OVMF's Secure Boot build and keys enrolled for it: x86_64 only, for now."""
    if not ctx.arch.secure_boot:
        raise die(f"secureboot=1 is not supported for {ctx.arch.name} yet (profile {ctx.profile.name})",
                  f"it boots OVMF's Secure Boot build on q35 with the keys `doit keys` enrolled for it, and there "
                  f"is no such AAVMF setup for {ctx.arch.name} here: boot the UKI with uki=1 (or tinyuki.img with "
                  "stick=1) without Secure Boot, or use an x86_64 profile for secureboot=1")


def require_firmware(ctx: Context, *files: Path) -> None:
    """The UEFI firmware's files (code, vars template) exist, or an error naming the package that has them."""
    target = ctx.arch
    for path in files:
        if not Path(path).is_file():
            raise die(f"{qemu.firmware_name(target.name)} firmware {path} does not exist ({target.name}'s UEFI"
                      f" firmware, from Debian's {target.firmware_package})", vmrun.firmware_hint(target.name))


def _want_uki() -> bool:
    return yes_no(get_var("uki"), "uki", hint="use uki=1 to boot the UKI through OVMF")


def _want_secureboot() -> bool:
    return yes_no(get_var("secureboot"), "secureboot",
                  hint="use secureboot=1 to boot the signed UKI with Secure Boot enforcing")


def secure_image(ctx: Context) -> Path:
    """What secureboot=1 boots: efi=FILE, else the build's signed UKI (which needs [sign] in the profile)."""
    given = _var_path("efi")
    if given is not None:
        return given
    if not ctx.profile.sign.enabled:
        raise die(f"secureboot=1 boots the signed UKI, and profile {ctx.profile.name} has no [sign]",
                  "add [sign] key and cert to the profile (`doit keys` makes test keys), or boot another "
                  "image with efi=FILE")
    return SIGNED.at(ctx)


def _want_stick() -> bool:
    return yes_no(get_var("stick"), "stick", hint="use stick=1 to boot tinyuki.img through OVMF as a USB stick")


def _bus(stick: bool, firmware: bool) -> str:
    """How the firmware (OVMF, AAVMF) sees what it boots: a USB stick on xHCI (stick=1's default) or a virtio
    disk (uki=1's)."""
    value = (get_var("bus") or "").strip().lower()
    if value and not firmware:
        raise die(f"bus={value} applies to a boot through OVMF", "add stick=1 (tinyuki.img) or uki=1 (the UKI)")
    if not value:
        return "usb" if stick else "virtio"
    if value not in qemu.ESP_BUSES:
        raise die(f"bus={value!r} is not one of {', '.join(qemu.ESP_BUSES)}",
                  "use bus=usb (a USB stick on an xHCI controller) or bus=virtio (a virtio disk)")
    return value


def choose_accel(ctx: Context, spec: qemu.BootSpec) -> tuple[str, str]:
    """The accelerator and why: accel= on the command line, the profile, or a KVM probe."""
    requested = get_var("accel") or ctx.profile.boot.accel
    if requested not in ("auto", "kvm", "tcg"):
        raise die(f"accel={requested!r} is not kvm, tcg or auto", "use accel=kvm, accel=tcg or leave it out")
    foreign = qemu.foreign_guest(spec.arch)
    if requested != "auto":
        source = "accel= on the command line" if get_var("accel") else f"[boot] accel in {ctx.profile.path.name}"
        if requested == "kvm" and foreign:
            raise die(f"accel=kvm ({source}) cannot run this guest: KVM only runs guests of the host's own"
                      f" architecture, and this is an {foreign.removeprefix('TCG: ')}",
                      "leave accel out (auto picks TCG) or use accel=tcg")
        return requested, f"set by {source}"
    if foreign:
        return "tcg", foreign
    probe = vmrun.remembered_probe(ctx.paths.cache / "kvm-probe.json", spec,
                                   lambda: vmrun.probe_kvm(replace(spec, accel="kvm"), ctx.profile.init.marker))
    if probe.usable:
        return "kvm", probe.reason
    return "tcg", f"KVM not usable: {probe.reason}"


@dataclass(frozen=True)
class WaysOut:
    """The program's ways out of the VM for this boot: the profile's [boot] settings, or doit's variables."""

    net: str = "none"
    forwards: tuple[vmnet.Forward, ...] = ()
    channel: str | None = None
    socket: Path | None = None
    vsock: int | None = None

    @property
    def serving(self) -> bool:
        """Something outside talks to the program: the VM stays up until it exits, Ctrl-C or the timeout."""
        return bool(self.forwards) or self.channel is not None or self.vsock is not None


def ways_out(ctx: Context) -> WaysOut:
    """net=, forward=, channel= and vsock= on the command line, over the profile's [boot] net, forward, channel, vsock.

    forward= replaces the profile's forwards (to move one off a busy port; forward=none drops them) and, on
    a profile without a network, gives the VM an isolated one. net=none boots without a network at all,
    the profile's forwards dropped with it; channel=none drops the profile's channel.
    """
    b = ctx.profile.boot
    given = (get_var("forward") or "").strip()
    mode = (get_var("net") or "").strip().lower()
    if mode and mode not in vmnet.NET_MODES:
        raise die(f"net={mode!r} is not one of {', '.join(vmnet.NET_MODES)}",
                  "use net=isolated (only forwards come in), net=user (the program may also connect out) or net=none")
    if given.lower() == "none":
        forwards: tuple[vmnet.Forward, ...] = ()
    elif given:
        forwards = vmnet.parse_forwards([w for w in re.split(r"[\s,]+", given) if w], "forward= on the command line")
        if mode == "none":
            raise die(f"forward={given} needs a network, and net=none was given",
                      "leave net= out (forward= then gives the VM an isolated network), or use net=isolated")
    else:
        forwards = () if mode == "none" else b.forward
    if not mode:
        mode = "isolated" if forwards and b.net == "none" else b.net
    channel = (get_var("channel") or "").strip() or b.channel
    if channel == "none":
        channel = None
    elif channel is not None:
        channel = vmnet.check_channel_name(channel, "channel= on the command line")
    vsock = _vsock_cid((get_var("vsock") or "").strip(), b.vsock)
    sock = vmnet.channel_socket(ctx.paths.channels, channel) if channel else None
    return WaysOut(mode, forwards, channel, sock, vsock)


def _vsock_cid(given: str, profile_cid: int) -> int | None:
    """vsock= as a guest CID: 0 none, 1 the profile's CID (or the first guest CID), else the CID itself."""
    if not given:
        return profile_cid or None
    if not (given.isascii() and given.isdigit()):
        raise die(f"vsock={given!r} is not a number",
                  f"use vsock=1 (guest CID {vmnet.LEAST_CID}), vsock=CID (3 or more) or vsock=0 (none)")
    number = int(given)
    if number == 0:
        return None
    if number == 1:
        return profile_cid or vmnet.LEAST_CID
    return vmnet.check_cid(number, "vsock= on the command line")


def check_ways_out(ctx: Context, ways: WaysOut, *, firmware: bool, config: str | None) -> None:
    """Refuse, before QEMU starts, a way out this boot cannot have: each with what to do about it.

    `config` is the booted kernel's .config text, None when it is not known (a kernel= or efi= of the user's).
    """
    config_path = CONFIG.at(ctx)
    wanted = [("net", "a network" if not ways.forwards else "forward", ways.net != "none"),
              ("channel", f"channel {ways.channel}", ways.channel is not None),
              ("vsock", "vsock", ways.vsock is not None)]
    for need, what, on in wanted:
        if on and config is not None:
            vmnet.require_options(config, need, what, config_path)
    timer = vmnet.timer_problem(ctx.profile.kernel.cmdline, ctx.profile.boot.machine if not firmware else "q35",
                                ways.net)
    if timer:
        raise die(timer, "remove nolapic_timer from [kernel] cmdline for a networked profile (any program that sleeps"
                         " needs the timer too), or boot the UKI through the firmware (uki=1: q35 has a PIT)")
    if firmware and ways.net != "none" and ctx.profile.boot.net == "none":
        raise die("a network for the UKI needs ip= in the UKI's command line, and this profile's [boot] net is"
                  " \"none\", so its UKI has none",
                  "set [boot] net in the profile and run `doit` (the UKI then carries ip=), or boot the kernel"
                  " directly (without uki= or stick=): `doit boot` adds ip= to -append")
    if firmware and ways.net == "none" and ctx.profile.boot.net != "none":
        raise die("net=none, but this profile's UKI carries ip= for its card ([boot] net): without the card the"
                  " kernel would wait 12 s for eth0 before starting the program",
                  "leave net= out (the UKI boots with its network), or boot the kernel directly with net=none")
    vmnet.require_free(ways.forwards)
    if ways.vsock is not None:
        vmnet.require_vhost_vsock()


class _Echo:
    """The console as it goes to the terminal, remembering whether a line is open (tinyuki's lines start fresh)."""

    def __init__(self) -> None:
        self.open_line = False

    def write(self, text: str) -> int:
        if text:
            sys.stdout.write(text)
            self.open_line = not text.endswith("\n")
        return len(text)

    def flush(self) -> None:
        sys.stdout.flush()

    def say(self, line: str) -> None:
        sys.stdout.write(("\n" if self.open_line else "") + line + "\n")
        sys.stdout.flush()
        self.open_line = False


def _announce(ways: WaysOut, timeout: int) -> None:
    if ways.net != "none":
        print(f"boot: net: {vmnet.describe(ways.forwards, ways.net)}", flush=True)
    if ways.channel is not None:
        print(f"boot: channel {ways.channel}: its host end is {ways.socket} (connect to it, e.g. "
              f"socat - UNIX-CONNECT:{ways.socket})", flush=True)
    if ways.vsock is not None:
        print(f"boot: vsock: the guest is CID {ways.vsock}, the host CID 2", flush=True)
    if ways.serving:
        print(f"boot: the VM runs until the program exits, Ctrl-C, or {timeout} s ([boot] timeout)", flush=True)


def boot(ctx: Context) -> None:
    b = ctx.profile.boot
    use_uki = _want_uki()
    use_stick = _want_stick()
    if use_uki and use_stick:
        raise die("uki=1 and stick=1 both ask for a boot through OVMF",
                  "stick=1 boots tinyuki.img (the disk image for a USB stick); uki=1 boots the UKI on a throwaway ESP")
    secure = _want_secureboot()
    if secure:
        refuse_secureboot(ctx)
    target = ctx.arch
    fw = qemu.firmware_name(target.name)
    firmware = use_uki or use_stick or secure
    bus = _bus(use_stick, firmware)
    kernel = _var_path("kernel") or profile_image(ctx)
    initrd = _var_path("initrd") or profile_initrd(ctx)
    disk = _var_path("disk")
    built_config = CONFIG.at(ctx).read_text(encoding="utf-8") if CONFIG.at(ctx).is_file() else None
    config = built_config or ""
    ways = ways_out(ctx)
    spec = qemu.BootSpec(
        machine=b.machine, memory=b.memory, accel="tcg", cmdline=ctx.profile.kernel.cmdline,
        arch=target.name, cpu=b.cpu,
        kernel=kernel if kernel.is_file() or not firmware else None, initrd=initrd, disk=disk,
        virtio_mmio=qemu.has_option(config, "CONFIG_VIRTIO_MMIO"),
        tsc_khz=vmrun.host_tsc_khz(), extra=tuple(b.qemu_args),
        net=ways.net, forwards=ways.forwards, channel=(ways.channel, ways.socket) if ways.socket else None,
        vsock_cid=ways.vsock,
    )
    loader = DISK.at(ctx) if use_stick else secure_image(ctx) if secure else UKI.at(ctx)
    # secureboot=1: OVMF's Secure Boot build and the store `doit keys` enrolled (tinyuki/secureboot.py)
    ovmf_code, ovmf_vars = secureboot.firmware_files(keys_dir(ctx)) if secure else (b.ovmf_code, b.ovmf_vars)
    for path in [loader] if firmware else [kernel, *([initrd] if initrd else [])]:
        if not Path(path).is_file():
            stage = "disk" if path == DISK.at(ctx) else "initramfs" if path == initrd else "uki"
            raise die(f"{path} does not exist", f"build it first: run `doit` (or `doit {stage}`)")
    if not firmware and _is_zboot(kernel):
        raise die(f"{kernel} is an EFI zboot image: QEMU's -kernel cannot start it (it would wait, silent, "
                  "until the timeout)", f"boot it through the firmware inside the UKI (`doit boot uki=1`), or "
                  f"start the image it wraps: `doit boot` (the build's {image_output(ctx).path})")
    if firmware:
        require_firmware(ctx, ovmf_code, ovmf_vars)
    own_kernel = not get_var("kernel") and not get_var("efi")
    check_ways_out(ctx, ways, firmware=firmware, config=built_config if own_kernel else None)
    vmrun.require_qemu(spec)
    accel, why = choose_accel(ctx, spec)
    spec = replace(spec, accel=accel)
    log_path = ctx.paths.logs / "boot.log"
    with tempfile.TemporaryDirectory(prefix="tinyuki-boot-") as tmp:
        if firmware:
            work = Path(tmp)
            vars_copy = work / Path(ovmf_vars).name
            shutil.copyfile(ovmf_vars, vars_copy)  # a fresh store: a reused one can drop into the UEFI shell
            # a stick is the whole disk image, read-only: booting it never changes the build's artifact
            esp = loader if use_stick else make_esp(loader, work, ctx.paths.logs / "esp.log",
                                                    target.efi_boot_file)
            spec = replace(spec, machine=qemu.firmware_machine(spec.machine), kernel=None, initrd=None, esp=esp,
                           esp_bus=bus, ovmf_code=ovmf_code, ovmf_vars=vars_copy)
            if secure:  # Secure Boot keeps its variables in SMM: q35 with SMM on, the flash marked secure
                spec = replace(spec, machine=secureboot.SECURE_MACHINE,
                               extra=(*secureboot.SECURE_QEMU_ARGS, *spec.extra))
        device = "a USB stick" if bus == "usb" else "a virtio disk"
        what = (f"{DISK.path} as {device} through {fw}" if use_stick
                else f"the UKI through {fw} ({device})" if use_uki
                else kernel.name + (f" + {initrd.name}" if initrd else ""))
        if secure:
            what = (what if use_stick else f"{loader.name} through OVMF ({device})") + ", Secure Boot enforcing"
        print(f"boot: {what} on {spec.machine} with {accel} ({why})", flush=True)
        _announce(ways, b.timeout)
        console = qemu.Console(ctx.profile.init.marker)
        echo = _Echo()
        watch = vmnet.PortWatch(ways.forwards)
        started = time.monotonic()

        def stop(c: qemu.Console) -> bool:
            # a server's ports are probed once the program runs (before, the guest answers nothing at all)
            if c.marker_at is not None and not watch.done:
                for fwd, at in watch.poll(time.monotonic() - started):
                    echo.say(f"boot: {vmnet.LOOPBACK}:{fwd.host_port} accepts connections (the program's port"
                             f" {fwd.guest_port}), {at:.2f} s after QEMU started")
            # once the program has reported its result there is nothing left to wait for (a kernel
            # without panic=-1 would sit in its panic after init exits)
            # with Secure Boot, the firmware's refusal is an end too (OVMF then waits at its boot menu)
            return c.result_known or (secure and secureboot.firmware_refusal(c.lines[-20:]) is not None)

        if ways.socket is not None:
            ways.socket.parent.mkdir(parents=True, exist_ok=True)
            ways.socket.unlink(missing_ok=True)  # a socket left by a killed boot: QEMU listens anew
        interrupted = False
        try:
            with fsutil.atomic_open(log_path) as log:
                try:
                    ran = vmrun.stream(qemu.command(spec), timeout=b.timeout, console=console, echo_to=echo,
                                       log=log, stop=stop)
                except KeyboardInterrupt:  # QEMU is killed by now; the console so far stays in the log
                    interrupted = True
        finally:
            watch.close()
            if ways.socket is not None:
                ways.socket.unlink(missing_ok=True)
    if interrupted:
        echo.say("boot: stopped by Ctrl-C: the VM is stopped")
        exit_with_code(EXIT_INTERRUPTED)
        raise die(f"boot: stopped by Ctrl-C before the program exited (doit boot exits with {EXIT_INTERRUPTED})",
                  f"the console so far is in {log_path}")
    if ran.stopped:
        print(flush=True)  # the VM was stopped mid-line: tinyuki's own lines start on a fresh one
    seconds = ran.seconds
    result = qemu.verdict(console, timed_out=ran.timed_out, returncode=ran.returncode, timeout=b.timeout)
    if ways.serving and result.code == qemu.EXIT_HANG and console.marker_at is not None:
        result = replace(result, hint="a server runs until it exits: ask it to (the examples answer GET /exit),"
                                      f" press Ctrl-C, or raise [boot] timeout ({b.timeout} s) for a longer run")
    times = qemu.summarize_times(console.marker_at, None if ran.timed_out else seconds)
    if result.status is not None:
        print(f"boot: the program's exit status: {result.status}", flush=True)
    if secure:
        verdict = secureboot.secure_boot_verdict(console.lines, program_ran=result.ok)
        if not verdict.ok:
            exit_with_code(secureboot.EXIT_SECURE_BOOT)
            tail = "\n    ".join(console.tail())
            refused = secureboot.firmware_refusal(console.lines) is not None
            raise die(f"boot {'refused' if refused else 'failed'}: {verdict.reason}"
                      + f"\n  console tail:\n    {tail}\n  full console: {log_path}"
                      + f"\n  exit code: {secureboot.EXIT_SECURE_BOOT} "
                        f"({EXIT_MEANINGS[secureboot.EXIT_SECURE_BOOT]})", verdict.hint)
        print(f"boot: secure boot: {verdict.reason}", flush=True)
    if not result.ok:
        exit_with_code(result.code)
        if result.status is not None:  # the program ran and said it failed: its output is the explanation
            raise die(f"boot: {result.reason} (doit boot exits with it)" + (f" ({times})" if times else ""),
                      result.hint)
        tail = "\n    ".join(console.tail())
        raise die(f"boot failed: {result.reason}" + (f" ({times})" if times else "")
                  + f"\n  console tail:\n    {tail}\n  full console: {log_path}"
                  + f"\n  exit code: {result.code} ({EXIT_MEANINGS.get(result.code, 'see the reason above')})",
                  result.hint)
    print(f"boot: ok: {result.reason} on {spec.machine}/{accel}; {times}", flush=True)
    # Where the time went, from the kernel's printk timestamps against the console's arrival times.
    split = boottime.split(console.lines, console.times, console.marker_at, seconds)
    direct_elf = not firmware and boottime.is_elf(kernel)
    described = boottime.describe(split, decompressor=target.compressed and not direct_elf,
                                  plain="PVH" if direct_elf else target.image_name)
    print(f"boot: time split: {described}", flush=True)


def task(ctx: Context) -> dict[str, Any]:
    @action
    def run_boot(uki: str, stick: str, bus: str, disk: str, accel: str, kernel: str, initrd: str,
                 secureboot: str, efi: str, keys_dir_param: str, net: str, forward: str, channel: str,
                 vsock: str) -> None:
        params.adopt({"uki": uki, "stick": stick, "bus": bus, "disk": disk, "accel": accel, "kernel": kernel,
                      "initrd": initrd, "secureboot": secureboot, "efi": efi, "keys_dir": keys_dir_param,
                      "net": net, "forward": forward, "channel": channel, "vsock": vsock})
        boot(ctx)

    try:
        firmware = _want_stick() or _want_secureboot() or _want_uki()
        image = (DISK.at(ctx) if _want_stick() else secure_image(ctx) if _want_secureboot()
                 else UKI.at(ctx) if _want_uki() else Path(get_var("kernel") or profile_image(ctx)))
        # what doit watches (`doit auto boot`): with the program as an external initrd, an edit rebuilds
        # the initrd and boots again, the kernel untouched
        initrd = None if firmware or get_var("initrd") else profile_initrd(ctx)
    except TinyukiError:
        image, initrd = profile_image(ctx), None  # the action reports the bad value
    return {
        "basename": "boot",
        "doc": "Boot in QEMU and check the program ran: uki=1, stick=1 [bus=virtio], disk=FILE, accel=kvm|tcg, "
               "kernel=, initrd=, forward=, channel=, vsock= (doit help boot).",
        "actions": [run_boot],
        "file_dep": [str(image), *([str(initrd)] if initrd else [])],
        "uptodate": [False],
        "verbosity": 2,
        "params": [
            params.param("uki", "1: boot the UKI through the UEFI firmware (OVMF, AAVMF) instead of -kernel"),
            params.param("stick", "1: boot tinyuki.img through OVMF/AAVMF as a USB stick (usb-storage on xHCI)"),
            params.param("bus", "usb or virtio: how the firmware sees stick=1's image or uki=1's ESP "
                                "(default usb, virtio)"),
            params.param("disk", "attach FILE as a raw disk; the program prints its first bytes"),
            params.param("accel", "kvm or tcg instead of probing KVM"),
            params.param("kernel", "boot this kernel image instead of the build's (bzImage, arm64: Image)"),
            params.param("initrd", "pass FILE as an external initrd"),
            params.param("secureboot", "1: boot the signed UKI (or with stick=1 tinyuki.img) through OVMF with "
                                       "Secure Boot enforcing and check the kernel reports it on"),
            params.param("efi", "with secureboot=1: boot this EFI image instead of the signed UKI"),
            {**params.param("keys_dir", "with secureboot=1: where `doit keys` put the enrolled store "
                                        "(default secureboot/)"), "name": "keys_dir_param"},
            params.param("net", "none, user or isolated: the VM's QEMU user network (default: [boot] net)"),
            params.param("forward", "host-to-guest port forwards on 127.0.0.1, comma-separated: 8080-:80 (replaces"
                                    " [boot] forward; the VM runs until the program exits or Ctrl-C)"),
            params.param("channel", "NAME: a virtio-serial port whose host end is <build>/channel/NAME.sock"),
            params.param("vsock", "1 or a guest CID (3 or more): a vhost-vsock device (needs /dev/vhost-vsock)"),
        ],
    }
