"""Real components for the event tests and bench/events.py: a mosquitto broker on a free loopback
port (started and stopped for real, persistence in a tmp folder, optional password file), an MQTT
subscriber that records what arrives, an HTTP receiver on 127.0.0.1 that answers from a plan
(status codes, or "hang" until released), and a video of people appearing in turn."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, timeout: float = 30.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


class Mosquitto:
    """``mosquitto -c <tmp>/mosquitto.conf`` on ``127.0.0.1:<port>``; ``users``: a password file."""

    def __init__(self, workdir: Path, users: dict[str, str] | None = None, port: int | None = None,
                 tls: tuple[Path, Path] | None = None):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        lines = [f"listener {self.port} 127.0.0.1", "persistence true", f"persistence_location {self.dir}/",
                 "autosave_interval 1", "user root" if os.geteuid() == 0 else "", "log_dest stderr"]
        if users:
            pw = self.dir / "passwd"
            pw.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
            os.chmod(pw, 0o600)
            subprocess.run([MOSQUITTO_PASSWD, "-U", str(pw)], check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        if tls:
            lines += [f"certfile {tls[0]}", f"keyfile {tls[1]}"]
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(x for x in lines if x) + "\n")

    def url(self, user: str | None = None, password: str | None = None, prefix: str = "") -> str:
        cred = f"{user}:{password}@" if user else ""
        return f"mqtt://{cred}127.0.0.1:{self.port}" + (f"/{prefix}" if prefix else "")

    def start(self, timeout: float = 15.0) -> "Mosquitto":
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "mosquitto.log", "ab"))

        def up() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                return False

        if not wait_until(up, timeout):
            self.stop()
            raise RuntimeError(f"mosquitto did not listen on {self.port}: {(self.dir / 'mosquitto.log').read_text()}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (it is its own CA) and its key, made with openssl."""
    cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,digitalSignature,keyEncipherment",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


class Subscriber:
    """A paho client recording ``(topic, payload, retain)``; a persistent session (QoS 1) when
    ``client_id`` is given, so that it misses nothing across a broker restart."""

    def __init__(self, port: int, topics=("#",), client_id: str = "", user: str | None = None,
                 password: str | None = None):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=not client_id)
        if user:
            self.client.username_pw_set(user, password)
        self.client.reconnect_delay_set(0.2, 1)
        self.topics = list(topics)
        self.ready = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: (c.subscribe([(t, 1) for t in self.topics]), self.ready.set())
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self.ready.wait(10), "subscriber did not connect"
        time.sleep(0.2)  # SUBACK

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def bodies(self, prefix: str = "facefeat/events/") -> list[dict]:
        with self.lock:
            return [json.loads(p) for t, p, _ in self.messages if t.startswith(prefix)]

    def topic(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _ in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Receiver:
    """An HTTP server on 127.0.0.1 answering each POST from ``plan`` (an int status, or "hang":
    hold the request until :meth:`release`), then 200; records ``(headers, body, status)``. With
    ``auth``, requests without that Basic user and password get 401."""

    def __init__(self, plan=(), auth: tuple[str, str] | None = None):
        import base64

        self.plan = list(plan)
        want = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode() if auth else None
        self.received: list[tuple[dict, bytes, int]] = []
        self.lock = threading.Lock()
        self.released = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self):  # noqa: N802
                self.send_response(401 if want and self.headers.get("Authorization") != want else 200)
                self.end_headers()

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer.lock:
                    step = outer.plan.pop(0) if outer.plan else 200
                if want and self.headers.get("Authorization") != want:
                    step = 401
                if step == "hang":
                    outer.released.wait(60)
                    status = 200
                else:
                    status = int(step)
                with outer.lock:
                    outer.received.append(({k.lower(): v for k, v in self.headers.items()}, body, status))
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the sender gave up (timeout) and closed

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def ok_ids(self) -> list[str]:
        with self.lock:
            return [h.get("x-facefeat-id") for h, _, s in self.received if s == 200]

    def release(self) -> None:
        self.released.set()

    def stop(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


FPS, SIZE = 10.0, (480, 360)


def write_video(path: Path, lfw_dir: Path, people, frames_each: int = 6, gap: int = 10) -> Path:
    """Each person in turn: ``frames_each`` frames moving across, then ``gap`` empty frames."""
    import cv2

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, SIZE)
    assert w.isOpened()
    for name in people:
        img = cv2.imread(str(Path(lfw_dir) / name / f"{name}_0002.jpg"))
        for f in range(frames_each):
            frame = np.full((SIZE[1], SIZE[0], 3), 90, np.uint8)
            x, y = 20 + (12 * f) % 200, 30 + (6 * f) % 80  # moving across, wrapping within the frame
            frame[y:y + 250, x:x + 250] = img
            w.write(frame)
        for _ in range(gap):
            w.write(np.full((SIZE[1], SIZE[0], 3), 90, np.uint8))
    w.release()
    return path
