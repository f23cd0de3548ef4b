"""The numbers behind the report: decisions, per-image loss, gallery picks, confusions, the verdict."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labelwise.evaluation.baselines import (
    BASELINE_DESCRIPTIONS,
    MARGIN_ABS,
    MARGIN_HEADROOM,
)
from labelwise.evaluation.intervals import images_needed
from labelwise.evaluation.metrics import HIGHER_IS_BETTER, finite_or_none
from labelwise.evaluation.thresholds import apply_thresholds
from labelwise.evaluation.names import metric_label
from labelwise.labels import LabelSpace

_EPS = 1e-7  # clip probabilities before log so a confident mistake costs ~16 nats, not infinity

readable = metric_label  # one table of metric names: labelwise/evaluation/names.py


def decisions(probs: np.ndarray, labels: LabelSpace, thresholds: np.ndarray, at_least_one: bool = False
              ) -> np.ndarray:
    """(N, C) bool: what the model predicts, by the same rules as ``labelwise predict``."""
    p = np.asarray(probs, dtype=np.float64)
    if labels.multilabel:
        return apply_thresholds(p, thresholds, at_least_one=at_least_one).astype(bool)
    out = np.zeros(p.shape, dtype=bool)
    if len(p):
        out[np.arange(len(p)), np.argmax(p, axis=1)] = True
    return out


def image_losses(probs: np.ndarray, targets: np.ndarray, multilabel: bool) -> np.ndarray:
    """(N,) loss per image in nats: summed binary cross-entropy (multi-label) or cross-entropy."""
    p = np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1 - _EPS)
    t = np.asarray(targets, dtype=np.float64)
    if multilabel:
        return -(t * np.log(p) + (1 - t) * np.log(1 - p)).sum(axis=1)
    return -(t * np.log(p)).sum(axis=1)


@dataclass
class ClassPicks:
    """Rows (into the predictions) chosen for one class's galleries, and how many there were."""

    name: str
    most_confident: list[int]
    least_confident: list[int]
    false_pos: list[int]
    false_neg: list[int]
    n_false_pos: int
    n_false_neg: int


def class_picks(probs: np.ndarray, targets: np.ndarray, pred: np.ndarray, labels: LabelSpace,
                thresholds: np.ndarray, c: int, k: int) -> ClassPicks:
    """Most confident (highest score), least confident (closest to the decision), FP and FN of class c."""
    p = np.asarray(probs, dtype=np.float64)
    t = np.asarray(targets).astype(bool)
    score = p[:, c]
    most = np.argsort(-score, kind="stable")[:k]
    if labels.multilabel:
        margin = np.abs(score - thresholds[c])
        candidates = np.arange(len(p))
    else:
        # Borderline for class c: labelled or predicted c, smallest gap between the two top classes.
        top2 = np.sort(p, axis=1)[:, -2:] if p.shape[1] > 1 else np.concatenate([p, np.zeros_like(p)], 1)
        margin = top2[:, -1] - top2[:, -2]
        candidates = np.flatnonzero(t[:, c] | pred[:, c])
    least = candidates[np.argsort(margin[candidates], kind="stable")][:k]
    fp = np.flatnonzero(pred[:, c] & ~t[:, c])
    fn = np.flatnonzero(~pred[:, c] & t[:, c])
    fp = fp[np.argsort(-score[fp], kind="stable")]
    fn = fn[np.argsort(score[fn], kind="stable")]
    return ClassPicks(labels.names[c], most.tolist(), least.tolist(), fp[:k].tolist(), fn[:k].tolist(),
                      len(fp), len(fn))


def confusion_counts(targets: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    """Per label: tp, fp, fn, tn (C,) int counts."""
    t = np.asarray(targets).astype(bool)
    return {"tp": (t & pred).sum(0), "fp": (~t & pred).sum(0), "fn": (t & ~pred).sum(0),
            "tn": (~t & ~pred).sum(0)}


def mixups(targets: np.ndarray, pred: np.ndarray, labels: LabelSpace, top: int = 10) -> list[dict[str, Any]]:
    """The most frequent (true label, predicted label) mistakes.

    Multi-class: off-diagonal cells of the confusion matrix. Multi-label: on one image the label
    ``true`` was missed while ``predicted`` was added (a swap); ``predicted`` may be "(nothing)"
    when the model dropped a label without adding another, and ``true`` "(nothing)" likewise.
    """
    t = np.asarray(targets).astype(bool)
    c = len(labels)
    counts = np.zeros((c + 1, c + 1), dtype=np.int64)  # last index = "(nothing)"
    missed, extra = t & ~pred, ~t & pred
    for i in np.flatnonzero(missed.any(1) | extra.any(1)):
        ms = np.flatnonzero(missed[i]).tolist() or [c]
        es = np.flatnonzero(extra[i]).tolist() or [c]
        for m in ms:
            for e in es:
                counts[m, e] += 1
    names = [*labels.names, "(nothing)"]
    order = np.argsort(-counts, axis=None, kind="stable")
    out = []
    for flat in order[:top]:
        m, e = divmod(int(flat), c + 1)
        if counts[m, e] == 0:
            break
        out.append({"true": names[m], "predicted": names[e], "count": int(counts[m, e])})
    return out


WARN_TITLE = "Better than guessing, but read the warnings"


@dataclass
class Verdict:
    """The headline: is the model clearly better than predicting without looking at the image?

    With bootstrap intervals in the metrics (``margin_interval``), "useful" needs the whole 95%
    interval of the margin over the best trivial baseline above 0, not just the point estimate.
    """

    level: str  # "good" | "warn" | "bad" | "unknown"
    title: str
    detail: str
    metric: str = ""
    value: float | None = None
    baseline: float | None = None
    baseline_name: str = ""
    margin_interval: list[float] | None = None  # 95% interval of value - baseline
    images_for_one_point: int | None = None  # test images to pin the metric down to +-0.01


def verdict(metrics: dict[str, Any]) -> Verdict:
    monitor = str(metrics.get("monitor") or "")
    model = metrics.get("model") or {}
    value = finite_or_none(model.get(monitor))
    what = readable(monitor)
    warnings = metrics.get("warnings") or []
    higher = HIGHER_IS_BETTER.get(monitor, True)
    scored = {n: finite_or_none(b.get(monitor)) for n, b in (metrics.get("baselines") or {}).items()}
    scored = {n: v for n, v in scored.items() if v is not None}
    if value is None:
        return Verdict("unknown", "No score", f"metrics.json has no value for the monitored metric {monitor!r}.")
    if not scored:
        return Verdict("warn" if warnings else "unknown", f"{what} {value:.3f}",
                       "No trivial baseline was scored, so there is nothing to compare with.", monitor, value)
    best_name = max(scored, key=lambda n: scored[n] if higher else -scored[n])
    best = scored[best_name]
    headroom = (1.0 - best) if higher else best
    margin = min(MARGIN_ABS, MARGIN_HEADROOM * max(headroom, 0.0))
    gain = (value - best) if higher else (best - value)
    how = BASELINE_DESCRIPTIONS.get(best_name, best_name.replace("_", " "))
    interval = _margin_interval(metrics, monitor, best_name)
    n = int(metrics.get("n_images") or 0)
    needed = images_needed((metrics.get("intervals") or {}).get(monitor), n)
    base = dict(metric=monitor, value=value, baseline=best, baseline_name=how, margin_interval=interval,
                images_for_one_point=needed)
    spread = ""
    if interval is not None:
        spread = f" The margin is {gain:+.3f} (95% interval {interval[0]:+.3f} to {interval[1]:+.3f} over {n} images)."
    if needed is not None:
        spread += (f" Telling a 1-point difference in {what} apart would take about {needed:,} test images"
                   f"{' (these are enough)' if needed <= n else ''}.")
    clear = interval is None or interval[0] > 0  # no intervals (older runs): the point estimate decides
    if gain >= margin and gain > 0 and clear:
        closed = f"; it closes {gain / headroom:.0%} of the gap to a perfect score" if headroom > 0 else ""
        detail = f"{what} {value:.3f} against {best:.3f} for the best trivial baseline ({how}){closed}.{spread}"
        if warnings:
            return Verdict("warn", WARN_TITLE, detail, **base)
        return Verdict("good", "The model is useful", detail, **base)
    if gain >= margin and gain > 0:  # a clear point margin, but the interval reaches 0
        return Verdict("bad", "Not shown to beat guessing",
                       f"{what} {value:.3f} against {best:.3f} for the best trivial baseline ({how}), but on "
                       f"these images that margin could be chance.{spread}", **base)
    word = "worse than" if gain < 0 else "no better than"
    return Verdict("bad", "The model is not useful yet",
                   f"{what} {value:.3f} is {word} the best trivial baseline, {how} ({best:.3f}).{spread}",
                   **base)


def _margin_interval(metrics: dict[str, Any], monitor: str, best_name: str) -> list[float] | None:
    """The bootstrap interval of the margin, oriented so that > 0 means the model is better; only
    when it was computed for this metric and this baseline."""
    mi = metrics.get("margin_interval") or {}
    iv = mi.get("interval")
    if not iv or mi.get("metric") != monitor or mi.get("baseline") != best_name:
        return None
    lo, hi = float(iv[0]), float(iv[1])
    return [lo, hi] if HIGHER_IS_BETTER.get(monitor, True) else [-hi, -lo]
