"""Inference engines: uint8 pixels (N, C, S, S) in, probabilities (N, num_labels) float32 out.

Two interchangeable back ends behind one small interface (``name``, ``probs(pixels, batch_size)``):

* ``TorchEngine`` runs the PyTorch classifier eagerly (``torch.inference_mode``, channels-last).
* ``OnnxEngine`` runs an exported ``model.onnx`` in onnxruntime, which on a CPU is several times
  faster than PyTorch eager for EfficientNet-style networks (``bench/inference.py``).

Both see the same [0, 1] float input (uint8 / 255; the model normalises itself), so their
probabilities agree within 1e-4 and their decisions are identical (``tests/test_export.py``).

>>> engine = OnnxEngine("runs/demo/model.onnx")               # doctest: +SKIP
>>> engine.probs(np.zeros((2, 1, 32, 32), np.uint8)).shape    # doctest: +SKIP
(2, 10)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from labelwise.errors import ConfigError, check_choice
from labelwise.models.classifier import model_probs

ENGINES: tuple[str, ...] = ("torch", "onnx")
ONNX_INPUT = "pixels"  # float32 (N, C, S, S) in [0, 1]
ONNX_OUTPUTS = ("logits", "probs")


class Engine(Protocol):
    name: str

    def probs(self, pixels: np.ndarray, batch_size: int = 128) -> np.ndarray:
        """uint8 array (N, C, S, S) -> probabilities (N, num_labels) float32."""
        ...


def check_engine(name: str) -> str:
    """Return ``name`` if it is a known engine, else a ConfigError with a did-you-mean."""
    return check_choice("--engine", name, ENGINES)


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
    avoids a layout conversion per convolution (about 1.5x faster on a CPU for EfficientNet)."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, multilabel: bool):
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.multilabel = multilabel

    def probs(self, pixels: np.ndarray, batch_size: int = 128) -> np.ndarray:
        return model_probs(self.model, pixels, self.multilabel, batch_size)


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


class FlipTTA:
    """Test-time augmentation over any engine: the mean probability of each image and its mirror image.

    Mirroring is the flip every augmentation preset trains with, so the two views are equally
    "in distribution"; averaging them smooths out decisions that hinge on left/right placement.
    """

    def __init__(self, base: Engine):
        self.base = base
        self.name = f"{base.name}+tta"

    def probs(self, pixels: np.ndarray, batch_size: int = 128) -> np.ndarray:
        mirrored = np.ascontiguousarray(pixels[..., ::-1])
        return (self.base.probs(pixels, batch_size) + self.base.probs(mirrored, batch_size)) / 2
