"""Builders of the one program: how each kind of /init becomes a static binary.

A profile names its program by `[init] language` (c, go, rust) and, for C,
`[init] libc`; `[init] binary` instead hands over a program built elsewhere.
Each builder is a row of data (the tools whose versions reach its bytes, the
kernel options its runtime needs, what it needs installed) plus functions:
which files reach the program, and how to build it. The init stage looks the
builder up and calls it; it holds no per-language branches.

The C builders (nolibc, musl, glibc) compile through tinyuki/toolchain/program.py
in the stage itself, because they share ccache and the compiler's header
discovery; Go, Rust and a prebuilt binary are built (or read) here.

Every builder gives a static ELF for the profile's architecture ([kernel] arch,
tinyuki/arch.py), stripped, with no build id and no path of this machine
inside, so that two builds give the same bytes. The target reaches each
builder in its Job (or, for C, as an argument): the cross gcc for C, GOARCH for
Go, --target and the cross linker for Rust, the ELF machine a prebuilt binary
must have. For x86_64 on an x86-64 host every command and environment is the
one it was before there were other architectures.
"""

from __future__ import annotations

import os
import shutil
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tinyuki.arch import ARCHES, DEFAULT, Arch
from tinyuki.errors import die
from tinyuki.formats.elf import MACHINES, elf_problem, interpreter, machine_of
from tinyuki.toolchain import program
from tinyuki.util.runner import run

# The kernel options each language's runtime needs beyond tinyuki's base (configs/fragments/<name>.config).
# C needs none: its libcs only make the system calls a program asks for.
RUNTIME_FRAGMENTS: dict[str, str | None] = {"c": None, "go": "go-runtime", "rust": "rust-runtime"}
# Build trees and caches that are not sources: never part of the key, never copied.
SKIP_DIRS = {"target", ".git", "__pycache__"}


@dataclass(frozen=True)
class Job:
    """One build of the program: what it is made of and where its by-products may go."""

    sources: tuple[Path, ...]
    output: Path
    marker: str
    flags: tuple[str, ...]
    root: Path
    cache: Path  # a persistent directory for the toolchain's own caches (Go's build cache, Cargo's target dir)
    epoch: int
    log: Path
    binary: Path | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    arch: Arch = ARCHES[DEFAULT]  # the target: the profile's [kernel] arch (Context.arch)


@dataclass(frozen=True)
class Builder:
    name: str
    language: str
    needs: str  # what must be installed, for errors and the README
    tools: tuple[str, ...]
    # The files whose contents reach the program (besides those the settings name).
    inputs: Callable[[Sequence[Path]], list[Path]]
    # Builds job.output; None for the C builders, which the init stage compiles itself.
    build: Callable[[Job], None] | None = None

    @property
    def fragment(self) -> str | None:
        return RUNTIME_FRAGMENTS[self.language]


# ---------------------------------------------------------------- which files reach the program

def c_inputs(sources: Sequence[Path]) -> list[Path]:
    """Headers beside the sources are #included by them (the compiler names the rest: tasks/init.py)."""
    return sorted({h for s in sources for h in s.parent.glob("*.h")})


def find_root(sources: Sequence[Path], marker_file: str) -> Path | None:
    """The directory of go.mod / Cargo.toml at or above the first source: the unit the toolchain builds."""
    if not sources:
        return None
    start = sources[0] if sources[0].is_dir() else sources[0].parent
    return next((d for d in (start, *start.parents) if (d / marker_file).is_file()), None)


def project_root(sources: Sequence[Path], marker_file: str) -> Path:
    """find_root, or the error that says where the project file must be."""
    root = find_root(sources, marker_file)
    if root is None:
        where = sources[0] if sources else "[init] sources"
        raise die(f"no {marker_file} at or above {where}",
                  f"[init] sources must lie in a project with a {marker_file} (it pins the dependencies)")
    return root


def tree_files(top: Path) -> list[Path]:
    """Every file of a project, build trees left out, in a stable order: each can change the program."""
    out = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        out += [Path(dirpath) / n for n in sorted(filenames)]
    return out


def go_inputs(sources: Sequence[Path]) -> list[Path]:
    """The whole module: every .go file, go.mod, go.sum, vendor/ (embedded files too).

    Without a go.mod, nothing beyond the sources: the build then fails and says why.
    """
    root = find_root(sources, "go.mod")
    return tree_files(root) if root is not None else []


def rust_inputs(sources: Sequence[Path]) -> list[Path]:
    """The whole package: Cargo.toml, Cargo.lock, src/, build.rs, vendor/, .cargo/config.toml."""
    root = find_root(sources, "Cargo.toml")
    return tree_files(root) if root is not None else []


def no_inputs(sources: Sequence[Path]) -> list[Path]:
    return []


# ---------------------------------------------------------------- Go

def ldflags_string(marker: str) -> str:
    """`-X main.tinyukiMarker=...` inside -ldflags, quoted as the go command splits it."""
    quote = next((q for q in ("'", '"') if q not in marker), None)
    if quote is None:
        raise die(f"[init] marker {marker!r} holds both quote characters, which go's -ldflags cannot carry",
                  "drop one kind of quote from the marker")
    return f"-s -w -buildid= -X {quote}main.tinyukiMarker={marker}{quote}"


def go_command(job: Job) -> list[str]:
    """go build: static (CGO off), stripped, no build id, no VCS stamp, no paths of this machine."""
    return ["go", "build", "-trimpath", "-buildvcs=false", f"-ldflags={ldflags_string(job.marker)}",
            *job.flags, "-o", str(job.output), "."]


def go_target(arch: Arch) -> dict[str, str]:
    """GOOS and the target's GOARCH (and its level: GOAMD64=v1 runs on any x86-64 QEMU CPU)."""
    return {"GOOS": "linux", **dict(arch.go_env)}


def go_environ(job: Job, module: Path) -> dict[str, str]:
    """The environment of go build: offline, the local toolchain, a fixed target, caches under cache_dir.

    CGO is off, so Go cross-compiles by itself: no C compiler for the target is needed.
    """
    env = {k: v for k, v in job.environ.items() if not k.startswith(("GO", "CGO_"))}
    vendored = (module / "vendor" / "modules.txt").is_file()
    env.update(go_target(job.arch))
    env.update({
        "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOPROXY": "off", "GONOSUMDB": "*", "GOFLAGS":
        "-mod=vendor" if vendored else "-mod=readonly", "GOWORK": "off", "GOTELEMETRY": "off",
        "GOCACHE": str(job.cache / "go-build"), "GOPATH": str(job.cache / "go"), "GOENV": "off",
        "LC_ALL": "C", "SOURCE_DATE_EPOCH": str(job.epoch),
    })
    return env


def build_go(job: Job) -> None:
    module = project_root(job.sources, "go.mod")
    if shutil.which("go") is None:
        raise die("go is not installed", "install Debian's golang-go (scripts/setup.sh does)")
    run(go_command(job), cwd=module, env=go_environ(job, module), what=f"go build in {display(module, job.root)}",
        log=job.log, hint="fix the error shown above; dependencies must be in vendor/ (`go mod vendor`):"
                          " the build is offline")


# ---------------------------------------------------------------- Rust

def cargo_binary_name(manifest: Path) -> str:
    """The name of the one binary a Cargo.toml builds: its single [[bin]], or the package."""
    try:
        data = tomllib.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise die(f"cannot read {manifest}: {e}", "fix Cargo.toml") from e
    bins = data.get("bin") or []
    if len(bins) > 1:
        raise die(f"{manifest} declares {len(bins)} binaries", "/init is one program: keep one [[bin]]")
    name = (bins[0].get("name") if bins else None) or data.get("package", {}).get("name")
    if not isinstance(name, str):
        raise die(f"{manifest} has no [package] name", "add [package] name = \"...\"")
    return name


def rust_linker(arch: Arch) -> str | None:
    """The linker of a cross build (aarch64-linux-gnu-gcc): rustc's default `cc` links only for the host."""
    prefix = arch.compiler_prefix()
    return f"{prefix}gcc" if prefix else None


def rust_flags(job: Job, package: Path, target_dir: Path, cargo_home: Path) -> list[str]:
    """rustc flags: a static C runtime, stripped, no build id, this machine's paths mapped away.

    With --target, cargo gives these to the target's crates only (build
    scripts stay host programs), so the cross linker never links a build script.
    """
    linker = rust_linker(job.arch)
    return ["-C", "target-feature=+crt-static", "-C", "strip=symbols", "-C", "link-arg=-Wl,--build-id=none",
            *(("-C", f"linker={linker}") if linker else ()),
            f"--remap-path-prefix={package}=.", f"--remap-path-prefix={target_dir}=/target",
            f"--remap-path-prefix={cargo_home}=/cargo"]


def cargo_command(job: Job, package: Path, target_dir: Path) -> list[str]:
    return ["cargo", "build", "--release", "--offline", "--locked", "--target", job.arch.rust_target,
            "--manifest-path", str(package / "Cargo.toml"), "--target-dir", str(target_dir), *job.flags]


def debian_arch(arch: Arch) -> str:
    """Debian's name of the architecture (amd64, arm64), as its cross libc package spells it."""
    return arch.libc_package.removeprefix("libc6-dev-").removesuffix("-cross")


def check_rust_target(job: Job, package: Path, env: Mapping[str, str]) -> None:
    """Fail clearly when rustc has no standard library for the target, or the cross linker is missing.

    rustc ships only its host's std (Debian's rustc as well as rustup's
    default), and without it cargo stops with "can't find crate for `std`",
    which does not say what to install.
    """
    rustc = env.get("RUSTC") or "rustc"
    proc = run([rustc, "--print", "sysroot"], cwd=package, env=env, what="asking rustc for its sysroot", quiet=True,
               hint="install Debian's rustc and cargo (scripts/setup.sh does)")
    sysroot = Path(proc.stdout.decode(errors="replace").strip())
    std = sysroot / "lib" / "rustlib" / job.arch.rust_target / "lib"
    if not std.is_dir():
        raise die(f"rustc has no standard library for {job.arch.rust_target} (no {std}),"
                  f" so cargo cannot build /init for {job.arch.name}",
                  f"with rustup: rustup target add {job.arch.rust_target}; with Debian's rustc: apt-get install"
                  f" libstd-rust-dev:{debian_arch(job.arch)} (a foreign-architecture package, which tinyuki's"
                  " scripts/setup.sh does not install); or build the program elsewhere and set [init] binary")
    linker = rust_linker(job.arch)
    if linker is not None:
        program.require_compiler(linker, job.arch, env.get("PATH"))


def rust_environ(job: Job, package: Path, target_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in job.environ.items() if not k.startswith(("RUSTFLAGS", "CARGO_"))}
    cargo_home = Path(job.environ.get("CARGO_HOME") or Path.home() / ".cargo")
    env.update({
        # \x1f-separated: no flag is split at a space in a path
        "CARGO_ENCODED_RUSTFLAGS": "\x1f".join(rust_flags(job, package, target_dir, cargo_home)),
        "CARGO_HOME": str(cargo_home), "CARGO_INCREMENTAL": "0", "CARGO_TERM_COLOR": "never",
        "TINYUKI_MARKER": job.marker, "LC_ALL": "C", "SOURCE_DATE_EPOCH": str(job.epoch),
    })
    return env


def build_rust(job: Job) -> None:
    package = project_root(job.sources, "Cargo.toml")
    if shutil.which("cargo") is None:
        raise die("cargo is not installed", "install Debian's rustc and cargo (scripts/setup.sh does)")
    if not (package / "Cargo.lock").is_file():
        raise die(f"{display(package, job.root)} has no Cargo.lock",
                  "run `cargo generate-lockfile` once and commit it: the build is --locked")
    # One target dir per package under cache_dir: a one-line change recompiles only the crate.
    target_dir = job.cache / "cargo-target" / package.name
    env = rust_environ(job, package, target_dir)
    if job.arch.compiler_prefix():  # the host's own target has its std and linker wherever rustc is installed
        check_rust_target(job, package, env)
    run(cargo_command(job, package, target_dir), cwd=package, env=env,
        what=f"cargo build in {display(package, job.root)}", log=job.log,
        hint="fix the error shown above; crates must be vendored (`cargo vendor`): the build is --offline --locked")
    built = target_dir / job.arch.rust_target / "release" / cargo_binary_name(package / "Cargo.toml")
    shutil.copyfile(built, job.output)


# ---------------------------------------------------------------- a prebuilt binary

def read_prebuilt(job: Job) -> None:
    """Take the binary as it is, once it is known fit to be /init (checked by the stage like every result)."""
    path = job.binary
    if path is None:
        raise die("[init] binary is not set", "set [init] binary = \"path/to/program\"")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise die(f"[init] binary {path}: cannot read it: {e.strerror}", "fix the path in the profile") from e
    problem = elf_problem(data, job.arch.elf_machine)
    if problem:
        raise die(f"[init] binary {display(path, job.root)} is {problem}", prebuilt_hint(data, job.arch))
    job.output.write_bytes(data)


def prebuilt_hint(data: bytes, arch: Arch | None = None) -> str:
    """What to do about an unfit prebuilt binary, by what is wrong with it (and the target it must run on)."""
    target = arch or ARCHES[DEFAULT]
    if data[:2] == b"#!":
        return "/init runs without a shell or interpreter: give a compiled program, or build it from source"
    if interpreter(data) is not None:
        return ("link it statically: gcc -static, CGO_ENABLED=0 go build, or RUSTFLAGS='-C target-feature=+crt-static'"
                " (or let tinyuki build it: [init] language and sources)")
    hint = f"give a static {target.elf_name} Linux executable (the kernel tinyuki builds is {target.elf_name})"
    machine = machine_of(data)
    other = next((a for a in ARCHES.values() if a.elf_machine == machine and a != target), None)
    if other is not None:  # a program for an architecture tinyuki can also build a kernel for
        hint += (f"; or set [kernel] arch = \"{other.name}\" to build a kernel that runs this"
                 f" {MACHINES.get(other.elf_machine, other.elf_name)} program")
    return hint


# ---------------------------------------------------------------- the target architecture

def check_arch(chosen: Builder, arch: Arch) -> None:
    """Refuse a builder that cannot make a program for the target, before anything runs.

    Only the C builders depend on an installed per-target toolchain here:
    musl has no cross compiler in Debian (program.compiler says so). Go
    cross-compiles by itself; Rust's std is checked when cargo is about to run.
    """
    if chosen.language == "c":
        program.compiler(chosen.name, arch)


# ---------------------------------------------------------------- the registry

BUILDERS: dict[str, Builder] = {b.name: b for b in (
    Builder("nolibc", "c", "gcc (and the kernel tree's nolibc)", ("gcc", "binutils"), c_inputs),
    Builder("musl", "c", "musl-gcc (musl-tools)", ("musl-gcc", "binutils"), c_inputs),
    Builder("glibc", "c", "gcc with static glibc (libc6-dev)", ("gcc", "binutils"), c_inputs),
    Builder("go", "go", "go (golang-go)", ("go",), go_inputs, build_go),
    Builder("rust", "rust", "cargo and rustc (Debian's rustc, cargo)", ("cargo", "rustc"), rust_inputs, build_rust),
    Builder("prebuilt", "prebuilt", "nothing: a static executable for [kernel] arch", (), no_inputs, read_prebuilt),
)}
# Every tool any builder may run: the init stage's versions in its key.
TOOLS = tuple(dict.fromkeys(t for b in BUILDERS.values() for t in b.tools))
SUFFIXES = {".go": "go", ".rs": "rust", ".c": "c"}


def select(language: str, libc: str, binary: Path | None) -> Builder:
    """The builder for a profile's [init]: a binary wins; else the language, and for C the libc."""
    if binary is not None:
        return BUILDERS["prebuilt"]
    if language == "c":
        return BUILDERS[libc]
    return BUILDERS[language]


def runtime_fragment(language: str) -> str | None:
    """The config fragment (configs/fragments/<name>.config) a program in `language` needs, if any.

    For a prebuilt binary, [init] language names the runtime it was built with.
    """
    return RUNTIME_FRAGMENTS.get(language)


def check_sources(language: str, sources: Sequence[Path], binary: Path | None) -> None:
    """Sources whose suffix says another language than [init] language are a mistake: say which setting to use."""
    if binary is not None:
        return
    for s in sources:
        said = SUFFIXES.get(s.suffix)
        if said is not None and said != language:
            raise die(f"[init] sources lists {s.name}, a {said} file, but [init] language is {language!r}",
                      f'set [init] language = "{said}"')


def display(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
