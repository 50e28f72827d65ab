"""Batching in the service: concurrent requests' faces are embedded together.

Each request thread detects and aligns its own faces (the pipelines of the service's pool), then
hands them to :class:`BatchingPredictor`. One worker thread takes what arrived within a small
window (``window_ms`` after the first face, or sooner once ``max_batch`` faces wait), embeds it as
one batch and hands every request its rows. A face waits at most the window plus the batches
ahead of it; a lone request waits the window only (a few milliseconds). When a batch fails, its
requests are run one by one, so that only the request whose faces fail gets the error. The wrapper stands in for
the predictor everywhere (it forwards every other attribute), so pipelines, thresholds and
``/health`` see the model as it is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Sequence

import numpy as np

from facefeat.errors import InputError

log = logging.getLogger("facefeat.serving")


class _Job:
    __slots__ = ("imgs", "flip", "done", "result", "error")

    def __init__(self, imgs: list, flip: Any):
        self.imgs, self.flip = imgs, flip
        self.done = threading.Event()
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None


class BatchingPredictor:
    """A :class:`~facefeat.predict.predictor.FeaturePredictor` whose :meth:`embed` calls from many
    threads are run together (see the module doc). ``close()`` stops the worker."""

    def __init__(self, predictor: Any, window_ms: float = 2.0, max_batch: int = 32):
        if window_ms < 0 or int(max_batch) < 1:
            raise InputError(f"batching: window_ms must be >= 0 and max_batch >= 1, got {window_ms}, {max_batch}")
        self.predictor = predictor
        self.window_s = float(window_ms) / 1000.0
        self.max_batch = int(max_batch)
        self._jobs: deque[_Job] = deque()
        self._cv = threading.Condition()
        self._closed = False
        #: batches run and faces embedded (for tests and /health)
        self.batches = 0
        self.faces = 0
        self._worker = threading.Thread(target=self._run, name="facefeat-batching", daemon=True)
        self._worker.start()

    def __getattr__(self, name: str) -> Any:  # model_name, meta, embedding_size, runtime_info, ...
        return getattr(self.predictor, name)

    def __repr__(self) -> str:
        return f"BatchingPredictor({self.predictor!r}, window_ms={self.window_s * 1e3:g}, max_batch={self.max_batch})"

    def embed(self, imgs: Sequence[np.ndarray], flip: bool | None = None, batch_size: int | None = None) -> np.ndarray:
        """``[N, D]`` unit features of aligned faces, embedded with other threads' faces."""
        imgs = list(imgs)
        if not imgs:
            return np.zeros((0, self.predictor.embedding_size), np.float32)
        job = _Job(imgs, self.predictor.flip if flip is None else bool(flip))
        with self._cv:
            if self._closed:
                raise RuntimeError("the batching predictor is closed")
            self._jobs.append(job)
            self._cv.notify()
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def _take(self) -> list[_Job]:
        """Wait for a first job, then for the window (or a full batch); return the jobs to run."""
        with self._cv:
            while not self._jobs and not self._closed:
                self._cv.wait()
            if not self._jobs:
                return []
            deadline = time.monotonic() + self.window_s
            while not self._closed and sum(len(j.imgs) for j in self._jobs) < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            taken, n = [], 0
            while self._jobs and (not taken or n + len(self._jobs[0].imgs) <= self.max_batch):
                job = self._jobs.popleft()
                taken.append(job)
                n += len(job.imgs)
            return taken

    def _run(self) -> None:
        while True:
            jobs = self._take()
            if not jobs:
                return
            for flip in {j.flip for j in jobs}:
                group = [j for j in jobs if j.flip == flip]
                imgs = [im for j in group for im in j.imgs]
                try:
                    feats = self.predictor.embed(imgs, flip=flip, batch_size=len(imgs))
                except BaseException as exc:
                    if len(group) == 1:
                        self._fail(group[0], exc)
                    else:  # one request's faces must not fail the others': each one alone
                        for j in group:
                            self._run_alone(j)
                    continue
                self.batches += 1
                self.faces += len(imgs)
                start = 0
                for j in group:
                    j.result = feats[start:start + len(j.imgs)]
                    start += len(j.imgs)
                    j.done.set()

    def _run_alone(self, job: _Job) -> None:
        try:
            job.result = self.predictor.embed(job.imgs, flip=job.flip, batch_size=len(job.imgs))
        except BaseException as exc:
            self._fail(job, exc)
            return
        self.batches += 1
        self.faces += len(job.imgs)
        job.done.set()

    @staticmethod
    def _fail(job: _Job, exc: BaseException) -> None:
        job.error = exc
        job.done.set()

    def close(self) -> None:
        """Run what is queued, then stop the worker."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._worker.join(timeout=10)


__all__ = ["BatchingPredictor"]
