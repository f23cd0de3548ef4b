"""Exact and near-duplicate images across a split: the one implementation (training's warning, the report).

A validation image that is a copy of a training image (resized, re-encoded, brightened) scores
well for the wrong reason. The test is the one a person applies: a copy is far closer to its
original than to anything else, while a garment that merely looks like another has many look-alikes.

1. Fingerprints: each image becomes a gray SIDE x SIDE thumbnail, centred (so brightness and
   contrast cancel) and kept as its spectrum, plus a COARSE_SIDE px thumbnail for the search.
2. Candidates: for each validation image, the ``NEIGHBOURS`` training images with the most
   correlated coarse thumbnails (one matrix product).
3. Similarity of a candidate pair, in 0..1: the correlation of the two thumbnails after the best
   low-pass-like filter applied to either one (a free non-negative gain per frequency ring, found in
   closed form from the rings' cross-spectra). Resizing and JPEG mostly filter an image, so a
   copy's similarity stays near 1 where plain correlation drops (28 px items resized 0.75x: 0.93-0.99).
4. A pair is reported when its similarity is at least ``ALWAYS_SIMILARITY``, or at least
   ``DEFAULT_MIN_SIMILARITY`` and clearly ahead of the rest (a ratio test, as Lowe's for
   keypoints): its distance (1 - similarity) at most ``MAX_RATIO`` x the mean distance of the
   next ``_REF`` candidates. Mean, not second-best: two copies of one image in training still
   leave the rest to compare with.

Why: plain 32 px correlation >= 0.99 warned of 18 "near-duplicates" in ``make demo``'s own
mosaics (different garments alone in the same cell, sparse on black: 0.986-0.996) and caught
half of the 28 px Fashion-MNIST items resized 0.75x. A cut calibrated on the set's own nearest
neighbours could not split them either: distinct sparse mosaics are as alike as degraded copies
of tiny items. Measured by bench/duplicates.py (demo mosaics 4,805 x 1,195; Fashion-MNIST items
10,000 x 2,000; 400 copies per kind), old -> new: false pairs 22 -> 0 (mosaics), 27 -> 0 (items);
copies caught (resized 0.75x/1.25x, JPEG q60/q75, +20% brighter) >= 99.8% -> 100% on mosaics,
52-100% -> 99.0-100% on items (the hardest: items resized 0.75x, 21 px). At 20,000 x 5,000 items,
166 pairs -> 5, each a photo Fashion-MNIST holds twice. The distinct pairs nearest to being
reported: similarity 0.994 (< 0.997), ratio 0.22 (> 0.14). Shifted, cropped, rotated or flipped
copies are missed: for augmented copies, group them (``--group-by``) instead. A 64-bit dHash was
worse still (flat black pixels turn into noise bits after JPEG; garments of one silhouette collide).

Cost: 5,000 validation x 20,000 training fingerprints compared in about 1.6 s (3 s of CPU on 2
cores; the old check took as long), fingerprinted in about 2 s of CPU. 5.8 KB an image.

>>> fp = fingerprint_pixels(pixels)               # the uint8 (N, C, S, S) training arrays   # doctest: +SKIP
>>> dups = split_duplicates(fp, train_idx, val_idx)  # or fold_duplicates(fp, kfold_splits(...))  # doctest: +SKIP
>>> for line in describe_duplicates(dups, samples.paths): print(line)                        # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from labelwise.data.band_scaling import PLAIN, PixelSpec
from labelwise.data.decoded import decode_all

SIDE = 48  # px: the thumbnail compared (decoded at this size by fingerprint_paths)
COARSE_SIDE = 16  # px: the thumbnail that picks the candidates
NEIGHBOURS = 16  # candidates per validation image
# A pair is reported at or above ALWAYS_SIMILARITY, or at or above DEFAULT_MIN_SIMILARITY when its
# distance is at most MAX_RATIO x the mean distance of the next _REF candidates (module docstring).
DEFAULT_MIN_SIMILARITY = 0.98
ALWAYS_SIMILARITY = 0.997
MAX_RATIO = 0.14
IDENTICAL = 0.999  # at or above: the same picture up to brightness and contrast
# A thumbnail this flat (std in 0-255 levels) has no structure: every blank image would match
# every other one. Flat images are counted, never paired.
FLAT_STD = 2.0
_COARSE_FLOOR = 0.9  # coarse similarity below which a validation image is not compared further
_REF = 7  # candidates ranked 2.._REF+1 make the ratio test's reference distance
_RINGS = 24  # frequency rings up to Nyquist (+1 for the corners beyond it)
_CHUNK = 1024  # validation rows per coarse matrix product
_PAIR_CHUNK = 128  # validation rows per cross-spectrum batch (128 x 16 x 1,200 complex values)
_POOL_ELEMENTS = 1 << 25  # pixel values converted to float at once when fingerprinting (128 MB)
_FREQS = SIDE * (SIDE // 2 + 1)


@dataclass(frozen=True)
class Fingerprints:
    """Per-image fingerprints; compare only fingerprints made the same way (pixels or paths)."""

    coarse: np.ndarray  # (N, COARSE_SIDE**2) float32, centred, unit length; zero rows for flat images
    spectra: np.ndarray  # (N, 2 * _FREQS) float16: real and imaginary parts of the SIDE px thumbnail's rfft2
    flat: np.ndarray  # (N,) bool: no structure, never paired

    def __len__(self) -> int:
        return len(self.flat)

    def take(self, idx) -> "Fingerprints":
        idx = np.asarray(idx, dtype=np.int64)
        return Fingerprints(self.coarse[idx], self.spectra[idx], self.flat[idx])

    @classmethod
    def empty(cls) -> "Fingerprints":
        return cls(np.zeros((0, COARSE_SIDE ** 2), np.float32), np.zeros((0, 2 * _FREQS), np.float16),
                   np.zeros(0, bool))


@dataclass(frozen=True)
class Duplicate:
    """One (training, validation) pair: row indices into what was compared (see each function)."""

    train: int
    val: int
    similarity: float  # 1.0 = identical up to brightness, contrast and blur

    @property
    def identical(self) -> bool:
        return self.similarity >= IDENTICAL


def _resample(t, side: int):
    """(N, 1, H, W) float tensor -> (N, side * side): bilinear, antialiased when shrinking."""
    import torch.nn.functional as F

    if t.shape[-2:] != (side, side):
        t = F.interpolate(t, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    return t.reshape(len(t), -1)


def _centred_unit(x):
    """Rows centred and scaled to unit length (flat rows stay near zero)."""
    x = x - x.mean(dim=1, keepdim=True)
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-6)


def fingerprint_gray(gray: np.ndarray) -> Fingerprints:
    """(N, H, W) gray values (any size, any 0-255 numeric type) -> Fingerprints.

    Images are resampled (bilinear, antialiased) to SIDE and COARSE_SIDE px squares.
    """
    import torch

    g = np.asarray(gray, dtype=np.float32)
    if g.ndim != 3:
        raise ValueError(f"expected gray images (N, H, W), got shape {g.shape}")
    t = torch.from_numpy(np.ascontiguousarray(g))[:, None]
    with torch.inference_mode():
        fine = _resample(t, SIDE)
        flat = (fine.std(dim=1, unbiased=False) < FLAT_STD).numpy()
        z = _centred_unit(fine) * SIDE  # unit variance per pixel: comfortable in float16
        spec = torch.fft.rfft2(z.reshape(-1, SIDE, SIDE)).reshape(len(z), -1)
        spectra = torch.cat([spec.real, spec.imag], dim=1).half().numpy()
        coarse = _centred_unit(_resample(t, COARSE_SIDE)).numpy()
    coarse[flat], spectra[flat] = 0.0, 0.0  # a zero row is similar to nothing
    return Fingerprints(coarse, spectra, flat)


def fingerprint_pixels(pixels: np.ndarray) -> Fingerprints:
    """Fingerprints of already decoded images: uint8 (N, C, S, S), bands averaged to gray.

    Training fingerprints the arrays it decoded anyway, so no file is read twice. Converted in
    chunks, so 20,000 images of 224 px never become one float copy.
    """
    if pixels.ndim != 4:
        raise ValueError(f"expected pixels (N, C, S, S), got shape {pixels.shape}")
    n = len(pixels)
    per_image = int(np.prod(pixels.shape[1:])) or 1
    step = max(1, _POOL_ELEMENTS // per_image)
    parts = [fingerprint_gray(pixels[s:s + step].astype(np.float32).mean(axis=1)) for s in range(0, n, step)]
    if not parts:
        return Fingerprints.empty()
    return Fingerprints(np.concatenate([p.coarse for p in parts]), np.concatenate([p.spectra for p in parts]),
                        np.concatenate([p.flat for p in parts]))


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


@lru_cache(maxsize=1)
def _ring_matrix() -> np.ndarray:
    """(2 * _FREQS, _RINGS + 1): sums products of real and imaginary parts into frequency rings,
    each rfft2 coefficient counted as often as it stands for (twice, but for the self-conjugate
    columns); the constant term is left out (thumbnails are centred)."""
    fy = np.fft.fftfreq(SIDE)[:, None]
    fx = np.fft.rfftfreq(SIDE)[None, :]
    ring = np.minimum((np.sqrt(fy ** 2 + fx ** 2) / 0.5 * _RINGS).astype(int), _RINGS).ravel()
    weight = np.full((SIDE, SIDE // 2 + 1), 2.0)
    weight[:, 0] = 1.0
    if SIDE % 2 == 0:
        weight[:, -1] = 1.0
    weight = weight.ravel()
    weight[0] = 0.0
    m = np.zeros((_FREQS, _RINGS + 1), np.float32)
    m[np.arange(_FREQS), ring] = weight
    return np.concatenate([m, m])  # real parts, then imaginary parts


def _ring_energy(spectra: np.ndarray) -> np.ndarray:
    """(N, 2 * _FREQS) spectra -> (N, _RINGS + 1) energy per frequency ring (float32)."""
    m = _ring_matrix()
    out = np.zeros((len(spectra), m.shape[1]), np.float32)
    for s in range(0, len(spectra), 4096):
        part = spectra[s:s + 4096].astype(np.float32)
        out[s:s + 4096] = (part * part) @ m
    return out


def _ring_similarity(cross: np.ndarray, ea: np.ndarray, eb: np.ndarray) -> np.ndarray:
    """Per-ring cross-spectra and energies (broadcastable, rings last) -> similarity in 0..1."""
    gain = np.maximum(cross, 0.0) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        fa = np.where(ea > 0, gain / ea, 0.0).sum(axis=-1) / eb.sum(axis=-1)  # b explained by filtered a
        fb = np.where(eb > 0, gain / eb, 0.0).sum(axis=-1) / ea.sum(axis=-1)  # a explained by filtered b
        sim = np.sqrt(np.maximum(fa, fb))
    return np.clip(np.nan_to_num(sim, nan=0.0), 0.0, 1.0)


def pair_similarity(a_spectra: np.ndarray, b_spectra: np.ndarray) -> np.ndarray:
    """Similarity of a[i] and b[i] (``spectra`` rows of two Fingerprints, same length): the
    correlation of the thumbnails after the best non-negative gain per frequency ring applied to
    either one.

    With c_r the cross-spectrum and e_r the energies in ring r, filtering a to look like b gives
    sqrt(sum_r max(c_r, 0)**2 / ea_r / sum eb); the larger of the two directions is returned (a copy
    is a filtered original, and either side may be the original). 1 = same picture up to
    brightness, contrast and blur; a flat row gives 0."""
    a = a_spectra.astype(np.float32)
    b = b_spectra.astype(np.float32)
    return _ring_similarity((a * b) @ _ring_matrix(), _ring_energy(a), _ring_energy(b))


def _candidates(t_coarse: np.ndarray, v_coarse: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(len(v), k) coarse similarities and rows of t, most similar first."""
    import torch

    sim = torch.from_numpy(v_coarse @ t_coarse.T)
    values, rows = torch.topk(sim, k, dim=1)
    return values.numpy(), rows.numpy()


def _ratios(sim: np.ndarray) -> np.ndarray:
    """(Q, K) similarities, sorted high to low per row -> each pair's distance over the mean
    distance of the row's candidates ranked 2.._REF+1 (inf with a single candidate)."""
    dist = 1.0 - sim.astype(np.float64)
    if sim.shape[1] < 2:  # a single training image: nothing to be ahead of
        return np.full(sim.shape, np.inf)
    ref = dist[:, 1:1 + _REF].mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ref > 0, dist / ref, np.where(dist > 0, np.inf, 0.0))


def _scored(train: Fingerprints, val: Fingerprints):
    """Yield (validation rows, (q, k) training rows, (q, k) similarities, (q, k) ratios), the
    candidates of each validation image sorted most similar first. Flat images are skipped, and so
    is a validation image whose nearest coarse thumbnail correlates below _COARSE_FLOOR."""
    t_rows, v_rows = np.flatnonzero(~train.flat), np.flatnonzero(~val.flat)
    if len(t_rows) == 0 or len(v_rows) == 0:
        return
    t_coarse = np.ascontiguousarray(train.coarse[t_rows])
    t_spectra = train.spectra[t_rows]
    t_energy = _ring_energy(t_spectra)
    m = _ring_matrix()
    k = min(NEIGHBOURS, len(t_rows))
    for start in range(0, len(v_rows), _CHUNK):
        rows = v_rows[start:start + _CHUNK]
        coarse, cand = _candidates(t_coarse, val.coarse[rows], k)
        keep = coarse[:, 0] >= _COARSE_FLOOR  # nothing near: no copy (copies are >= 0.98 here)
        rows, cand = rows[keep], cand[keep]
        for s in range(0, len(rows), _PAIR_CHUNK):
            q, c = rows[s:s + _PAIR_CHUNK], cand[s:s + _PAIR_CHUNK]  # c: (q, k) rows of t_rows
            a = val.spectra[q].astype(np.float32)[:, None, :]
            cross = (a * t_spectra[c].astype(np.float32)).reshape(-1, m.shape[0]) @ m
            sim = _ring_similarity(cross.reshape(len(q), k, -1), _ring_energy(val.spectra[q])[:, None, :],
                                   t_energy[c])
            order = np.argsort(-sim, axis=1, kind="stable")
            sim, c = np.take_along_axis(sim, order, 1), np.take_along_axis(c, order, 1)
            yield q, t_rows[c], sim, _ratios(sim)


def cross_split_duplicates(train: Fingerprints, val: Fingerprints,
                           min_similarity: float = DEFAULT_MIN_SIMILARITY, max_ratio: float = MAX_RATIO,
                           always: float = ALWAYS_SIMILARITY) -> list[Duplicate]:
    """Every (train row, val row) pair reported by the test in the module docstring, most similar
    first (then by val, train row). ``min_similarity`` is the floor: no pair below it is reported."""
    found: list[Duplicate] = []
    for q, t, sim, ratio in _scored(train, val):
        vi, ki = np.nonzero((sim >= min_similarity) & ((ratio <= max_ratio) | (sim >= always)))
        found += [Duplicate(int(t[v, j]), int(q[v]), float(sim[v, j])) for v, j in zip(vi, ki)]
    found.sort(key=lambda d: (-round(d.similarity, 6), d.val, d.train))
    return found


def nearest_training(train: Fingerprints, val: Fingerprints) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For calibration and benchmarks: each validation image's most similar training image.
    Returns (training row, similarity, ratio) arrays of len(val); -1, 0.0, inf where not compared
    (flat, or nothing near)."""
    best_t = np.full(len(val), -1)
    best_sim, best_ratio = np.zeros(len(val)), np.full(len(val), np.inf)
    for q, t, sim, ratio in _scored(train, val):
        best_t[q], best_sim[q], best_ratio[q] = t[:, 0], sim[:, 0], ratio[:, 0]
    return best_t, best_sim, best_ratio


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
             f"{max(min_similarity, ALWAYS_SIMILARITY)}, or >= {min_similarity} and far closer than any other "
             f"training image; {n_identical} identical up to brightness/contrast): validation scores will be "
             "optimistic. Remove the copies, or keep copies together with --group-by"]
    for d in dups[:limit]:
        kind = "identical" if d.identical else f"similarity {d.similarity:.3f}"
        lines.append(f"  {paths[d.val]} (validation) ~ {paths[d.train]} (training): {kind}")
    if len(dups) > limit:
        lines.append(f"  ... and {len(dups) - limit} more pair(s)")
    return lines
