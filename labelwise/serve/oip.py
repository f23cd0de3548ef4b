"""The Open Inference Protocol (KServe / Triton / MLServer "V2" REST API) beside labelwise's own JSON.

    GET  /v2/health/live, /v2/health/ready      no token needed
    GET  /v2                                    server metadata
    GET  /v2/models/{name}[/versions/1]         inputs, outputs, labels, task, thresholds
    GET  /v2/models/{name}[/versions/1]/ready
    POST /v2/models/{name}[/versions/1]/infer

One input per request, either
    image   BYTES [N]           encoded image files (JPEG, PNG, ...), decoded as by /predict
    pixels  FP32 [N, C, S, S]   values in [0, 1], or UINT8 [N, C, S, S] in 0..255 (C, S: see metadata)
Outputs (all by default; ask for some with "outputs")
    probabilities  FP32 [N, L]  sigmoid per label (multi-label) or softmax (multi-class)
    decisions      BOOL [N, L]  the bundle's thresholds (multi-label) or the argmax (multi-class)
    labels         BYTES [N]    the predicted label names of each image, as a JSON list

Tensors travel as JSON ("data", row-major; BYTES elements base64 in JSON) or with the binary tensor
extension that tritonclient uses (Inference-Header-Content-Length). The limits and 4xx answers are
those of /predict: token 401, body 413, queue 503 + Retry-After, slow body 408, per image 415/413/422.
An OIP response has no per-image errors, so one unusable image fails the request with its status.

>>> import tritonclient.http as http                                                   # doctest: +SKIP
>>> c = http.InferenceServerClient("127.0.0.1:8000")                                   # doctest: +SKIP
>>> x = http.InferInput("image", [1], "BYTES"); x.set_data_from_numpy(np.array([png], dtype=object))  # doctest: +SKIP
>>> c.infer("demo", [x]).as_numpy("labels")                                           # doctest: +SKIP
"""
from __future__ import annotations

import base64
import binascii
import json
import struct
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response

from labelwise.serve.service import Service, _Result, _Upload
from labelwise.serve.transport import admitted, read_body
from labelwise.version import __version__

HEADER_LENGTH = "Inference-Header-Content-Length"
VERSION = "1"
OUTPUTS = ("probabilities", "decisions", "labels")
_DTYPES = {"FP32": np.dtype("<f4"), "UINT8": np.dtype("u1"), "BOOL": np.dtype("?")}


class _BadRequest(HTTPException):
    def __init__(self, status: int, message: str):
        super().__init__(status, message)


def model_metadata(service: Service, name: str) -> dict[str, Any]:
    meta, labels = service.predictor.meta, service.predictor.labels
    c, s, n = meta.in_chans, meta.image_size, len(labels)
    info = service.model_info()
    return {
        "name": name, "versions": [VERSION], "platform": "labelwise",
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1]},
                   {"name": "pixels", "datatype": "FP32", "shape": [-1, c, s, s]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, n]},
                    {"name": "decisions", "datatype": "BOOL", "shape": [-1, n]},
                    {"name": "labels", "datatype": "BYTES", "shape": [-1]}],
        # beyond the protocol's fields (clients ignore what they do not know)
        "task": labels.task, "labels": list(labels.names), "thresholds": info["thresholds"],
        "at_least_one": info["at_least_one"], "tta": info["tta"],
        "input_notes": f"one input per request: 'image' (encoded files) or 'pixels' ({c}x{s}x{s}, FP32 in [0, 1] "
                       "or UINT8), squash-resized images as labelwise decodes them",
    }


# --------------------------------------------------------------------------- tensors

def _bytes_elements(raw: bytes) -> list[bytes]:
    """Triton's BYTES serialisation: each element is a little-endian uint32 length and that many bytes."""
    out, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise _BadRequest(400, "malformed BYTES tensor: a length prefix is cut off")
        (size,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + size > len(raw):
            raise _BadRequest(400, "malformed BYTES tensor: an element is shorter than its length prefix")
        out.append(raw[pos:pos + size])
        pos += size
    return out


def _serialize_bytes(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(b)) + b for b in items)


def _split_body(request: Request, body: bytes) -> tuple[dict[str, Any], bytes]:
    header_len = request.headers.get(HEADER_LENGTH)
    if header_len is not None and not header_len.strip().isdigit():
        raise _BadRequest(400, f"{HEADER_LENGTH} {header_len!r} is not a number")
    cut = int(header_len) if header_len is not None else len(body)
    if cut > len(body):
        raise _BadRequest(400, f"{HEADER_LENGTH} {cut} is longer than the body ({len(body)} bytes)")
    try:
        header = json.loads(body[:cut])
    except (ValueError, UnicodeDecodeError) as e:
        raise _BadRequest(400, f"the inference request is not valid JSON ({e})") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise _BadRequest(400, "the inference request needs an 'inputs' list (Open Inference Protocol)")
    return header, body[cut:]


def _input(header: dict[str, Any], binary: bytes) -> tuple[dict[str, Any], Any]:
    """The one input and its data: list of bytes (BYTES) or a numpy array (FP32 / UINT8)."""
    inputs = header["inputs"]
    if len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise _BadRequest(400, f"send exactly one input, 'image' (BYTES) or 'pixels' (FP32/UINT8); got {len(inputs)}")
    spec = inputs[0]
    name, dtype, shape = spec.get("name"), str(spec.get("datatype", "")).upper(), spec.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise _BadRequest(400, f"input {name!r}: 'shape' must be a list of sizes, got {shape!r}")
    size = (spec.get("parameters") or {}).get("binary_data_size")
    raw = binary[:size] if size is not None else None
    if size is not None and len(raw) != size:
        raise _BadRequest(400, f"input {name!r}: binary_data_size {size} but only {len(binary)} bytes follow")
    if name == "image":
        if dtype != "BYTES":
            raise _BadRequest(400, f"input 'image' must be BYTES (encoded image files), got {dtype}")
        if raw is not None:
            items = _bytes_elements(raw)
        else:
            try:
                items = [base64.b64decode(d, validate=True) for d in spec.get("data") or []]
            except (binascii.Error, TypeError, ValueError):
                raise _BadRequest(400, "input 'image' in JSON: each element must be a base64 string of an image "
                                       "file (or use the binary tensor extension)") from None
        if len(items) != int(np.prod(shape)):
            raise _BadRequest(400, f"input 'image': shape {shape} but {len(items)} elements")
        return spec, items
    if name == "pixels":
        if dtype not in ("FP32", "UINT8"):
            raise _BadRequest(400, f"input 'pixels' must be FP32 (0..1) or UINT8 (0..255), got {dtype}")
        try:
            arr = np.frombuffer(raw, dtype=_DTYPES[dtype]) if raw is not None else \
                np.asarray(spec.get("data"), dtype=_DTYPES[dtype]).reshape(-1)
            return spec, arr.reshape(shape)
        except (ValueError, TypeError) as e:
            raise _BadRequest(400, f"input 'pixels': data does not fit shape {shape} as {dtype} ({e})") from None
    raise _BadRequest(400, f"unknown input {name!r}: this model takes 'image' (BYTES) or 'pixels' (FP32/UINT8)")


def _pixels(service: Service, arr: np.ndarray, dtype: str) -> np.ndarray:
    meta = service.predictor.meta
    want = (meta.in_chans, meta.image_size, meta.image_size)
    if arr.ndim != 4 or tuple(arr.shape[1:]) != want:
        raise _BadRequest(400, f"input 'pixels' must have shape [N, {want[0]}, {want[1]}, {want[2]}] (NCHW, "
                               f"squash-resized), got {list(arr.shape)}")
    if len(arr) == 0:
        raise _BadRequest(422, "no image in the request")
    if len(arr) > service.limits.max_files:
        raise _BadRequest(413, f"{len(arr)} images in one request; the limit is {service.limits.max_files}")
    if dtype == "UINT8":
        return np.array(arr, dtype=np.uint8)  # a copy: frombuffer arrays are read-only
    if not np.isfinite(arr).all() or arr.min(initial=0.0) < 0.0 or arr.max(initial=0.0) > 1.0:
        raise _BadRequest(400, "input 'pixels' (FP32) must hold values in [0, 1]: pixel value / 255")
    return np.ascontiguousarray(arr, dtype=np.float32) * np.float32(255.0)  # the engines divide by 255


async def _decode_images(service: Service, items: list[bytes]) -> np.ndarray:
    if len(items) > service.limits.max_files:
        raise _BadRequest(413, f"{len(items)} images in one request; the limit is {service.limits.max_files}")
    if not items:
        raise _BadRequest(422, "no image in the request")
    decoded = await service.decode_uploads([_Upload(f"image[{i}]", "", data) for i, data in enumerate(items)],
                                           all_or_nothing=True)
    for got in decoded:  # no per-image errors in an OIP response: the first unusable image fails the request
        if isinstance(got, _Result):
            raise _BadRequest(got.status, got.error)
    return np.stack(decoded)


def _outputs(service: Service, probs: np.ndarray, header: dict[str, Any], name: str) -> tuple[bytes, dict[str, str]]:
    hot = service.predictor.decide(probs).astype(bool)
    names = service.predictor.labels.names
    labels = [json.dumps([names[k] for k in np.flatnonzero(row)]).encode() for row in hot]
    tensors = {"probabilities": ("FP32", probs.astype(np.float32)), "decisions": ("BOOL", hot),
               "labels": ("BYTES", labels)}
    binary_default = bool((header.get("parameters") or {}).get("binary_data_output", False))
    wanted = header.get("outputs") or [{"name": n} for n in OUTPUTS]
    body: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for req in wanted:
        out_name = req.get("name") if isinstance(req, dict) else None
        if out_name not in tensors:
            raise _BadRequest(400, f"unknown output {out_name!r}; this model has {', '.join(OUTPUTS)}")
        dtype, value = tensors[out_name]
        shape = [len(probs)] if dtype == "BYTES" else list(value.shape)
        entry: dict[str, Any] = {"name": out_name, "datatype": dtype, "shape": shape}
        if (req.get("parameters") or {}).get("binary_data", binary_default):
            blob = _serialize_bytes(value) if dtype == "BYTES" else np.ascontiguousarray(value).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif dtype == "BYTES":
            entry["data"] = [v.decode() for v in value]
        else:
            entry["data"] = value.reshape(-1).tolist()
        body.append(entry)
    response = {"model_name": name, "model_version": VERSION, "outputs": body}
    if "id" in header:
        response["id"] = header["id"]
    text = json.dumps(response).encode()
    if not blobs:
        return text, {"content-type": "application/json"}
    return text + b"".join(blobs), {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(text))}


# --------------------------------------------------------------------------- routes

def add_routes(app: FastAPI, service: Service, auth: Any, name: str) -> None:
    """Mount the V2 endpoints for the model ``name`` on ``app`` (``auth``: the bearer-token dependency)."""
    limits = service.limits

    def check_name(model: str, version: str | None = None) -> None:
        if model != name:
            raise HTTPException(404, f"unknown model {model!r}; this server serves {name!r}")
        if version not in (None, VERSION):
            raise HTTPException(404, f"model {name!r} has version {VERSION} only, not {version!r}")

    @app.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}  # the model is loaded and warmed up before the app exists

    @app.get("/v2", dependencies=[auth])
    async def server_metadata() -> dict[str, Any]:
        return {"name": "labelwise", "version": __version__, "extensions": ["binary_tensor_data"]}

    @app.get("/v2/models/{model}", dependencies=[auth])
    @app.get("/v2/models/{model}/versions/{version}", dependencies=[auth])
    async def metadata(model: str, version: str | None = None) -> dict[str, Any]:
        check_name(model, version)
        return model_metadata(service, name)

    @app.get("/v2/models/{model}/ready", dependencies=[auth])
    @app.get("/v2/models/{model}/versions/{version}/ready", dependencies=[auth])
    async def model_ready(model: str, version: str | None = None) -> dict[str, Any]:
        check_name(model, version)
        return {"name": name, "ready": True}

    @app.post("/v2/models/{model}/infer", dependencies=[auth])
    @app.post("/v2/models/{model}/versions/{version}/infer", dependencies=[auth])
    async def infer(model: str, request: Request, version: str | None = None) -> Response:
        check_name(model, version)

        async def read() -> tuple[dict[str, Any], dict[str, Any], Any]:
            header, binary = _split_body(request, await read_body(request, limits))
            return (header, *_input(header, binary))

        async def work(got: tuple[dict[str, Any], dict[str, Any], Any]) -> tuple[dict[str, Any], np.ndarray]:
            header, spec, data = got
            if spec["name"] == "image":
                pixels = await _decode_images(service, data)
            else:
                pixels = _pixels(service, data, str(spec["datatype"]).upper())
            return header, await service.probs(pixels)

        answer = await admitted(request, service, read, work)
        if isinstance(answer, Response):
            return answer
        header, probs = answer
        content, headers = _outputs(service, probs, header, name)
        return Response(content, headers=headers)
