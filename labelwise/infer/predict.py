"""Predictor: load a bundle (safetensors + JSON only) and predict images in bounded-memory batches.

>>> p = Predictor.load("runs/demo")                       # doctest: +SKIP
>>> [r.labels for r in p.predict(["a.jpg", "b.png"])]     # doctest: +SKIP
[['bag', 'boot'], []]
>>> fast = Predictor.load("runs/demo", engine="onnx")     # doctest: +SKIP  (onnxruntime; exports once)
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from labelwise.data import images
from labelwise.data.decoded import decode_all
from labelwise.errors import DataError
from labelwise.evaluation.thresholds import apply_thresholds
from labelwise.infer.engines import (
    Engine,
    TTA,
    OnnxEngine,
    TorchEngine,
    bundle_views,
    check_engine,
)
from labelwise.infer.export import current_onnx
from labelwise.models.bundle import ModelMeta, load_model, read_meta
from labelwise.models.classifier import model_probs

# progress: False (silent), True (a rich bar on stderr) or a callback(done_images, total_images)
Progress = bool | Callable[[int, int], None]


@dataclass
class Prediction:
    path: str
    labels: list[str] = field(default_factory=list)
    probs: dict[str, float] = field(default_factory=dict)
    error: str = ""


__all__ = ["Prediction", "Predictor", "list_images", "model_probs"]


class Predictor:
    """Labels for images from a model bundle, on the torch or the onnx engine (same decisions)."""

    def __init__(self, model: torch.nn.Module | Engine, meta: ModelMeta, threshold: float | None = None):
        self.engine: Engine = TorchEngine(model, meta.labels.multilabel) if isinstance(model, torch.nn.Module) else model
        self.meta = meta
        n = len(meta.labels)
        self.thresholds = np.full(n, threshold) if threshold is not None else np.asarray(meta.thresholds)

    @classmethod
    def load(cls, run_dir: str | Path, threshold: float | None = None, engine: str = "torch",
             notify: Callable[[str], None] | None = None, tta: bool | int = False) -> Predictor:
        """Load RUN on ``engine``: "torch" (PyTorch eager) or "onnx" (onnxruntime over RUN/model.onnx,
        exported first if missing or out of date; ``notify`` hears one line before that slow step).
        ``tta``: average over test-time views (True: the default number, an int: that many; see
        labelwise.infer.engines.tta_views), only flips/shifts the model trained with."""
        check_engine(engine)
        if engine == "onnx":

            meta = read_meta(Path(run_dir))
            source, _ = current_onnx(run_dir, meta, notify=notify)
            base: Engine = OnnxEngine(source)
        else:
            model, meta = load_model(Path(run_dir))
            base = TorchEngine(model, meta.labels.multilabel)
        views = bundle_views(run_dir, meta, tta)
        return cls(TTA(base, views) if len(views) > 1 else base, meta, threshold)

    @property
    def model(self) -> torch.nn.Module | None:
        """The PyTorch module on the torch engine; None on onnx."""
        return getattr(getattr(self.engine, "base", self.engine), "model", None)

    @property
    def labels(self):
        return self.meta.labels

    def predict_pixels(self, pixels: np.ndarray, batch_size: int = 128) -> np.ndarray:
        """uint8 array (N, C, S, S) -> probabilities (N, num_labels) float32."""
        return self.engine.probs(pixels, batch_size)

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """Probabilities -> multi-hot decisions: tuned thresholds (multi-label) or argmax (multi-class)."""
        if self.labels.multilabel:
            return apply_thresholds(probs, self.thresholds, at_least_one=self.meta.at_least_one)
        hot = np.zeros(probs.shape, dtype=np.uint8)
        if len(probs):
            hot[np.arange(len(probs)), probs.argmax(1)] = 1
        return hot

    def iter_probs(self, paths: Sequence[Path], chunk: int = 256, workers: int | None = None,
                   progress: Progress = False) -> Iterator[tuple[list[Path], np.ndarray, dict[Path, str]]]:
        """Yield (paths, probabilities of the readable ones, {bad path: reason}) per chunk of images.

        Memory stays bounded by ``chunk`` decoded images, however large the folder.
        """
        with _progress(progress, len(paths)) as advance:
            for start in range(0, len(paths), chunk):
                part = list(paths[start:start + chunk])
                pixels, bad = decode_all(part, self.meta.image_size, self.meta.in_chans, workers=workers)
                keep = np.array([p not in bad for p in part], dtype=bool)
                probs = self.predict_pixels(pixels[keep])
                advance(len(part))
                yield part, probs, bad

    def iter_predict(self, paths: Iterable[str | Path], chunk: int = 256,
                     progress: Progress = False) -> Iterator[Prediction]:
        """One Prediction per path, in order, streamed chunk by chunk; unreadable images carry their error."""
        paths = [Path(p) for p in paths]
        names = self.labels.names
        for part, probs, bad in self.iter_probs(paths, chunk, progress=progress):
            decisions = self.decide(probs)
            j = 0
            for p in part:
                if p in bad:
                    yield Prediction(str(p), error=bad[p])
                    continue
                yield Prediction(str(p), [names[k] for k in np.flatnonzero(decisions[j])],
                                 {n: float(v) for n, v in zip(names, probs[j])})
                j += 1

    def predict(self, paths: Iterable[str | Path], chunk: int = 256, progress: Progress = False) -> list[Prediction]:
        """One Prediction per path, in order; unreadable images carry their error instead of labels."""
        return list(self.iter_predict(paths, chunk, progress))


@contextlib.contextmanager
def _progress(progress: Progress, total: int) -> Iterator[Callable[[int], None]]:
    """Yield advance(n_images): a no-op, the caller's callback, or a rich bar on stderr."""
    if callable(progress):
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            progress(done, total)
        yield advance
    elif progress:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bar

        with Bar(TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                 console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("predicting", total=total)
            yield lambda n: bar.advance(task, n)
    else:
        yield lambda n: None


def list_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Expand files and folders (recursively, image extensions only) into a sorted list of paths."""

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
