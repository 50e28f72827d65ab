"""Run a producer one step ahead of its consumer, in a background thread.

The pipeline's list path uses it to overlap the CPU stages of the next chunk of images (read,
decode, detect, align: OpenCV, which releases the GIL) with the embedding of the current chunk
(OpenVINO / ONNX Runtime, which release it too), so on a multi-core CPU neither waits for the
other. Order, values and exceptions are exactly those of the plain iteration: an exception raised
by the producer is raised by the consumer at the same position, and nothing after it is produced.
Memory is bounded: the producer starts an item only when fewer than ``depth`` made items wait for
the consumer, so at most ``depth`` items exist beside the one the consumer holds (with ``depth=1``:
two chunks of photos in memory, not three). Closing the consumer early (``break``, ``close()``,
garbage collection) stops the producer before its next item.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

_DONE = object()
#: seconds between checks of the stop flag while the producer waits for room
_POLL_S = 0.1


class _Raised:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException):
        self.exc = exc


def prefetch(items: Iterable[T], depth: int = 1, name: str = "facefeat-prefetch") -> Iterator[T]:
    """Yield the items of ``items`` in order, producing up to ``depth`` of them ahead in a thread."""
    if int(depth) < 1:
        raise ValueError(f"prefetch depth must be >= 1, got {depth!r}")
    q: queue.Queue = queue.Queue()
    room = threading.Semaphore(int(depth))  # a permit per item that may exist ahead of the consumer
    stop = threading.Event()

    def wait_for_room() -> bool:
        while not stop.is_set():
            if room.acquire(timeout=_POLL_S):
                return not stop.is_set()
        return False

    def produce() -> None:
        try:
            it = iter(items)
            while wait_for_room():
                try:
                    x = next(it)
                except StopIteration:
                    q.put(_DONE)
                    return
                q.put(x)
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(_Raised(exc))

    worker = threading.Thread(target=produce, name=name, daemon=True)
    worker.start()
    try:
        while True:
            x = q.get()
            room.release()
            if x is _DONE:
                return
            if isinstance(x, _Raised):
                raise x.exc
            yield x
    finally:
        stop.set()
        if worker is not threading.current_thread():
            worker.join(timeout=30)


__all__ = ["prefetch"]
