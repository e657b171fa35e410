"""Run ``cv2.grabCut`` in a child process that can be stopped: GrabCut's max-flow has no time bound.

On near-flat images (one colour, or two flat colours split by the box, with a few odd pixels) OpenCV's
GrabCut can run for minutes at 100% CPU inside one C++ call, which no thread can interrupt. The GrabCut
backend therefore hands each call to a worker process (``python -m segr1.segmenters._grabcut_worker``) and
kills it when the deadline passes; the next call starts a fresh worker.

Protocol on the worker's stdin/stdout (no pickle): a request is a header ``<IIii`` (height, width,
iterations, rng seed) followed by the working image (H, W, 3) uint8 and the seed label map (H, W) uint8; the
answer is ``b"\\0"`` + the label map (H, W) uint8, or ``b"\\1"`` + ``<I`` length + a UTF-8 error message.
Workers are pooled: a call takes an idle one or starts one, so concurrent callers run in parallel.
"""

from __future__ import annotations

import atexit
import logging
import os
import select
import struct
import subprocess
import sys
import threading
import time

import numpy as np

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("<IIii")
SUPPORTED = os.name == "posix"  # select() on pipes; elsewhere GrabCut runs in-process, unbounded
_MAX_SIDE = 1 << 14  # refuse absurd requests (the backend works at <= max_side anyway)


class GrabCutTimeout(RuntimeError):
    """GrabCut did not finish before its deadline; its worker process was stopped."""


class GrabCutWorkerError(RuntimeError):
    """The worker process died or answered something unreadable."""


class _Worker:
    """One worker process and its pipes."""

    def __init__(self) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "segr1.segmenters._grabcut_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a kill that did not take
            logger.warning("GrabCut worker %d did not exit after SIGKILL", self.proc.pid)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()

    def run(
        self, work: np.ndarray, seeds: np.ndarray, iterations: int, seed: int, deadline: float
    ) -> np.ndarray:
        h, w = seeds.shape
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(_HEADER.pack(h, w, iterations, seed))
            self.proc.stdin.write(np.ascontiguousarray(work, dtype=np.uint8).tobytes())
            self.proc.stdin.write(np.ascontiguousarray(seeds, dtype=np.uint8).tobytes())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise GrabCutWorkerError(f"GrabCut worker is gone ({exc})") from None
        status = self._read(1, deadline)
        if status == b"\0":
            return np.frombuffer(self._read(h * w, deadline), dtype=np.uint8).reshape(h, w).copy()
        if status == b"\1":
            (length,) = struct.unpack("<I", self._read(4, deadline))
            raise _CvError(self._read(min(length, 10_000), deadline).decode("utf-8", "replace"))
        raise GrabCutWorkerError(f"GrabCut worker answered {status!r}")

    def _read(self, n: int, deadline: float) -> bytes:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        chunks: list[bytes] = []
        left = n
        while left:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise GrabCutTimeout("deadline passed")
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                raise GrabCutWorkerError("GrabCut worker exited")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


class _CvError(Exception):
    """``cv2.error`` raised inside the worker (e.g. a degenerate colour model)."""


class WorkerPool:
    """Idle GrabCut workers, reused; one per concurrent call. Workers end with this process."""

    def __init__(self) -> None:
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()

    def grabcut(
        self, work: np.ndarray, seeds: np.ndarray, iterations: int, seed: int, timeout_s: float
    ) -> np.ndarray:
        """``cv2.grabCut(work, seeds, None, ..., iterations, GC_INIT_WITH_MASK)`` with cv2's RNG seeded by
        ``seed``; returns the label map (H, W) uint8. Raises :class:`GrabCutTimeout` after ``timeout_s``
        seconds, ``cv2.error`` when OpenCV refuses the input, :class:`GrabCutWorkerError` if the worker dies."""
        import cv2

        if seeds.ndim != 2 or work.shape != (*seeds.shape, 3) or max(seeds.shape) > _MAX_SIDE:
            raise ValueError(f"grabcut worker: image {work.shape} and seeds {seeds.shape} do not match")
        deadline = time.monotonic() + timeout_s
        worker = self._take()
        try:
            result = worker.run(work, seeds, iterations, seed, deadline)
        except _CvError as exc:
            self._give_back(worker)
            raise cv2.error(str(exc)) from None
        except BaseException:  # timeout, dead worker, interrupt: this worker's state is unknown
            self._discard(worker)
            raise
        self._give_back(worker)
        return result

    def prestart(self) -> None:
        """Start one worker now if none is idle, so that its start (interpreter + OpenCV import, about
        0.3 s) overlaps with other loading instead of delaying the first mask."""
        with self._lock:
            if any(w.alive() for w in self._idle):
                return
            worker = _Worker()
            self._all.add(worker)
            self._idle.append(worker)

    def _take(self) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker
                self._all.discard(worker)
            worker = _Worker()
            self._all.add(worker)
            return worker

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            self._idle.append(worker)

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            self._all.discard(worker)

    def close(self) -> None:
        """Stop every worker (also run at exit)."""
        with self._lock:
            workers, self._idle, self._all = list(self._all), [], set()
        for worker in workers:
            worker.kill()

    def __len__(self) -> int:
        return len(self._all)


POOL = WorkerPool()
atexit.register(POOL.close)


def _read_exact(stream, n: int) -> bytes | None:
    data = bytearray()
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def main() -> int:
    """The worker loop: read requests from stdin, answer on stdout, until stdin closes."""
    import cv2

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    while True:
        header = _read_exact(inp, _HEADER.size)
        if header is None:
            return 0
        h, w, iterations, seed = _HEADER.unpack(header)
        work_bytes, seed_bytes = _read_exact(inp, h * w * 3), _read_exact(inp, h * w)
        if work_bytes is None or seed_bytes is None:
            return 1
        work = np.frombuffer(work_bytes, dtype=np.uint8).reshape(h, w, 3)
        seeds = np.frombuffer(seed_bytes, dtype=np.uint8).reshape(h, w).copy()
        try:
            cv2.setRNGSeed(seed)
            bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
            labels, _, _ = cv2.grabCut(work, seeds, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
        except cv2.error as exc:
            message = str(exc).encode("utf-8", "replace")[:10_000]
            out.write(b"\1" + struct.pack("<I", len(message)) + message)
        else:
            out.write(b"\0" + np.ascontiguousarray(labels, dtype=np.uint8).tobytes())
        out.flush()


if __name__ == "__main__":
    sys.exit(main())
