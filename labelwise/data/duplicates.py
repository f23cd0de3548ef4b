"""Exact and near-duplicate images across a split: the one implementation (training's warning, the report).

A validation image that is a copy of a training image (resized, re-encoded, brightened) scores
well for the wrong reason. Each image becomes a *fingerprint*: a SIDE x SIDE gray thumbnail,
centred and scaled to unit length. Two images are near-duplicates when their fingerprints' dot
product (the correlation of the thumbnails) is at least ``DEFAULT_MIN_SIMILARITY``; brightness and
contrast changes cancel out by construction. Byte-identical files can also be found by SHA-1.

Why not a 64-bit dHash with a Hamming distance: measured on Fashion-MNIST (2,000 train x 500
validation distinct items, 28 px on black), dHash puts 182 distinct pairs at distance 0 and 3,132
within 4 bits, while JPEG (quality 60) copies drift up to 13 bits apart: flat black pixel pairs
turn into noise bits after re-encoding, and garments with the same silhouette collide. The
correlation at 32 px finds no distinct pair at >= 0.99 in the same set (nor in 1.4 million mosaic
pairs) and scores resized, JPEG-recompressed (quality 60: >= 0.982, 97% caught), 15% brighter or
darker copies at 0.99-1.0. At 20,000 x 5,000 Fashion-MNIST items it reports 204 of 100 million
pairs: the top ones are the same product photo twice, the rest mostly plain trousers alike even to
a person. Shifted, cropped, rotated or flipped copies score lower and are missed: for augmented
copies, group them (``--group-by``) instead.

Cost: one matrix product; 5,000 validation x 20,000 training fingerprints take about 10 s on
2 CPU cores (a few seconds on a laptop), in chunks of ``_CHUNK`` rows (memory: chunk x N floats).

>>> fp = fingerprint_pixels(pixels)               # the uint8 (N, C, S, S) training arrays   # doctest: +SKIP
>>> dups = split_duplicates(fp, train_idx, val_idx)  # or fold_duplicates(fp, kfold_splits(...))  # doctest: +SKIP
>>> for line in describe_duplicates(dups, samples.paths): print(line)                        # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from labelwise.data.band_scaling import PLAIN, PixelSpec
from labelwise.data.decoded import decode_all

SIDE = 32  # px: every image is reduced to SIDE x SIDE gray
# Pairs at or above this similarity count as near-duplicates (calibration in the module docstring).
DEFAULT_MIN_SIMILARITY = 0.99
IDENTICAL = 0.999  # at or above: the same picture up to brightness and contrast
# A thumbnail this flat (std in 0-255 levels) has no structure: every blank image would match
# every other one. Flat images are counted, never paired.
FLAT_STD = 2.0
_CHUNK = 1024  # validation rows per matrix product
_POOL_ELEMENTS = 1 << 25  # pixel values converted to float at once when pooling (128 MB)


@dataclass(frozen=True)
class Fingerprints:
    """Per-image fingerprints; compare only fingerprints made the same way (pixels or paths)."""

    vectors: np.ndarray  # (N, SIDE*SIDE) float32, centred, unit length; zero rows for flat images
    flat: np.ndarray  # (N,) bool: no structure, never paired

    def __len__(self) -> int:
        return len(self.vectors)

    def take(self, idx) -> "Fingerprints":
        idx = np.asarray(idx, dtype=np.int64)
        return Fingerprints(self.vectors[idx], self.flat[idx])


@dataclass(frozen=True)
class Duplicate:
    """One (training, validation) pair: row indices into what was compared (see each function)."""

    train: int
    val: int
    similarity: float  # 1.0 = identical up to brightness and contrast

    @property
    def identical(self) -> bool:
        return self.similarity >= IDENTICAL


def fingerprint_gray(gray: np.ndarray) -> Fingerprints:
    """(N, H, W) gray values (any size, any 0-255 numeric type) -> Fingerprints.

    Sizes other than SIDE are area-averaged (adaptive average pooling) to SIDE x SIDE.
    """
    g = np.asarray(gray, dtype=np.float32)
    if g.ndim != 3:
        raise ValueError(f"expected gray images (N, H, W), got shape {g.shape}")
    if g.shape[1:] != (SIDE, SIDE):
        import torch
        import torch.nn.functional as F

        g = F.adaptive_avg_pool2d(torch.from_numpy(g)[:, None], (SIDE, SIDE))[:, 0].numpy()
    g = g.reshape(len(g), -1).copy()
    std = g.std(axis=1)
    g -= g.mean(axis=1, keepdims=True)
    g /= np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-6)
    flat = std < FLAT_STD
    g[flat] = 0.0  # a zero vector is similar to nothing
    return Fingerprints(g, flat)


def fingerprint_pixels(pixels: np.ndarray) -> Fingerprints:
    """Fingerprints of already decoded images: uint8 (N, C, S, S), bands averaged to gray.

    Training hashes the arrays it decoded anyway, so no file is read twice. Converted in chunks,
    so 20,000 images of 224 px never become one float copy.
    """
    if pixels.ndim != 4:
        raise ValueError(f"expected pixels (N, C, S, S), got shape {pixels.shape}")
    n = len(pixels)
    per_image = int(np.prod(pixels.shape[1:])) or 1
    step = max(1, _POOL_ELEMENTS // per_image)
    vectors = np.zeros((n, SIDE * SIDE), np.float32)
    flat = np.zeros(n, bool)
    for start in range(0, n, step):
        fp = fingerprint_gray(pixels[start:start + step].astype(np.float32).mean(axis=1))
        vectors[start:start + step], flat[start:start + step] = fp.vectors, fp.flat
    return Fingerprints(vectors, flat)


def fingerprint_paths(paths: Sequence[Path], channels: int, workers: int | None = None,
                      pixel_spec: PixelSpec = PLAIN) -> tuple[Fingerprints, dict[Path, str]]:
    """Decode every image at SIDE px with the project's decoder and fingerprint it.

    Returns (fingerprints, {unreadable path: reason}); an unreadable image gets a flat row.
    ``channels`` is what the run decoded its images to (model.json), so every image decodes as it
    did in training (an N-band TIFF needs N), with the run's bands and band scaling (``meta.pixel_spec``:
    16-bit images that x / 257 would flatten are told apart).
    """

    pixels, bad = decode_all(list(paths), SIDE, channels, workers=workers, description="fingerprinting",
                             pixel_spec=pixel_spec)
    return fingerprint_pixels(pixels), bad  # unreadable rows are left zero by decode_all: flat


def content_hashes(paths: Sequence[Path]) -> list[str | None]:
    """SHA-1 of each file's bytes (hex); None for a file that cannot be read."""
    out: list[str | None] = []
    for p in paths:
        try:
            h = hashlib.sha1(usedforsecurity=False)
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            out.append(h.hexdigest())
        except OSError:
            out.append(None)
    return out


def exact_duplicates(train_hashes: Sequence[str | None], val_hashes: Sequence[str | None]
                     ) -> list[tuple[int, int]]:
    """(train row, val row) for every pair of byte-identical files, sorted."""
    rows: dict[str, list[int]] = {}
    for i, h in enumerate(train_hashes):
        if h is not None:
            rows.setdefault(h, []).append(i)
    return sorted((i, j) for j, h in enumerate(val_hashes) if h is not None for i in rows.get(h, ()))


def cross_split_duplicates(train: Fingerprints, val: Fingerprints,
                           min_similarity: float = DEFAULT_MIN_SIMILARITY) -> list[Duplicate]:
    """Every (train row, val row) pair with similarity >= ``min_similarity``, most similar first
    (then by val, train row)."""
    t_rows, v_rows = np.flatnonzero(~train.flat), np.flatnonzero(~val.flat)
    if len(t_rows) == 0 or len(v_rows) == 0:
        return []
    t_vec = np.ascontiguousarray(train.vectors[t_rows])
    found: list[Duplicate] = []
    for start in range(0, len(v_rows), _CHUNK):
        rows = v_rows[start:start + _CHUNK]
        sim = val.vectors[rows] @ t_vec.T
        vi, ti = np.nonzero(sim >= min_similarity)
        found += [Duplicate(int(t_rows[t]), int(rows[v]), float(min(sim[v, t], 1.0))) for v, t in zip(vi, ti)]
    found.sort(key=lambda d: (-round(d.similarity, 6), d.val, d.train))
    return found


def split_duplicates(fingerprints: Fingerprints, train_idx: np.ndarray, val_idx: np.ndarray,
                     min_similarity: float = DEFAULT_MIN_SIMILARITY) -> list[Duplicate]:
    """Near-duplicates across one split of a set fingerprinted once; ``train``/``val`` of each
    result index the whole set (as ``train_idx`` and ``val_idx`` do). Call once per fold for k folds."""
    train_idx, val_idx = np.asarray(train_idx), np.asarray(val_idx)
    dups = cross_split_duplicates(fingerprints.take(train_idx), fingerprints.take(val_idx), min_similarity)
    return [Duplicate(int(train_idx[d.train]), int(val_idx[d.val]), d.similarity) for d in dups]


def fold_duplicates(fingerprints: Fingerprints, splits: Sequence[tuple[np.ndarray, np.ndarray]],
                    min_similarity: float = DEFAULT_MIN_SIMILARITY) -> list[Duplicate]:
    """Near-duplicates across any of several splits (k folds), each pair once: a pair split between
    folds i and j shows up in both folds' checks and is kept as first found (``val`` in the earlier fold)."""
    seen: set[tuple[int, int]] = set()
    found: list[Duplicate] = []
    for train_idx, val_idx in splits:
        for d in split_duplicates(fingerprints, train_idx, val_idx, min_similarity):
            key = (min(d.train, d.val), max(d.train, d.val))
            if key not in seen:
                seen.add(key)
                found.append(d)
    found.sort(key=lambda d: (-round(d.similarity, 6), d.val, d.train))
    return found


def describe_duplicates(dups: Sequence[Duplicate], paths: Sequence[Path], limit: int = 10,
                        min_similarity: float = DEFAULT_MIN_SIMILARITY) -> list[str]:
    """Warning lines for a user: a summary, then up to ``limit`` pairs with their paths.

    ``paths`` is indexed by the pairs' ``train`` and ``val`` (the whole set, for split_duplicates)."""
    if not dups:
        return []
    n_val = len({d.val for d in dups})
    n_identical = len({d.val for d in dups if d.identical})
    lines = [f"{n_val} validation image(s) are near-duplicates of training images (similarity >= "
             f"{min_similarity}; {n_identical} identical up to brightness/contrast): validation scores will be "
             f"optimistic. Remove the copies, or keep copies together with --group-by"]
    for d in dups[:limit]:
        kind = "identical" if d.identical else f"similarity {d.similarity:.3f}"
        lines.append(f"  {paths[d.val]} (validation) ~ {paths[d.train]} (training): {kind}")
    if len(dups) > limit:
        lines.append(f"  ... and {len(dups) - limit} more pair(s)")
    return lines
