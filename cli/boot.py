"""`doit boot`: boot the kernel (or the UKI through OVMF) in QEMU and prove the program ran.

Success means two things seen from outside the VM: the program's marker line
on the serial console, and QEMU exiting on its own (the program powered the VM
off). Anything else (a panic, a timeout, a silent exit) fails with the end of
the console. Variables: uki=1, disk=FILE, accel=kvm|tcg, kernel=FILE, initrd=FILE.
Running QEMU and probing KVM live in tinyuki/vm/run.py, shared with the boot
benchmark; this module only reads doit's variables and reports.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from doit import get_var

from cli import params
from cli.actions import action
from tasks.configure import CONFIG
from tasks.embed import IMAGE, VMLINUX
from tasks.uki import UKI
from tinyuki.config.context import Context
from tinyuki.errors import TinyukiError, die
from tinyuki.util import fs as fsutil
from tinyuki.util.flags import yes_no
from tinyuki.vm import boottime, qemu
from tinyuki.vm import run as vmrun
from tinyuki.vm.esp import make_esp


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


def choose_accel(ctx: Context, spec: qemu.BootSpec) -> tuple[str, str]:
    """The accelerator and why: accel= on the command line, the profile, or a KVM probe."""
    requested = get_var("accel") or ctx.profile.boot.accel
    if requested not in ("auto", "kvm", "tcg"):
        raise die(f"accel={requested!r} is not kvm, tcg or auto", "use accel=kvm, accel=tcg or leave it out")
    if requested != "auto":
        source = "accel= on the command line" if get_var("accel") else f"[boot] accel in {ctx.profile.path.name}"
        return requested, f"set by {source}"
    probe = vmrun.remembered_probe(ctx.paths.cache / "kvm-probe.json", spec,
                                   lambda: vmrun.probe_kvm(replace(spec, accel="kvm"), ctx.profile.init.marker))
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
        tsc_khz=vmrun.host_tsc_khz(), extra=tuple(b.qemu_args),
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
            ran = vmrun.stream(qemu.command(spec), timeout=b.timeout, console=console, echo_to=sys.stdout, log=log)
    seconds = ran.seconds
    result = qemu.verdict(console, timed_out=ran.cut, returncode=ran.returncode, timeout=b.timeout)
    times = qemu.summarize_times(console.marker_at, None if ran.cut else seconds)
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
