"""compare(): two model bundles scored on the same labelled images, with a paired bootstrap.

Both models predict every image; images either cannot read are left out for both, so every
metric compares like with like. The paired bootstrap resamples the *same* images for both models
on every draw (labelwise.evaluation.intervals.paired_bootstrap), which removes the part of the
spread that comes from which images happen to be in the test set: a difference is "real" when its
95% interval excludes 0.

>>> r = compare("runs/a", "runs/b", "data/test")          # doctest: +SKIP
>>> r["metrics"]["map"]["real"], r["summary"]              # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from labelwise.data.sources import load_samples
from labelwise.errors import DataError
from labelwise.evaluation.intervals import DRAWS, HEADLINE, SEED, paired_bootstrap
from labelwise.evaluation.metrics import MONITOR_DEFAULT, to_jsonable
from labelwise.infer.evaluate_bundle import _align_labels
from labelwise.infer.predict import Predictor
from labelwise.io import write_json


def compare(run_a: str | Path, run_b: str | Path, data: str | Path, *, fmt: str = "auto",
            images: str | Path | None = None, delimiter: str = "auto", engine: str = "torch",
            draws: int = DRAWS, seed: int = SEED, out: str | Path | None = None) -> dict[str, Any]:
    """{"metrics": {metric: {a, b, difference, interval, share_b_better, real}}, "summary": str, ...}.

    Each model decides with its own tuned thresholds (multi-label) or argmax (multi-class). The two
    bundles must be for the same task and the same label names (any order). Writes ``out`` (JSON)
    when given.
    """
    a = Predictor.load(run_a, engine=engine)
    b = Predictor.load(run_b, engine=engine)
    la, lb = a.meta.labels, b.meta.labels
    if la.task != lb.task or set(la.names) != set(lb.names):
        raise DataError(f"{run_a} and {run_b} are not comparable: {la.task} {list(la.names)} vs "
                        f"{lb.task} {list(lb.names)}; compare needs two models of the same labels")
    samples = load_samples(Path(data), fmt=fmt, images=Path(images) if images else None, delimiter=delimiter)
    targets = _align_labels(samples, la)
    probs_a, bad_a = _all_probs(a, samples.paths)
    probs_b, bad_b = _all_probs(b, samples.paths)
    order = [lb.index(n) for n in la.names]  # B's columns in A's label order
    probs_b, thresholds_b = probs_b[:, order], np.asarray(b.thresholds)[order]
    keep = ~(bad_a | bad_b)
    if keep.sum() < 2:
        raise DataError(f"{data}: fewer than 2 images both models can read; nothing to compare")
    metrics = paired_bootstrap(probs_a[keep], probs_b[keep], targets[keep], la, np.asarray(a.thresholds),
                               thresholds_b, draws=draws, seed=seed)
    headline = MONITOR_DEFAULT[la.task]
    result: dict[str, Any] = {
        "task": la.task, "run_a": str(run_a), "run_b": str(run_b), "data": str(data),
        "n_images": int(keep.sum()), "skipped_images": int((~keep).sum()), "headline": headline,
        "bootstrap": {"draws": int(draws), "seed": int(seed), "level": 0.95, "paired": True},
        "metrics": metrics, "summary": summary(metrics, headline, int(keep.sum())),
    }
    result = to_jsonable(result)
    if out is not None:
        write_json(Path(out), result)
        result["written_to"] = str(out)
    return result


def summary(metrics: dict[str, dict[str, Any]], headline: str, n: int) -> str:
    """One sentence on the headline metric: which model is better, and whether that is real."""
    m = metrics.get(headline)
    if not m or m.get("interval") is None:
        return f"{headline} is undefined on these images; nothing to conclude."
    lo, hi = m["interval"]
    diff = m["difference"]
    span = f"{diff:+.3f} (95% interval {lo:+.3f} to {hi:+.3f}, {n} images, paired bootstrap)"
    if m["real"]:
        better = "A" if diff > 0 else "B"
        return f"Model {better} is better on {headline}: A - B = {span}. The difference is real."
    return (f"No real difference on {headline}: A - B = {span}; the interval includes 0, so on these "
            f"images the two models cannot be told apart.")


def _all_probs(predictor: Predictor, paths) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) probabilities (NaN rows for unreadable images) and (N,) bool unreadable."""
    n, c = len(paths), len(predictor.labels)
    probs = np.full((n, c), np.nan)
    bad = np.zeros(n, dtype=bool)
    offset = 0
    for part, p, unreadable in predictor.iter_probs(list(paths)):
        ok = np.array([q not in unreadable for q in part], dtype=bool)
        rows = offset + np.flatnonzero(ok)
        probs[rows] = p
        bad[offset + np.flatnonzero(~ok)] = True
        offset += len(part)
    return probs, bad


__all__ = ["HEADLINE", "compare", "summary"]
