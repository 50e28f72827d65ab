"""Live-server helpers for the serving tests (test_serving, test_web, test_soak) and bench/serving.py.

Two ways to run the real service on an ephemeral 127.0.0.1 port:

* :class:`ThreadServer` - ``uvicorn.Server`` in a background thread of the test process (port 0,
  the bound port read back from the socket);
* :class:`ProcessServer` - ``python -m facefeat serve`` in a subprocess (a free port picked
  first), so that a test can stop it for real and start a new process on the same storage.

Both wait for ``GET /health`` to say ready before returning, with a deadline.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 90.0


def b64_file(path: str | os.PathLike) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def b64_bytes(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def lfw_images(lfw_dir: Path, person: str, n: int | None = None) -> list[Path]:
    files = sorted((Path(lfw_dir) / person).glob("*.jpg"))
    return files if n is None else files[:n]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base_url: str, timeout: float = START_TIMEOUT_S, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server process exited with {proc.returncode} before it was ready")
        try:
            r = httpx.get(base_url + "/health", timeout=5.0)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise TimeoutError(f"{base_url} not ready after {timeout:.0f} s (last: {last})")


class ThreadServer:
    """The app served by uvicorn in a daemon thread of this process."""

    def __init__(self, app, log_level: str = "warning"):
        import uvicorn

        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level=log_level,
                                                    lifespan="on", access_log=False))
        self.thread: threading.Thread | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = START_TIMEOUT_S) -> "ThreadServer":
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-test", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("uvicorn stopped before it started (see the log above)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"uvicorn did not start within {timeout:.0f} s")
            time.sleep(0.05)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        wait_ready(self.url, timeout=max(1.0, deadline - time.monotonic()))
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout)


class ProcessServer:
    """``python -m facefeat serve --storage DIR ...`` in a subprocess on a free port."""

    def __init__(self, storage: str | os.PathLike, *args: str, log_path: str | os.PathLike | None = None,
                 env: dict | None = None):
        self.storage = str(storage)
        self.args = list(args)
        self.log_path = Path(log_path) if log_path else None
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = START_TIMEOUT_S) -> "ProcessServer":
        self.port = free_port()
        cmd = [sys.executable, "-m", "facefeat", "serve", "--storage", self.storage, "--host", "127.0.0.1",
               "--port", str(self.port), "--log-level", "warning", *self.args]
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        env.update(self.env or {})
        out = subprocess.DEVNULL
        if self.log_path is not None:
            self._log = open(self.log_path, "ab")
            out = self._log
        self.proc = subprocess.Popen(cmd, cwd=str(REPO), env=env, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            wait_ready(self.url, timeout=timeout, proc=self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # uvicorn shuts down gracefully (and its workers)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""
