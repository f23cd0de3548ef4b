"""Predictor: load a bundle (safetensors + JSON only) and predict images in bounded-memory batches.

>>> p = Predictor.load("runs/demo")                       # doctest: +SKIP
>>> [r.labels for r in p.predict(["a.jpg", "b.png"])]     # doctest: +SKIP
[['bag', 'boot'], []]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from .bundle import ModelMeta, load_model
from .data import images
from .data.decoded import decode_all
from .thresholds import apply_thresholds


@dataclass
class Prediction:
    path: str
    labels: list[str] = field(default_factory=list)
    probs: dict[str, float] = field(default_factory=dict)
    error: str = ""


@torch.inference_mode()
def model_probs(model: torch.nn.Module, pixels: np.ndarray, multilabel: bool, batch_size: int = 128) -> np.ndarray:
    """uint8 array (N, C, S, S) -> probabilities (N, num_labels) float32, in eval mode."""
    model.eval()
    out = []
    for start in range(0, len(pixels), batch_size):
        x = torch.from_numpy(pixels[start:start + batch_size]).float().div_(255.0)
        logits = model(x.contiguous(memory_format=torch.channels_last))
        out.append((torch.sigmoid(logits) if multilabel else torch.softmax(logits, 1)).float().numpy())
    if not out:
        return np.zeros((0, model.head.out_features), dtype=np.float32)
    return np.concatenate(out)


class Predictor:
    def __init__(self, model: torch.nn.Module, meta: ModelMeta, threshold: float | None = None):
        self.model = model.eval()
        self.meta = meta
        n = len(meta.labels)
        self.thresholds = np.full(n, threshold) if threshold is not None else np.asarray(meta.thresholds)

    @classmethod
    def load(cls, run_dir: str | Path, threshold: float | None = None) -> "Predictor":
        model, meta = load_model(Path(run_dir))
        return cls(model, meta, threshold)

    @property
    def labels(self):
        return self.meta.labels

    def predict_pixels(self, pixels: np.ndarray, batch_size: int = 128) -> np.ndarray:
        """uint8 array (N, C, S, S) -> probabilities (N, num_labels) float32."""
        return model_probs(self.model, pixels, self.labels.multilabel, batch_size)

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """Probabilities -> multi-hot decisions: tuned thresholds (multi-label) or argmax (multi-class)."""
        if self.labels.multilabel:
            return apply_thresholds(probs, self.thresholds, at_least_one=self.meta.at_least_one)
        hot = np.zeros(probs.shape, dtype=np.uint8)
        if len(probs):
            hot[np.arange(len(probs)), probs.argmax(1)] = 1
        return hot

    def iter_probs(self, paths: Sequence[Path], chunk: int = 256, workers: int | None = None
                   ) -> Iterator[tuple[list[Path], np.ndarray, dict[Path, str]]]:
        """Yield (paths, probabilities of the readable ones, {bad path: reason}) per chunk of images.

        Memory stays bounded by ``chunk`` decoded images, however large the folder.
        """
        for start in range(0, len(paths), chunk):
            part = list(paths[start:start + chunk])
            pixels, bad = decode_all(part, self.meta.image_size, self.meta.in_chans, workers=workers)
            keep = np.array([p not in bad for p in part], dtype=bool)
            yield part, self.predict_pixels(pixels[keep]), bad

    def predict(self, paths: Iterable[str | Path], chunk: int = 256) -> list[Prediction]:
        """One Prediction per path, in order; unreadable images carry their error instead of labels."""
        paths = [Path(p) for p in paths]
        names = self.labels.names
        results: list[Prediction] = []
        for part, probs, bad in self.iter_probs(paths, chunk):
            decisions = self.decide(probs)
            j = 0
            for p in part:
                if p in bad:
                    results.append(Prediction(str(p), error=bad[p]))
                    continue
                results.append(Prediction(str(p), [names[k] for k in np.flatnonzero(decisions[j])],
                                          {n: float(v) for n, v in zip(names, probs[j])}))
                j += 1
        return results


def list_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Expand files and folders (recursively, image extensions only) into a sorted list of paths."""
    from .errors import DataError

    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in images.IMAGE_EXTENSIONS
                              and not any(part.startswith(".") for part in q.relative_to(p).parts)))
        elif p.exists():
            out.append(p)
        else:
            raise DataError(f"{p}: no such file or folder; pass image files or folders of images")
    return out
