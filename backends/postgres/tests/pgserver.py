"""A real PostgreSQL server for the tests: initdb into a temporary directory, trust authentication on 127.0.0.1 only,
started on a free loopback port with ``pg_ctl``, stopped and removed at the end.

PostgreSQL refuses to run as root: when the tests run as root (CI does), the server runs as an unprivileged user
(``MEMCORE_PG_USER``, default ``memcore-pg``), created with ``useradd`` if it does not exist, through ``runuser``.
The binaries are found in ``MEMCORE_PG_BIN``, else the newest ``/usr/lib/postgresql/*/bin`` (Debian's layout), else
on PATH."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

DEFAULT_USER = "memcore-pg"
SUPERUSER = "postgres"


def find_bin() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    given = os.environ.get("MEMCORE_PG_BIN")
    if given:
        return Path(given) if (Path(given) / "pg_ctl").exists() else None

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path.parent.name))

    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: version(p.parent))
    if debian:
        return debian[-1].parent
    found = shutil.which("pg_ctl")
    return Path(found).resolve().parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tool(name: str) -> str:
    """A system program (``runuser``, ``useradd``), found even where PATH lacks the sbin directories."""
    return shutil.which(name, path=os.pathsep.join((os.environ.get("PATH", ""), "/usr/sbin", "/sbin"))) or name


def _run_as() -> tuple[list[str], int | None, int | None]:
    """The command prefix that runs a program as the server's user, and that user's uid and gid (None: ourselves)."""
    if os.geteuid() != 0:
        return [], None, None
    name = os.environ.get("MEMCORE_PG_USER", DEFAULT_USER)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            [_tool("useradd"), "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
            timeout=30,
        )
        entry = pwd.getpwnam(name)
    return [_tool("runuser"), "-u", name, "--"], entry.pw_uid, entry.pw_gid


def _reachable(directory: str) -> str:
    """``directory`` if every directory above it lets others through (the server's user must reach its data), else
    ``/tmp``."""
    path = Path(directory).resolve()
    if all(p.stat().st_mode & 0o001 for p in (path, *path.parents)):
        return str(path)
    return "/tmp"


@dataclass
class Server:
    """One running cluster. ``dsn(dbname)`` connects to it as the superuser."""

    bindir: Path
    root: Path
    port: int
    prefix: list[str]
    startup_s: float = 0.0

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={dbname}"

    def _pg_ctl(self, *args: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
        command = [*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(self.data), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def start(self, wait: float = 60.0) -> None:
        options = " ".join(
            (
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                "-c unix_socket_directories=''",
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",  # a throwaway test cluster
                "-c max_connections=200",
            )
        )
        done = self._pg_ctl("-l", str(self.log), "-o", options, "-w", "-t", str(int(wait)), "start", timeout=wait + 30)
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed ({done.returncode}): {done.stderr.strip()}\n{self.log_tail()}")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return self._pg_ctl("status").returncode == 0

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "--- server.log\n" + "\n".join(text.splitlines()[-lines:])

    def remove(self) -> None:
        if self.running():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def start(attempts: int = 3, wait: float = 60.0) -> Server:
    """initdb and start a cluster; raises RuntimeError with the reason (and the server's log) if it cannot."""
    bindir = find_bin()
    if bindir is None:
        raise RuntimeError(
            "PostgreSQL's server binaries were not found (MEMCORE_PG_BIN, /usr/lib/postgresql/*/bin, PATH); "
            "on Debian: apt-get install -y postgresql"
        )
    prefix, uid, gid = _run_as()
    root = Path(tempfile.mkdtemp(prefix="memcore-pg-", dir=_reachable(tempfile.gettempdir()) if uid else None))
    if uid is not None and gid is not None:
        os.chown(root, uid, gid)
    started = time.monotonic()
    server = Server(bindir, root, 0, prefix)
    try:
        init = subprocess.run(
            [
                *prefix,
                str(bindir / "initdb"),
                "-D",
                str(server.data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed ({init.returncode}): {init.stderr.strip() or init.stdout.strip()}")
        # Trust, on 127.0.0.1 only: no Unix socket (unix_socket_directories is empty), no other address.
        (server.data / "pg_hba.conf").write_text("host all all 127.0.0.1/32 trust\n")
        error = ""
        for _ in range(attempts):  # a free port can be taken between the probe and the server's bind
            server.port = free_port()
            try:
                server.start(wait)
            except RuntimeError as exc:
                error = str(exc)
                continue
            server.startup_s = round(time.monotonic() - started, 2)
            return server
        raise RuntimeError(error)
    except BaseException:
        server.remove()
        raise


def create_database(server: Server) -> str:
    """A new, empty database on ``server``; its name."""
    import psycopg

    name = f"memcore_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.dsn(), autocommit=True, connect_timeout=10) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    return name
