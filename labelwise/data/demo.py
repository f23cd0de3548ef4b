"""Real demo datasets written to disk, offline: Fashion-MNIST (Debian ``dataset-fashion-mnist``)
or, where it is not installed, scikit-learn's bundled 8x8 digits upscaled to 28x28.

Two layouts, the ones users actually have:

- multi-class: ``out/<class>/<split>_<index>.png`` (one folder per class);
- multi-label: ``out/images/<split>_<k>.png`` 56x56 2x2 mosaics of items, and ``out/labels.csv``
  (``image,tags``; tags space-separated, empty for an image with no label).

Every file is a function of ``seed`` alone (same seed -> byte-identical files), and items are drawn
from one split only, so train sets (``train`` split) and test sets (``test``/t10k split) never
share a source image.

Example::

    from labelwise.demo_data import build_demo
    paths = build_demo(Path("demo"))          # {"multiclass": ..., "multilabel": ..., ...}

or ``python -m labelwise.demo_data demo --small``.
"""
from __future__ import annotations

import argparse
import csv
import gzip
import sys
import time
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from labelwise.errors import ConfigError, DataError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES: tuple[str, ...] = (
    "tshirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "boot",
)
DIGIT_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
# Five visually distinct classes keep the multi-label demo learnable in a few CPU minutes.
DEMO_MOSAIC_CLASSES: dict[str, tuple[str, ...]] = {
    "fashion": ("tshirt", "trouser", "bag", "sneaker", "dress"),
    "digits": ("0", "1", "2", "3", "4"),
}
SOURCES = ("auto", "fashion", "digits")

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_IMAGES_MAGIC = 2051  # IDX: unsigned byte, 3 dimensions
_LABELS_MAGIC = 2049  # IDX: unsigned byte, 1 dimension
_ITEM = 28  # item side, pixels
_DIGITS_TEST_EVERY = 5  # digits have no official split: every 5th image is "test"


def _split_name(split: str) -> str:
    name = {"train": "train", "test": "test", "t10k": "test"}.get(split)
    if name is None:
        raise ConfigError(f"split {split!r} is not known; use 'train' or 'test'.")
    return name


def fashion_available(root: Path | str = FASHION_DIR) -> bool:
    """True when all four Fashion-MNIST IDX files are present under ``root``."""
    root = Path(root)
    return all((root / f).is_file() for pair in _FILES.values() for f in pair)


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read IDX file ({exc}); reinstall dataset-fashion-mnist.") from exc
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header; reinstall dataset-fashion-mnist.")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"{path}: IDX magic number {found}, expected {magic}; is this the right file?")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) - header != int(np.prod(shape)):
        raise DataError(f"{path}: {len(raw) - header} data bytes, header says {shape}; file is corrupt.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


@lru_cache(maxsize=4)
def _load_fashion_cached(split: str, root: str) -> tuple[np.ndarray, np.ndarray]:
    img_file, lab_file = _FILES[split]
    images = _read_idx(Path(root) / img_file, _IMAGES_MAGIC, 3)
    labels = _read_idx(Path(root) / lab_file, _LABELS_MAGIC, 1).astype(np.int64)
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (_ITEM, _ITEM):
        raise DataError(f"{root}: {split} images {images.shape} do not match labels {labels.shape}.")
    if labels.size and (labels.min() < 0 or labels.max() >= len(FASHION_CLASSES)):
        raise DataError(f"{Path(root) / lab_file}: labels outside 0..9.")
    labels.setflags(write=False)
    return images, labels  # images: read-only view of the decompressed buffer


def load_fashion(split: str = "train", root: Path | str = FASHION_DIR) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST ``split`` ("train" 60000 or "test"/"t10k" 10000) as read-only arrays:
    images (N, 28, 28) uint8 and labels (N,) int64 in 0..9 (names in ``FASHION_CLASSES``)."""
    split = _split_name(split)
    if not fashion_available(root):
        raise DataError(f"Fashion-MNIST not found under {root}; install the Debian package "
                        "dataset-fashion-mnist, or use source='digits'.")
    return _load_fashion_cached(split, str(Path(root)))


@lru_cache(maxsize=1)
def load_digits_images() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """scikit-learn's 1797 8x8 digits (0..16) upscaled to MNIST-like 28x28 uint8: a 24x24 bilinear
    upscale centred with a 2-pixel black border. Returns (images, labels int64, names "0".."9")."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = np.rint(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    images = np.zeros((len(small), _ITEM, _ITEM), dtype=np.uint8)
    for i, im in enumerate(small):
        images[i, 2:26, 2:26] = np.asarray(Image.fromarray(im).resize((24, 24), Image.BILINEAR))
    labels = digits.target.astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels, DIGIT_CLASSES


def resolve_source(source: str = "auto") -> str:
    """"auto" -> "fashion" when Fashion-MNIST is installed, else "digits"."""
    if source not in SOURCES:
        raise ConfigError(f"source {source!r} is not known; use one of {', '.join(SOURCES)}.")
    if source == "auto":
        return "fashion" if fashion_available() else "digits"
    return source


def _load_source(source: str, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
    """(images, labels, class names, resolved source) for one split of one source."""
    source, split = resolve_source(source), _split_name(split)
    if source == "fashion":
        images, labels = load_fashion(split)
        return images, labels, FASHION_CLASSES, source
    images, labels, names = load_digits_images()
    is_test = np.arange(len(labels)) % _DIGITS_TEST_EVERY == 0
    keep = is_test if split == "test" else ~is_test
    return images[keep], labels[keep], names, source


def _rng(seed: int, split: str, kind: int) -> np.random.Generator:
    # split and layout in the seed: train and test sets get unrelated streams for the same seed
    return np.random.default_rng([int(seed), {"train": 0, "test": 1}[split], kind])


def _prepare_out(out: Path) -> Path:
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out} already exists and is not an empty folder; choose a new output folder "
                        "(files left from another build would mix into the dataset).")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _save_png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path, format="PNG", optimize=False)


def build_multiclass(out: Path, n_per_class: int, split: str = "train", seed: int = 0,
                     source: str = "auto") -> Path:
    """Write ``out/<class>/<split>_<index>.png`` (28x28 grayscale), ``n_per_class`` images per
    class drawn without replacement from ``split`` (``index`` = position in that split). A class
    with fewer images than asked gives all it has, with a warning. Returns ``out``."""
    if n_per_class < 1:
        raise ConfigError(f"n_per_class must be >= 1, got {n_per_class}.")
    split = _split_name(split)
    images, labels, names, source = _load_source(source, split)
    rng = _rng(seed, split, 0)
    out = _prepare_out(out)
    for c, name in enumerate(names):
        pool = np.flatnonzero(labels == c)
        if len(pool) < n_per_class:
            warnings.warn(f"{source} {split}: class {name!r} has {len(pool)} images, "
                          f"fewer than n_per_class={n_per_class}; writing {len(pool)}.", stacklevel=2)
        chosen = np.sort(rng.permutation(pool)[:n_per_class])
        (out / name).mkdir()
        for i in chosen:
            _save_png(images[i], out / name / f"{split}_{i:05d}.png")
    return out


class _Pools:
    """Per-class item queues: without replacement until a class runs dry, then reshuffled."""

    def __init__(self, labels: np.ndarray, class_ids: Sequence[int], rng: np.random.Generator,
                 what: str) -> None:
        self._rng, self._what = rng, what
        self._all = [np.flatnonzero(labels == c) for c in class_ids]
        for pool, c in zip(self._all, class_ids):
            if len(pool) == 0:
                raise DataError(f"{what}: class {c} has no images in this split.")
        self._queue = [rng.permutation(p) for p in self._all]
        self._pos = [0] * len(self._all)
        self.reused = False

    def take(self, j: int) -> int:
        if self._pos[j] == len(self._queue[j]):
            self._queue[j], self._pos[j], self.reused = self._rng.permutation(self._all[j]), 0, True
        self._pos[j] += 1
        return int(self._queue[j][self._pos[j] - 1])


def build_mosaics(out: Path, n_images: int, split: str = "train", seed: int = 0,
                  empty_fraction: float = 0.25, cell_fill: float = 0.5,
                  classes: Sequence[str] | None = None, class_probs: Sequence[float] | None = None,
                  source: str = "auto") -> Path:
    """Write a multi-label set: ``out/images/<split>_<k>.png`` (56x56 grayscale 2x2 mosaics of
    28x28 items on black) and ``out/labels.csv`` (``image,tags``, image name with extension, tags
    space-separated in ``classes`` order, empty for none). Returns ``out``.

    ``round(empty_fraction * n_images)`` images hold no item; in the others each cell holds an
    item with probability ``cell_fill`` (at least one cell is filled), its class drawn from
    ``classes`` (default: all of the source's) with weights ``class_probs`` (default uniform; skew
    it for an imbalanced set). An image's tags are exactly the classes shown. Items come from
    ``split`` only, without replacement until a class runs dry (then reused, with a warning).
    """
    split = _split_name(split)
    images, labels, names, source = _load_source(source, split)
    classes = tuple(names if classes is None else classes)
    unknown = [c for c in classes if c not in names]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ConfigError(f"classes {list(classes)} must be distinct names from {list(names)} "
                          f"(source {source!r}); unknown: {unknown}.")
    if class_probs is None:
        probs = np.full(len(classes), 1.0 / len(classes))
    else:
        probs = np.asarray(class_probs, dtype=np.float64)
        if probs.shape != (len(classes),) or (probs < 0).any() or not probs.sum() > 0:
            raise ConfigError(f"class_probs needs {len(classes)} non-negative weights (one per class "
                              f"in {list(classes)}), got {list(class_probs)}.")
        probs = probs / probs.sum()
    if not 0.0 <= empty_fraction <= 1.0:
        raise ConfigError(f"empty_fraction must be in [0, 1], got {empty_fraction}.")
    if not 0.0 < cell_fill <= 1.0:
        raise ConfigError(f"cell_fill must be in (0, 1], got {cell_fill}.")
    if n_images < 1:
        raise ConfigError(f"n_images must be >= 1, got {n_images}.")

    rng = _rng(seed, split, 1)
    pools = _Pools(labels, [names.index(c) for c in classes], rng, f"{source} {split}")
    empty = np.zeros(n_images, dtype=bool)
    empty[rng.permutation(n_images)[: round(empty_fraction * n_images)]] = True

    out = _prepare_out(out)
    (out / "images").mkdir()
    rows: list[tuple[str, str]] = []
    canvas = np.zeros((2 * _ITEM, 2 * _ITEM), dtype=np.uint8)
    for k in range(n_images):
        canvas[:] = 0
        shown: set[int] = set()
        if not empty[k]:
            filled = rng.random(4) < cell_fill
            if not filled.any():
                filled[rng.integers(4)] = True
            for cell in np.flatnonzero(filled):
                j = int(rng.choice(len(classes), p=probs))
                r, c = divmod(int(cell), 2)
                canvas[r * _ITEM:(r + 1) * _ITEM, c * _ITEM:(c + 1) * _ITEM] = images[pools.take(j)]
                shown.add(j)
        name = f"{split}_{k:05d}.png"
        _save_png(canvas, out / "images" / name)
        rows.append((name, " ".join(classes[j] for j in sorted(shown))))
    if pools.reused:
        warnings.warn(f"{source} {split}: a class ran out of distinct items; some items appear in "
                      "more than one mosaic (never across splits).", stacklevel=2)
    with open(out / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(("image", "tags"))
        writer.writerows(rows)
    return out


def build_demo(out: Path, seed: int = 0, n_train_per_class: int = 600, n_mosaics: int = 6000,
               n_test_per_class: int = 100, n_test_mosaics: int = 1000,
               source: str = "auto") -> dict[str, Path]:
    """Build the four demo sets under ``out`` and return their paths:
    ``multiclass`` / ``multilabel`` from the train split, ``multiclass_test`` / ``multilabel_test``
    from the held-out test split. Mosaics use five distinct classes (``DEMO_MOSAIC_CLASSES``)."""
    source = resolve_source(source)
    out = Path(out)
    classes = DEMO_MOSAIC_CLASSES[source]
    return {
        "multiclass": build_multiclass(out / "multiclass", n_train_per_class, "train", seed, source),
        "multiclass_test": build_multiclass(out / "multiclass_test", n_test_per_class, "test", seed,
                                            source),
        "multilabel": build_mosaics(out / "multilabel", n_mosaics, "train", seed, classes=classes,
                                    source=source),
        "multilabel_test": build_mosaics(out / "multilabel_test", n_test_mosaics, "test", seed,
                                         classes=classes, source=source),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m labelwise.demo_data OUT [--seed S] [--source auto|fashion|digits] [--small]``."""
    parser = argparse.ArgumentParser(prog="python -m labelwise.demo_data",
                                     description="Write the labelwise demo datasets (offline).")
    parser.add_argument("out", type=Path, help="output folder (must be new or empty)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--source", choices=SOURCES, default="auto")
    parser.add_argument("--small", action="store_true",
                        help="tiny sets for a smoke test (50 per class, 500 mosaics)")
    args = parser.parse_args(argv)
    sizes = (dict(n_train_per_class=50, n_mosaics=500, n_test_per_class=20, n_test_mosaics=200)
             if args.small else {})
    start = time.perf_counter()
    try:
        paths = build_demo(args.out, seed=args.seed, source=args.source, **sizes)
    except (ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"source: {resolve_source(args.source)} ({time.perf_counter() - start:.1f} s)")
    for key, path in paths.items():
        print(f"{key}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
