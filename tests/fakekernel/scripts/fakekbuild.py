"""The fake kernel's kbuild: tinyconfig, olddefconfig, vmlinux.a, bzImage (Image, vmlinuz.efi) and vmlinux in ms.

Usage (from the Makefile): python3 fakekbuild.py TREE O TARGET
Everything is written under O; TREE is only read. See ../README.
"""

import hashlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

TREE = Path(sys.argv[1]).resolve()
OUT = Path(sys.argv[2]).resolve()
TARGET = sys.argv[3]
LOG = OUT / "fakekernel.log"

SET_RE = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
UNSET_RE = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")
TINY = ["# CONFIG_64BIT is not set", "CONFIG_EXPERT=y", "CONFIG_CC_OPTIMIZE_FOR_SIZE=y"]


def log(line):
    with open(LOG, "a") as f:
        f.write(line + "\n")


def fail(msg, code=2):
    print(msg, file=sys.stderr)
    sys.exit(code)


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)


# ---------------------------------------------------------------- Kconfig

def symbols():
    """[(name, type, [dependency expressions])] in declaration order."""
    out, ifs, cur, in_help = [], [], None, False
    for raw in (TREE / "Kconfig").read_text().splitlines():
        line = raw.strip()
        if in_help:
            if raw.startswith("\t  ") or not line:
                continue
            in_help = False
        if not line or line.startswith("#"):
            continue
        words = line.split()
        if words[0] in ("config", "menuconfig"):
            cur = [words[1], "bool", list(ifs)]
            out.append(cur)
        elif words[0] == "if":
            ifs.append(" ".join(words[1:]))
        elif words[0] == "endif":
            ifs.pop()
        elif words[0] in ("bool", "string") and cur:
            cur[1] = words[0]
        elif words[:2] == ["depends", "on"] and cur:
            cur[2].append(" ".join(words[2:]))
        elif words[0] == "help":
            in_help = True
    return out


def holds(expr, values):
    for term in expr.split("&&"):
        term = term.strip()
        neg = term.startswith("!")
        on = values.get("CONFIG_" + term.lstrip("!")) == "y"
        if on == neg:
            return False
    return True


def read_config(path):
    values = {}
    for line in path.read_text().splitlines():
        if m := SET_RE.match(line.strip()):
            values[m.group(1)] = m.group(2)
        elif m := UNSET_RE.match(line.strip()):
            values[m.group(1)] = "n"
    return values


def resolve(requested):
    """Kconfig's rule: a symbol whose dependencies fail is dropped; unknown ones too."""
    srcarch = "arm64" if os.environ.get("ARCH") == "arm64" else "x86"  # as kbuild's header names SRCARCH
    values, lines = {}, ["# Automatically generated file; DO NOT EDIT.",
                         f"# Linux/{srcarch} 6.1.0-fake Kernel Configuration"]
    for name, kind, deps in symbols():
        sym = "CONFIG_" + name
        if not all(holds(d, values) for d in deps):
            continue
        if kind == "string":
            v = requested.get(sym, '""')
            values[sym] = v
            lines.append(f"{sym}={v}")
        elif requested.get(sym) == "y":
            values[sym] = "y"
            lines.append(f"{sym}=y")
        else:
            lines.append(f"# {sym} is not set")
    return values, "\n".join(lines) + "\n"


def olddefconfig():
    cfg = OUT / ".config"
    if not cfg.is_file():
        fail("***\n*** Configuration file \".config\" not found!\n***")
    values, text = resolve(read_config(cfg))
    write(cfg, text)
    return values


def tinyconfig():
    write(OUT / ".config", "\n".join(TINY) + "\n")
    olddefconfig()


# ---------------------------------------------------------------- build

def prefix_map(path):
    """Apply KCFLAGS' -ffile-prefix-map=OLD=NEW the way gcc does, first match wins."""
    for flag in os.environ.get("KCFLAGS", "").split():
        if flag.startswith("-ffile-prefix-map="):
            old, _, new = flag[len("-ffile-prefix-map="):].partition("=")
            if str(path) == old or str(path).startswith(old.rstrip("/") + "/"):
                return new + str(path)[len(old.rstrip("/")):]
    return str(path)


def compile_c(src, obj):
    """A real compile, as kbuild runs it: $(CC) in the build dir, the source by absolute path, KCFLAGS last.

    -g puts the source and build paths into the object, so KCFLAGS'
    -ffile-prefix-map decides whether objects depend on where they were built.
    """
    obj.parent.mkdir(parents=True, exist_ok=True)
    cmd = [*shlex.split(os.environ.get("CC") or "gcc"), "-Os", "-g", *os.environ.get("KCFLAGS", "").split(),
           "-c", str(src), "-o", str(obj.relative_to(OUT))]
    proc = subprocess.run(cmd, cwd=OUT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        print(f"make[2]: *** [scripts/Makefile.build:250: {obj.relative_to(OUT)}] Error 1", flush=True)
        sys.exit(2)


def build(link=True):
    values = olddefconfig()  # kbuild's syncconfig
    release = OUT / "include" / "config" / "kernel.release"
    write(release, "6.1.0-fake\n")
    sources = sorted(p for p in TREE.rglob("*.c") if p.is_file())
    objects_key = hashlib.sha256()
    for sym, v in sorted(values.items()):
        if not sym.startswith("CONFIG_INITRAMFS"):
            objects_key.update(f"{sym}={v}\n".encode())
    for var in ("KBUILD_BUILD_TIMESTAMP", "KBUILD_BUILD_USER", "KBUILD_BUILD_HOST", "KBUILD_BUILD_VERSION",
                "KCFLAGS", "CC", "ARCH"):  # kbuild recompiles when a command line changes
        objects_key.update(f"{var}={os.environ.get(var, '')}\n".encode())
    for src in sources:
        objects_key.update(src.read_bytes())
    key = objects_key.hexdigest()
    stamp = OUT / ".fake-objects"
    if not stamp.is_file() or stamp.read_text() != key:
        for src in sources:
            rel = src.relative_to(TREE)
            print(f"  CC      {rel.with_suffix('.o')}", flush=True)
            log(f"compile {rel}")
            if values.get("CONFIG_FAKE_BUILD_ERROR") == "y" and rel == Path("init/main.c"):
                print(f"{src}: In function 'start_kernel':\n"
                      f"{src}:3:9: error: 'oops' undeclared (first use in this function)\n"
                      "    3 |         oops;\n      |         ^~~~\n"
                      "make[2]: *** [scripts/Makefile.build:250: init/main.o] Error 1", flush=True)
                sys.exit(2)
            compile_c(src, OUT / rel.with_suffix(".o"))
        write(stamp, key)

    # usr/: the initramfs, rebuilt by make's mtime rule, exactly where kbuild is fooled; a relative
    # CONFIG_INITRAMFS_SOURCE is found from the build dir, where kbuild runs
    source = values.get("CONFIG_INITRAMFS_SOURCE", '""').strip('"') or str(TREE / "usr" / "default_cpio_list")
    inc, cmd = OUT / "usr" / "initramfs_inc_data", OUT / "usr" / ".initramfs_inc_data.cmd"
    src = OUT / source
    stale = (not inc.is_file() or not cmd.is_file() or cmd.read_text() != source
             or src.stat().st_mtime > inc.stat().st_mtime)
    if stale:
        print("  GEN     usr/initramfs_inc_data", flush=True)
        write(inc, src.read_bytes())
        write(cmd, source)
        log("initramfs")
    # vmlinux.a: every object in link order, a thin archive (their names only) made as kbuild makes it
    (OUT / "vmlinux.a").unlink(missing_ok=True)
    subprocess.run(["ar", "cDPrST", "vmlinux.a", *(str(s.relative_to(TREE).with_suffix(".o")) for s in sources)],
                   cwd=OUT, check=True)
    if not link:
        return

    banner = (f"Linux version 6.1.0-fake ({os.environ.get('KBUILD_BUILD_USER', 'root')}@"
              f"{os.environ.get('KBUILD_BUILD_HOST', 'localhost')}) #{os.environ.get('KBUILD_BUILD_VERSION', '1')} "
              f"{os.environ.get('KBUILD_BUILD_TIMESTAMP', 'now')}\n")
    objects = b"".join(f"object of {prefix_map(s)}\n".encode()
                       + (OUT / s.relative_to(TREE).with_suffix(".o")).read_bytes()
                       for s in sources)
    vmlinux = b"FAKEVMLINUX\n" + banner.encode() + objects + b"INITRAMFS\n" + inc.read_bytes()
    vm = OUT / "vmlinux"
    # like make: relinked when its contents would differ or the initramfs is newer than it
    if not vm.is_file() or vm.read_bytes() != vmlinux or inc.stat().st_mtime_ns > vm.stat().st_mtime_ns:
        print("  LD      vmlinux", flush=True)
        write(vm, vmlinux)
        log("link")
    images = {"bzImage": ("arch/x86/boot/bzImage", b"FAKEBZIMAGE\n"), "Image": ("arch/arm64/boot/Image", b"FAKEIMAGE\n")}
    if TARGET in images:
        rel, magic = images[TARGET]
        image = OUT / rel
        if not image.is_file() or image.read_bytes() != magic + vmlinux or \
                vm.stat().st_mtime_ns > image.stat().st_mtime_ns:
            print(f"  {'BUILD' if TARGET == 'bzImage' else 'OBJCOPY'}   {rel}", flush=True)
            write(image, magic + vmlinux)
        print(f"Kernel: {rel} is ready  (#1)", flush=True)
    if TARGET == "vmlinuz.efi":  # arm64's EFI zboot image: "MZ", "zimg", then the Image it wraps
        if values.get("CONFIG_EFI_ZBOOT") != "y":
            fail("make[2]: *** [drivers/firmware/efi/libstub/Makefile.zboot] Error 1 (no CONFIG_EFI_ZBOOT)")
        image, zboot = OUT / "arch/arm64/boot/Image", OUT / "arch/arm64/boot/vmlinuz.efi"
        if not image.is_file() or vm.stat().st_mtime_ns > image.stat().st_mtime_ns:
            fail("make[2]: *** No rule to make target 'arch/arm64/boot/Image', needed by 'vmlinuz.efi'.  Stop.")
        if not zboot.is_file() or image.stat().st_mtime_ns > zboot.stat().st_mtime_ns:
            print("  ZBOOT   arch/arm64/boot/vmlinuz.efi", flush=True)
            write(zboot, b"MZ\0\0zimg" + image.read_bytes())
            log("zboot")


def main():
    if OUT == TREE or TREE in OUT.parents:
        fail("the fake kernel builds out of tree only: O= must be outside the source tree")
    if (TREE / ".config").exists():
        fail(f"***\n*** The source tree is not clean, please run 'make mrproper'\n*** in {TREE}\n***")
    OUT.mkdir(parents=True, exist_ok=True)
    log(f"make {TARGET}")
    if TARGET == "tinyconfig":
        tinyconfig()
    elif TARGET == "olddefconfig":
        olddefconfig()
    elif TARGET == "vmlinux.a":
        build(link=False)
    elif TARGET in ("bzImage", "Image", "vmlinux", "vmlinuz.efi"):
        arm64 = os.environ.get("ARCH") == "arm64"
        if TARGET in (("bzImage",) if arm64 else ("Image", "vmlinuz.efi")):  # each arch/*/Makefile has its own
            fail(f"make[1]: *** No rule to make target '{TARGET}'.  Stop.")
        build()
    else:
        fail(f"make: *** No rule to make target '{TARGET}'.  Stop.")


main()
