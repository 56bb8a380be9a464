"""The e2e layer's shared real build: one kernel built from a local signed mirror, for every e2e module.

A real build costs minutes, so the build (and the mirror it comes from) are
session-scoped: tests/e2e/test_real_build.py checks and boots it, and
tests/e2e/test_ccache_e2e.py rebuilds it with one option changed.
"""

from __future__ import annotations

import functools
import http.server
import lzma
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.doit import dodo_ok, output, run_dodo, variables
from tinyuki.config.profile import moved_profile_text
from tinyuki.util.fs import sha256_file

ROOT = Path(__file__).resolve().parents[2]
TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A kernel.org look-alike on 127.0.0.1 with a signature by a freshly generated key."""
    import gnupg

    top = tmp_path_factory.mktemp("mirror")
    pub = top / "pub"
    pub.mkdir()
    os.symlink(TARBALL, pub / TARBALL.name)
    home = top / "gnupg"
    home.mkdir(mode=0o700)
    gpg = gnupg.GPG(gnupghome=str(home))
    key = gpg.gen_key(gpg.gen_key_input(
        key_type="EDDSA", key_curve="ed25519", key_usage="sign", name_real="tinyuki e2e release signer",
        name_email="e2e@tinyuki.invalid", no_protection=True, expire_date=0,
    ))
    assert key.fingerprint, key.stderr
    (top / "signer.asc").write_text(gpg.export_keys(key.fingerprint))
    # kernel.org style: the signature covers the uncompressed tar
    with lzma.open(TARBALL, "rb") as tar:
        sig = gpg.sign_file(tar, keyid=key.fingerprint, detach=True, binary=False)
    assert sig.data, sig.stderr
    (pub / "linux-source-6.1.tar.sign").write_bytes(sig.data)

    handler = functools.partial(_Quiet, directory=str(pub))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield {"base": base, "fingerprint": key.fingerprint, "keyring": str(top / "signer.asc")}
    finally:
        server.shutdown()


@pytest.fixture(scope="session")
def build(mirror: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run the whole pipeline once, from the local mirror to the UKI."""
    top = tmp_path_factory.mktemp("e2e")
    profile = top / "mirror.toml"
    debian = (ROOT / "configs" / "profiles" / "debian.toml").read_text()
    source = (
        "[source]\n"
        f'urls = ["{mirror["base"]}/linux-source-6.1.tar.xz"]\n'
        f'sha256 = "{sha256_file(TARBALL)}"\n'
        f'signature = "{mirror["base"]}/linux-source-6.1.tar.sign"\n'
        'signature_over = "uncompressed"\n'
        f'signers = ["{mirror["fingerprint"]}"]\n'
        f'keyrings = ["{mirror["keyring"]}"]\n'
    )
    body = debian.split("[kernel]", 1)[1].replace('"../../', f'"{ROOT}/')  # its paths, from its new place
    profile.write_text(source + "\n[kernel]" + body)
    paths = {"profile": profile, "build": top / "build", "cache": top / "cache", "top": top}
    out = doit(paths, [])
    assert "tinyuki.efi" in out
    return paths


@pytest.fixture(scope="session")
def arm64_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cache dir of the arm64 builds (trees, the compile cache, artifacts): the arm64 profile's `doit repro`
    (tests/e2e/test_arm64_e2e.py) warms the compile cache the arm64 server's kernel then mostly hits."""
    return Path(os.environ.get("TINYUKI_E2E_CACHE") or tmp_path_factory.mktemp("arm64-cache"))


def doit(paths: dict[str, Path], args: list[str], check: bool = True, timeout: int = 1800) -> str:
    """dodo.py on the build `paths` names (profile, build dir, cache dir); with `check`, it must succeed."""
    words = (*args, *variables(profile=paths["profile"], build_dir=paths["build"], cache_dir=paths["cache"]))
    if check:
        return dodo_ok(*words, tail=6000, timeout=timeout)
    return output(run_dodo(*words, timeout=timeout))


# ---------------------------------------------------------------- the examples: one kernel, every builder

# Every example's program (examples/hello-*.toml, and the servers of tests/e2e/test_net_e2e.py), booted on one
# kernel: the examples' kernel section with both runtime fragments and the ways out (net, channel, vsock)
# listed, so each example configures the same .config (a fragment already listed is not added again) and
# only the program, the initramfs and the relink differ from one example to the next.
EXAMPLES = ("nolibc", "musl", "glibc", "go", "rust", "prebuilt")
RUNTIMES = ', "go-runtime", "rust-runtime", "net", "channel", "vsock"]'


def example_profile(name: str, top: Path, cmdline: str = "console=ttyS0 panic=-1") -> Path:
    """examples/hello-<name>.toml for the shared examples kernel, its relative paths made absolute."""
    text = (ROOT / "examples" / f"hello-{name}.toml").read_text()
    fragments = next(line for line in text.splitlines() if line.startswith("fragments = ["))
    text = text.replace(fragments, fragments[:-1] + RUNTIMES)
    for folder in ("hello-c", "hello-go", "hello-rust", "hello-prebuilt"):
        text = text.replace(f'"{folder}/', f'"{ROOT}/examples/{folder}/')
    text = text.replace('cmdline = "console=ttyS0 panic=-1"', f'cmdline = "{cmdline}"')
    path = top / (f"hello-{name}.toml" if cmdline == "console=ttyS0 panic=-1" else f"hello-{name}-args.toml")
    path.write_text(text)
    return path


def on_examples_kernel(example: str, top: Path) -> Path:
    """examples/<example>.toml (a server's, written for the default kernel plus its fragment) moved onto the
    shared examples kernel: its program and [boot] as they are, the [kernel] section the hello examples'."""
    text = moved_profile_text((ROOT / "examples" / f"{example}.toml").read_text(), ROOT / "examples")
    hello = (ROOT / "examples" / "hello-nolibc.toml").read_text()
    fragments = next(line for line in hello.splitlines() if line.startswith("fragments = ["))
    lines = []
    for line in text.splitlines():
        key = line.split(" = ", 1)[0]
        if key == "fragments":
            line = fragments[:-1] + RUNTIMES
        elif key == "patches":
            line = 'patches = "default"'
        elif key == "cmdline":
            line = 'cmdline = "console=ttyS0 panic=-1"'
        lines.append(line)
    path = top / f"{example}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def examples_build(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The examples' shared kernel, built once (through the first example), and the prebuilt example's binary.

    TINYUKI_E2E_CACHE names a cache dir to share (trees, the compile cache, artifacts), as CI keeps one.
    """
    import subprocess

    top = tmp_path_factory.mktemp("examples")
    subprocess.run([str(ROOT / "examples" / "hello-prebuilt" / "build.sh")], check=True)
    cache = Path(os.environ.get("TINYUKI_E2E_CACHE") or top / "cache")
    paths = {"profile": example_profile(EXAMPLES[0], top), "build": top / "build", "cache": cache, "top": top}
    doit(paths, ["embed"], timeout=3600)
    return paths
