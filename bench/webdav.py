"""A real nginx serving a remote artifact cache (WebDAV PUT) on 127.0.0.1, for the benchmark and the tests.

It is the setup the README recommends for a team, scaled down: `dav_methods
PUT` stores what tinyuki pushes, plain static serving answers its GETs and
HEADs, and with a password file writes need HTTP basic auth while reads stay
open. nginx runs in the foreground (`daemon off`, `master_process off`, so as
root it never switches to an unprivileged user who could not read a test's
temporary dir) with everything (config, logs, temp files, the served root)
under one prefix dir.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from bench.common import serving
from tinyuki.errors import die

HINT = "install nginx (scripts/setup.sh; Debian package nginx, whose core has dav_methods)"


def config(prefix: Path, root: Path, port: int, users: dict[str, str] | None = None) -> str:
    """nginx.conf for a WebDAV store of `root` on 127.0.0.1:port; with `users`, writes need one of them."""
    auth = ""
    if users:
        htpasswd = prefix / "htpasswd"
        htpasswd.write_text("".join(f"{u}:{{PLAIN}}{p}\n" for u, p in users.items()), encoding="utf-8")
        auth = f'limit_except GET HEAD {{ auth_basic "tinyuki cache"; auth_basic_user_file {htpasswd}; }}'
    temp = "\n".join(f"    {name}_temp_path {prefix / (name + '_temp')};"
                     for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""daemon off;
master_process off;
worker_processes 1;
pid {prefix / 'nginx.pid'};
error_log {prefix / 'error.log'} info;
events {{ worker_connections 64; }}
http {{
    access_log {prefix / 'access.log'};
{temp}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        client_max_body_size 0;
        location / {{
            dav_methods PUT DELETE;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
            {auth}
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(prefix: Path) -> list[str]:
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if exe is None:
        raise die("nginx is not installed", HINT)
    return [exe, "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")]


def prepare(prefix: Path, root: Path, users: dict[str, str] | None = None) -> tuple[list[str], int]:
    """Write the config under `prefix` for serving `root`; the command to start nginx and its port."""
    prefix.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (prefix / "nginx.conf").write_text(config(prefix, root, port, users), encoding="utf-8")
    return command(prefix), port


def start(prefix: Path, root: Path, users: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start nginx for the benchmark (runs beside the builds; the caller stops it); its process and base URL."""
    cmd, port = prepare(prefix, root, users)
    log = open(prefix / "stdout.log", "wb")  # noqa: SIM115 - held by the process until it ends
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    if serving(proc, port):
        return proc, f"http://127.0.0.1:{port}"
    raise die(f"nginx did not start on 127.0.0.1:{port}: {(prefix / 'error.log').read_text(errors='replace')[-800:]}",
              HINT)
