"""HTTP plumbing shared by the server's routes: bounded body reading, multipart parsing, the bearer
token, JSON errors, the upload page."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
from importlib import resources
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from labelwise.serve.limits import ServeLimits
from labelwise.serve.service import Service, _Upload

Body = TypeVar("Body")

_MAX_NAME_CHARS = 200  # file names are echoed back; clip what a client may send


class _BodyTooLarge(Exception):
    pass


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
    return page_with_csp("labelwise.serve", "static/index.html", img_src="blob: data:")


def page_with_csp(package: str, resource: str, img_src: str) -> tuple[str, str]:
    """A packaged HTML page and a Content-Security-Policy allowing exactly its inline script and style."""
    html = resources.files(package).joinpath(resource).read_text(encoding="utf-8")

    def digest(tag: str) -> str:
        found = re.search(rf"<{tag}>(.*?)</{tag}>", html, re.S)
        body = found.group(1) if found else ""
        return "'sha256-" + base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode() + "'"

    csp = (f"default-src 'none'; script-src {digest('script')}; style-src {digest('style')}; "
           f"img-src {img_src}; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return html, csp


def check_declared_length(request: Request, limits: ServeLimits) -> JSONResponse | None:
    """400 / 413 from the Content-Length header alone, before any of the body is read."""
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    if not declared.strip().isdigit():
        return _error(400, f"Content-Length {declared!r} is not a number")
    if int(declared) > limits.max_body_bytes:
        return _error(413, f"request body of {int(declared):,} bytes is over the limit of "
                           f"{limits.max_body_bytes:,}; send fewer or smaller images")
    return None


async def read_body(request: Request, limits: ServeLimits) -> bytes:
    """The whole (capped) body within the read timeout: HTTPException 413 / 408 otherwise."""
    async def collect() -> bytes:
        return b"".join([chunk async for chunk in _limited(request, limits.max_body_bytes)])
    try:
        return await asyncio.wait_for(collect(), limits.read_timeout_s)
    except _BodyTooLarge:
        raise HTTPException(413, f"request body is over the limit of {limits.max_body_bytes:,} bytes; "
                                 "send fewer or smaller images (or raise --max-body-mb)") from None
    except asyncio.TimeoutError:
        raise HTTPException(408, f"the request body did not arrive within {limits.read_timeout_s} s") from None


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


async def admitted(request: Request, service: Service, read: Callable[[], Awaitable[Body]],
                   work: Callable[[Body], Awaitable[Any]],
                   check: Callable[[], JSONResponse | None] | None = None) -> Any:
    """The admission both faces share (labelwise JSON and the Open Inference Protocol), cheapest first:
    Content-Length (400/413), ``check()`` (the route's own refusal from the headers, or None) and a free
    queue slot (503 + Retry-After), all before a byte of the body is read;
    then ``read()`` (bounded and timed out; it raises HTTPException to refuse) within the slot, and
    ``work(body)`` as a task that finishes, and only then frees the slot, even if the client goes away:
    the queue bounds the work in the pools, not just the connections. Returns what ``work`` returns,
    or the JSONResponse that refused the request."""
    limits = service.limits
    refused = check_declared_length(request, limits) or (check() if check else None)
    if refused is not None:
        return refused
    if not service.try_admit():
        return _error(503, f"busy: {service.in_flight} requests in progress (queue size {limits.queue_size}); "
                           f"retry in {limits.retry_after_s} s", headers={"Retry-After": str(limits.retry_after_s)})
    handed_over = False
    try:
        body = await read()
        task = service.spawn(work(body))
        task.add_done_callback(_release(service))
        handed_over = True
        return await asyncio.shield(task)
    finally:
        if not handed_over:
            service.release()


def _release(service: Service) -> Callable[[asyncio.Future], None]:
    """Free the slot; a refused input (an HTTPException) is the client's answer, not a server error to log."""
    def done(task: asyncio.Future) -> None:
        refused = not task.cancelled() and isinstance(task.exception(), HTTPException)
        service.release(None if refused else task)
    return done
