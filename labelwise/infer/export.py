"""Export a model bundle to ONNX, TorchScript or timm's Hub layout (models/hub.py), and keep ``RUN/model.onnx`` in step with the weights.

The exported network is self-contained: it takes ``pixels``, float32 (N, C, S, S) in [0, 1] with a
dynamic batch axis N, normalises them itself, and returns two outputs, ``logits`` (N, L) and
``probs`` (N, L) (sigmoid per label for multi-label, softmax for multi-class). Everything needed to
use it travels in the ONNX ``metadata_props`` (keys ``labelwise.*``: task, labels, per-label
thresholds, input spec, the SHA-256 of the ``model.safetensors`` it came from), so a plain
onnxruntime session runs it without labelwise or torch installed:

>>> import json, onnx, onnxruntime as ort                                            # doctest: +SKIP
>>> props = {p.key: p.value for p in onnx.load("runs/demo/model.onnx").metadata_props}  # doctest: +SKIP
>>> labels = json.loads(props["labelwise.labels"])                                    # doctest: +SKIP
>>> logits, probs = ort.InferenceSession("runs/demo/model.onnx").run(None, {"pixels": x})  # doctest: +SKIP

Every export is checked against PyTorch on a random batch before it is written.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from labelwise.data.cache import default_cache_dir
from labelwise.errors import BundleError, ModelError
from labelwise.infer.engines import ONNX_INPUT, ONNX_OUTPUTS, OnnxEngine
from labelwise.io import atomic_write_bytes
from labelwise.models import hub
from labelwise.models.bundle import WEIGHTS_FILE, ModelMeta, load_model, read_meta
from labelwise.registry import Registry
from labelwise.version import __version__

DEFAULT_FILES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt", "timm": hub.HUB_DIR}
# Version of the contract above (input/output names, dtypes, metadata keys). Bumping it makes every
# existing RUN/model.onnx stale, so the onnx engine re-exports instead of misreading an old file.
EXPORT_FORMAT = "1"
VERIFY_TOLERANCE = 1e-4  # max |probability difference| to PyTorch an export may show


class ExportError(ModelError):
    """A model could not be exported, or its export does not reproduce PyTorch's outputs."""


@dataclass(frozen=True)
class ExportResult:
    path: Path | None  # None: kept in memory only (neither the run directory nor the cache was writable)
    format: str
    exporter: str  # which torch exporter produced it
    max_prob_diff: float  # vs PyTorch, on a random batch
    seconds: float
    size_bytes: int


class WithProbabilities(nn.Module):
    """Classifier -> (logits, probabilities): users of the export need not know sigmoid vs softmax."""

    def __init__(self, model: nn.Module, multilabel: bool):
        super().__init__()
        self.model = model
        self.multilabel = multilabel

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(pixels)
        return logits, torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)


# --------------------------------------------------------------------------- metadata

def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_metadata(meta: ModelMeta, weights_sha256: str) -> dict[str, str]:
    """The ``labelwise.*`` metadata of an export. An existing export is current when it carries all of
    these with the same values: same weights, labels, thresholds, input spec and export format."""

    c, s = meta.in_chans, meta.image_size
    return {
        "labelwise.export_format": EXPORT_FORMAT,
        "labelwise.weights_sha256": weights_sha256,
        "labelwise.task": meta.labels.task,
        "labelwise.labels": json.dumps(list(meta.labels.names)),
        "labelwise.evaluation.thresholds": json.dumps([float(t) for t in meta.thresholds]),
        "labelwise.at_least_one": json.dumps(meta.at_least_one),
        "labelwise.backbone": meta.backbone,
        "labelwise.input": json.dumps({
            "name": ONNX_INPUT, "dtype": "float32", "shape": ["batch", c, s, s], "layout": "NCHW",
            "channels": c, "size": s, "range": [0.0, 1.0],
            "preprocess": f"decode, {_bands_step(meta)}convert to {c} channel(s), squash-resize to {s}x{s}, "
                          "divide by 255; the model normalises (mean/std) itself",
            **meta.pixel_spec.to_dict()}),
        "labelwise.outputs": json.dumps({
            "logits": "float32 (batch, labels)",
            "probs": "float32 (batch, labels): " + ("sigmoid per label; label j is predicted when probs[:, j] >= "
                                            "thresholds[j]" if meta.labels.multilabel else "softmax; the "
                                            "prediction is the argmax")}),
        "labelwise.version": __version__,
    }


def _bands_step(meta: ModelMeta) -> str:
    """The band choice and scaling (model.json input.bands / input.scaling) as a preprocessing step, if any."""
    spec, steps = meta.pixel_spec, []
    if spec.bands is not None:
        steps.append(f"keep bands {list(spec.bands)} (1-based, in this order)")
    if spec.scaled:
        steps.append("scale each band of a high-bit image to uint8 by input.scaling (low -> 0, high -> 255, "
                     "clipped); 8-bit images as they are")
    return "".join(step + ", " for step in steps)


def _stale_keys(found: dict[str, str], expected: dict[str, str]) -> list[str]:
    # The labelwise version may change without changing the export.
    return [k for k, v in expected.items() if k != "labelwise.version" and found.get(k) != v]


def read_onnx_metadata(source: Path | bytes) -> dict[str, str]:
    """The metadata_props of an ONNX file (or its bytes); {} if it is not a readable ONNX model."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_from_string(source) if isinstance(source, bytes) else \
            onnx.load(str(source), load_external_data=False)
    except (OSError, DecodeError, ValueError, onnx.onnx_cpp2py_export.checker.ValidationError):
        return {}
    return {p.key: p.value for p in model.metadata_props}


# --------------------------------------------------------------------------- exporters

def _example_input(meta: ModelMeta, batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, meta.in_chans, meta.image_size, meta.image_size, generator=g)


def _quiet():
    """Silence the exporters' deprecation and tracer warnings and their progress prints."""
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    return stack


def _onnx_dynamo(wrapped: nn.Module, example: torch.Tensor) -> bytes:
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(wrapped, (example,), dynamo=True, input_names=[ONNX_INPUT],
                                output_names=list(ONNX_OUTPUTS), dynamic_shapes=({0: batch},),
                                external_data=False, verbose=False)
    return program.model_proto.SerializeToString()


def _onnx_legacy(wrapped: nn.Module, example: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    axes = {name: {0: "batch"} for name in (ONNX_INPUT, *ONNX_OUTPUTS)}
    torch.onnx.export(wrapped, (example,), buf, dynamo=False, input_names=[ONNX_INPUT],
                      output_names=list(ONNX_OUTPUTS), dynamic_axes=axes, opset_version=17)
    return buf.getvalue()


def onnx_bytes(model: nn.Module, meta: ModelMeta, weights_sha256: str = "") -> tuple[bytes, str]:
    """Export ``model`` to ONNX with labelwise metadata; returns (bytes, exporter name).

    The torch.export-based exporter comes first. The older TorchScript-based one (deprecated in
    PyTorch, but tolerant of Python control flow) is the fallback for timm backbones that
    torch.export cannot capture. TF-"same" padding (efficientnet_lite0) is traced as constants for
    the bundle's input size, which is fixed, so only the batch axis is dynamic.
    """
    import onnx

    wrapped = WithProbabilities(model, meta.labels.multilabel).eval()
    example = _example_input(meta, batch=2)  # 2, not 1: a batch of 1 may get specialised away
    errors = []
    for exporter, fn in (("torch.export", _onnx_dynamo), ("torchscript-legacy", _onnx_legacy)):
        try:
            with _quiet(), torch.no_grad():
                data = fn(wrapped, example)
            break
        except Exception as e:  # noqa: BLE001 -- any exporter failure: try the next one, then report all
            errors.append(f"{exporter}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    else:
        raise ExportError(f"backbone {meta.backbone!r} could not be exported to ONNX ({'; '.join(errors)}); "
                          "use --engine torch, or train with a registered backbone (`labelwise models`)")
    proto = onnx.load_from_string(data)
    props = {**export_metadata(meta, weights_sha256), "labelwise.exporter": exporter}
    onnx.helper.set_model_props(proto, props)
    proto.producer_name = "labelwise"
    proto.doc_string = (f"labelwise {meta.labels.task} classifier ({meta.backbone}); input {ONNX_INPUT!r} float32 "
                        f"(N, {meta.in_chans}, {meta.image_size}, {meta.image_size}) in [0, 1]; outputs "
                        "'logits' and 'probs' (N, labels); see metadata_props labelwise.*")
    return proto.SerializeToString(), exporter


def torchscript_bytes(model: nn.Module, meta: ModelMeta, weights_sha256: str = "") -> bytes:
    """Trace ``model`` to TorchScript (outputs (logits, probs)); the metadata rides along as the extra
    file ``labelwise.json`` (``torch.jit.load(f, _extra_files={"labelwise.json": ""})``)."""
    wrapped = WithProbabilities(model, meta.labels.multilabel).eval()
    props = {**export_metadata(meta, weights_sha256), "labelwise.exporter": "torch.jit.trace"}
    buf = io.BytesIO()
    try:
        with _quiet(), torch.no_grad():
            traced = torch.jit.trace(wrapped, _example_input(meta, batch=2), check_trace=False)
            torch.jit.save(traced, buf, _extra_files={"labelwise.json": json.dumps(props)})
    except Exception as e:  # noqa: BLE001 -- tracing failures are many and varied; report them plainly
        raise ExportError(f"backbone {meta.backbone!r} could not be traced to TorchScript ({type(e).__name__}: "
                          f"{e}); use --format onnx") from None
    return buf.getvalue()


# --------------------------------------------------------------------------- verification

@torch.inference_mode()
def _torch_outputs(model: nn.Module, x: torch.Tensor, multilabel: bool) -> tuple[np.ndarray, np.ndarray]:
    logits, probs = WithProbabilities(model, multilabel).eval()(x)
    return logits.numpy(), probs.numpy()


def verify_onnx(data: bytes, model: nn.Module, meta: ModelMeta, batch: int = 3) -> float:
    """Max |probability difference| between onnxruntime and PyTorch on a random batch; raises if above
    the tolerance (a broken export must never be written, let alone used)."""

    x = _example_input(meta, batch, seed=1)
    _, expected = _torch_outputs(model, x, meta.labels.multilabel)
    got = OnnxEngine(data).session.run(["probs"], {ONNX_INPUT: x.numpy()})[0]
    return _check(float(np.abs(got - expected).max()), "ONNX", meta)


def verify_torchscript(data: bytes, model: nn.Module, meta: ModelMeta, batch: int = 3) -> float:
    x = _example_input(meta, batch, seed=1)
    _, expected = _torch_outputs(model, x, meta.labels.multilabel)
    with _quiet(), torch.inference_mode():
        # Our own bytes from a moment ago, never a user's file.
        got = torch.jit.load(io.BytesIO(data))(x)[1].numpy()
    return _check(float(np.abs(got - expected).max()), "TorchScript", meta)


def _check(diff: float, what: str, meta: ModelMeta) -> float:
    if not diff <= VERIFY_TOLERANCE:  # also catches NaN
        raise ExportError(f"the {what} export of {meta.backbone!r} differs from PyTorch by {diff:.2g} in "
                          f"probability (tolerance {VERIFY_TOLERANCE}); use --engine torch and report this")
    return diff


# --------------------------------------------------------------------------- bundle-level API

# An exporter: (model, meta, run_dir, out or None) -> (path written, exporter name, max difference to PyTorch,
# bytes written). One function and one registration per format; --format's choices and help read this.
Exporter = Callable[[nn.Module, ModelMeta, Path, "Path | None"], tuple[Path, str, float, int]]
EXPORT_FORMATS: Registry[Exporter] = Registry("export format", option="--format")


def _target(run_dir: Path, out: Path | None, fmt: str) -> Path:
    path = Path(out) if out is not None else run_dir / DEFAULT_FILES[fmt]
    return path / DEFAULT_FILES[fmt] if path.is_dir() and fmt != "timm" else path


def _write(path: Path, data: bytes) -> None:
    try:
        atomic_write_bytes(path, data)
    except OSError as e:
        raise ExportError(f"{path}: cannot write the export ({e.strerror or e}); pass --out to a writable place") from None


@EXPORT_FORMATS.register("onnx", "ONNX for onnxruntime and any ONNX runtime (RUN/model.onnx)")
def _export_onnx(model: nn.Module, meta: ModelMeta, run_dir: Path, out: Path | None) -> tuple[Path, str, float, int]:
    data, exporter = onnx_bytes(model, meta, file_sha256(run_dir / WEIGHTS_FILE))
    diff = verify_onnx(data, model, meta)
    path = _target(run_dir, out, "onnx")
    _write(path, data)
    return path, exporter, diff, len(data)


@EXPORT_FORMATS.register("torchscript", "TorchScript for torch.jit.load (RUN/model.torchscript.pt)")
def _export_torchscript(model: nn.Module, meta: ModelMeta, run_dir: Path, out: Path | None
                        ) -> tuple[Path, str, float, int]:
    data = torchscript_bytes(model, meta, file_sha256(run_dir / WEIGHTS_FILE))
    diff = verify_torchscript(data, model, meta)
    path = _target(run_dir, out, "torchscript")
    _write(path, data)
    return path, "torch.jit.trace", diff, len(data)


@EXPORT_FORMATS.register("timm", "a folder in timm's Hugging Face Hub layout for timm.create_model('local-dir:...') "
                         "(RUN/hub/)")
def _export_timm(model: nn.Module, meta: ModelMeta, run_dir: Path, out: Path | None) -> tuple[Path, str, float, int]:
    path = _target(run_dir, out, "timm")
    diff = hub.write_hub(path, model, meta.to_dict())
    return path, "timm", diff, sum(f.stat().st_size for f in path.iterdir() if f.is_file())


FORMATS: tuple[str, ...] = EXPORT_FORMATS.names()


def export_model(run_dir: str | Path, format: str = "onnx", out: str | Path | None = None) -> ExportResult:
    """Export RUN to ``out`` (default RUN/model.onnx, RUN/model.torchscript.pt or the folder RUN/hub/),
    verified against PyTorch.

    >>> export_model("runs/demo").path                         # doctest: +SKIP
    PosixPath('runs/demo/model.onnx')
    """
    exporter = EXPORT_FORMATS.get(format)
    run_dir = Path(run_dir)
    start = time.perf_counter()
    if format == "timm":  # say why not before loading anything
        meta = read_meta(run_dir)
        hub.timm_architecture(meta.backbone, meta.fusion, meta.members)
    model, meta = load_model(run_dir)
    path, name, diff, size = exporter(model, meta, run_dir, Path(out) if out is not None else None)
    return ExportResult(path, format, name, diff, time.perf_counter() - start, size)


def _cache_path(expected: dict[str, str]) -> Path:
    relevant = {k: v for k, v in expected.items() if k != "labelwise.version"}  # as in _stale_keys
    key = hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:24]
    return default_cache_dir() / "onnx" / f"{key}.onnx"


def current_onnx(run_dir: str | Path, meta: ModelMeta | None = None,
                 notify: Callable[[str], None] | None = None) -> tuple[Path | bytes, ExportResult | None]:
    """An ONNX export of RUN that matches its current weights and model.json: RUN/model.onnx if it is
    current, else a current copy in the cache, else a fresh export (written atomically to RUN/model.onnx,
    or to the cache when RUN is read-only, or kept in memory when neither is writable).

    Returns (path or bytes, the ExportResult if an export was made now). ``notify`` hears one line
    before a (slow) export starts.
    """
    run_dir = Path(run_dir)
    meta = meta or read_meta(run_dir)
    weights = run_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise BundleError(f"{weights}: missing; a run directory needs model.json and model.safetensors")
    expected = export_metadata(meta, file_sha256(weights))
    in_run, cached = run_dir / DEFAULT_FILES["onnx"], _cache_path(expected)
    for candidate in (in_run, cached):
        if candidate.is_file() and not _stale_keys(read_onnx_metadata(candidate), expected):
            return candidate, None
    if notify:
        why = "is out of date with model.safetensors / model.json" if in_run.is_file() else "does not exist yet"
        notify(f"{in_run} {why}: exporting it for the onnx engine (once)")
    start = time.perf_counter()
    model, _ = load_model(run_dir)
    data, exporter = onnx_bytes(model, meta, expected["labelwise.weights_sha256"])
    diff = verify_onnx(data, model, meta)
    for target in (in_run, cached):
        try:
            atomic_write_bytes(target, data)
        except OSError:  # read-only run directory (a mounted model store) or cache: try the next place
            continue
        return target, ExportResult(target, "onnx", exporter, diff, time.perf_counter() - start, len(data))
    return data, ExportResult(None, "onnx", exporter, diff, time.perf_counter() - start, len(data))


# --------------------------------------------------------------------------- CLI


__all__ = [
    "EXPORT_FORMATS",
    "FORMATS",
    "ExportError",
    "ExportResult",
    "current_onnx",
    "export_metadata",
    "export_model",
    "onnx_bytes",
    "read_onnx_metadata",
    "torchscript_bytes",
]
