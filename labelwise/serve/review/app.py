"""The review's web app (FastAPI): one static page and a small JSON API over a ReviewSession.

    GET  /                    the page (static/review.html; no data in it)
    GET  /api/overview        labels, task, thresholds, the queues and each item's state
    GET  /api/item?id=KEY     one image: given labels, probabilities, suggestion, decision
    GET  /api/image?id=KEY    the image file (only images of the data or the to-label list); as PNG, decoded with
                              the model's bands and band scaling, for TIFFs and for such models
    GET  /api/cam?id=KEY&label=NAME   class-activation map as PNG; 404 when not available
    POST /api/decision        {"image": KEY, "action": accept|edit|exclude|correct|reset, "labels": [...]}
    POST /api/export          writes RUN/review/labels_reviewed.csv (+ .summary.json), returns the summary

Like Jupyter, a random token guards it: every /api request presents it (header
``X-Review-Token``, ``Authorization: Bearer``, or for GETs a ``token`` query parameter, which
<img> tags need). A request that changes something must send it in a header and as
``application/json``: a page in another tab can do neither without a CORS preflight, which this
app never answers. Bad input (unknown image, label or action, a path with ``..``, an absolute
path) gets a 4xx with the reason and changes nothing.

>>> app = create_review_app(ReviewSession("runs/demo"), token="s3cret")   # doctest: +SKIP
"""
from __future__ import annotations

import hmac
import io
import json
import secrets
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from PIL import Image
from starlette.exceptions import HTTPException as StarletteHTTPException

from labelwise.data.band_scaling import PLAIN, PixelSpec
from labelwise.data.decoded import decode_all
from labelwise.data.images import read_image
from labelwise.errors import LabelwiseError
from labelwise.serve.review.export import export_labels
from labelwise.serve.review.session import ReviewInputError, ReviewSession
from labelwise.serve.transport import page_with_csp

MAX_BODY_BYTES = 64 * 1024  # a decision is a few hundred bytes
EXPORT_NAME = "labels_reviewed.csv"  # in RUN/review/; the browser never chooses a path
WEB_IMAGES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
              ".webp": "image/webp", ".bmp": "image/bmp"}
TOKEN_HEADER = "x-review-token"


def new_token() -> str:
    return secrets.token_urlsafe(24)


def _page() -> tuple[str, str]:
    """The page and a Content-Security-Policy allowing exactly its inline script and style."""
    return page_with_csp("labelwise.serve.review", "static/review.html", img_src="'self' data:")


def create_review_app(session: ReviewSession, token: str) -> FastAPI:
    """The app over ``session``; ``token`` is required on every /api request."""
    if not token:
        raise LabelwiseError("the review needs a token (use new_token())")
    expected = token.encode("utf-8")
    page, csp = _page()
    app = FastAPI(title="labelwise review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.session = session

    def check_token(request: Request, header_only: bool) -> None:
        got = request.headers.get(TOKEN_HEADER, "")
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if not got and scheme.lower() == "bearer":
            got = value.strip()
        if not got and not header_only:
            got = request.query_params.get("token", "")
        if not hmac.compare_digest(got.encode("utf-8"), expected):
            raise ReviewInputError("missing or wrong token: open the URL `labelwise review` printed "
                                   f"(it carries ?token=...), or send the {TOKEN_HEADER} header", 401)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        headers = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
        try:
            if request.url.path.startswith("/api/"):
                check_token(request, header_only=request.method != "GET")
            response = await call_next(request)
        except ReviewInputError as e:
            response = JSONResponse({"error": str(e)}, status_code=e.status)
        response.headers.update(headers)
        return response

    @app.exception_handler(ReviewInputError)
    async def refused(_: Request, exc: ReviewInputError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(LabelwiseError)
    async def user_error(_: Request, exc: LabelwiseError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": csp})

    @app.get("/api/overview")
    def overview() -> dict[str, Any]:
        return session.overview()

    @app.get("/api/item")
    def item(id: str = "") -> dict[str, Any]:  # noqa: A002 - the query parameter's name
        return session.detail(id)

    @app.get("/api/image")
    def image(id: str = "") -> Response:  # noqa: A002
        it = session.item(id)
        if not it.path.is_file():
            raise ReviewInputError(f"{it.key}: the file is gone from {it.path.parent}", 404)
        spec = session.run.meta.pixel_spec
        kind = WEB_IMAGES.get(it.path.suffix.lower())
        if kind and spec == PLAIN:
            return FileResponse(it.path, media_type=kind)
        # TIFF and friends (browsers cannot show them), or a model with --bands / band scaling (a 16-bit PNG shown
        # as is would be near-black): the picture as the model sees it
        return Response(_as_png(it.path, spec), media_type="image/png")

    @app.get("/api/cam")
    def cam(id: str = "", label: str = "") -> Response:  # noqa: A002
        it = session.item(id)
        if label not in session.labels.names:
            raise ReviewInputError(f"unknown label {label[:100]!r}", 422)
        png = class_activation_png(session, it.path, label)
        if png is None:
            raise ReviewInputError("no class-activation map available for this model", 404)
        return Response(png, media_type="image/png")

    @app.post("/api/decision")
    async def decision(request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        rec = session.decide(body)
        return {"ok": True, "decision": rec, "item": session.detail(rec["image"])}

    @app.post("/api/export")
    async def export(request: Request) -> dict[str, Any]:
        await _json_body(request, allow_empty=True)
        return export_labels(session, session.review_dir / EXPORT_NAME)

    return app


async def _json_body(request: Request, allow_empty: bool = False) -> Any:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.strip().isdigit() or int(declared) > MAX_BODY_BYTES):
        raise ReviewInputError(f"request body over {MAX_BODY_BYTES:,} bytes", 413)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ReviewInputError(f"request body over {MAX_BODY_BYTES:,} bytes", 413)
    if allow_empty and not body:
        return None
    if kind != "application/json":
        raise ReviewInputError(f"send application/json (got {kind or 'no content type'!r})", 415)
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReviewInputError(f"the body is not valid JSON ({e})", 400) from None


def _as_png(path, pixel_spec: PixelSpec = PLAIN) -> bytes:
    """The image decoded as the model sees it (its bands and band scaling: a 16-bit band spans 0-255, not the
    few grey levels x / 257 leaves), the first three channels shown."""
    try:
        arr = read_image(path, pixel_spec=pixel_spec)
    except LabelwiseError as e:
        raise ReviewInputError(f"cannot show {path.name}: {e}", 422) from None
    arr = arr[..., :3] if arr.ndim == 3 and arr.shape[2] >= 3 else (arr[..., 0] if arr.ndim == 3 else arr)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    return buf.getvalue()


def class_activation_png(session: ReviewSession, path, label: str) -> bytes | None:
    """A Grad-CAM overlay for ``label`` (labelwise.infer.explain), or None when that module is
    missing or cannot explain this model."""
    try:
        from labelwise.infer import explain
    except ImportError:
        return None
    meta = session.run.meta
    model = session.predictor.model
    if model is None:
        return None
    try:
        pixels, bad = decode_all([path], meta.image_size, meta.in_chans, pixel_spec=meta.pixel_spec)
        if bad:
            return None
        cam = explain.class_activation_maps(model, pixels, [(0, session.labels.index(label))])[0]
        side = max(meta.image_size, explain.MIN_OVERLAY_SIDE)
        img = explain.overlay(explain.base_image(path, meta.in_chans, side, meta.pixel_spec), cam)
    except (LabelwiseError, AttributeError, NotImplementedError, RuntimeError, ValueError):
        return None
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
