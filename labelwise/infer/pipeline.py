"""Prediction over many images at decode speed: decoding and inference overlap on every core.

``Predictor.iter_probs`` hands big inputs (``MIN_TASKS_PER_WORKER`` tasks per worker or more) to ``stream_probs``:
the images are cut into tasks of a few dozen to a few hundred images, and each of ``workers`` processes
(default: one per usable core) decodes a task and runs the model on it with ONE intra-op thread, while
the parent writes the results of earlier tasks. Results come back in input order, as they finish,
with at most ``2 x workers`` tasks in flight: memory stays flat however many files there are.

Why processes with one model thread each, rather than decoding threads beside a multi-threaded model:

* Pillow releases the GIL while it decodes, but a 28-px PNG is mostly per-file Python (open, sniff,
  mode checks, EXIF): decode threads serialise on the GIL, so they cannot keep up with the model.
* Intra-op parallel PyTorch (OpenMP) waits at a barrier after every operator; a decode thread that
  takes one of the two cores stalls that barrier for a scheduler time slice, several times per batch.
  Data parallelism (one image batch per core) has no barrier, so decode and model never wait on
  each other, and a small model's per-core efficiency is higher at one thread.

Processes are started with ``fork`` where the platform has it (Linux): the model is inherited, not
copied or pickled, and a worker is ready in milliseconds. Elsewhere (spawn only), and for small
inputs, prediction stays in this process (``iter_probs``'s threaded decode, then the model).

Nothing here is written to disk: items travel as paths (or the bytes of in-memory images) and
results as float32 arrays between this process and its own children.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from labelwise.data import images
from labelwise.data.band_scaling import PLAIN, PixelSpec
from labelwise.errors import DataError, ImageError
from labelwise.infer.engines import TTA, OnnxEngine, TorchEngine, cpu_cores

# Fewer tasks per worker than this (e.g. 1,024 images of 28 px, 128 of 224 px on 2 cores): starting
# processes (tens of ms) and cutting tasks buys nothing.
MIN_TASKS_PER_WORKER = 2
# Pixels (C x S x S) per task: ~32 images at 224 px RGB, the full chunk (256) for 28-px gray.
TASK_PIXELS = 4_800_000
MIN_TASK, MAX_TASK = 16, 256
IN_FLIGHT_PER_WORKER = 2  # tasks queued per worker: one decoding/running, one ready to start

__all__ = ["MIN_TASKS_PER_WORKER", "fork_available", "plan_workers", "stream_probs", "task_size",
           "worker_engine"]


def fork_available() -> bool:
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def task_size(image_size: int, channels: int, chunk: int = MAX_TASK) -> int:
    """Images per worker task: enough for an efficient model batch, small enough to stream often."""
    return int(max(MIN_TASK, min(chunk, MAX_TASK, TASK_PIXELS // max(1, channels * image_size * image_size))))


def worker_engine(engine: Any) -> Any | None:
    """The engine as a forked worker should run it (one thread), or None when it cannot be moved."""
    if isinstance(engine, TorchEngine):
        return engine
    if isinstance(engine, OnnxEngine):
        # onnxruntime's thread pool does not survive fork: a worker opens its own one-thread session.
        return ("onnx", str(engine.source)) if engine.source is not None else None
    if isinstance(engine, TTA):
        base = worker_engine(engine.base)
        return None if base is None else ("tta", base, engine.views)
    return None


def plan_workers(n_items: int, workers: int | None, engine: Any, image_size: int, channels: int,
                 chunk: int = MAX_TASK) -> int:
    """Worker processes to use for ``n_items`` images of the model's input size; 0: predict in this process.

    ``workers``: None = one per usable core; 0 or 1 = in this process (threaded decode, as before).
    """
    n = cpu_cores() if workers is None else int(workers)
    enough = n_items >= n * MIN_TASKS_PER_WORKER * task_size(image_size, channels, chunk)
    if n < 2 or not enough or not fork_available() or worker_engine(engine) is None:
        return 0
    if os.environ.get("LABELWISE_PREDICT_PROCESSES", "1") == "0":  # an escape hatch for odd platforms
        return 0
    return n


# --------------------------------------------------------------------------------------------- worker side
_STATE: dict[str, Any] = {}


def _build(spec: Any) -> Any:
    if isinstance(spec, tuple) and spec[0] == "onnx":
        return OnnxEngine(spec[1], threads=1)
    if isinstance(spec, tuple) and spec[0] == "tta":
        return TTA(_build(spec[1]), spec[2])
    return spec


def _init_worker(spec: Any, size: int, channels: int, max_pixels: int, pixel_spec: PixelSpec) -> None:
    import torch

    torch.set_num_threads(1)  # one batch per core, no OpenMP barrier (see the module docstring)
    _STATE.update(engine=_build(spec), size=size, channels=channels, max_pixels=max_pixels, pixel_spec=pixel_spec)


def _run_task(part: list) -> tuple[np.ndarray, dict[int, str]]:
    """Decode ``part`` (Paths or in-memory images) and return (probs of the readable ones, {index: reason})."""
    import torch

    size, channels, max_pixels, spec = _STATE["size"], _STATE["channels"], _STATE["max_pixels"], _STATE["pixel_spec"]
    pixels = np.zeros((len(part), channels, size, size), dtype=np.uint8)
    bad: dict[int, str] = {}
    for j, item in enumerate(part):
        try:
            if isinstance(item, Path):
                arr = images.read_resized(item, size, channels, max_pixels=max_pixels, pixel_spec=spec)
            else:
                arr = images.read_resized_bytes(item.data, size, channels, max_pixels=max_pixels, name=item.name,
                                                pixel_spec=spec)
            pixels[j] = arr.transpose(2, 0, 1)
        except ImageError as e:
            bad[j] = str(e)
    keep = np.ones(len(part), dtype=bool)
    keep[list(bad)] = False
    with torch.inference_mode():
        probs = _STATE["engine"].probs(pixels[keep] if bad else pixels, len(part))
    return np.asarray(probs, dtype=np.float32), bad


# --------------------------------------------------------------------------------------------- parent side
def stream_probs(engine: Any, items: Sequence, image_size: int, channels: int, workers: int,
                 progress: Callable[[int], AbstractContextManager[Callable[[int], None]]],
                 chunk: int = MAX_TASK, max_pixels: int = images.DEFAULT_MAX_PIXELS, pixel_spec: PixelSpec = PLAIN,
                 ) -> Iterator[tuple[list, np.ndarray, dict[Any, str]]]:
    """Yield (items, probabilities of the readable ones, {bad item: reason}) per task, in input order.

    ``pixel_spec``: the model's bands and band scaling (``ModelMeta.pixel_spec``), applied by every worker.
    ``progress(total)`` is entered after the workers have started (a progress bar's thread must not
    exist when the process forks) and gives ``advance(n_images)``.
    """
    step = task_size(image_size, channels, chunk)
    starts = iter(range(0, len(items), step))
    ctx = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                               initargs=(worker_engine(engine), image_size, channels, max_pixels, pixel_spec))
    pending: deque[tuple[list, Future]] = deque()

    def submit() -> bool:
        start = next(starts, None)
        if start is None:
            return False
        part = list(items[start:start + step])
        pending.append((part, pool.submit(_run_task, part)))
        return True

    try:
        for _ in range(workers * IN_FLIGHT_PER_WORKER):
            if not submit():
                break
        with progress(len(items)) as advance:
            while pending:
                part, future = pending.popleft()
                try:
                    probs, bad_at = future.result()
                except BrokenProcessPool:
                    raise DataError("a prediction worker process died (out of memory?); set "
                                    "LABELWISE_PREDICT_PROCESSES=0 to predict in one process") from None
                submit()
                advance(len(part))
                yield part, probs, {part[j]: reason for j, reason in bad_at.items()}
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
