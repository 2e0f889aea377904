"""Start the deterministic fake OpenAI endpoint and a real ``openviking-server`` on free loopback ports."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT_KEY = "test-root-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_server() -> str | None:
    """``openviking-server`` beside this interpreter (a venv or tox env), else on PATH."""
    beside = Path(sys.executable).parent / "openviking-server"
    return str(beside) if beside.exists() else shutil.which("openviking-server")


@dataclass
class Stack:
    url: str
    fake_url: str
    work: Path
    startup_s: float
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    api_key: str = ROOT_KEY

    def stop(self, grace: float = 15.0) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.processes):
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for name in ("ov.out", "ov.log", "fake.out"):
            path = self.work / name
            if path.exists():
                out.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)


def start(work: Path, server: str, deadline: float = 60.0, auth_mode: str = "trusted") -> Stack:
    """Start both processes; return once ``GET /ready`` answers 200. Raises RuntimeError (with the server's log
    tail) if the server exits or is not ready within ``deadline`` seconds. ``auth_mode`` "trusted": the root key plus
    asserted tenant headers; "api_key": per-user keys (``POST /api/v1/admin/accounts`` returns one)."""
    work.mkdir(parents=True, exist_ok=True)
    fake_port, ov_port = free_port(), free_port()
    fake = subprocess.Popen(
        [sys.executable, str(HERE / "fake_openai.py"), str(fake_port)],
        stdin=subprocess.DEVNULL,
        stdout=(work / "fake.out").open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{fake_port}/v1"
    provider = {"provider": "openai", "api_key": "x", "api_base": base}
    conf = {
        "server": {"host": "127.0.0.1", "port": ov_port, "root_api_key": ROOT_KEY, "auth_mode": auth_mode},
        "storage": {"workspace": str(work / "data")},
        "log": {"level": "WARNING", "output": str(work / "ov.log")},
        "embedding": {"dense": {**provider, "model": "fake-embed", "dimension": 256}},
        "vlm": {**provider, "model": "fake-model", "temperature": 0.0, "max_retries": 0},
    }
    config = work / "ov.conf"
    config.write_text(json.dumps(conf, indent=1))
    (work / "home").mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(work / "home"), "OPENVIKING_CONFIG_FILE": str(config)}
    started = time.monotonic()
    ov = subprocess.Popen(
        [server, "--config", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=(work / "ov.out").open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    stack = Stack(f"http://127.0.0.1:{ov_port}", base, work, 0.0, [fake, ov])
    while time.monotonic() - started < deadline:
        if ov.poll() is not None:
            stack.stop()
            raise RuntimeError(f"openviking-server exited with {ov.returncode}\n{stack.log_tail()}")
        try:
            with urllib.request.urlopen(stack.url + "/ready", timeout=1) as answer:
                if answer.status == 200:
                    stack.startup_s = round(time.monotonic() - started, 2)
                    return stack
        except OSError:
            pass
        time.sleep(0.1)
    stack.stop()
    raise RuntimeError(f"openviking-server not ready after {deadline:g} s\n{stack.log_tail()}")
