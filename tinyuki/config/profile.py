"""Profiles: one TOML file describes one build, from kernel source to QEMU settings.

Every setting is one row of `FIELDS` (section, key, kind, default, help), in the
spirit of mkosi's config table: parsing, validation, defaults and the README's
reference all come from that one table, so they cannot drift apart. Errors name
the file, the key and the fix.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyuki import arch
from tinyuki.errors import TinyukiError, die
from tinyuki.resources import DATA
from tinyuki.vm import net as vmnet

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
FPR_RE = re.compile(r"^[0-9A-F]{40}$")
REQUIRED = object()


@dataclass(frozen=True)
class Field:
    section: str
    key: str
    kind: str
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    # The pipeline stages whose output bytes this setting changes: their doit
    # staleness and their cache keys are derived from it (tinyuki/stage.py).
    reaches: tuple[str, ...] = ()
    # The smallest value an int setting may take.
    least: int | None = None
    # The largest: beyond it a number is a typo, and would only fail later, deep in a library.
    most: int | None = None
    # What of the value reaches the bytes, when more than the value itself: [kernel] arch's whole row
    # (its compiler prefix, image, ELF machine, ...), so a change to the row changes the keys it reaches.
    detail: Callable[[Any], Any] | None = None

    @property
    def label(self) -> str:
        return f"[{self.section}] {self.key}" if self.section else self.key


# The whole profile format. A relative path is taken from the profile file's own directory (mkosi's
# rule), so a profile means the same files wherever doit runs; a setting left unset takes its default
# from tinyuki's own files (tinyuki/resources.py), and so do names of shipped fragments and patch series.
FIELDS: tuple[Field, ...] = (
    Field("", "description", "str", "", "one line saying what the profile is for (a comment that tools can read)"),
    Field("", "extends", "str", None,
          "another profile this one starts from: a shipped profile's name or a path from this file's directory;"
          " each setting given here replaces that profile's, and a [source] table here replaces its whole"
          " [source] (its paths stay taken from its own directory)"),
    # -- where the kernel comes from and why we trust it
    Field("source", "urls", "url_list", REQUIRED,
          "the kernel tarball: https://, http://, file:// urls or plain paths, tried in order (mirrors)",
          reaches=("fetch", "verify")),
    Field("source", "sha256", "sha256", None,
          "pinned sha256 of the tarball; without it the hash is recorded on first use (cache/locks/)",
          reaches=("fetch", "verify")),
    Field("source", "size", "int", None,
          "pinned size of the tarball in bytes (`doit pin` prints it): no download may bring more",
          reaches=("fetch",), least=1),
    Field("source", "signature", "url", None,
          "url of the detached OpenPGP signature; kernel.org's .tar.sign signs the uncompressed tar",
          reaches=("fetch", "verify")),
    Field("source", "signature_over", "choice", "uncompressed",
          "what the signature covers: the uncompressed tar (kernel.org) or the file as downloaded",
          ("uncompressed", "file"), reaches=("verify",)),
    Field("source", "signers", "fingerprint_list", [],
          "fingerprints (primary key, 40 hex digits) whose signature is accepted", reaches=("verify",)),
    Field("source", "keyrings", "keyring_list", [],
          "ASCII-armored public keys imported into a private, temporary keyring for the check: paths, or the names"
          " of the keys tinyuki ships (gregkh, torvalds, autosigner)", reaches=("verify",)),
    Field("source", "sha256sums", "url", None,
          "optional clearsigned sha256sums.asc listing the tarball (kernel.org's checksum autosigner)",
          reaches=("fetch", "verify")),
    Field("source", "sha256sums_signers", "fingerprint_list", [],
          "fingerprints accepted for sha256sums.asc", reaches=("verify",)),
    Field("source", "sha256sums_keyrings", "keyring_list", [],
          "public keys for checking sha256sums.asc (paths, or shipped key names: autosigner)", reaches=("verify",)),
    Field("source", "package", "str", None,
          "Debian package that owns the tarball: checked with dpkg -S and dpkg --verify", reaches=("verify",)),
    Field("source", "retries", "int", 4, "attempts per mirror on connection errors and 5xx answers",
          reaches=(), least=1, most=100),
    Field("source", "timeout", "int", 30, "connect and read timeout in seconds", reaches=(), least=1, most=3600),
    Field("source", "deadline", "int", 3600,
          "seconds a whole download may take, every mirror, attempt and wait included (a partial file is resumed"
          " next time)", reaches=(), least=1, most=7 * 86400),
    Field("source", "max_size", "int", 2048,
          "largest file a download may bring, in MiB, when its size is not recorded with its hash; a mirror's"
          " announced size caps it further", reaches=(), least=1, most=1 << 20),
    # -- the kernel
    Field("kernel", "arch", "choice", arch.DEFAULT,
          "the target architecture (tinyuki/arch.py): its kbuild ARCH and cross compiler, image, ELF machine, EFI stub,"
          " QEMU, firmware and console", tuple(arch.ARCHES),
          reaches=("configure", "kernel", "init", "embed", "uki", "disk"),
          detail=lambda name: arch.get(name).identity()),
    Field("kernel", "fragments", "fragment_list", REQUIRED,
          "config fragments merged over `make tinyconfig`, in order: names in configs/fragments/<arch>/ or"
          " configs/fragments/ (an architecture's own version first), or paths",
          reaches=("configure",)),
    Field("kernel", "patches", "series", None,
          "patch series: a name in patches/ (holding a quilt-style `series` file) or a path to a series file",
          reaches=("patch",)),
    Field("kernel", "cmdline", "str", None,
          "kernel command line, used for QEMU's -append and the UKI's .cmdline; unset: console=<the architecture's"
          " serial port> panic=-1 (ttyS0 on x86_64, ttyAMA0 on arm64)", reaches=("uki",)),
    Field("kernel", "source_date_epoch", "int", 1700000000,
          "the one timestamp every artifact carries (KBUILD_BUILD_TIMESTAMP, cpio mtimes, PE header, signing time)",
          reaches=("configure", "kernel", "init", "initramfs", "embed", "uki", "disk", "sign"), least=0),
    Field("kernel", "build_user", "str", "tinyuki", "KBUILD_BUILD_USER", reaches=("configure", "kernel", "embed")),
    Field("kernel", "build_host", "str", "tinyuki", "KBUILD_BUILD_HOST", reaches=("configure", "kernel", "embed")),
    Field("kernel", "build_version", "str", "1", "KBUILD_BUILD_VERSION (the #N in uname -v)",
          reaches=("configure", "kernel", "embed")),
    Field("kernel", "image", "choice", "auto",
          "kernel image to boot and pack: auto is the architecture's own (bzImage on x86_64, the uncompressed Image"
          " on arm64); vmlinux boots x86_64's PVH entry directly; vmlinuz.efi puts arm64's compressed EFI zboot"
          " image in the UKI (needs the zboot fragment; -kernel boots still start the Image)",
          ("auto", "bzImage", "Image", "vmlinux", "vmlinuz.efi"), reaches=("embed", "uki")),
    Field("kernel", "initramfs", "choice", "embedded",
          "where the program reaches the kernel: embedded (linked in via CONFIG_INITRAMFS_SOURCE: one file to ship)"
          " or initrd (the edit loop: the kernel is linked once without it, and the program comes as initrd.img"
          " beside a -kernel boot and as the UKI's .initrd section, so an edit rebuilds no kernel)",
          ("embedded", "initrd"), reaches=("embed", "uki")),
    # -- the one program
    Field("init", "sources", "path_list", ["init/init.c"],
          "sources of the program that runs as /init: C files, or the main file of a Go module or Cargo package",
          reaches=("init",)),
    Field("init", "language", "choice", "c",
          "the program's language: c (built with [init] libc), go (go build) or rust (cargo); for a prebuilt"
          " [init] binary, the runtime it was built with. Its runtime's kernel options join the fragments",
          ("c", "go", "rust"), reaches=("init", "configure")),
    Field("init", "libc", "choice", "nolibc",
          "for C: nolibc (the kernel tree's tools/include/nolibc, tiny), musl (musl-gcc) or glibc (as gcc -static)",
          ("nolibc", "musl", "glibc"), reaches=("init",)),
    Field("init", "binary", "path", None,
          "a prebuilt static program for [kernel] arch to run as /init instead of building [init] sources (any"
          " language)",
          reaches=("init",)),
    Field("init", "cflags", "str_list", [], "extra compiler flags for the program", reaches=("init",)),
    Field("init", "marker", "str", "tinyuki: init started",
          "a line the program prints; `doit boot` fails unless it appears on the console", reaches=("init",)),
    Field("init", "files", "file_map", {},
          "extra files for the initramfs: { \"/path/in/image\" = \"path/in/project\" }", reaches=("initramfs",)),
    # -- the UKI
    Field("uki", "stub", "path", None,
          "systemd's EFI stub; unset: the architecture's from Debian's systemd-boot-efi (linuxx64.efi.stub;"
          " for arm64 linuxaa64.efi.stub, which scripts/setup.sh unpacks under .deps/arm64/)", reaches=("uki",)),
    Field("uki", "os_release", "str_map", {"ID": "tinyuki", "NAME": "tinyuki", "VERSION_ID": "1"},
          "fields of the UKI's .osrel section", reaches=("uki",)),
    # -- booting it
    Field("boot", "machine", "choice", "auto", "QEMU machine type; auto: microvm on x86_64, virt on arm64",
          ("auto", *dict.fromkeys(m for a in arch.ARCHES.values() for m in a.machines)), reaches=()),
    Field("boot", "memory", "str", "128M", "guest memory (QEMU -m)", reaches=()),
    Field("boot", "accel", "choice", "auto",
          "auto probes KVM and falls back to TCG; kvm or tcg force one", ("auto", "kvm", "tcg"), reaches=()),
    Field("boot", "timeout", "int", 60, "seconds before a boot that has not powered off is a failure", reaches=(),
          least=1, most=86400),
    Field("boot", "cpu", "str", None, "QEMU -cpu; unset: the architecture's default (QEMU's own on x86_64,"
          " cortex-a57 on arm64)", reaches=()),
    Field("boot", "qemu_args", "str_list", [], "extra QEMU arguments", reaches=()),
    Field("boot", "net", "choice", "none",
          "a network card on QEMU's user network (needs the net fragment): the guest is 10.0.2.15, set by ip= on the"
          " kernel command line (added to the UKI's too); user lets the program connect out through the host, isolated"
          " lets only the forwards in", vmnet.NET_MODES, reaches=("uki",),
          detail=lambda mode: vmnet.with_ip("", mode)),
    Field("boot", "forward", "forward_list", [],
          "ports forwarded from the host's 127.0.0.1 to the program, as QEMU's hostfwd: \"127.0.0.1:8080-:80\" or"
          " \"8080-80\" (needs net); `doit boot` keeps the VM up while the program serves, and says when each port"
          " accepts connections", reaches=()),
    Field("boot", "channel", "channel_name", None,
          "a virtio-serial port with this name (needs the channel fragment), its host end the Unix socket"
          " <build dir>/channel/NAME.sock: data to and from the host without a network stack", reaches=()),
    Field("boot", "vsock", "int", 0,
          "the guest's vsock CID (3 or more) on a vhost-vsock device, as Firecracker and Nitro Enclaves programs"
          " use it (needs the vsock fragment and the host's /dev/vhost-vsock); 0: no vsock", reaches=(),
          least=0, most=vmnet.MOST_CID),
    Field("boot", "ovmf_code", "path", None,
          "UEFI firmware for UKI boots; unset: OVMF_CODE_4M.fd on x86_64, AAVMF_CODE.fd on arm64", reaches=()),
    Field("boot", "ovmf_vars", "path", None,
          "the firmware's variable store template, every boot gets a fresh copy; unset: OVMF_VARS_4M.fd /"
          " AAVMF_VARS.fd"),
    # -- the bootable disk image, tinyuki.img (tasks/disk.py)
    Field("disk", "table", "choice", "gpt",
          "partition table of tinyuki.img: GPT, or a DOS label whose EFI system partition has type 0xEF",
          ("gpt", "mbr"), reaches=("disk",)),
    Field("disk", "esp_size", "size", "auto",
          "size of the EFI system partition, like \"64M\" or \"1G\" (whole MiB); auto is the smallest that holds"
          " the UKI and the files with room to spare; FAT32 from 33M up, FAT16 from 16M, FAT12 below",
          reaches=("disk",)),
    Field("disk", "files", "esp_file_map", {},
          "extra files on the EFI system partition: { \"/EFI/tinyuki/notes.txt\" = \"path/in/project\" }",
          reaches=("disk",)),
    Field("disk", "data", "dir", None,
          "a folder copied, in sorted order, onto a second partition (FAT) that the program can read",
          reaches=("disk",)),
    Field("disk", "data_size", "size", "auto",
          "size of the second partition; auto fits the data folder with room to spare (no partition without"
          " data); a size without data gives an empty, unformatted partition",
          reaches=("disk",)),
    # -- signing the UKI for Secure Boot (tasks/sign.py): on when key and cert are set
    Field("sign", "key", "key", None,
          "private key that signs the UKI with sbsign: a PEM file, or a PKCS#11 URI (pkcs11:...) of a token's key;"
          " `doit keys` makes test keys",
          reaches=("sign",)),
    Field("sign", "cert", "path", None,
          "the key's X.509 certificate (PEM): the one enrolled in the firmware's db", reaches=("sign",)),
    Field("sign", "passphrase", "secret_source", None,
          "where an encrypted key's passphrase comes from: env:VARIABLE or file:PATH (never the passphrase itself)",
          reaches=()),
)

SECTIONS = ("source", "kernel", "init", "uki", "boot", "disk", "sign")


@dataclass(frozen=True)
class Source:
    urls: tuple[str, ...]
    sha256: str | None
    size: int | None  # bytes, pinned
    signature: str | None
    signature_over: str
    signers: tuple[str, ...]
    keyrings: tuple[Path, ...]
    sha256sums: str | None
    sha256sums_signers: tuple[str, ...]
    sha256sums_keyrings: tuple[Path, ...]
    package: str | None
    retries: int
    timeout: int
    deadline: int
    max_size: int  # MiB

    @property
    def filename(self) -> str:
        """The tarball's file name as published (what sha256sums.asc lists)."""
        return self.urls[0].rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Kernel:
    fragments: tuple[Path, ...]
    patches: Path | None  # the series file
    cmdline: str
    source_date_epoch: int
    build_user: str
    build_host: str
    build_version: str
    image: str
    arch: str = arch.DEFAULT  # a row of tinyuki/arch.py
    initramfs: str = "embedded"


@dataclass(frozen=True)
class Init:
    sources: tuple[Path, ...]
    language: str
    libc: str
    binary: Path | None
    cflags: tuple[str, ...]
    marker: str
    files: tuple[tuple[str, Path], ...]


@dataclass(frozen=True)
class Uki:
    stub: Path
    os_release: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Boot:
    machine: str
    cpu: str | None
    memory: str
    accel: str
    timeout: int
    qemu_args: tuple[str, ...]
    ovmf_code: Path
    ovmf_vars: Path
    net: str = "none"
    forward: tuple[vmnet.Forward, ...] = ()
    channel: str | None = None
    vsock: int = 0


@dataclass(frozen=True)
class Disk:
    table: str
    esp_size: int | None  # MiB; None: fit the contents
    files: tuple[tuple[str, Path], ...]
    data: Path | None
    data_size: int | None  # MiB; None: fit the data folder, or no second partition


@dataclass(frozen=True)
class Sign:
    key: Path | str | None  # a PEM file, or a pkcs11: URI
    cert: Path | None
    passphrase: str | None  # env:NAME or file:/absolute/path

    @property
    def enabled(self) -> bool:
        """Signing is on when a key and its certificate are given (parse_profile requires both or neither)."""
        return self.key is not None and self.cert is not None

    @property
    def pkcs11(self) -> bool:
        return isinstance(self.key, str)


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path
    description: str
    source: Source
    kernel: Kernel
    init: Init
    uki: Uki
    boot: Boot
    disk: Disk = Disk(table="gpt", esp_size=None, files=(), data=None, data_size=None)
    sign: Sign = Sign(key=None, cert=None, passphrase=None)
    raw: dict[str, Any] = field(compare=False, repr=False, default_factory=dict)
    # the profiles this one extends (`extends`), nearest first: their settings and bytes are part of it
    extends: tuple[Path, ...] = ()
    # each file the profile names by a path it wrote itself: the resolved path -> the words it wrote
    given: dict[Path, str] = field(compare=False, repr=False, default_factory=dict)

    @property
    def uki_cmdline(self) -> str:
        """The command line the UKI carries: [kernel] cmdline, and ip= when [boot] net gives the VM a card.

        Booted through the firmware, the UKI's .cmdline is all the kernel gets, so the address the kernel
        configures the card with must be in it; without a network it is [kernel] cmdline exactly.
        """
        return vmnet.with_ip(self.kernel.cmdline, self.boot.net)

    def value(self, f: Field) -> Any:
        """The parsed value of one row of FIELDS."""
        return getattr(getattr(self, f.section) if f.section else self, f.key)

    def stage_settings(self, stage: str) -> dict[str, Any]:
        """The settings that reach `stage`'s bytes, as plain data keyed by their labels."""
        return {f.label: _plain(f.detail(self.value(f)) if f.detail else self.value(f))
                for f in FIELDS if stage in f.reaches}

    def stage_files(self, stage: str) -> list[Path]:
        """The files named by the settings that reach `stage`: their contents reach it too."""
        out: list[Path] = []
        for f in FIELDS:
            if stage in f.reaches and f.kind in PATH_KINDS:
                out.extend(_paths_of(self.value(f)))
        return out


# Kinds whose values name files; the stages they reach read those files.
PATH_KINDS = ("path", "path_list", "keyring_list", "fragment_list", "series", "file_map", "esp_file_map", "key")


def _paths_of(value: Any) -> list[Path]:
    if value is None or isinstance(value, str):  # a str among paths is a URI (a PKCS#11 key), not a file
        return []
    if isinstance(value, Path):
        return [value]
    out: list[Path] = []
    for item in value:
        out.extend(_paths_of(item[1] if isinstance(item, tuple) else item))
    return out


def _plain(v: Any) -> Any:
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


# ---------------------------------------------------------------- loading

def profile_path(name_or_path: str, root: Path) -> Path:
    """`debian` means the shipped configs/profiles/debian.toml; anything with a slash or .toml is a path.

    A relative path is taken from `root`, the project doit runs in.
    """
    if "/" in name_or_path or name_or_path.endswith(".toml"):
        p = Path(name_or_path)
        return p if p.is_absolute() else (root / p)
    p = DATA / "configs" / "profiles" / f"{name_or_path}.toml"
    if not p.exists():
        known = sorted(x.stem for x in (DATA / "configs" / "profiles").glob("*.toml"))
        raise die(f"no profile named {name_or_path!r} (looked for {p})",
                  f"use one of: {', '.join(known)}; or give a path: doit profile=path/to/file.toml")
    return p


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise die(f"cannot read profile {path}: {e.strerror}", "check the path given as profile=") from e
    except UnicodeDecodeError as e:
        line = e.object[: e.start].count(b"\n") + 1
        raise die(f"{path}: not UTF-8 text: byte {e.object[e.start]:#04x} at offset {e.start} (line {line})",
                  "TOML files are UTF-8: re-save the profile as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from e
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise die(f"{path}: not valid TOML: {e}", "fix the syntax at the line and column shown") from e


def load_profile(name_or_path: str, root: Path) -> Profile:
    path = profile_path(name_or_path, root)
    return parse_profile(_read_toml(path), path, root)


_QUOTED_RE = re.compile(r'"((?:[^"\\\n]|\\.)*)"')


def moved_profile_text(text: str, base: Path) -> str:
    """A profile's text with every relative path that names an existing file made absolute from `base`.

    For a copy of a profile written elsewhere (a benchmark's or a test's variant of a shipped one): its
    relative paths were taken from the original's directory and must keep naming the same files. Names
    of shipped fragments, series and keys (no slash, no dot), urls and plain words are left as they are.
    """
    def absolute(m: re.Match[str]) -> str:
        value = m.group(1)
        if not value or not ("/" in value or "." in value) or value.startswith("/") or "://" in value:
            return m.group(0)
        resolved = _resolve(base, value)
        return f'"{resolved}"' if resolved.exists() else m.group(0)

    return _QUOTED_RE.sub(absolute, text)


@dataclass(frozen=True)
class _Layer:
    """One profile file of an `extends` chain: its settings and where they were written."""

    data: dict[str, Any]
    path: Path
    where: str

    def table(self, section: str) -> dict[str, Any] | None:
        if section == "":
            return self.data
        value = self.data.get(section)
        return value if isinstance(value, dict) else None


MAX_EXTENDS = 8


def _layers(data: dict[str, Any], path: Path, root: Path) -> list[_Layer]:
    """The profile and the ones it extends, nearest first; each parent read and checked like the profile."""
    layers = [_Layer(data, path, _display(path, root))]
    while "extends" in layers[-1].data:
        child = layers[-1]
        name = child.data["extends"]
        if not isinstance(name, str) or not name:
            raise _want(child.where, "extends", "a profile's name or path", name,
                        'write extends = "debian" (a shipped profile) or extends = "base.toml" (beside this file)')
        if "/" in name or name.endswith(".toml"):
            parent = _resolve(child.path.absolute().parent, name)
        else:
            parent = DATA / "configs" / "profiles" / f"{name}.toml"
        if not parent.is_file():
            known = sorted(x.stem for x in (DATA / "configs" / "profiles").glob("*.toml"))
            raise die(f"{child.where}: extends {name!r}: no such profile ({parent})",
                      f"name a shipped profile ({', '.join(known)}) or a .toml path from {child.path.parent}")
        chain = [x.path.resolve() for x in layers]
        if parent.resolve() in chain:
            cycle = " -> ".join(x.where for x in layers) + f" -> {_display(parent, root)}"
            raise die(f"{child.where}: extends makes a cycle: {cycle}", "let one of them extend none of the others")
        if len(layers) > MAX_EXTENDS:
            raise die(f"{layers[0].where}: more than {MAX_EXTENDS} profiles deep in extends",
                      "extend a profile closer to what you need")
        parent_data = _read_toml(parent)
        _check_unknown(parent_data, _display(parent, root))
        layers.append(_Layer(parent_data, parent, _display(parent, root)))
    return layers


def _setting(layers: list[_Layer], f: Field) -> _Layer | None:
    """The nearest layer that gives setting `f`. [source] is taken whole from one layer: its fields describe
    one file together (a parent's sha256 beside a child's urls would pin the wrong tarball)."""
    if f.section == "source":
        owner = next((x for x in layers if x.table("source") is not None), None)
        return owner if owner is not None and f.key in (owner.table("source") or {}) else None
    return next((x for x in layers if f.key in (x.table(f.section) or {})), None)


def parse_profile(data: dict[str, Any], path: Path, root: Path) -> Profile:
    """Validate a parsed TOML document against FIELDS and build the typed profile.

    `root` is the project (errors name the profile relative to it); the profile's relative paths are
    taken from its own directory (a setting it takes from the profile it extends, from that one's), an
    unset setting's default paths from tinyuki's files.
    """
    where = _display(path, root)
    given: dict[Path, str] = {}
    _check_unknown(data, where)
    layers = _layers(data, path, root)
    values: dict[str, dict[str, Any]] = {s: {} for s in ("", *SECTIONS)}
    for f in FIELDS:
        if f.key == "extends" and f.section == "":
            continue
        label = f"[{f.section}] {f.key}" if f.section else f.key
        layer = _setting(layers, f)
        if layer is None:
            if f.default is REQUIRED:
                raise die(f"{where}: {label} is required ({f.help})",
                          f"add `{f.key} = ...` under [{f.section}]")
            raw, origin, at = f.default, DATA, where
            if raw is None:
                values[f.section][f.key] = None
                continue
            if f.kind == "path":
                # a default system file (the EFI stub, OVMF) is checked by the stage that uses it,
                # so a host without OVMF can still build, and a profile without a UKI never needs it
                values[f.section][f.key] = Path(raw)
                continue
        else:
            raw, origin, at = (layer.table(f.section) or {})[f.key], layer.path.absolute().parent, layer.where
        values[f.section][f.key] = _convert(f, raw, at, label, origin, values)
        if layer is layers[0] and f.kind in ("path", "path_list", "keyring_list"):
            value = values[f.section][f.key]
            pairs = [(value, raw)] if f.kind == "path" else zip(value, raw, strict=True)
            given.update((p, w) for p, w in pairs if isinstance(p, Path))

    _resolve_arch_defaults(values, where)
    src = values["source"]
    _check_trust(src, where)
    sign = values["sign"]
    if (sign["key"] is None) != (sign["cert"] is None):
        missing = "cert" if sign["cert"] is None else "key"
        raise die(f"{where}: [sign] needs both key and cert; {missing} is missing",
                  "give the private key and its certificate (doit keys makes secureboot/db.key and db.crt),"
                  " or remove [sign] to build an unsigned UKI only")
    boot = values["boot"]
    if boot["forward"] and boot["net"] == "none":
        raise die(f"{where}: [boot] forward needs a network: [boot] net is \"none\"",
                  'set net = "isolated" (only the forwards reach the program) or "user" (it may also connect out),'
                  ' and add the "net" fragment to [kernel] fragments')
    if boot["vsock"]:
        vmnet.check_cid(boot["vsock"], f"{where}: [boot] vsock")
    name = path.stem
    return Profile(
        name=name, path=path, description=values[""]["description"],
        source=Source(**src), kernel=Kernel(**values["kernel"]), init=Init(**values["init"]),
        uki=Uki(**values["uki"]), boot=Boot(**values["boot"]), disk=Disk(**values["disk"]),
        sign=Sign(**values["sign"]), raw=data, given=given, extends=tuple(x.path for x in layers[1:]),
    )


def _resolve_arch_defaults(values: dict[str, dict[str, Any]], where: str) -> None:
    """Fill the settings left to the architecture (image, stub, machine, firmware), and refuse mismatches.

    An x86_64 profile resolves to exactly what it said before there was an
    [kernel] arch, so its settings, keys and bytes do not move.
    """
    target = arch.ARCHES[values["kernel"]["arch"]]
    kernel, uki, boot = values["kernel"], values["uki"], values["boot"]
    images = target.images
    if kernel["image"] == "auto":
        kernel["image"] = target.image_name
    elif kernel["image"] not in images:
        raise die(f"{where}: [kernel] image {kernel['image']!r} is not an image of {target.name}",
                  f"use one of: auto, {', '.join(images)} (or set [kernel] arch)")
    if boot["machine"] == "auto":
        boot["machine"] = target.machines[0]
    elif boot["machine"] not in target.machines:
        raise die(f"{where}: [boot] machine {boot['machine']!r} is not a QEMU machine of {target.name}",
                  f"use one of: auto, {', '.join(target.machines)}")
    init = values["init"]
    cross_libc = init["binary"] is None and init["language"] == "c" and not target.native()
    if cross_libc and init["libc"] not in arch.CROSS_LIBCS:
        raise die(f"{where}: [init] libc = \"{init['libc']}\" cannot build a program for {target.name} on this"
                  f" {os.uname().machine} host: musl-gcc (Debian's musl-tools) builds for the host only",
                  "use libc = \"nolibc\" or \"glibc\" (both cross-compile), or give a static program built"
                  " elsewhere as [init] binary")
    if kernel["cmdline"] is None:
        kernel["cmdline"] = f"console={target.console} panic=-1"
    if uki["stub"] is None:
        uki["stub"] = target.stub(DATA)
    boot["ovmf_code"] = boot["ovmf_code"] or Path(target.firmware_code)
    boot["ovmf_vars"] = boot["ovmf_vars"] or Path(target.firmware_vars)
    consoles = re.findall(r"(?:^|\s)console=([A-Za-z]+)", kernel["cmdline"])
    foreign = [c for c in consoles if any(c == a.console.rstrip("0123456789") for a in arch.ARCHES.values()
                                          if a.console != target.console)]
    if foreign:
        raise die(f"{where}: [kernel] cmdline asks for console={foreign[0]}..., a serial port {target.name}'s"
                  f" QEMU machine does not have",
                  f"use console={target.console} for {target.name}")


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _check_unknown(data: dict[str, Any], where: str) -> None:
    top_known = {f.key for f in FIELDS if f.section == ""} | set(SECTIONS)
    for key, value in data.items():
        if key not in top_known:
            raise die(f"{where}: unknown key {key!r}{_suggest(key, top_known)}",
                      f"known top-level keys and sections: {', '.join(sorted(top_known))}")
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise die(f"{where}: {key} must be a table ([{key}]), not {_tname(value)}",
                          f"write the settings under a [{key}] header")
            known = {f.key for f in FIELDS if f.section == key}
            for sub in value:
                if sub not in known:
                    raise die(f"{where}: unknown key [{key}] {sub}{_suggest(sub, known)}",
                              f"keys allowed in [{key}]: {', '.join(sorted(known))}")


def _suggest(word: str, choices: set[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _tname(v: Any) -> str:
    return {str: "a string", int: "an integer", bool: "a boolean", list: "a list",
            dict: "a table", float: "a number"}.get(type(v), type(v).__name__)


def _want(where: str, label: str, what: str, got: Any, hint: str) -> TinyukiError:
    return die(f"{where}: {label} must be {what}, not {_tname(got)} ({got!r})", hint)


def _convert(f: Field, raw: Any, where: str, label: str, root: Path,
             parsed: dict[str, dict[str, Any]] | None = None) -> Any:
    target = (parsed or {}).get("kernel", {}).get("arch", arch.DEFAULT)  # [kernel] arch is parsed first
    if f.kind == "fragment_list":  # which file a name means depends on the architecture
        return _fragment_list(f, raw, where, label, root, target)
    if f.kind == "esp_file_map":  # so does the name the firmware starts from a stick
        return _esp_file_map(f, raw, where, label, root, target)
    conv = _CONVERTERS[f.kind]
    return conv(f, raw, where, label, root)


def _str(f: Field, raw: Any, where: str, label: str, root: Path) -> str:
    if not isinstance(raw, str):
        raise _want(where, label, "a string", raw, f'quote the value: {f.key} = "..."')
    return raw


def _int(f: Field, raw: Any, where: str, label: str, root: Path) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise _want(where, label, "an integer", raw, f"write a bare number: {f.key} = 42")
    if f.least is not None and raw < f.least:
        raise die(f"{where}: {label} must be at least {f.least} (got {raw})", f"use {f.least} or a larger number")
    if f.most is not None and raw > f.most:
        raise die(f"{where}: {label} must be at most {f.most} (got {raw})", f"use {f.most} or a smaller number")
    return raw


def _choice(f: Field, raw: Any, where: str, label: str, root: Path) -> str:
    s = _str(f, raw, where, label, root)
    if s not in f.choices:
        raise die(f"{where}: {label} is {s!r}, which is not one of {', '.join(f.choices)}",
                  f"set {f.key} to one of: {', '.join(f.choices)}")
    return s


def _str_list(f: Field, raw: Any, where: str, label: str, root: Path) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise _want(where, label, "a list of strings", raw, f'write {f.key} = ["...", "..."]')
    for i, item in enumerate(raw):
        if not isinstance(item, str):
            raise _want(where, f"{label}[{i}]", "a string", item, "quote every list item")
    return tuple(raw)


def _url(f: Field, raw: Any, where: str, label: str, root: Path) -> str:
    s = _str(f, raw, where, label, root).strip()
    if not s:
        raise die(f"{where}: {label} is empty", f"give a url or remove {f.key}")
    scheme = s.split(":", 1)[0] if "://" in s else ""
    if scheme and scheme not in ("http", "https", "file"):
        raise die(f"{where}: {label} has unsupported scheme {scheme!r} in {s!r}",
                  "use https://, http://, file:// or a plain path")
    if not scheme and not s.startswith("/"):
        s = str(root / s)
    problem = url_name_problem(s)
    if problem:
        raise die(f"{where}: {label} {s!r}: {problem}",
                  "a url must end in the file's own name (like linux-6.1.183.tar.xz): no %2F, %00 or control"
                  " characters in it, and not a directory")
    return s


def url_name_problem(url: str) -> str | None:
    """Why the file name at the end of `url` cannot name a file here, or None.

    The name becomes a file in the cache (downloads are stored as
    <sha256>-<name>) and the key into sha256sums.asc, so once decoded it must
    be one plain file name: an encoded slash would make it a path, a NUL byte
    cannot be in a path at all.
    """
    path = urllib.parse.urlsplit(url).path if "://" in url else url
    decoded = urllib.parse.unquote(path)
    if any(ord(c) < 32 or ord(c) == 127 for c in decoded):
        return "a NUL byte or another control character in the file name or path"
    raw_name = path.rsplit("/", 1)[-1]
    name = urllib.parse.unquote(raw_name)
    if not name or name in (".", ".."):
        return "no file name at its end"
    if "/" in name:
        return "an encoded slash (%2F) in the file name"
    return None


def _url_list(f: Field, raw: Any, where: str, label: str, root: Path) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [raw]
    items = _str_list(f, raw, where, label, root)
    if not items:
        raise die(f"{where}: {label} is empty", "list at least one url or path of the kernel tarball")
    return tuple(_url(f, u, where, f"{label}[{i}]", root) for i, u in enumerate(items))


def _sha256(f: Field, raw: Any, where: str, label: str, root: Path) -> str:
    s = _str(f, raw, where, label, root).strip().lower()
    if not SHA256_RE.match(s):
        raise die(f"{where}: {label} {raw!r} is not a sha256 (64 hex digits)",
                  "copy the full hash from the release's sha256sums.asc, or remove it and run `doit pin`")
    return s


def _fingerprint_list(f: Field, raw: Any, where: str, label: str, root: Path) -> tuple[str, ...]:
    out = []
    for i, item in enumerate(_str_list(f, raw, where, label, root)):
        norm = item.replace(" ", "").upper()
        if norm.startswith("0X"):
            norm = norm[2:]
        if not FPR_RE.match(norm):
            raise die(f"{where}: {label}[{i}] {item!r} is not an OpenPGP fingerprint (40 hex digits)",
                      "use the full primary-key fingerprint shown by `gpg --show-keys --with-fingerprint KEY.asc`;"
                      " short and long key ids are not accepted")
        out.append(norm)
    return tuple(out)


def _resolve(base: Path, s: str) -> Path:
    """A path from a profile: relative ones from the profile's directory, `..` folded (as the user meant it)."""
    return Path(os.path.normpath(base / s))


def _path(f: Field, raw: Any, where: str, label: str, root: Path) -> Path:
    p = _resolve(root, _str(f, raw, where, label, root))
    if not p.exists():
        raise die(f"{where}: {label}: file {p} does not exist",
                  f"fix the path (relative paths are taken from the profile's directory, {root}) or install the"
                  " package providing it")
    return p


def _path_list(f: Field, raw: Any, where: str, label: str, root: Path) -> tuple[Path, ...]:
    return tuple(_path(f, s, where, f"{label}[{i}]", root)
                 for i, s in enumerate(_str_list(f, raw, where, label, root)))


def shipped_keys() -> list[str]:
    """The names of the public keys tinyuki ships (configs/keys/NAME.asc)."""
    return sorted(p.stem for p in (DATA / "configs" / "keys").glob("*.asc"))


def _keyring_list(f: Field, raw: Any, where: str, label: str, root: Path) -> tuple[Path, ...]:
    """Key files by path, or a shipped key by its bare name (no slash, no dot), as fragments are named.

    A project outside tinyuki's clone cannot reach configs/keys/ by a relative path; `gregkh` means the
    copy tinyuki carries, wherever it is installed.
    """
    out = []
    for i, s in enumerate(_str_list(f, raw, where, label, root)):
        if s and "/" not in s and "." not in s:
            p = DATA / "configs" / "keys" / f"{s}.asc"
            if not p.is_file():
                raise die(f"{where}: {label}[{i}]: no shipped key named {s!r} ({p})",
                          f"shipped keys: {', '.join(shipped_keys())}; or give the path of a .asc file")
            out.append(p)
        else:
            out.append(_path(f, s, where, f"{label}[{i}]", root))
    return tuple(out)


def _fragment_list(f: Field, raw: Any, where: str, label: str, root: Path,
                   target: str = arch.DEFAULT) -> tuple[Path, ...]:
    """Fragment names resolved for the target: configs/fragments/<arch>/NAME.config, else configs/fragments/NAME.config.

    A name that only another architecture has (x86_64's pvh on arm64) is an
    error naming it, not a configure that fails minutes later.
    """
    items = _str_list(f, raw, where, label, root)
    if not items:
        raise die(f"{where}: {label} is empty", "list at least the fragment that sets CONFIG_64BIT=y")
    out, foreign = [], []
    fragdir = DATA / "configs" / "fragments"
    for i, s in enumerate(items):
        if "/" in s or s.endswith(".config"):
            p = _resolve(root, s)
            owner = _fragment_arch(p, fragdir)
            if owner not in (None, target):
                foreign.append((s, owner, p))
                continue
        else:
            p = fragment_path(DATA, target, s)
            others = [a for a in arch.ARCHES if a != target and (fragdir / a / f"{s}.config").is_file()]
            if not p.is_file() and others:
                foreign.append((s, others[0], fragdir / others[0] / f"{s}.config"))
                continue
        if not p.is_file():
            raise die(f"{where}: {label}[{i}]: fragment {s!r} not found ({p})",
                      f"shipped fragments for {target}: {', '.join(fragment_names(DATA, target))};"
                      " or give a path to a .config file")
        out.append(p)
    if foreign:
        named = "; ".join(f"fragment {s!r} is for {owner} only ({_display(p, DATA)})" for s, owner, p in foreign)
        dropped = ", ".join(repr(s) for s, _o, _p in foreign)
        raise die(f"{where}: {label}: {named}; and [kernel] arch is {target}",
                  f"drop {dropped} from the fragments; {target} has: {', '.join(fragment_names(DATA, target))}")
    return tuple(out)


def _fragment_arch(path: Path, fragdir: Path) -> str | None:
    """The architecture a fragment file belongs to, when it lies in configs/fragments/<arch>/."""
    try:
        rel = path.resolve().relative_to(fragdir.resolve())
    except ValueError:
        return None
    return rel.parts[0] if len(rel.parts) > 1 and rel.parts[0] in arch.ARCHES else None


def fragment_path(root: Path, target: str, name: str) -> Path:
    """A fragment name for `target`: configs/fragments/<arch>/NAME.config, else the shared NAME.config."""
    fragdir = root / "configs" / "fragments"
    own = fragdir / target / f"{name}.config"
    return own if own.is_file() else fragdir / f"{name}.config"


def fragment_names(root: Path, target: str) -> list[str]:
    """The fragment names a profile for `target` can use: the shared ones and the architecture's own."""
    fragdir = root / "configs" / "fragments"
    return sorted({x.stem for x in (*fragdir.glob("*.config"), *(fragdir / target).glob("*.config"))})


def _series(f: Field, raw: Any, where: str, label: str, root: Path) -> Path:
    s = _str(f, raw, where, label, root)
    if "/" in s:
        p = _resolve(root, s)
        if p.is_dir():
            p = p / "series"
    else:
        p = DATA / "patches" / s / "series"
    if not p.is_file():
        raise die(f"{where}: {label}: series file {p} not found",
                  "create it (one patch file name per line, in order) or remove `patches`")
    return p


def _file_map(f: Field, raw: Any, where: str, label: str, root: Path) -> tuple[tuple[str, Path], ...]:
    if not isinstance(raw, dict):
        raise _want(where, label, "a table", raw, f'write {f.key} = {{ "/etc/x" = "init/x" }}')
    out = []
    for dest, src in sorted(raw.items()):
        if not dest.startswith("/") or ".." in dest.split("/") or dest == "/init":
            raise die(f"{where}: {label}: {dest!r} must be an absolute path inside the image, not /init",
                      'write it like "/etc/config.txt"')
        out.append((dest, _path(f, src, where, f"{label}.{dest!r}", root)))
    return tuple(out)


def _str_map(f: Field, raw: Any, where: str, label: str, root: Path) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, dict):
        raise _want(where, label, "a table", raw, f'write [{f.section}.{f.key}] with KEY = "value" lines')
    out = []
    for k, v in sorted(raw.items()):
        if not isinstance(v, str):
            raise _want(where, f"{label}.{k}", "a string", v, "quote the value")
        if not re.match(r"^[A-Z][A-Z0-9_]*$", k):
            raise die(f"{where}: {label}: {k!r} is not an os-release field name",
                      "os-release fields are upper case, like ID, NAME, VERSION_ID")
        out.append((k, v))
    return tuple(out)


SIZE_RE = re.compile(r"^([1-9][0-9]*)\s*(M|MiB|G|GiB)$")
def esp_loader(target: str) -> str:
    """The path firmware looks for on removable media; the disk stage puts the UKI there, no extra file may."""
    return f"/EFI/BOOT/{arch.get(target).efi_boot_file}"
FAT_FORBIDDEN = set('"*:<>?\\|') | {chr(c) for c in range(32)}


def _size(f: Field, raw: Any, where: str, label: str, root: Path) -> int | None:
    """A partition size in whole MiB (partitions are MiB-aligned), or None for `auto`."""
    s = _str(f, raw, where, label, root).strip() if isinstance(raw, str) else raw
    if s == "auto":
        return None
    m = SIZE_RE.match(s) if isinstance(s, str) else None
    if m is None:
        raise die(f"{where}: {label} is {raw!r}, which is not a size in whole MiB or GiB",
                  f'write {f.key} = "64M", "2G" or "auto"')
    return int(m.group(1)) * (1024 if m.group(2).startswith("G") else 1)


def _esp_file_map(f: Field, raw: Any, where: str, label: str, root: Path,
                  target: str = arch.DEFAULT) -> tuple[tuple[str, Path], ...]:
    """Extra files for the FAT EFI system partition: valid FAT long names, no clash with the loader or each other."""
    if not isinstance(raw, dict):
        raise _want(where, label, "a table", raw, f'write {f.key} = {{ "/EFI/tinyuki/notes.txt" = "notes.txt" }}')
    out = []
    # FAT compares names without case: a file may share its name with no other file and no folder
    loader = esp_loader(target)
    files = {loader.upper()}
    folders = {"/EFI", "/EFI/BOOT"}
    for dest, src in sorted(raw.items()):
        parts = dest.split("/")[1:]
        bad = (not dest.startswith("/") or not all(parts)
               or any(p in (".", "..") or p[-1] in ". " or len(p) > 255 or set(p) & FAT_FORBIDDEN for p in parts))
        if bad:
            raise die(f"{where}: {label}: {dest!r} is not a file path a FAT file system can hold",
                      'write an absolute path like "/EFI/tinyuki/notes.txt": no empty, "." or ".." parts,'
                      ' none of " * : < > ? \\ |, no part ending in a dot or a space')
        ancestors = {"/" + "/".join(parts[:i]).upper() for i in range(1, len(parts))}
        if dest.upper() in files | folders or ancestors & files:
            what = "the UKI's place" if dest.upper() == loader.upper() else "another file or folder"
            raise die(f"{where}: {label}: {dest!r} clashes with {what} (FAT names ignore case)",
                      f"give every extra file a path of its own; the UKI is always {loader} on {target}")
        files.add(dest.upper())
        folders |= ancestors
        p = _path(f, src, where, f"{label}.{dest!r}", root)
        if not p.is_file():
            raise die(f"{where}: {label}.{dest!r}: {p} is not a file",
                      "name one file per entry; a folder goes onto the second partition with [disk] data")
        out.append((dest, p))
    return tuple(out)


def _dir(f: Field, raw: Any, where: str, label: str, root: Path) -> Path:
    p = _resolve(root, _str(f, raw, where, label, root))
    if not p.is_dir():
        raise die(f"{where}: {label}: {p} is not a folder",
                  f"give an existing folder (relative paths are taken from the profile's directory, {root}) or remove"
                  " the key")
    return p


def _key(f: Field, raw: Any, where: str, label: str, root: Path) -> Path | str:
    s = _str(f, raw, where, label, root).strip()
    if s.startswith("pkcs11:"):
        return s  # a token's key: sbsign reaches it through OpenSSL's pkcs11 engine
    p = _resolve(root, s)
    if not p.is_file():
        raise die(f"{where}: {label}: key file {p} does not exist",
                  "run `doit keys` to make test Secure Boot keys (secureboot/db.key, db.crt), or point key at"
                  f" your db signing key (relative paths are taken from the profile's directory, {root})")
    return p


def _forward_list(f: Field, raw: Any, where: str, label: str, root: Path) -> tuple[vmnet.Forward, ...]:
    return vmnet.parse_forwards(_str_list(f, raw, where, label, root), f"{where}: {label}")


def _channel_name(f: Field, raw: Any, where: str, label: str, root: Path) -> str:
    return vmnet.check_channel_name(_str(f, raw, where, label, root), f"{where}: {label}")


def _secret_source(f: Field, raw: Any, where: str, label: str, root: Path) -> str:
    s = _str(f, raw, where, label, root).strip()
    kind, _, rest = s.partition(":")
    if kind == "env" and re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", rest):
        return s
    if kind == "file" and rest:
        return f"file:{_resolve(root, rest)}"
    raise die(f"{where}: {label} must be env:VARIABLE or file:PATH, not {s!r}",
              'name where the passphrase is, e.g. passphrase = "env:TINYUKI_SIGN_PASS"; never write it in the profile')


_CONVERTERS: dict[str, Callable[..., Any]] = {
    "str": _str, "int": _int, "choice": _choice, "str_list": _str_list, "url": _url,
    "url_list": _url_list, "sha256": _sha256, "fingerprint_list": _fingerprint_list,
    "path": _path, "path_list": _path_list, "keyring_list": _keyring_list, "fragment_list": _fragment_list,
    "series": _series, "file_map": _file_map, "str_map": _str_map,
    "size": _size, "esp_file_map": _esp_file_map, "dir": _dir,
    "key": _key, "secret_source": _secret_source, "forward_list": _forward_list, "channel_name": _channel_name,
}


def _check_trust(src: dict[str, Any], where: str) -> None:
    """A source needs an anchor of trust, and a signature needs keys and signers."""
    if src["signature"] and not src["signers"]:
        raise die(f"{where}: [source] signature is set but signers is empty",
                  "list the fingerprints whose signature you accept, e.g. signers = [\"647F...693E\"]")
    if src["signature"] and not src["keyrings"]:
        raise die(f"{where}: [source] signature is set but keyrings is empty",
                  "list the public key files, e.g. keyrings = [\"gregkh\"] (a shipped key) or [\"keys/signer.asc\"]")
    if src["sha256sums"] and not (src["sha256sums_signers"] and src["sha256sums_keyrings"]):
        raise die(f"{where}: [source] sha256sums is set but sha256sums_signers or sha256sums_keyrings is empty",
                  "kernel.org's autosigner is B8868C80BA62A1FFFAF5FDA9632D3A06589DA6B1,"
                  " key configs/keys/autosigner.asc")
    if not (src["sha256"] or src["signature"] or src["package"] or src["sha256sums"]):
        raise die(f"{where}: [source] has no anchor of trust",
                  "set sha256 (a pinned hash), signature + signers + keyrings, sha256sums,"
                  " or package (a Debian package)")


# ---------------------------------------------------------------- the README's reference

def reference_table() -> str:
    """The README's table of every setting, made from FIELDS (a test requires the README to match it)."""
    rows = []
    for f in FIELDS:
        default = "required" if f.default is REQUIRED else ("" if f.default is None else repr(f.default))
        meaning = f.help + (f" ({' / '.join(f.choices)})" if f.choices else "")
        if f.least is not None:
            meaning += f"; at least {f.least}"
        if f.most is not None:
            meaning += f"; at most {f.most}"
        reaches = ", ".join(f.reaches) if f.reaches else "none (how, not what)"
        rows.append(f"| {f.section or '(top)'} | `{f.key}` | {default} | {reaches} | {meaning} |")
    return "\n".join(["| section | key | default | reaches the stages | meaning |", "|---|---|---|---|---|", *rows])
