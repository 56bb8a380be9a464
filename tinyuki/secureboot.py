"""Secure Boot: signing the UKI with sbsign, test keys and an enrolled OVMF store, what the firmware says.

Signing (`sign_uki`) checks everything it can before it signs (the key
exists, is not encrypted without a passphrase source, matches the
certificate), signs into a temporary file, checks the result with sbverify
against the certificate and with tinyuki's own layout check, and only then
renames it into place: a failure never leaves a half-signed UKI as the output.

Reproducibility: sbsign's Authenticode signature (RSA PKCS#1 v1.5, so the
signature itself is deterministic) carries a PKCS#9 signingTime attribute
that OpenSSL fills in from the clock, inside the signed attributes. Two
signings a second apart differ in those 13 bytes, hence in the RSA signature
over them and in the PE checksum. sbsign has no option for the time, so it
runs under libfaketime with the clock stopped at the profile's
source_date_epoch: the same UKI and key then give the same signed bytes.

Test keys (`make_keys`): a self-signed PK, KEK and db (RSA 2048, SHA-256)
made by openssl, never overwriting a key that exists, private keys mode 0600.
`enroll` writes an OVMF variable store with them enrolled and Secure Boot on
(virt-firmware's virt-fw-vars).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyuki.errors import TinyukiError, die
from tinyuki.formats import pe
from tinyuki.util import fs as fsutil
from tinyuki.util import runner

# Where `doit keys` puts the test keys and the enrolled store, relative to the project root (git-ignored).
KEYS_DIR = "secureboot"
KEY_NAMES = ("PK", "KEK", "db")
# The owner GUID of the enrolled test certificates: fixed, so stores made from the same keys match.
OWNER_GUID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://tinyuki.invalid/secureboot-test-keys"))
VARS_TEMPLATE = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
SECBOOT_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd")
ENROLLED_VARS = "OVMF_VARS_4M.enrolled.fd"
SYSTEMD_MEASURE = Path("/usr/lib/systemd/systemd-measure")
# The sections systemd 252's stub measures into PCR 11, in its order (.pcrsig is never measured);
# systemd-measure 252 takes exactly these. Stubs from 253 on also measure .uname and .sbat.
MEASURED_252 = (".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrpkey")

SBSIGN_HINT = "install sbsigntool (apt-get install sbsigntool; scripts/setup.sh does)"
OPENSSL_HINT = "install openssl (apt-get install openssl; scripts/setup.sh does)"
FAKETIME_HINT = ("install faketime (apt-get install faketime; scripts/setup.sh does): it stops the clock at "
                 "source_date_epoch while sbsign signs, so the signature's signingTime is reproducible")


# ---------------------------------------------------------------- signing

@dataclass(frozen=True)
class SignRequest:
    """What to sign with: a PEM key file or a PKCS#11 URI, its certificate, where a passphrase comes from."""

    key: Path | str
    cert: Path
    passphrase: str | None = None  # env:NAME or file:PATH

    @property
    def pkcs11(self) -> bool:
        return isinstance(self.key, str)


def is_encrypted(pem: bytes) -> bool:
    """Whether a PEM private key needs a passphrase (PKCS#8 encrypted, or legacy Proc-Type encryption)."""
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in pem or b"Proc-Type: 4,ENCRYPTED" in pem


def _passin(source: str) -> str:
    """openssl's -passin argument for env:NAME or file:PATH, checking the source exists first."""
    kind, _, rest = source.partition(":")
    if kind == "env":
        if os.environ.get(rest) is None:
            raise die(f"[sign] passphrase: the environment variable {rest} is not set",
                      f"export {rest}=... before running doit (or use passphrase = \"file:PATH\")")
        return source
    if kind == "file":
        if not Path(rest).is_file():
            raise die(f"[sign] passphrase: file {rest} does not exist", "create it, readable only by you (chmod 600)")
        return source
    raise die(f"[sign] passphrase {source!r} is not env:NAME or file:PATH", "fix [sign] passphrase in the profile")


def _public_key(cmd: Sequence[str | os.PathLike[str]], what: str, hint: str) -> str:
    try:
        return runner.output(cmd, what=what, hint=hint, merge_stderr=False)
    except runner.MissingTool as e:
        raise die(f"{what} needs openssl, which is not installed", OPENSSL_HINT) from e


def check_key_and_cert(key: Path, cert: Path, shown: Path | None = None) -> None:
    """A clear error unless `key` is the private half of `cert`'s public key (both PEM, key not encrypted).

    `shown` is the key's name for messages (the user's file, when `key` is its decrypted copy).
    """
    shown = shown or key
    cert_pub = _public_key(["openssl", "x509", "-in", cert, "-noout", "-pubkey"], f"reading the certificate {cert}",
                           "[sign] cert must be a PEM X.509 certificate (BEGIN CERTIFICATE)")
    key_pub = _public_key(["openssl", "pkey", "-in", key, "-pubout", "-passin", "pass:"],
                          f"reading the private key {shown}",
                          "[sign] key must be a PEM private key (BEGIN PRIVATE KEY / BEGIN RSA PRIVATE KEY)")
    if cert_pub.strip() != key_pub.strip():
        raise die(f"the certificate {cert} does not match the key {shown}",
                  "give the certificate of this very key: the one enrolled in db for it "
                  "(`openssl x509 -in CERT -noout -pubkey` and `openssl pkey -in KEY -pubout` must agree)")


@contextlib.contextmanager
def usable_key(req: SignRequest, workdir: Path) -> Iterator[Path | str]:
    """The key as sbsign can read it without a terminal: the file itself, or a decrypted copy in `workdir`.

    sbsign would prompt on the terminal for an encrypted key (and hang or fail
    under doit), so an encrypted key is decrypted with openssl from the named
    passphrase source into a mode-0600 file in a mode-0700 directory, which is
    removed when the block ends.
    """
    if req.pkcs11:
        yield req.key
        return
    key = Path(req.key)
    if not key.is_file():
        raise die(f"the signing key {key} does not exist",
                  "run `doit keys` to make test keys, or point [sign] key at your db key")
    pem = key.read_bytes()
    if not is_encrypted(pem):
        check_key_and_cert(key, req.cert)
        yield key
        return
    if req.passphrase is None:
        raise die(f"the signing key {key} is encrypted and [sign] has no passphrase source",
                  'add passphrase = "env:VARIABLE" (or "file:PATH") under [sign]; tinyuki never prompts')
    plain = workdir / "key.pem"
    fd = os.open(plain, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        runner.run(["openssl", "pkey", "-in", key, "-passin", _passin(req.passphrase), "-out", plain],
                   what=f"decrypting the signing key {key}", quiet=True,
                   hint="check the passphrase source in [sign] passphrase (a wrong passphrase reads as 'bad decrypt')")
        check_key_and_cert(plain, req.cert, shown=key)
        yield plain
    finally:
        with contextlib.suppress(FileNotFoundError):
            plain.unlink()


def faketime_spec(epoch: int) -> str:
    """libfaketime's absolute, stopped clock for `epoch` (read as UTC: the command runs with TZ=UTC)."""
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def sbsign_command(key: Path | str, cert: Path, unsigned: Path, output: Path, epoch: int) -> list[str]:
    """sbsign under a clock stopped at `epoch`; a PKCS#11 URI goes through OpenSSL's pkcs11 engine."""
    engine = ["--engine", "pkcs11"] if isinstance(key, str) else []
    return ["faketime", "-f", faketime_spec(epoch), "sbsign", *engine, "--key", str(key), "--cert", str(cert),
            "--output", str(output), str(unsigned)]


def verify_signed(image: Path, cert: Path, log: Path | None = None) -> None:
    """sbverify must accept the signature against `cert` without a word about gaps, and the layout be clean."""
    proc = runner.run(["sbverify", "--cert", cert, image], what=f"checking the signature of {image}", quiet=True,
                      log=log, hint=SBSIGN_HINT)
    text = proc.stdout.decode(errors="replace")
    if "gap" in text or "data remaining" in text:
        raise die(f"sbverify warns about {image}: {text.strip()}", "the UKI has bytes outside its sections")
    data = image.read_bytes()
    # Section addresses were checked when the UKI was assembled (the stub's own .sdmagic is exempt there);
    # here what matters is that the signature table follows the sections and nothing is left uncovered.
    problems = pe.layout_problems(data, aligned_from=len(pe.section_table(data)))
    if problems:
        raise die(f"the signed UKI's layout is not clean: {'; '.join(problems)}", "report this as a tinyuki bug")


def sign_uki(unsigned: Path, output: Path, req: SignRequest, *, epoch: int, log: Path | None = None) -> str:
    """Sign `unsigned` into `output` (atomically, only once it verifies); returns the signed file's sha256."""
    if not req.cert.is_file():
        raise die(f"the certificate {req.cert} does not exist", "run `doit keys`, or point [sign] cert at your db cert")
    for tool, hint in (("sbsign", SBSIGN_HINT), ("faketime", FAKETIME_HINT), ("openssl", OPENSSL_HINT)):
        if shutil.which(tool) is None:
            raise die(f"signing the UKI needs {tool}, which is not installed", hint)
    output.parent.mkdir(parents=True, exist_ok=True)
    # A decrypted key goes to memory (/dev/shm) where there is one, never to the build dir.
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix=".sign-", dir=output.parent) as tmp, \
            tempfile.TemporaryDirectory(prefix="tinyuki-key-", dir=shm) as keytmp:
        work = Path(tmp)
        os.chmod(keytmp, 0o700)
        signed = work / output.name
        with usable_key(req, Path(keytmp)) as key:
            proc = runner.run(sbsign_command(key, req.cert, unsigned, signed, epoch),
                              env={**os.environ, "TZ": "UTC"}, what="signing the UKI (sbsign)", log=log,
                              ok_codes=None)
        said = proc.stdout.decode(errors="replace")
        if proc.returncode != 0:
            if "key values mismatch" in said or "private key does not match" in said:
                raise die(f"the certificate {req.cert} does not match the key {req.key}",
                          "give the certificate of this very key: the one enrolled in db for it")
            raise die(f"signing the UKI failed (sbsign exit {proc.returncode}):\n    "
                      + "\n    ".join(said.strip().splitlines()[-10:]),
                      "sbsign's message names the cause (a key it cannot read, a PKCS#11 token that is not there"
                      " or locked: give its PIN with pin-source=file:PATH in the URI)")
        if not signed.is_file():
            raise die("sbsign reported success but wrote nothing", "run the command shown above by hand")
        verify_signed(signed, req.cert, log)
        sha = hashlib.sha256(signed.read_bytes()).hexdigest()
        os.chmod(signed, 0o644)
        os.replace(signed, output)
    return sha


def cert_identity(cert: Path) -> dict[str, str]:
    """The certificate's subject and SHA-256 fingerprint, for the manifest (what a verifier must trust)."""
    text = runner.output(["openssl", "x509", "-in", cert, "-noout", "-subject", "-fingerprint", "-sha256"],
                         what=f"reading the certificate {cert}", hint=OPENSSL_HINT)
    out = {}
    for line in text.splitlines():
        if line.startswith("subject="):
            out["subject"] = line.partition("=")[2].strip()
        elif "Fingerprint=" in line:
            out["sha256"] = line.partition("=")[2].replace(":", "").strip().lower()
    return out


# ---------------------------------------------------------------- test keys and the enrolled store

def key_paths(keys_dir: Path, name: str) -> tuple[Path, Path]:
    return keys_dir / f"{name}.key", keys_dir / f"{name}.crt"


def make_keys(keys_dir: Path, *, log: Path | None = None) -> list[str]:
    """Make a self-signed PK, KEK and db in `keys_dir`, keeping every one that exists; returns the names made.

    The private key is generated into a private temporary directory, made mode
    0600, and linked into place with os.link, which fails rather than replace a
    file that appeared meanwhile: an existing key is never overwritten.
    """
    keys_dir.mkdir(parents=True, exist_ok=True)
    ignore = keys_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# private Secure Boot keys: never commit them\n*\n")
    made = []
    for name in KEY_NAMES:
        key, cert = key_paths(keys_dir, name)
        if key.exists() or cert.exists():
            if not (key.is_file() and cert.is_file()):
                raise die(f"{keys_dir} has only one of {key.name} and {cert.name}",
                          "restore the missing one, or remove both to have `doit keys` make a new pair")
            continue
        with tempfile.TemporaryDirectory(prefix=".keys-", dir=keys_dir) as tmp:
            os.chmod(tmp, 0o700)
            tkey, tcert = Path(tmp) / key.name, Path(tmp) / cert.name
            runner.run(["openssl", "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
                        "-days", "3650", "-subj", f"/CN=tinyuki test {name}/", "-keyout", tkey, "-out", tcert],
                       what=f"making the test {name} key", log=log, hint=OPENSSL_HINT)
            os.chmod(tkey, 0o600)
            os.chmod(tcert, 0o644)
            try:
                os.link(tkey, key)
                os.link(tcert, cert)
            except FileExistsError as e:
                raise die(f"{e.filename} appeared while `doit keys` ran; nothing was overwritten",
                          "run `doit keys` again") from e
        made.append(name)
    return made


def virt_fw_vars() -> str:
    """The virt-fw-vars of this venv (requirements/runtime.txt pins virt-firmware), else the one on PATH."""
    beside = Path(sys.executable).parent / "virt-fw-vars"
    return str(beside) if beside.is_file() else "virt-fw-vars"


def enroll(keys_dir: Path, output: Path, template: Path = VARS_TEMPLATE, *, log: Path | None = None) -> Path:
    """An OVMF variable store from `template` with PK, KEK and db enrolled and Secure Boot on."""
    if not template.is_file():
        raise die(f"OVMF variable store template {template} does not exist", "apt-get install ovmf")
    certs = {name: key_paths(keys_dir, name)[1] for name in KEY_NAMES}
    missing = [str(c) for c in certs.values() if not c.is_file()]
    if missing:
        raise die(f"cannot enroll: missing {', '.join(missing)}", "run `doit keys` first")
    cmd = [virt_fw_vars(), "--input", template, "--output", "{out}",
           "--set-pk", OWNER_GUID, certs["PK"], "--add-kek", OWNER_GUID, certs["KEK"],
           "--add-db", OWNER_GUID, certs["db"], "--secure-boot"]
    with fsutil.atomic_path(output) as tmp:
        runner.run([str(tmp) if c == "{out}" else c for c in cmd], what="enrolling the keys in an OVMF store",
                   log=log, hint="install virt-firmware (scripts/setup.sh puts it in .venv from requirements)")
    return output


# ---------------------------------------------------------------- the firmware and the kernel on the console

REFUSAL_RE = re.compile(r"Access Denied|Security Violation|SECURITY_VIOLATION", re.I)
SECURE_BOOT_ON_RE = re.compile(r"[Ss]ecure boot enabled")
SECURE_BOOT_OFF_RE = re.compile(r"[Ss]ecure boot (disabled|could not be determined)")


def firmware_refusal(lines: Sequence[str]) -> str | None:
    """The console line in which the firmware refuses to start the image (OVMF's "Access Denied"), or None."""
    return next((ln.strip() for ln in lines if REFUSAL_RE.search(ln)), None)


def kernel_secure_boot(lines: Sequence[str]) -> bool | None:
    """What the kernel said about Secure Boot: True (enabled), False (disabled or unknown), None (nothing)."""
    for ln in lines:
        if SECURE_BOOT_ON_RE.search(ln):
            return True
        if SECURE_BOOT_OFF_RE.search(ln):
            return False
    return None


# ---------------------------------------------------------------- measured boot

def measured_sections(image: bytes) -> list[tuple[str, bytes]]:
    """The sections systemd 252's stub measures into PCR 11, in its order, as it reads them (VirtualSize long)."""
    loaded = pe.loaded_sections(image)
    return [(name, loaded[name]) for name in MEASURED_252 if name in loaded]


def pcr11_replay(sections: Sequence[tuple[str, bytes]], bank: str = "sha256") -> str:
    """PCR 11 from zero after the stub's measurements: each section's name (with its NUL), then its data."""
    size = hashlib.new(bank).digest_size
    pcr = bytes(size)
    for name, data in sections:
        for blob in ((name + "\0").encode(), data):
            pcr = hashlib.new(bank, pcr + hashlib.new(bank, blob).digest()).digest()
    return pcr.hex()


def expected_pcr11(image: bytes, *, tool: Path = SYSTEMD_MEASURE) -> dict[str, Any]:
    """`systemd-measure calculate` for the UKI's measured sections: PCR 11 right after the stub, per bank.

    The sections are given as the stub sees them in memory, so a `.linux`
    whose VirtualSize (the kernel's SizeOfImage) exceeds the file's bytes is
    measured zero-filled, as systemd 252 measures it.
    """
    sections = measured_sections(image)
    if not tool.is_file():
        raise die(f"{tool} does not exist", "install systemd (Debian ships systemd-measure in it)")
    with tempfile.TemporaryDirectory(prefix="tinyuki-measure-") as tmp:
        args = []
        for name, data in sections:
            path = Path(tmp) / name.lstrip(".")
            path.write_bytes(data)
            args.append(f"--{name.lstrip('.')}={path}")
        text = runner.output([tool, "calculate", *args, "--bank=sha256", "--bank=sha1", "--phase=", "--json=short"],
                             what="calculating PCR 11 (systemd-measure)", hint="install systemd")
    try:
        data = json.loads(text)
        banks = {bank: entries[0]["hash"] for bank, entries in data.items()}
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise TinyukiError(f"systemd-measure printed something unexpected: {text[:200]!r}") from e
    return {
        "pcr": 11,
        "banks": banks,
        "sections": [name for name, _ in sections],
        "stub": "systemd 252 (measures .linux .osrel .cmdline .initrd .splash .dtb .pcrpkey as loaded; "
                "systemd 253+ also measure .uname and .sbat, so their PCR 11 differs)",
        "tool": runner.tool_version([tool, "--version"]),
    }


# ---------------------------------------------------------------- booting with Secure Boot enforcing

# OVMF's Secure Boot build keeps its variables in SMM: q35 with SMM on, and the flash marked secure.
SECURE_MACHINE = "q35,smm=on"
SECURE_QEMU_ARGS = ("-global", "driver=cfi.pflash01,property=secure,value=on")
REFUSED_HINT = ("the firmware checks the UKI's Authenticode signature against db: boot the signed UKI "
                "(tinyuki.signed.efi, from [sign] with the db key of `doit keys`), unmodified")


def firmware_files(keys_dir: Path, code: Path = SECBOOT_CODE) -> tuple[Path, Path]:
    """The Secure Boot OVMF code and the enrolled variable store from `doit keys`, or a clear error."""
    if not code.is_file():
        raise die(f"OVMF's Secure Boot build {code} does not exist", "apt-get install ovmf (scripts/setup.sh does)")
    store = keys_dir / ENROLLED_VARS
    if not store.is_file():
        raise die(f"no enrolled OVMF variable store at {store}",
                  "run `doit keys` (with the same keys_dir=) to make test keys and enroll them")
    return code, store


@dataclass(frozen=True)
class SecureBootVerdict:
    ok: bool
    reason: str
    hint: str = ""


def secure_boot_verdict(lines: Sequence[str], program_ran: bool) -> SecureBootVerdict:
    """A Secure Boot boot succeeded only if the firmware started the image and the kernel says Secure Boot is on."""
    refusal = firmware_refusal(lines)
    if refusal is not None:
        return SecureBootVerdict(False, f"the firmware refused to start the image: {refusal}", REFUSED_HINT)
    said = kernel_secure_boot(lines)
    if said is None:
        return SecureBootVerdict(False, "the kernel did not report Secure Boot (no 'secureboot:' line)",
                                 "keep the kernel's early messages on the console (no quiet/loglevel in cmdline)")
    if not said:
        return SecureBootVerdict(False, "the kernel reports Secure Boot disabled",
                                 "boot with the enrolled store of `doit keys` and OVMF's secboot build")
    if not program_ran:
        return SecureBootVerdict(False, "Secure Boot was on but the program did not run to its end")
    return SecureBootVerdict(True, "Secure Boot enabled: the firmware verified the UKI, the kernel reports it on")


# `doit boot secureboot=1`'s exit code when the firmware refused the image or Secure Boot was not on
# (beside tinyuki/vm/qemu.py's codes for a panic, a hang, a missing marker and QEMU failing).
EXIT_SECURE_BOOT = 250
