"""Inference engines: uint8 pixels (N, C, S, S) in, probabilities (N, num_labels) float32 out.

Two interchangeable back ends behind one small interface (``name``, ``probs(pixels, batch_size)``):

* ``TorchEngine`` runs the PyTorch classifier eagerly (``torch.inference_mode``, channels-last).
* ``OnnxEngine`` runs an exported ``model.onnx`` in onnxruntime, which on a CPU is several times
  faster than PyTorch eager for EfficientNet-style networks (``bench/inference.py``).

Both see the same [0, 1] float input (uint8 / 255; the model normalises itself), so their
probabilities agree within 1e-4 and their decisions are identical (``tests/infer/test_export.py``).

>>> engine = OnnxEngine("runs/demo/model.onnx")               # doctest: +SKIP
>>> engine.probs(np.zeros((2, 1, 32, 32), np.uint8)).shape    # doctest: +SKIP
(2, 10)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import yaml

from labelwise.errors import ConfigError
from labelwise.malloc import tune_malloc
from labelwise.models.classifier import model_probs
from labelwise.models.fold import fold_batchnorm
from labelwise.registry import Registry

ENGINES: Registry = Registry("engine")
ENGINES.add("torch", "TorchEngine", "PyTorch eager (inference_mode, channels-last, BatchNorm folded)")
ENGINES.add("onnx", "OnnxEngine", "onnxruntime over RUN/model.onnx (exported once, kept in step with the weights)")
ONNX_INPUT = "pixels"  # float32 (N, C, S, S) in [0, 1]
ONNX_OUTPUTS = ("logits", "probs")


class Engine(Protocol):
    name: str

    def probs(self, pixels: np.ndarray, batch_size: int = 128) -> np.ndarray:
        """uint8 array (N, C, S, S) -> probabilities (N, num_labels) float32."""
        ...


def check_engine(name: str) -> str:
    """Return ``name`` if it is a known engine, else a ConfigError with a did-you-mean."""
    return ENGINES.check(name)


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def to_unit_float(pixels: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1], exactly as the torch path computes it (a division, not * 1/255)."""
    return np.divide(pixels, np.float32(255.0), dtype=np.float32)


class TorchEngine:
    """PyTorch eager. The weights are moved to channels-last once: with channels-last inputs this
    avoids a layout conversion per convolution (about 1.5x faster on a CPU for EfficientNet).
    Predictions run on a copy with BatchNorm folded into the convolutions (labelwise.models.fold);
    ``model`` stays the network as trained, for Grad-CAM and features."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, multilabel: bool):
        tune_malloc()  # batches of large images: no mmap + page faults per activation (labelwise.malloc)
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.fast = fold_batchnorm(self.model)[0].to(memory_format=torch.channels_last)
        self.multilabel = multilabel

    def probs(self, pixels: np.ndarray, batch_size: int = 128) -> np.ndarray:
        return model_probs(self.fast, pixels, self.multilabel, batch_size)


class OnnxEngine:
    """onnxruntime on the CPU over an ONNX model written by ``labelwise.export`` (a path or its bytes).

    Session settings: every core for one batch (intra-op threads), operators run one after another
    (inter-op 1: a classifier is a chain, parallel branches buy nothing), all graph optimisations
    (BatchNorm folded into convolutions, activation fusion, constant folding).
    """

    name = "onnx"

    def __init__(self, model: str | Path | bytes, *, threads: int | None = None,
                 providers: tuple[str, ...] = ("CPUExecutionProvider",)):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError("--engine onnx needs onnxruntime, which is not installed; "
                              "run: pip install onnxruntime (or use --engine torch)") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or cpu_cores()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        source = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(source, options, providers=list(providers))
        self.source = None if isinstance(model, bytes) else Path(model)
        outputs = self.session.get_outputs()
        self.num_labels = int(outputs[ONNX_OUTPUTS.index("probs")].shape[1])

    def probs(self, pixels: np.ndarray, batch_size: int = 128) -> np.ndarray:
        out = [self.session.run(["probs"], {ONNX_INPUT: to_unit_float(pixels[start:start + batch_size])})[0]
               for start in range(0, len(pixels), batch_size)]
        if not out:
            return np.zeros((0, self.num_labels), dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)


# --- test-time augmentation -----------------------------------------------------------------------

# `--tta` alone: the flips the run trained with (2 views; 4 with --vflip). Shifted views on top measured no gain
# (Fashion-MNIST cnn-small, 3,000 test images: +0.2 pt accuracy with 2 views, +0.1 with 6; mosaics: +0.17 pt mAP
# with 2, +0.15 with 6, within noise), so they cost time by default only where asked for (--tta-views N).
SHIFTING_PRESETS = ("default", "strong", "trivial")  # --augment presets that train with random shifts


@dataclass(frozen=True)
class View:
    """One test-time view: optional mirror (hflip), upside-down (vflip), then a shift of (dy, dx) px
    (content moves down / right), reflect-padded as the training shift is."""

    hflip: bool = False
    vflip: bool = False
    dy: int = 0
    dx: int = 0

    @property
    def name(self) -> str:
        parts = [p for p, on in (("hflip", self.hflip), ("vflip", self.vflip)) if on]
        if self.dy or self.dx:
            parts.append(f"shift({self.dy:+d},{self.dx:+d})")
        return "+".join(parts) or "identity"

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """(N, C, H, W) array -> the same shape, this view of every image."""
        x = pixels
        if self.hflip:
            x = x[..., ::-1]
        if self.vflip:
            x = x[..., ::-1, :]
        if self.dy or self.dx:
            h, w = x.shape[-2:]
            pad = max(abs(self.dy), abs(self.dx))
            mode = "reflect" if pad < min(h, w) else "edge"  # reflect needs pad < side
            xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode=mode)
            x = xp[..., pad - self.dy:pad - self.dy + h, pad - self.dx:pad - self.dx + w]
        return np.ascontiguousarray(x)


def tta_views(n: int | None, image_size: int, *, vflip: bool = False, shifts: bool = True) -> tuple[View, ...]:
    """The first ``n`` views (None: the flips) of an ordered pool: the flips the model trained with
    (identity, mirror; with --vflip also upside-down and both), then each flip shifted by 1/16 of the side
    (half the training shift, so still in distribution) along the 4 diagonals. ``shifts`` False (a run trained
    with --augment none/light) keeps the flips only. Asking for more views than the pool has gives the pool.

    >>> [v.name for v in tta_views(4, 32)]
    ['identity', 'hflip', 'shift(+2,+2)', 'hflip+shift(-2,-2)']
    """
    flips = [View(), View(hflip=True)] + ([View(vflip=True), View(hflip=True, vflip=True)] if vflip else [])
    pool = list(flips)
    if shifts:
        d = max(1, round(image_size / 16))
        offsets = [(d, d), (-d, -d), (d, -d), (-d, d)]
        # interleave so that any prefix mixes flips and shift directions
        for i in range(len(offsets)):
            for j, f in enumerate(flips):
                dy, dx = offsets[(i + j) % len(offsets)]
                pool.append(View(f.hflip, f.vflip, dy, dx))
    n = len(flips) if n is None else n
    if n < 1:
        raise ConfigError(f"--tta-views {n}: use at least 1 view (1 = no test-time augmentation)")
    return tuple(pool[:n])


class TTA:
    """Test-time augmentation over any engine: the mean probability over ``views`` of each image.

    The views are transformations the model saw in training (see ``tta_views``), so each is equally
    "in distribution"; averaging them smooths out decisions that hinge on placement or orientation.
    """

    def __init__(self, base: Engine, views: tuple[View, ...]):
        self.base = base
        self.views = tuple(views)
        self.name = f"{base.name}+tta{len(self.views)}"

    def probs(self, pixels: np.ndarray, batch_size: int = 128) -> np.ndarray:
        total = None
        for view in self.views:
            p = self.base.probs(view.apply(pixels), batch_size).astype(np.float64)
            total = p if total is None else total + p
        if total is None:
            return self.base.probs(pixels, batch_size)
        return (total / len(self.views)).astype(np.float32)


def trained_augmentation(run_dir: str | Path, meta) -> tuple[str, bool]:
    """(--augment preset, --vflip) the bundle's model trained with: from model.json, else (older bundles)
    from RUN/config.yaml, else the defaults ("default", no vertical flips)."""
    if meta.augment is not None and meta.vflip is not None:
        return meta.augment, bool(meta.vflip)
    path = Path(run_dir) / "config.yaml"
    if path.is_file():
        try:
            train = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("train") or {}
            return str(train.get("augment", "default")), bool(train.get("vflip", False))
        except (OSError, yaml.YAMLError, AttributeError):
            pass
    return "default", False


def bundle_views(run_dir: str | Path, meta, tta: bool | int) -> tuple[View, ...]:
    """The views for ``tta`` (True: the default number; an int: that many; False/0: none) on this bundle."""
    if tta is False or tta is None:
        return ()
    preset, vflip = trained_augmentation(run_dir, meta)
    n = None if tta is True else int(tta)
    return tta_views(n, meta.image_size, vflip=vflip, shifts=preset in SHIFTING_PRESETS)
