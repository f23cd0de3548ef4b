"""`labelwise serve RUN`: an HTTP service around a model bundle (FastAPI + uvicorn).

    POST /predict   multipart/form-data, one or more image files -> JSON, one result per image
    GET  /model     labels, task, input spec, thresholds, limits
    GET  /health    liveness and load (no token needed)
    GET  /          a page to drop an image on and see its labels as probability bars

Every limit is checked before a pixel is decoded, cheapest first: the token (401), the declared
body size (413), the request's content type (415), a free slot in the bounded queue (503 with
Retry-After), the body size again while it streams in (413), then per image the part's content
type and its magic bytes (415) and the pixel count in its header (413). A file that cannot be used
gets a 4xx with the reason, never a 500. Only model.safetensors and model.json are read (through
Predictor), and nothing a client sends is ever unpickled.

Decoding runs in a thread pool and inference in its own thread, so the event loop only parses and
answers. Requests that wait for the model together go through it as one batch (no waiting for a
batch to fill: an idle server answers at single-image latency).

>>> app = create_app("runs/demo", token="s3cret", queue_size=16)       # doctest: +SKIP
>>> uvicorn.run(app, host="127.0.0.1", port=8000)                      # doctest: +SKIP
"""
from __future__ import annotations

import asyncio
import base64
import difflib
import hashlib
import hmac
import logging
import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from labelwise.version import __version__
from labelwise.data import images
from labelwise.errors import ConfigError, ImageError
from labelwise.infer.predict import Predictor
from labelwise.serve.limits import ServeLimits, make_limits

log = logging.getLogger("labelwise.serve.app")

ENGINES = ("torch", "onnx")
# Magic bytes of the formats the decoder accepts; anything else is refused unread (415).
_MAGIC: tuple[tuple[bytes, int, str], ...] = (  # (signature, offset, format)
    (b"\xff\xd8\xff", 0, "JPEG"), (b"\x89PNG\r\n\x1a\n", 0, "PNG"), (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"), (b"BM", 0, "BMP"), (b"WEBP", 8, "WebP"), (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"), (b"II+\x00", 0, "TIFF"), (b"MM\x00+", 0, "TIFF"))
_ACCEPTED = "JPEG, PNG, GIF, BMP, WebP or TIFF"
# Decoder reasons that mean "too big" (413) rather than "broken" (422).
_TOO_LARGE = re.compile(r"over the limit|too large|not enough memory")
_MAX_NAME_CHARS = 200  # file names are echoed back; clip what a client may send






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


class _BodyTooLarge(Exception):
    pass


def load_predictor(run_dir: str | Path, engine: str = "torch", threshold: float | None = None,
                   notify: Callable[[str], None] | None = None):
    """Predictor for a bundle; ``engine`` (and ``notify``, told before a slow ONNX export) are passed
    on only when the engine is not the default."""

    if engine not in ENGINES:
        hint = difflib.get_close_matches(engine, ENGINES, n=1)
        raise ConfigError(f"--engine {engine!r} is not known; use one of {', '.join(ENGINES)}"
                          + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    if engine == "torch":
        return Predictor.load(run_dir, threshold=threshold)
    try:
        return Predictor.load(run_dir, threshold=threshold, engine=engine,
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
        arr = images.read_resized_bytes(up.data, meta.image_size, meta.in_chans,
                                        max_pixels=self.limits.max_pixels, name=up.name)
        return arr.transpose(2, 0, 1)

    async def process(self, uploads: list[_Upload]) -> list[_Result]:
        """Check, decode (in parallel threads) and predict the files of one request, in order."""
        loop = asyncio.get_running_loop()
        results: list[_Result | None] = [self.check_upload(up) for up in uploads]
        todo = [i for i, r in enumerate(results) if r is None]
        decoded = await asyncio.gather(*(loop.run_in_executor(self.decode_pool, self.decode, uploads[i])
                                         for i in todo), return_exceptions=True)
        batch, rows = [], []
        for i, got in zip(todo, decoded):
            if isinstance(got, BaseException):
                results[i] = _error_result(uploads[i].name, got)
            else:
                batch.append(got)
                rows.append(i)
        if batch:
            probs = await self.probs(np.stack(batch))
            hot = self.predictor.decide(probs)
            names = list(self.predictor.labels.names)
            for j, i in enumerate(rows):
                results[i] = _Result(uploads[i].name, [names[k] for k in np.flatnonzero(hot[j])],
                                     {n: round(float(p), 6) for n, p in zip(names, probs[j])})
        return [r for r in results if r is not None]

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
            "limits": asdict(self.limits),
        }


def sniff_format(data: bytes) -> str | None:
    """The image format told by the first bytes, or None when they match no accepted format."""
    for magic, offset, fmt in _MAGIC:
        if data[offset:offset + len(magic)] == magic and (fmt != "WebP" or data[:4] == b"RIFF"):
            return fmt
    return None


def _error_result(name: str, exc: BaseException) -> _Result:
    if isinstance(exc, ImageError):
        # TODO(lead): an ImageTooLargeError subclass in errors.py would replace this text match.
        return _Result(name, error=str(exc), status=413 if _TOO_LARGE.search(str(exc)) else 422)
    # A decoder bug must not turn a bad upload into a 500; log it so it gets fixed.
    log.exception("unexpected error decoding %s", name, exc_info=exc)
    return _Result(name, error=f"cannot decode the image ({type(exc).__name__}): {name}", status=422)


def _clean_name(name: str | None, index: int) -> str:
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]  # a client may send a full path
    name = "".join(ch for ch in name if ch.isprintable())[:_MAX_NAME_CHARS]
    return name or f"upload-{index}"


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _limited(request: Request, max_bytes: int) -> AsyncIterator[bytes]:
    """The request body, refused once it passes ``max_bytes`` (chunked uploads declare no length)."""
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > max_bytes:
            raise _BodyTooLarge()
        yield chunk


async def _read_uploads(request: Request, limits: ServeLimits) -> list[_Upload]:
    """Parse the multipart body in memory (it is capped), keeping every file part."""
    from starlette.formparsers import MultiPartException, MultiPartParser

    parser = MultiPartParser(request.headers, _limited(request, limits.max_body_bytes),
                             max_files=limits.max_files, max_fields=limits.max_files)
    parser.spool_max_size = limits.max_body_bytes  # keep parts in memory: no temp files on disk
    try:
        form = await parser.parse()
    except _BodyTooLarge:
        raise HTTPException(413, f"request body is over the limit of {limits.max_body_bytes:,} bytes; "
                                 "send fewer or smaller images (or raise --max-body-mb)") from None
    except MultiPartException as exc:
        too_many = "too many files" in exc.message.lower()
        raise HTTPException(413 if too_many else 400,
                            f"{exc.message} (limit: {limits.max_files} files per request)" if too_many
                            else f"malformed multipart body: {exc.message}") from None
    try:
        uploads = []
        for _, value in form.multi_items():
            if isinstance(value, UploadFile):
                uploads.append(_Upload(_clean_name(value.filename, len(uploads)), value.content_type or "",
                                       await value.read()))
        return uploads
    finally:
        await form.close()


def _bearer_check(token: str | None):
    """A dependency that refuses requests without ``Authorization: Bearer <token>`` (401)."""
    expected = token.encode("utf-8") if token else None

    async def check(request: Request) -> None:
        if expected is None:
            return
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        # compare_digest: the time taken does not tell how much of a guess was right.
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode("utf-8"), expected):
            raise HTTPException(401, "missing or wrong token: send the header 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})

    return check


def _page() -> tuple[str, str]:
    """The upload page and a Content-Security-Policy allowing exactly its inline script and style."""
    html = resources.files("labelwise.serve").joinpath("static/index.html").read_text(encoding="utf-8")

    def digest(tag: str) -> str:
        found = re.search(rf"<{tag}>(.*?)</{tag}>", html, re.S)
        body = found.group(1) if found else ""
        return "'sha256-" + base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode() + "'"

    csp = (f"default-src 'none'; script-src {digest('script')}; style-src {digest('style')}; "
           "img-src blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return html, csp


def create_app(run_dir: str | Path, token: str | None = None, engine: str = "torch", *,
               threshold: float | None = None, limits: ServeLimits | None = None,
               notify: Callable[[str], None] | None = None, **limit_overrides: Any) -> FastAPI:
    """The FastAPI app serving the bundle in ``run_dir``; limits as ServeLimits or its field names.

    >>> app = create_app("runs/demo", max_body_bytes=8 * 2**20, queue_size=8)   # doctest: +SKIP
    """
    limits = replace(limits, **limit_overrides).check() if limits else make_limits(**limit_overrides)
    predictor = load_predictor(run_dir, engine, threshold, notify)
    meta = predictor.meta
    # One forward pass now: a broken bundle fails at start-up, and the first client does not wait.
    predictor.predict_pixels(np.zeros((1, meta.in_chans, meta.image_size, meta.image_size), np.uint8))
    service = Service(predictor, limits, engine)
    page, csp = _page()

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        service.close()

    app = FastAPI(title="labelwise", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = service
    auth = Depends(_bearer_check(token or None))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, f"invalid request: {exc.errors()}")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff",
                                           "Referrer-Policy": "no-referrer"})

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "in_flight": service.in_flight, "queue_size": limits.queue_size}

    @app.get("/model", dependencies=[auth])
    async def model() -> dict[str, Any]:
        return service.model_info()

    @app.post("/predict", dependencies=[auth])
    async def predict(request: Request) -> JSONResponse:
        """One or more images as multipart/form-data (any field name) -> one result per image."""
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                return _error(400, f"Content-Length {declared!r} is not a number")
            if int(declared) > limits.max_body_bytes:
                return _error(413, f"request body of {int(declared):,} bytes is over the limit of "
                                   f"{limits.max_body_bytes:,}; send fewer or smaller images")
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "multipart/form-data":
            return _error(415, f"send images as multipart/form-data (got {kind or 'no content type'!r}), "
                               "e.g. curl -F file=@photo.jpg http://HOST:PORT/predict")
        if not service.try_admit():
            return _error(503, f"busy: {service.in_flight} requests in progress (queue size {limits.queue_size}); "
                               f"retry in {limits.retry_after_s} s", headers={"Retry-After": str(limits.retry_after_s)})
        handed_over = False
        try:
            try:
                uploads = await asyncio.wait_for(_read_uploads(request, limits), limits.read_timeout_s)
            except asyncio.TimeoutError:
                return _error(408, f"the request body did not arrive within {limits.read_timeout_s} s")
            if not uploads:
                return _error(422, "no image in the request; send files as multipart/form-data, "
                                   "e.g. curl -F file=@photo.jpg http://HOST:PORT/predict")
            # The work finishes even if the client goes away, and only then frees its slot: the queue
            # bounds the work in the pools, not just the connections.
            task = service.spawn(service.process(uploads))
            task.add_done_callback(service.release)
            handed_over = True
            results = await asyncio.shield(task)
        finally:
            if not handed_over:
                service.release()
        failed = [r for r in results if r.error]
        # 200 when any image was predicted (failures carry their own status); else the first failure's.
        status = failed[0].status if len(failed) == len(results) else 200
        return JSONResponse({"task": predictor.labels.task, "results": [r.to_json() for r in results]},
                            status_code=status)

    return app


def _version() -> str:

    return __version__


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")
