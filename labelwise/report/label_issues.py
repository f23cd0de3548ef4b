"""Suspected label errors: images whose given labels disagree with out-of-sample predictions.

cleanlab's confident learning (``cleanlab.filter.find_label_issues``) flags them from held-out
probabilities (validation, or out-of-fold when k-fold wrote them: then every image is checked);
they are ranked by cleanlab's label quality score, worst first, and each gets a suggested fix
read off the model's own decisions: "add 'bag'", "remove 'dress'", "relabel as 'coat'".
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from labelwise.labels import LabelSpace

MAX_FIXES = 3  # suggestions per image; beyond that the image is simply "check"


@dataclass
class Issue:
    row: int  # into the predictions the issues were found on
    quality: float  # cleanlab label quality in [0, 1]; low = likely wrong
    fixes: list[str]  # e.g. ["add 'bag'", "remove 'dress'"]


@dataclass
class IssueResult:
    issues: list[Issue]  # ranked, worst first
    method: str  # how they were found, in words
    error: str | None = None  # why cleanlab could not run, if it could not


def find_issues(probs: np.ndarray, targets: np.ndarray, pred: np.ndarray, labels: LabelSpace) -> IssueResult:
    """Run cleanlab on (N, C) held-out ``probs`` and multi-hot ``targets``; ``pred`` the model's decisions."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 0.0, 1.0)
    t = np.asarray(targets).astype(bool)
    if len(p) < 2:
        return IssueResult([], "", "too few images to look for label errors")
    try:
        flagged, quality = _cleanlab(p, t, labels)
        method = "cleanlab confident learning"
        error = None
    except Exception as e:  # noqa: BLE001 - third-party; the report must still be written
        # cleanlab refuses some tiny or degenerate sets (a class with no example); fall back to
        # the plain rule it generalises: the given labels are the least likely ones, and the
        # model's own decision disagrees.
        quality = _self_confidence(p, t, labels.multilabel)
        flagged = np.flatnonzero((quality < 0.1) & (t != pred).any(axis=1))
        method = "low self-confidence (cleanlab could not run)"
        error = f"{type(e).__name__}: {e}"
    order = sorted(flagged.tolist(), key=lambda i: (quality[i], i))
    issues = [Issue(i, float(quality[i]), suggest(p[i], t[i], pred[i], labels)) for i in order]
    return IssueResult(issues, method, error)


def suggest(prob: np.ndarray, given: np.ndarray, pred: np.ndarray, labels: LabelSpace) -> list[str]:
    """Fixes for one image, the strongest disagreement first."""
    names = labels.names
    if not labels.multilabel:
        top = int(np.argmax(prob))
        if given.any() and top != int(np.argmax(given)):
            return [f"relabel as '{names[top]}'"]
        return ["check the label"]
    add = [j for j in np.flatnonzero(pred & ~given)]
    drop = [j for j in np.flatnonzero(given & ~pred)]
    ranked = sorted([(prob[j], f"add '{names[j]}'") for j in add] + [(1 - prob[j], f"remove '{names[j]}'") for j in drop],
                    reverse=True)
    fixes = [text for _, text in ranked[:MAX_FIXES]]
    if not fixes:  # decisions agree with the labels; point at the least certain given/missing label
        j = int(np.argmax(np.abs(given.astype(float) - prob)))
        fixes = [f"check '{names[j]}'"]
    return fixes


def _cleanlab(p: np.ndarray, t: np.ndarray, labels: LabelSpace) -> tuple[np.ndarray, np.ndarray]:
    from cleanlab.filter import find_label_issues

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "too few examples in class k": expected on small validation sets
        if labels.multilabel:
            from cleanlab.multilabel_classification import get_label_quality_scores

            given = [np.flatnonzero(row).tolist() for row in t]
            flagged = find_label_issues(given, p, multi_label=True)
            quality = get_label_quality_scores(given, p)
        else:
            from cleanlab.rank import get_label_quality_scores

            y = t.argmax(axis=1)
            # cleanlab expects rows to sum to 1; the saved softmax is rounded to 6 digits
            q = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)
            flagged = find_label_issues(y, q)
            quality = get_label_quality_scores(y, q)
    return np.flatnonzero(flagged), np.asarray(quality, dtype=np.float64)


def _self_confidence(p: np.ndarray, t: np.ndarray, multilabel: bool) -> np.ndarray:
    if multilabel:
        # per label the probability of the given answer; an image is as good as its worst label
        return np.where(t, p, 1 - p).min(axis=1) if p.shape[1] else np.ones(len(p))
    return p[np.arange(len(p)), t.argmax(axis=1)]
