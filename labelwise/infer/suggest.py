"""Which unlabelled images are most worth labelling next (active learning), for `labelwise suggest`.

Each image of a pool folder is scored by the model once: its probabilities and its backbone
features (the pooled vector the head reads). The pick combines three things:

* **uncertainty**: how close the image sits to a decision. Multi-label: the label whose probability
  is nearest its tuned threshold (distance scaled so 0 = on the threshold, 1 = at 0 or 1).
  Multi-class: the margin between the two most probable classes.
* **rare labels favoured**: the uncertainty about a label is weighted by how rare that label was in
  training, ``sqrt(median share / share)`` clipped to [1, 3], so a doubtful "bag" in a set with few
  bags counts more than a doubtful "trouser" in a set full of them.
* **diversity**: among the ``CANDIDATES_PER_PICK * n`` most uncertain images, a k-center greedy walk
  over the L2-normalised features, each step taking the candidate that maximises
  (distance to the nearest image already picked) x (its weighted uncertainty). Twenty near-copies
  of one confusing image are not twenty picks.

>>> result = suggest("runs/demo", "unlabelled/", n=200)      # doctest: +SKIP
>>> result.out, len(result.picks)                             # doctest: +SKIP
(PosixPath('runs/demo/review/to_label.csv'), 200)
"""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from labelwise.data.decoded import decode_all
from labelwise.errors import ConfigError, DataError
from labelwise.infer.predict import Predictor, list_images
from labelwise.io import write_csv
from labelwise.labels import LabelSpace, split_label_names

CANDIDATES_PER_PICK = 4  # the diversity walk runs over this many times n of the most uncertain images
RARE_WEIGHT_MAX = 3.0  # a rare label's uncertainty counts at most this many times a common one's
TO_LABEL_HEADER = ["path", "guess", "why", "priority"]
DEFAULT_OUT = Path("review") / "to_label.csv"  # inside the run directory; `labelwise review` opens it


@dataclass
class Pick:
    path: Path
    guess: list[str]  # the model's current labels for it
    why: str  # in words: which label is in doubt, and how
    priority: float  # weighted uncertainty in [0, 1]


@dataclass
class SuggestResult:
    picks: list[Pick]
    n_pool: int  # readable pool images scored
    skipped: dict[Path, str] = field(default_factory=dict)  # unreadable pool images and why
    seconds: float = 0.0  # scoring + picking, wall clock
    out: Path | None = None


def suggest(run_dir: str | Path, pool: str | Path, n: int = 200, out: str | Path | None = None,
            exclude: set[Path] | None = None, chunk: int = 256,
            progress: Callable[[int, int], None] | bool = False) -> SuggestResult:
    """Score the images under ``pool`` with the model in ``run_dir`` and write the ``n`` best to
    ``out`` (default RUN/review/to_label.csv). ``exclude``: paths already labelled, left out."""
    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    start = time.perf_counter()
    predictor = Predictor.load(run_dir)
    paths = list_images([pool])
    if exclude:
        known = {Path(p).resolve() for p in exclude}
        paths = [p for p in paths if p.resolve() not in known]
    if not paths:
        raise DataError(f"{pool}: no images to score (jpg, png, tif, ...); pass a folder of unlabelled images")
    kept, probs, feats, bad = score_pool(predictor, paths, chunk, progress)
    if not kept:
        raise DataError(f"{pool}: none of the {len(paths)} images could be read (e.g. {next(iter(bad.values()))})")
    meta = predictor.meta
    picks = pick(probs, feats, predictor.labels, predictor.thresholds, meta.train_label_freq, n)
    decided = predictor.decide(probs[picks.rows]) if len(picks.rows) else np.zeros((0, len(meta.labels)))
    result = SuggestResult(
        [Pick(kept[i], [meta.labels.names[k] for k in np.flatnonzero(decided[j])], picks.why[j], picks.priority[j])
         for j, i in enumerate(picks.rows)], len(kept), bad)
    result.out = Path(out) if out is not None else Path(run_dir) / DEFAULT_OUT
    write_to_label(result.out, result.picks)
    result.seconds = time.perf_counter() - start
    return result


def score_pool(predictor: Predictor, paths: list[Path], chunk: int = 256,
               progress: Callable[[int, int], None] | bool = False
               ) -> tuple[list[Path], np.ndarray, np.ndarray, dict[Path, str]]:
    """(readable paths, probabilities (N, C), L2-normalised features (N, F), {bad path: reason}).

    Features are the backbone's pooled output (before the head); a model without one (an
    ensemble) falls back to its probabilities, so diversity is then over the predictions."""
    model = predictor.model
    if model is None:
        raise ConfigError("suggest needs the torch engine (the backbone features are read from the model)")
    meta = predictor.meta
    has_features = hasattr(model, "features") and hasattr(model, "head")
    kept: list[Path] = []
    probs, feats = [], []
    bad: dict[Path, str] = {}
    model.eval()
    for start in range(0, len(paths), chunk):
        part = paths[start:start + chunk]
        pixels, part_bad = decode_all(part, meta.image_size, meta.in_chans, pixel_spec=meta.pixel_spec)
        bad.update(part_bad)
        keep = np.array([p not in part_bad for p in part], dtype=bool)
        kept += [p for p, k in zip(part, keep) if k]
        if keep.any():
            p, f = _forward(model, pixels[keep], meta.labels.multilabel, has_features)
            probs.append(p)
            feats.append(f)
        if callable(progress):
            progress(min(start + chunk, len(paths)), len(paths))
    if not kept:
        return [], np.zeros((0, len(meta.labels)), np.float32), np.zeros((0, 1), np.float32), bad
    f = np.concatenate(feats)
    f /= np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    return kept, np.concatenate(probs), f, bad


@torch.inference_mode()
def _forward(model: torch.nn.Module, pixels: np.ndarray, multilabel: bool, has_features: bool,
             batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    probs, feats = [], []
    for s in range(0, len(pixels), batch_size):
        x = torch.from_numpy(pixels[s:s + batch_size]).float().div_(255.0).contiguous(memory_format=torch.channels_last)
        if has_features:
            f = model.features(x)
            logits = model.head(f)  # dropout is the identity in eval mode
        else:
            logits = model(x)
        p = torch.sigmoid(logits) if multilabel else torch.softmax(logits, 1)
        probs.append(p.float().numpy())
        feats.append((f if has_features else p).float().numpy())
    return np.concatenate(probs), np.concatenate(feats)


@dataclass
class _Picked:
    rows: list[int]
    why: list[str]
    priority: list[float]


def rare_weights(train_label_freq, n_labels: int) -> np.ndarray:
    """(C,) weight per label: sqrt(median share / share) clipped to [1, RARE_WEIGHT_MAX]; ones when unknown."""
    freq = np.asarray(train_label_freq, dtype=np.float64)
    if freq.shape != (n_labels,):
        return np.ones(n_labels)
    med = float(np.median(freq))
    if med <= 0:
        return np.ones(n_labels)
    return np.clip(np.sqrt(med / np.maximum(freq, 1e-9)), 1.0, RARE_WEIGHT_MAX)


def uncertainty(probs: np.ndarray, thresholds: np.ndarray, multilabel: bool, weights: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """(N,) weighted uncertainty in [0, 1] and (N,) the label it is about (multi-class: the runner-up)."""
    p = np.asarray(probs, dtype=np.float64)
    if len(p) == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    w = weights / weights.max()
    if multilabel:
        t = np.clip(np.asarray(thresholds, dtype=np.float64), 1e-6, 1 - 1e-6)[None, :]
        span = np.where(p < t, t, 1 - t)  # distance from the threshold to the end p is heading for
        closeness = 1.0 - np.abs(p - t) / span  # 1 on the threshold, 0 at 0 or 1
        scored = closeness * w[None, :]
        label = scored.argmax(axis=1)
        return scored[np.arange(len(p)), label], label
    order = np.argsort(-p, axis=1)
    top, second = order[:, 0], order[:, 1] if p.shape[1] > 1 else order[:, 0]
    margin = p[np.arange(len(p)), top] - p[np.arange(len(p)), second]
    return (1.0 - margin) * np.maximum(w[top], w[second]), second


def k_center_greedy(feats: np.ndarray, n: int, weights: np.ndarray) -> list[int]:
    """``n`` rows of ``feats`` spread out: each step takes argmax(distance to nearest pick x weight).

    The first pick is the row with the largest weight. Ties go to the lower row (deterministic)."""
    n = min(n, len(feats))
    if n == 0:
        return []
    w = np.maximum(np.asarray(weights, dtype=np.float64), 1e-9)
    first = int(np.argmax(w))
    picked = [first]
    nearest = np.linalg.norm(feats - feats[first], axis=1).astype(np.float64)
    nearest[first] = -1.0
    for _ in range(n - 1):
        nxt = int(np.argmax(nearest * w))
        picked.append(nxt)
        nearest = np.minimum(nearest, np.linalg.norm(feats - feats[nxt], axis=1))
        nearest[picked] = -1.0
    return picked


def pick(probs: np.ndarray, feats: np.ndarray, labels: LabelSpace, thresholds, train_label_freq, n: int) -> _Picked:
    """Rows of the pool to label next, with the reason for each, most worth it first."""
    weights = rare_weights(train_label_freq, len(labels))
    score, about = uncertainty(probs, thresholds, labels.multilabel, weights)
    n = min(n, len(score))
    n_cand = min(len(score), CANDIDATES_PER_PICK * n)
    cand = np.argsort(-score, kind="stable")[:n_cand]
    rows = [int(cand[i]) for i in k_center_greedy(feats[cand], n, score[cand])]
    names = labels.names
    why = []
    for i in rows:
        p = probs[i]
        j = int(about[i])
        if labels.multilabel:
            text = f"'{names[j]}' near its threshold ({p[j]:.2f} vs {float(thresholds[j]):.2f})"
        else:
            top = int(np.argmax(p))
            text = f"small margin: '{names[top]}' {p[top]:.2f} vs '{names[j]}' {p[j]:.2f}"
        if weights[j] > 1.0 + 1e-9:
            text += f"; '{names[j]}' is rare in training"
        why.append(text)
    return _Picked(rows, why, [round(float(score[i]), 4) for i in rows])


def write_to_label(path: Path, picks: list[Pick]) -> None:
    """to_label.csv: path (absolute), guess (labels joined by spaces), why, priority."""
    write_csv(path, TO_LABEL_HEADER,
              [[str(p.path.absolute()), " ".join(p.guess), p.why, f"{p.priority:.4f}"] for p in picks])


def read_to_label(path: Path, labels: LabelSpace) -> list[Pick]:
    """Read a to_label.csv back; unknown labels in a guess are dropped (the file is the user's to edit)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read the to-label list ({e})") from None
    if not rows or [h.strip().lower() for h in rows[0][:1]] != ["path"]:
        raise DataError(f"{path}: expected the header {','.join(TO_LABEL_HEADER)} (written by `labelwise suggest`)")
    header = [h.strip().lower() for h in rows[0]]
    col = {name: header.index(name) for name in TO_LABEL_HEADER if name in header}
    known = set(labels.names)
    out = []
    for line, row in enumerate(rows[1:], 2):
        if not row or not row[0].strip():
            continue
        cell = lambda name: row[col[name]] if name in col and col[name] < len(row) else ""  # noqa: E731
        try:
            priority = float(cell("priority") or 0.0)
        except ValueError:
            raise DataError(f"{path}: line {line}: priority {cell('priority')!r} is not a number") from None
        guess = split_label_names(cell("guess"), known)[0]
        out.append(Pick(Path(row[0].strip()), guess, cell("why"), priority))
    return out
