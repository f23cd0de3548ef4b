"""`labelwise serve RUN`: an HTTP service around a model bundle (FastAPI + uvicorn).

    POST /predict   multipart/form-data, one or more image files -> JSON, one result per image
    GET  /model     labels, task, input spec, thresholds, limits
    GET  /health    liveness and load (no token needed)
    GET  /          a page to drop an image on and see its labels as probability bars
    /v2/...         the Open Inference Protocol (KServe / Triton V2): health, metadata, infer (oip.py)

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
import re
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from labelwise.serve import oip
from labelwise.serve.limits import ServeLimits, make_limits
from labelwise.infer.engines import ENGINES
from labelwise.serve.service import Service, _Upload, load_predictor, sniff_format
from labelwise.serve.transport import (
    _bearer_check,
    _error,
    _is_loopback,
    _page,
    _read_uploads,
    admitted,
)
from labelwise.version import __version__

__all__ = ["ENGINES", "ServeLimits", "Service", "create_app", "make_limits", "sniff_format", "_is_loopback"]


def create_app(run_dir: str | Path, token: str | None = None, engine: str = "torch", *,
               threshold: float | None = None, limits: ServeLimits | None = None,
               notify: Callable[[str], None] | None = None, model_name: str | None = None,
               tta: bool | int = False, **limit_overrides: Any) -> FastAPI:
    """The FastAPI app serving the bundle in ``run_dir``; limits as ServeLimits or its field names.
    ``model_name``: the model's name under /v2/models/ (default: the run directory's name).
    ``tta``: test-time augmentation on every endpoint, as ``Predictor.load(tta=...)`` (True or a view count).

    >>> app = create_app("runs/demo", max_body_bytes=8 * 2**20, queue_size=8)   # doctest: +SKIP
    """
    limits = replace(limits, **limit_overrides).check() if limits else make_limits(**limit_overrides)
    predictor = load_predictor(run_dir, engine, threshold, notify, tta)
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
        def multipart_only() -> JSONResponse | None:
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind == "multipart/form-data":
                return None
            return _error(415, f"send images as multipart/form-data (got {kind or 'no content type'!r}), "
                               "e.g. curl -F file=@photo.jpg http://HOST:PORT/predict")

        async def read() -> list[_Upload]:
            try:
                uploads = await asyncio.wait_for(_read_uploads(request, limits), limits.read_timeout_s)
            except asyncio.TimeoutError:
                raise HTTPException(408, f"the request body did not arrive within {limits.read_timeout_s} s") from None
            if not uploads:
                raise HTTPException(422, "no image in the request; send files as multipart/form-data, "
                                         "e.g. curl -F file=@photo.jpg http://HOST:PORT/predict")
            return uploads

        results = await admitted(request, service, read, service.process, check=multipart_only)
        if isinstance(results, JSONResponse):
            return results
        failed = [r for r in results if r.error]
        # 200 when any image was predicted (failures carry their own status); else the first failure's.
        status = failed[0].status if len(failed) == len(results) else 200
        return JSONResponse({"task": predictor.labels.task, "results": [r.to_json() for r in results]},
                            status_code=status)

    app.state.model_name = model_name or default_model_name(run_dir)
    oip.add_routes(app, service, auth, app.state.model_name)
    return app


def default_model_name(run_dir: str | Path) -> str:
    """The Open Inference Protocol name of a bundle: its folder's name, in URL-safe characters."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(run_dir).resolve().name).strip("-.")
    return name or "model"


def _version() -> str:

    return __version__
