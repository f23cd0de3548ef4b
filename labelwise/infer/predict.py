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
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import torch

from labelwise.data import images
from labelwise.data.decoded import decode_all
from labelwise.errors import ConfigError, DataError, ImageError
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
from labelwise.infer import pipeline
from labelwise.models import hub
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


if TYPE_CHECKING:
    import PIL.Image

__all__ = ["InMemory", "Prediction", "Predictor", "list_images", "model_probs"]


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
        if hub.is_hub_dir(run_dir):  # a folder in timm's Hub layout written by labelwise (RUN/hub/)
            if engine != "torch":
                raise ConfigError(f"{run_dir} is a timm/Hub folder: it runs on --engine torch; for onnx pass "
                                  "the run directory it came from")
            meta_dict, model = hub.read_hub(run_dir)
            meta = ModelMeta.from_dict(meta_dict, str(Path(run_dir) / hub.CONFIG_FILE))
            base = TorchEngine(model, meta.labels.multilabel)
        elif engine == "onnx":

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
        with torch.inference_mode():  # no autograd records: less memory, less time per operator
            return self.engine.probs(pixels, batch_size)

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """Probabilities -> multi-hot decisions: tuned thresholds (multi-label) or argmax (multi-class)."""
        if self.labels.multilabel:
            return apply_thresholds(probs, self.thresholds, at_least_one=self.meta.at_least_one)
        hot = np.zeros(probs.shape, dtype=np.uint8)
        if len(probs):
            hot[np.arange(len(probs)), probs.argmax(1)] = 1
        return hot

    def iter_probs(self, inputs: Sequence[ImageInput], chunk: int = 256, workers: int | None = None,
                   progress: Progress = False) -> Iterator[tuple[list, np.ndarray, dict[Any, str]]]:
        """Yield (items, probabilities of the readable ones, {bad item: reason}) per chunk of images.

        Items are Paths, or InMemory images for PIL images, arrays and bytes (see ``predict``).
        Memory stays bounded by ``chunk`` decoded images, however large the folder.
        """
        items = [as_item(x, i) for i, x in enumerate(inputs)]
        size, chans, spec = self.meta.image_size, self.meta.in_chans, self.meta.pixel_spec
        n_workers = pipeline.plan_workers(len(items), workers, self.engine, size, chans, chunk)
        if n_workers:  # many images: decode + model overlapped in worker processes (labelwise.infer.pipeline)
            yield from pipeline.stream_probs(self.engine, items, size, chans, n_workers,
                                             lambda total: _progress(progress, total), chunk, pixel_spec=spec)
            return
        with _progress(progress, len(items)) as advance:
            for start in range(0, len(items), chunk):
                part = items[start:start + chunk]
                files = [j for j, x in enumerate(part) if isinstance(x, Path)]
                pixels = np.zeros((len(part), chans, size, size), dtype=np.uint8)
                bad: dict[Any, str] = {}
                if files:
                    decoded, bad_files = decode_all([part[j] for j in files], size, chans, workers=workers,
                                                    pixel_spec=spec)
                    pixels[files] = decoded
                    bad.update(bad_files)
                for j, x in enumerate(part):
                    if isinstance(x, InMemory):
                        try:
                            pixels[j] = images.read_resized_bytes(x.data, size, chans, name=x.name,
                                                                  pixel_spec=spec).transpose(2, 0, 1)
                        except ImageError as e:
                            bad[x] = str(e)
                keep = np.array([x not in bad for x in part], dtype=bool)
                probs = self.predict_pixels(pixels[keep])
                advance(len(part))
                yield part, probs, bad

    def iter_predict(self, inputs: Iterable[ImageInput], chunk: int = 256,
                     progress: Progress = False) -> Iterator[Prediction]:
        """One Prediction per input, in order, streamed chunk by chunk; unreadable images carry their error."""
        names = self.labels.names
        for part, probs, bad in self.iter_probs(list(inputs), chunk, progress=progress):
            decisions = self.decide(probs)
            j = 0
            for p in part:
                name = p.name if isinstance(p, InMemory) else str(p)
                if p in bad:
                    yield Prediction(name, error=bad[p])
                    continue
                yield Prediction(name, [names[k] for k in np.flatnonzero(decisions[j])],
                                 {n: float(v) for n, v in zip(names, probs[j])})
                j += 1

    def predict(self, inputs: Iterable[ImageInput], chunk: int = 256, progress: Progress = False) -> list[Prediction]:
        """One Prediction per input, in order; unreadable images carry their error instead of labels.

        An input is a path (str or Path), raw encoded bytes (a JPEG/PNG/TIFF file's content), a PIL
        image or a numpy array (H, W) / (H, W, C): uint8, 16-bit or float in [0, 1]. Each goes through
        the same decoder as files (mode conversion, alpha on white, squash-resize), so a file and the
        same image in memory get the same probabilities.

        >>> p.predict(["a.jpg", open("b.png", "rb").read(), Image.open("c.png"), np.zeros((28, 28), np.uint8)])  # doctest: +SKIP
        """
        return list(self.iter_predict(inputs, chunk, progress))


@dataclass(frozen=True, eq=False)
class InMemory:
    """An image given as data rather than a path: encoded bytes and a name for messages."""

    name: str
    data: bytes


ImageInput = Union[str, Path, bytes, bytearray, memoryview, np.ndarray, "PIL.Image.Image", InMemory]


def as_item(x: Any, index: int) -> Path | InMemory:
    """A path, or an in-memory image encoded losslessly (PNG for 8-bit 1/3/4-channel images, else TIFF)."""
    if isinstance(x, (Path, InMemory)):
        return x
    if isinstance(x, str):
        return Path(x)
    if isinstance(x, (bytes, bytearray, memoryview)):
        return InMemory(f"<bytes {index}>", bytes(x))
    from PIL import Image

    if isinstance(x, Image.Image):
        name = getattr(x, "filename", "") or f"<image {index}>"
        return InMemory(str(name), _png(x))
    if isinstance(x, np.ndarray):
        name = f"<array {index}>"
        arr = x[:, :, 0] if x.ndim == 3 and x.shape[2] == 1 else x
        if arr.ndim not in (2, 3) or arr.size == 0:
            return InMemory(name, b"")  # the decoder reports it
        if arr.dtype == np.uint8 and (arr.ndim == 2 or arr.shape[2] in (3, 4)):
            return InMemory(name, _png(Image.fromarray(np.ascontiguousarray(arr))))
        import io

        import tifffile

        buf = io.BytesIO()
        tifffile.imwrite(buf, np.ascontiguousarray(arr), photometric="minisblack" if arr.ndim == 2 or
                         arr.shape[2] != 3 else "rgb", planarconfig="contig")
        return InMemory(name, buf.getvalue())
    raise DataError(f"input {index}: {type(x).__name__} is not an image; pass a path, bytes, a PIL image or a "
                    "numpy array")


def _png(img: "PIL.Image.Image") -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


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
