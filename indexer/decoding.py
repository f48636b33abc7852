"""Decode fetched bytes on the calling thread, or in worker processes so that decoding uses every core."""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from imgsearch.errors import RowFailure, RowStatus
from imgsearch.imaging import decode_image

log = logging.getLogger(__name__)

Decode = Callable[[bytes, int], np.ndarray]
# Below this many cores the fetch threads decode: the model needs the few cores there are, and Pillow
# releases the GIL while it decodes and resizes. From here on, processes: no GIL, every core.
MIN_CORES_FOR_PROCESSES = 4
# spawn, not fork: the parent runs TensorFlow's and the fetchers' threads, which fork would copy in
# whatever state they are in (a lock held forever in the child).
SPAWN = multiprocessing.get_context("spawn")


def usable_cores(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota (a Kubernetes CPU
    limit leaves the affinity at every core of the node, so the quota is what binds)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return cores
    if quota == "max":
        return cores
    return max(1, min(cores, math.ceil(int(quota) / int(period))))


def auto_decode_processes(cores: int | None = None) -> int:
    """How many decode processes `auto` means: one per core from MIN_CORES_FOR_PROCESSES, else none."""
    cores = usable_cores() if cores is None else cores
    return cores if cores >= MIN_CORES_FOR_PROCESSES else 0


class Decoder:
    """Decodes on the caller's thread (`processes` = 0) or in a pool of worker processes.

    Callers block for their own image, so the fetch threads bound how many images are in flight. A
    worker that dies (a crash inside a codec, the kernel's OOM killer) breaks the pool: it is replaced,
    and each image that was in flight is tried again in a process of its own, so that only the image
    that kills that one too fails, with its own row.
    """

    def __init__(self, processes: int = 0, decode: Decode = decode_image) -> None:
        self.processes = processes
        self._decode = decode
        self._lock = threading.Lock()
        self._pool = self._new_pool() if processes else None

    def __call__(self, data: bytes, max_pixels: int) -> np.ndarray:
        if self._pool is None:
            return self._decode(data, max_pixels)
        pool = self._pool
        try:
            return pool.submit(self._decode, data, max_pixels).result()
        except BrokenProcessPool:
            log.warning("a decode worker process died; starting a fresh pool, retrying its images alone")
            self._replace(pool)
        return self._decode_alone(data, max_pixels)

    def _decode_alone(self, data: bytes, max_pixels: int) -> np.ndarray:
        """Decode in a process of its own: only the image that kills it fails."""
        with ProcessPoolExecutor(1, mp_context=SPAWN) as alone:
            try:
                return alone.submit(self._decode, data, max_pixels).result()
            except BrokenProcessPool:
                raise RowFailure(
                    RowStatus.DECODE_FAILED, "decoder_crashed", "decoding the image killed its worker process"
                ) from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.processes, mp_context=SPAWN)

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        """Swap in a fresh pool, once for all the threads that saw `broken` fail."""
        with self._lock:
            if self._pool is broken:
                broken.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
