"""Small shared helpers: atomic (recoverable) writes, folder locks, cache locations."""

from __future__ import annotations

import errno
import importlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def l2_normalize(x: Any, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length (float32); all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def json_safe(x: Any) -> Any:
    """JSON/YAML-safe copy: numpy scalars -> Python, arrays -> lists, NaN/inf -> None, recursively
    (metrics and thresholds can be NaN where a rate cannot be measured)."""
    import math
    from collections.abc import Mapping

    if isinstance(x, Mapping):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return [json_safe(v) for v in x.tolist()]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def cache_dir() -> Path:
    """facefeat's cache root: ``$FACEFEAT_HOME`` or ``~/.cache/facefeat``."""
    root = os.environ.get("FACEFEAT_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "facefeat"
    )
    return Path(root)


def current_umask() -> int:
    """The process's umask, read without changing it (``/proc``; else a locked umask round trip)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:  # pragma: no cover - non-Linux
        m = os.umask(0o022)
        os.umask(m)
    return m


_UMASK_LOCK = threading.Lock()


def _follow_umask(path: Path, directory: bool) -> None:
    """mkstemp/mkdtemp create 0600/0700; give the file or folder the mode the umask asks for."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. a platform without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def shared_dir() -> Path:
    """The project's shared data and peers (``data/lfw``, ``peers/paddlex``): ``$FACEFEAT_SHARED``,
    or ``shared/`` beside the checkout. The one place tests, benchmarks and tools look for it."""
    return Path(os.environ.get("FACEFEAT_SHARED") or Path(__file__).resolve().parents[2] / "shared").resolve()


@contextmanager
def atomic_path(dst: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside ``dst``; on success it replaces ``dst`` atomically, else it is removed.
    The file gets the mode the umask gives new files."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=suffix + ".tmp", dir=dst.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        _follow_umask(tmp_path, directory=False)
        yield tmp_path
        os.replace(tmp_path, dst)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(dst: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(dst) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(dst)


def atomic_write_text(dst: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(dst, text.encode("utf-8"))


def atomic_write_json(dst: str | os.PathLike, obj: Any, indent: int = 4, ensure_ascii: bool = False) -> Path:
    return atomic_write_text(dst, json.dumps(obj, indent=indent, ensure_ascii=ensure_ascii) + "\n")


def _checkpoint(step: str) -> None:
    """A named step of :func:`atomic_dir` (tests replace this to inject a crash at each step)."""


def _leftovers(dst: Path) -> tuple[list[Path], list[Path]]:
    """``(.tmp, .old)`` siblings that :func:`atomic_dir` / :func:`atomic_path` left for ``dst``."""
    pat = re.compile(re.escape(f".{dst.name}.") + r"[a-z0-9_]{8}(\.[A-Za-z0-9_]+)?\.(tmp|old)")
    tmps, olds = [], []
    try:
        names = os.listdir(dst.parent)
    except OSError:
        return [], []
    for n in names:
        m = pat.fullmatch(n)
        if m:
            (olds if m.group(2) == "old" else tmps).append(dst.parent / n)
    return tmps, olds


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def recover_dir(dst: str | os.PathLike) -> bool:
    """Finish what a crashed :func:`atomic_dir` left: if ``dst`` is missing but its previous
    version survives (``.<name>.*.old``), move it back; then remove the stale temp folders.

    The rename of the new folder onto ``dst`` is the commit point: before it the previous version
    is restored, after it the new one stays. Call it only while no writer of ``dst`` is running
    (hold :func:`dir_lock`); returns True when something was restored or removed.
    """
    dst = Path(dst)
    tmps, olds = _leftovers(dst)
    if not tmps and not olds:
        return False
    if not os.path.lexists(dst) and olds:
        newest = max(olds, key=lambda p: p.stat().st_mtime_ns)
        os.replace(newest, dst)
        olds.remove(newest)
        _fsync_dir(dst.parent)
    for p in tmps + olds:
        _remove(p)
    return True


def _replace_if_absent(tmp: Path, dst: Path) -> bool:
    """Rename ``tmp`` onto an absent ``dst``; False when another writer created ``dst`` meanwhile
    (renaming a folder onto a non-empty one fails with ENOTEMPTY/EEXIST)."""
    try:
        os.replace(tmp, dst)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) or os.path.lexists(dst):
            return False
        raise
    return True


@contextmanager
def atomic_dir(dst: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp directory beside ``dst``; on success it replaces ``dst`` (old one kept until then).

    Steps: write ``.<name>.*.tmp``, move ``dst`` to ``.<name>.*.old``, move the temp folder to
    ``dst`` (the commit point), delete the old one. A crash at any step leaves either ``dst`` or
    its ``.old`` copy complete; :func:`recover_dir` (run by loaders under :func:`dir_lock`) puts it
    back. The folder gets the mode the umask gives new folders.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    try:
        _follow_umask(tmp, directory=True)
        _checkpoint("tmp-created")
        yield tmp
        _checkpoint("written")
        if os.path.lexists(dst) or not _replace_if_absent(tmp, dst):
            old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".old", dir=dst.parent))
            os.rmdir(old)
            os.replace(dst, old)  # keep the previous copy until the new one is in place
            _checkpoint("old-moved")
            os.replace(tmp, dst)
            _fsync_dir(dst.parent)
            _checkpoint("committed")
            shutil.rmtree(old, ignore_errors=True)
        else:
            _fsync_dir(dst.parent)
            _checkpoint("committed")
        _checkpoint("done")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class LockTimeout(OSError):
    """:func:`dir_lock` waited longer than its timeout."""


class _HeldLock:
    def __init__(self) -> None:
        self.rlock = threading.RLock()
        self.depth = 0
        self.fd: int | None = None


_LOCKS: dict[str, _HeldLock] = {}
_LOCKS_GUARD = threading.Lock()


def lock_path(dst: str | os.PathLike) -> Path:
    """The lock file of folder (or file) ``dst``: ``.<name>.lock`` beside it."""
    dst = Path(dst)
    return dst.parent / f".{dst.name}.lock"


@contextmanager
def dir_lock(dst: str | os.PathLike, timeout: float | None = 120.0) -> Iterator[None]:
    """Exclusive lock on ``dst`` across processes (``flock`` on :func:`lock_path`) and threads.

    Re-entrant within a thread; other threads of the process wait on a thread lock, other
    processes on the file lock. Raises :class:`LockTimeout` after ``timeout`` seconds (None:
    wait for ever). A crashed holder's lock is released by the OS.
    """
    key = os.path.realpath(os.fspath(dst))
    with _LOCKS_GUARD:
        held = _LOCKS.setdefault(key, _HeldLock())
    deadline = None if timeout is None else time.monotonic() + timeout
    if not held.rlock.acquire(timeout=-1 if timeout is None else timeout):
        raise LockTimeout(f"{dst}: still locked by another thread after {timeout:.0f} s")
    try:
        if held.depth == 0:
            lp = lock_path(key)
            lp.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lp, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                _flock(fd, deadline, dst)
            except BaseException:
                os.close(fd)
                raise
            held.fd = fd
        held.depth += 1
        try:
            yield
        finally:
            held.depth -= 1
            if held.depth == 0 and held.fd is not None:
                fd, held.fd = held.fd, None
                try:
                    if fcntl is not None:
                        fcntl.flock(fd, fcntl.LOCK_UN)
                finally:
                    os.close(fd)
    finally:
        held.rlock.release()


def _flock(fd: int, deadline: float | None, what: Any) -> None:
    if fcntl is None:  # pragma: no cover - no file locks on this platform: threads only
        return
    if deadline is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    delay = 0.005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise LockTimeout(f"{what}: still locked by another process (its lock file is {lock_path(what)})") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def sqlite_wal(db: Any, timeout_s: float) -> None:
    """Put SQLite connection ``db`` in WAL mode. Two processes creating the same database at once can
    get SQLITE_BUSY from this pragma without SQLite asking its busy handler, so it is retried for up
    to ``timeout_s`` seconds (the connection's own busy timeout covers every other statement)."""
    import sqlite3

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def lazy_exports(module: str, table: dict[str, str], namespace: dict[str, Any]) -> tuple[Callable, Callable]:
    """The ``__getattr__`` and ``__dir__`` of a package whose public names in ``table`` (name ->
    defining module) are imported on first use, e.g. to defer a heavy dependency:
    ``__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())``."""

    def __getattr__(name: str) -> Any:
        if name in table:
            value = getattr(importlib.import_module(table[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__
