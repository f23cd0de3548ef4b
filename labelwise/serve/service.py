"""The service behind `labelwise serve`: the model, the limits, the worker pools and the admission counter.

Shared by both HTTP faces of the server: labelwise's own JSON (app.py) and the Open Inference
Protocol (oip.py). Decoding runs in a thread pool and inference in its own thread, so the event loop
only parses and answers. Requests that wait for the model together go through it as one batch (no
waiting for a batch to fill: an idle server answers at single-image latency).
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from labelwise.data import images
from labelwise.errors import ConfigError, ImageError, ImageTooLargeError
from labelwise.infer.engines import check_engine
from labelwise.infer.predict import Predictor
from labelwise.serve.limits import ServeLimits

log = logging.getLogger("labelwise.serve.app")

# Magic bytes of the formats the decoder accepts; anything else is refused unread (415).
_MAGIC: tuple[tuple[bytes, int, str], ...] = (  # (signature, offset, format)
    (b"\xff\xd8\xff", 0, "JPEG"), (b"\x89PNG\r\n\x1a\n", 0, "PNG"), (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"), (b"BM", 0, "BMP"), (b"WEBP", 8, "WebP"), (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"), (b"II+\x00", 0, "TIFF"), (b"MM\x00+", 0, "TIFF"))
_ACCEPTED = "JPEG, PNG, GIF, BMP, WebP or TIFF"


@dataclass
class _Upload:
    name: str
    content_type: str
    data: bytes


@dataclass
class _Result:
    name: str
    labels: list[str] | None = None
    probabilities: dict[str, float] | None = None
    error: str = ""
    status: int = 200

    def to_json(self) -> dict[str, Any]:
        if self.error:
            return {"file": self.name, "error": self.error, "status": self.status}
        return {"file": self.name, "labels": self.labels, "probabilities": self.probabilities}


def load_predictor(run_dir: str | Path, engine: str = "torch", threshold: float | None = None,
                   notify: Callable[[str], None] | None = None, tta: bool | int = False):
    """Predictor for a bundle; ``engine`` (and ``notify``, told before a slow ONNX export) are passed
    on only when the engine is not the default. ``tta``: test-time views as for ``labelwise predict --tta``
    (True: the flips the model trained with; an int: that many views)."""

    check_engine(engine)
    if engine == "torch":
        return Predictor.load(run_dir, threshold=threshold, tta=tta)
    try:
        return Predictor.load(run_dir, threshold=threshold, engine=engine, tta=tta,
                              **({"notify": notify} if notify else {}))
    except TypeError:  # a Predictor without engines
        raise ConfigError(f"--engine {engine} is not available in this labelwise; use --engine torch") from None


class Service:
    """The model, the limits, the worker pools and the admission counter behind the routes."""

    def __init__(self, predictor: Any, limits: ServeLimits, engine: str):
        self.predictor = predictor
        self.limits = limits
        self.engine = engine
        self.in_flight = 0  # admitted requests not finished; only touched on the event loop
        self.decode_pool = ThreadPoolExecutor(limits.decode_workers, thread_name_prefix="labelwise-decode")
        self.model_pool = ThreadPoolExecutor(limits.model_workers, thread_name_prefix="labelwise-model")
        # Images waiting for the model, with the future each request awaits. While a forward pass
        # runs, newcomers gather here and go through together in the next one: batching across
        # requests under load, no added latency when idle (nothing waits for a batch to fill).
        self._waiting: deque[tuple[np.ndarray, asyncio.Future]] = deque()
        self._runners = 0  # forward-pass loops running, at most model_workers
        self._tasks: set[asyncio.Future] = set()  # asyncio keeps only weak references to tasks

    def spawn(self, coro) -> asyncio.Future:
        """Run ``coro`` as a task that finishes even if its request is cancelled."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def close(self) -> None:
        self.decode_pool.shutdown(wait=False, cancel_futures=True)
        self.model_pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ admission

    def try_admit(self) -> bool:
        """Take a queue slot if one is free. No await between test and increment: no race."""
        if self.in_flight >= self.limits.queue_size:
            return False
        self.in_flight += 1
        return True

    def release(self, task: "asyncio.Future[Any] | None" = None) -> None:
        self.in_flight -= 1
        if task is not None and not task.cancelled() and task.exception() is not None:
            # Its client may be gone; log it rather than "Task exception was never retrieved".
            log.error("prediction failed", exc_info=task.exception())

    # ------------------------------------------------------------------ the work

    def check_upload(self, up: _Upload) -> _Result | None:
        """The cheap checks on one file (no decoding): a _Result carrying the error, or None."""
        declared = (up.content_type or "").split(";")[0].strip().lower()
        if declared and not (declared.startswith("image/") or declared == "application/octet-stream"):
            return _Result(up.name, error=f"declared content type {declared!r} is not an image; "
                                           f"send {_ACCEPTED} files: {up.name}", status=415)
        if not up.data:
            return _Result(up.name, error=f"file is empty (0 bytes): {up.name}", status=422)
        if sniff_format(up.data) is None:
            return _Result(up.name, error=f"not an image, or an unsupported format (judged by its first "
                                           f"bytes; send {_ACCEPTED}): {up.name}", status=415)
        return None

    def decode(self, up: _Upload) -> np.ndarray:
        """Bytes -> (C, S, S) uint8 as the model wants it. The header's pixel count is checked first."""
        meta = self.predictor.meta
        arr = images.read_resized_bytes(up.data, meta.image_size, meta.in_chans, pixel_spec=meta.pixel_spec,
                                        max_pixels=self.limits.max_pixels, name=up.name)
        return arr.transpose(2, 0, 1)

    async def decode_uploads(self, uploads: list[_Upload], all_or_nothing: bool = False
                             ) -> list[np.ndarray | _Result]:
        """Each upload as (C, S, S) pixels, or a _Result carrying why it cannot be used (415/413/422), in order.

        The cheap checks (content type, magic bytes) run on every file first; the ones that pass are decoded in
        parallel in the decode pool. ``all_or_nothing``: decode nothing once a file fails the cheap checks (for a
        caller that fails the whole request on one bad image)."""
        results: list[np.ndarray | _Result | None] = [self.check_upload(up) for up in uploads]
        todo = [i for i, r in enumerate(results) if r is None]
        if all_or_nothing and len(todo) < len(uploads):
            todo = []
        loop = asyncio.get_running_loop()
        decoded = await asyncio.gather(*(loop.run_in_executor(self.decode_pool, self.decode, uploads[i])
                                         for i in todo), return_exceptions=True)
        for i, got in zip(todo, decoded):
            results[i] = _error_result(uploads[i].name, got) if isinstance(got, BaseException) else got
        return [r for r in results if r is not None]

    async def process(self, uploads: list[_Upload]) -> list[_Result]:
        """Check, decode (in parallel threads) and predict the files of one request, in order."""
        got = await self.decode_uploads(uploads)
        rows = [i for i, g in enumerate(got) if not isinstance(g, _Result)]
        results: list[_Result] = [g if isinstance(g, _Result) else _Result(uploads[i].name) for i, g in enumerate(got)]
        if rows:
            probs = await self.probs(np.stack([got[i] for i in rows]))
            hot = self.predictor.decide(probs)
            names = list(self.predictor.labels.names)
            for j, i in enumerate(rows):
                results[i] = _Result(uploads[i].name, [names[k] for k in np.flatnonzero(hot[j])],
                                     {n: round(float(p), 6) for n, p in zip(names, probs[j])})
        return results

    async def probs(self, pixels: np.ndarray) -> np.ndarray:
        """Probabilities for one request's images, computed together with whatever else is waiting."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((pixels, future))
        if self._runners < self.limits.model_workers:
            self._runners += 1
            self.spawn(self._run_batches())
        return await future

    async def _run_batches(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                taken, n = [], 0
                while self._waiting and (not taken or n + len(self._waiting[0][0]) <= self.limits.max_batch):
                    taken.append(self._waiting.popleft())
                    n += len(taken[-1][0])
                pixels = np.concatenate([p for p, _ in taken]) if len(taken) > 1 else taken[0][0]
                try:
                    probs = await loop.run_in_executor(self.model_pool, self.predictor.predict_pixels, pixels)
                except Exception as exc:  # the model failed: every request in the batch hears it
                    for _, future in taken:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                start = 0
                for p, future in taken:
                    if not future.done():
                        future.set_result(probs[start:start + len(p)])
                    start += len(p)
        finally:
            self._runners -= 1

    def model_info(self) -> dict[str, Any]:
        meta = self.predictor.meta
        labels = self.predictor.labels
        thresholds = getattr(self.predictor, "thresholds", meta.thresholds)
        return {
            "task": labels.task,
            "labels": list(labels.names),
            "backbone": meta.backbone,
            "engine": self.engine,
            "input": {"channels": meta.in_chans, "size": meta.image_size, "mean": list(meta.mean),
                      "std": list(meta.std), "resize": "squash to size x size",
                      "formats": _ACCEPTED.replace(" or ", ", ").split(", ")},
            # Multi-class picks the most probable label; cut-offs only apply to multi-label.
            "thresholds": ({n: float(t) for n, t in zip(labels.names, thresholds)} if labels.multilabel
                           else None),
            "at_least_one": bool(meta.at_least_one),
            "tta": self.tta_info(),
            "limits": asdict(self.limits),
        }

    def tta_info(self) -> dict[str, Any] | None:
        """The test-time views every image is averaged over (--tta / --tta-views), or None when off."""
        views = getattr(getattr(self.predictor, "engine", None), "views", ())
        return {"views": len(views), "names": [v.name for v in views]} if len(views) > 1 else None


def sniff_format(data: bytes) -> str | None:
    """The image format told by the first bytes, or None when they match no accepted format."""
    for magic, offset, fmt in _MAGIC:
        if data[offset:offset + len(magic)] == magic and (fmt != "WebP" or data[:4] == b"RIFF"):
            return fmt
    return None


def _error_result(name: str, exc: BaseException) -> _Result:
    if isinstance(exc, ImageError):  # too large (pixels from the header, a bomb, memory): 413; else broken: 422
        return _Result(name, error=str(exc), status=413 if isinstance(exc, ImageTooLargeError) else 422)
    # A decoder bug must not turn a bad upload into a 500; log it so it gets fixed.
    log.exception("unexpected error decoding %s", name, exc_info=exc)
    return _Result(name, error=f"cannot decode the image ({type(exc).__name__}): {name}", status=422)
