"""Evaluation metrics as pure numpy functions (float64 inside, plain Python floats out).

Every number matches scikit-learn to 1e-6 (tests/evaluation/test_metrics.py compares them on random
inputs with ties, empty labels and empty images). ``targets`` is multi-hot (N, C) for both
tasks; a multi-class row has exactly one 1. ``probs`` are probabilities, never logits.

Conventions for the degenerate cases:

* **Decision rule**: multi-label predicts a label when ``prob >= threshold`` (default 0.5);
  multi-class predicts ``argmax(probs)`` (ties -> the lowest class index, numpy's rule).
* **Zero division -> 0** for per-label precision / recall / F1 and their micro, macro and
  weighted averages (sklearn ``zero_division=0``): a label never predicted has precision 0,
  a label with no positives has recall 0 and, if also never predicted, F1 0. Macro averages
  run over *all* labels, as sklearn's do with ``labels=range(C)``.
* **Samples averages** (multi-label, per image then averaged): an image with no true and no
  predicted label is a *perfect* prediction and scores precision = recall = F1 = 1; every other
  0/0 is 0. That is sklearn's ``zero_division=0`` except for those images, where it equals
  ``zero_division=1``. Why: with ``zero_division=0`` a perfect model scores below 1 on a data
  set with unlabelled images, and with ``zero_division=1`` "predict nothing" earns precision 1
  on images that do have labels -- both mislead exactly the users labelwise is for.
* **AP and AUROC** of a label with no positives (or, for AUROC, no negatives) are undefined:
  NaN in ``per_class``. ``map`` and ``auroc_macro`` average the labels where they are defined
  and ``map_classes`` / ``auroc_classes`` say how many that was (NaN if none).
  AP is sklearn's ``average_precision_score`` (step-wise, no interpolation, tied scores form one
  step); AUROC is the trapezoidal ROC area (ties count one half), computed for all labels at
  once from one sort per column.
* **Balanced accuracy** (multi-class) averages recall over classes present in the targets,
  like sklearn. ``top{k}_accuracy`` is reported for k < C and breaks ties like sklearn's
  ``top_k_accuracy_score`` (among equal scores the higher class index ranks first).
* NaN is not JSON: ``to_jsonable`` turns it into ``None``.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from labelwise.errors import ConfigError, did_you_mean
from labelwise.evaluation.thresholds import apply_thresholds, rank_columns
from labelwise.labels import LabelSpace

MONITOR_DEFAULT: dict[str, str] = {"multilabel": "map", "multiclass": "accuracy"}

_PRF = tuple(f"{m}_{a}" for m in ("precision", "recall", "f1")
             for a in ("micro", "macro", "weighted", "samples"))
# Quality scores a run can be selected on (--monitor), per task.
MONITOR_KEYS: dict[str, tuple[str, ...]] = {
    "multilabel": ("map", "auroc_macro", *_PRF, "exact_match", "hamming_accuracy", "loss"),
    "multiclass": ("accuracy", "balanced_accuracy", "f1_macro", "f1_weighted", "precision_macro",
                   "recall_macro", "top5_accuracy", "top3_accuracy", "top2_accuracy", "loss"),
}
# Descriptive numbers in the summary: reported and logged, but "better" has no direction.
DESCRIPTIVE_KEYS: tuple[str, ...] = (
    "n", "map_classes", "auroc_classes", "mean_pred_labels", "mean_true_labels",
    "empty_pred_share", "empty_true_share", "top_pred_share", "top_true_share")

HIGHER_IS_BETTER: dict[str, bool] = {
    **{k: True for keys in MONITOR_KEYS.values() for k in keys},
    **{f"top{k}_accuracy": True for k in range(2, 11)},
    "loss": False, "val_loss": False, "train_loss": False,
}

_DEFAULT_SUMMARY_KEYS = {
    "multilabel": ("map", "f1_macro", "f1_micro", "exact_match"),
    "multiclass": ("accuracy", "balanced_accuracy", "f1_macro"),
}


def multilabel_metrics(probs: np.ndarray, targets: np.ndarray, thresholds: float | Sequence[float] | np.ndarray = 0.5,
                       names: Sequence[str] | None = None) -> dict[str, Any]:
    """Summary keys (see module docstring) plus ``per_class``: {name: precision, recall, f1, ap,
    auroc, support, predicted, threshold}. About 0.1 s for 70,000 images x 20 labels."""
    p, t = _check(probs, targets)
    n, c = p.shape
    names = _names(names, c)
    th = np.asarray(thresholds, dtype=np.float64)
    if th.ndim > 1 or (th.ndim == 1 and th.shape[0] != c):
        raise ValueError(f"thresholds must be a scalar or ({c},), got shape {th.shape}")
    th = np.broadcast_to(th, (c,)).copy()
    pred = apply_thresholds(p, th).astype(bool)
    true = t.astype(bool)

    tp = (pred & true).sum(axis=0).astype(np.float64)
    npred = pred.sum(axis=0).astype(np.float64)
    support = true.sum(axis=0).astype(np.float64)
    prec, rec, f1 = _prf(tp, npred, support)

    out: dict[str, Any] = {}
    # Micro: pool every (image, label) decision.
    mp, mr, mf = _prf(tp.sum(), npred.sum(), support.sum())
    out.update(precision_micro=float(mp), recall_micro=float(mr), f1_micro=float(mf))
    out.update(precision_macro=_mean(prec), recall_macro=_mean(rec), f1_macro=_mean(f1))
    out.update(precision_weighted=_weighted(prec, support), recall_weighted=_weighted(rec, support),
               f1_weighted=_weighted(f1, support))
    # Samples: per image, then averaged; empty-vs-empty images are perfect (module docstring).
    stp = (pred & true).sum(axis=1).astype(np.float64)
    spred = pred.sum(axis=1).astype(np.float64)
    strue = true.sum(axis=1).astype(np.float64)
    sp, sr, sf = _prf(stp, spred, strue)
    both_empty = (spred == 0) & (strue == 0)
    for arr in (sp, sr, sf):
        arr[both_empty] = 1.0
    out.update(precision_samples=_mean(sp), recall_samples=_mean(sr), f1_samples=_mean(sf))

    ap, auroc = _ap_auroc(p, t)
    ap_ok, auc_ok = ~np.isnan(ap), ~np.isnan(auroc)
    out["map"] = float(ap[ap_ok].mean()) if ap_ok.any() else math.nan
    out["map_classes"] = int(ap_ok.sum())
    out["auroc_macro"] = float(auroc[auc_ok].mean()) if auc_ok.any() else math.nan
    out["auroc_classes"] = int(auc_ok.sum())

    out["exact_match"] = _mean((pred == true).all(axis=1)) if n else math.nan
    out["hamming_accuracy"] = _mean(pred == true) if n * c else math.nan
    out["mean_pred_labels"] = _mean(spred)
    out["mean_true_labels"] = _mean(strue)
    out["empty_pred_share"] = _mean(spred == 0)
    out["empty_true_share"] = _mean(strue == 0)
    out["top_pred_share"] = _top_set_share(pred)
    out["top_true_share"] = _top_set_share(true)
    out["n"] = int(n)
    out["per_class"] = {
        name: {"precision": float(prec[j]), "recall": float(rec[j]), "f1": float(f1[j]),
               "ap": float(ap[j]), "auroc": float(auroc[j]), "support": int(support[j]),
               "predicted": int(npred[j]), "threshold": float(th[j])}
        for j, name in enumerate(names)
    }
    return out


def multiclass_metrics(probs: np.ndarray, targets: np.ndarray, names: Sequence[str] | None = None,
                       topk: Sequence[int] = (5,)) -> dict[str, Any]:
    """Summary keys (see module docstring), ``per_class`` {name: precision, recall, f1, support}
    and ``confusion_matrix`` (rows = true class, columns = predicted class).

    ``targets`` is one-hot (N, C); class indices (N,) are accepted too.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be (N, C), got shape {p.shape}")
    n, c = p.shape
    y = _class_indices(targets, p.shape)
    if not np.isfinite(p).all():
        raise ValueError("probs contain NaN or infinity")
    names = _names(names, c)
    pred = np.argmax(p, axis=1) if c else np.zeros(n, dtype=np.int64)

    cm = np.bincount(y * c + pred, minlength=c * c).reshape(c, c)
    tp = np.diag(cm).astype(np.float64)
    npred = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    prec, rec, f1 = _prf(tp, npred, support)

    out: dict[str, Any] = {"accuracy": float(tp.sum() / n) if n else math.nan}
    if n:
        true_score = p[np.arange(n), y][:, None]
        # sklearn's tie rule: stable ascending argsort reversed => among equal scores the
        # higher class index ranks first.
        idx = np.arange(c)[None, :]
        rank = (p > true_score).sum(axis=1) + ((p == true_score) & (idx > y[:, None])).sum(axis=1)
    for k in sorted(set(int(k) for k in topk)):
        if 1 < k < c:
            out[f"top{k}_accuracy"] = _mean(rank < k) if n else math.nan
    present = support > 0
    out["balanced_accuracy"] = float(rec[present].mean()) if present.any() else math.nan
    out["f1_macro"] = _mean(f1)
    out["f1_weighted"] = _weighted(f1, support)
    out["precision_macro"] = _mean(prec)
    out["recall_macro"] = _mean(rec)
    out["top_pred_share"] = float(npred.max() / n) if n else math.nan
    out["top_true_share"] = float(support.max() / n) if n else math.nan
    out["n"] = int(n)
    out["per_class"] = {
        name: {"precision": float(prec[j]), "recall": float(rec[j]), "f1": float(f1[j]),
               "support": int(support[j]), "predicted": int(npred[j])}
        for j, name in enumerate(names)
    }
    out["confusion_matrix"] = cm.astype(int).tolist()
    return out


def higher_is_better(metric: str) -> bool:
    """Direction of a monitored metric; unknown names ending in 'loss' are minimised."""
    return HIGHER_IS_BETTER.get(metric, not metric.endswith("loss"))


def compute_metrics(probs: np.ndarray, targets: np.ndarray, labels: LabelSpace,
                    thresholds: float | Sequence[float] | np.ndarray | None = None) -> dict[str, Any]:
    """Dispatch on ``labels.task``. ``thresholds`` (multi-label only): None means 0.5 everywhere."""
    c = np.asarray(probs).shape[-1] if np.asarray(probs).ndim == 2 else None
    if c != len(labels):
        raise ValueError(f"probs have {c} columns but the label space has {len(labels)} labels")
    if labels.task == "multilabel":
        return multilabel_metrics(probs, targets, 0.5 if thresholds is None else thresholds, labels.names)
    return multiclass_metrics(probs, targets, labels.names)


def summary_of(metrics: dict[str, Any]) -> dict[str, float | int]:
    """The flat scalar part of a metrics dict (drops per_class and confusion_matrix)."""
    return {k: v for k, v in metrics.items()
            if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool)}


def format_summary(metrics: dict[str, Any], keys: Sequence[str] | None = None) -> str:
    """One short line, e.g. ``map 0.812 · f1_macro 0.701 · f1_micro 0.774 · exact_match 0.402``."""
    if keys is None:
        keys = _DEFAULT_SUMMARY_KEYS["multilabel" if "map" in metrics else "multiclass"]
    parts = []
    for k in keys:
        if k not in metrics:
            continue
        v = metrics[k]
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            parts.append(f"{k} {int(v)}")
        elif v is None or (isinstance(v, float) and math.isnan(v)):
            parts.append(f"{k} n/a")
        else:
            parts.append(f"{k} {float(v):.3f}")
    return " · ".join(parts)


def to_jsonable(obj: Any) -> Any:
    """A copy that ``json.dumps`` accepts strictly: NaN/inf -> None, numpy scalars/arrays -> Python."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def check_monitor(monitor: str, task: str) -> str:
    """Validate a --monitor key for ``task``; ConfigError with a did-you-mean otherwise."""
    keys = MONITOR_KEYS[task]
    key = monitor[4:] if monitor.startswith("val_") else monitor
    if key in keys or (task == "multiclass" and key in HIGHER_IS_BETTER and key.startswith("top")):
        return key
    hint = did_you_mean(key, keys)
    raise ConfigError(f"--monitor {monitor!r} is not a {task} metric.{hint} "
                      f"Choose one of: {', '.join(keys)}")


# ---------------------------------------------------------------------------------------------
def _check(probs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64)
    t = np.asarray(targets)
    if p.ndim != 2:
        raise ValueError(f"probs must be (N, C), got shape {p.shape}")
    if t.shape != p.shape:
        raise ValueError(f"targets shape {t.shape} does not match probs shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("probs contain NaN or infinity")
    if t.dtype != np.bool_ and not ((t == 0) | (t == 1)).all():
        raise ValueError("targets must be multi-hot 0/1")
    return p, t.astype(np.int8)


def _class_indices(targets: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    t = np.asarray(targets)
    if t.ndim == 1:
        y = t.astype(np.int64)
        if t.shape[0] != shape[0] or (y.size and (y.min() < 0 or y.max() >= shape[1])):
            raise ValueError(f"class indices must be ({shape[0]},) in [0, {shape[1]})")
        return y
    if t.shape != shape:
        raise ValueError(f"targets shape {t.shape} does not match probs shape {shape}")
    if not (((t == 0) | (t == 1)).all() and (t.sum(axis=1) == 1).all()):
        raise ValueError("multi-class targets must be one-hot: exactly one 1 per row")
    return np.argmax(t, axis=1)


def _names(names: Sequence[str] | None, c: int) -> list[str]:
    names = [str(i) for i in range(c)] if names is None else [str(n) for n in names]
    if len(names) != c:
        raise ValueError(f"{len(names)} names for {c} columns")
    return names


def _prf(tp: np.ndarray, npred: np.ndarray, ntrue: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 with every 0/0 -> 0 (sklearn zero_division=0)."""
    tp, npred, ntrue = (np.asarray(a, dtype=np.float64) for a in (tp, npred, ntrue))
    zero = np.zeros_like(tp)
    prec = np.divide(tp, npred, out=zero.copy(), where=npred > 0)
    rec = np.divide(tp, ntrue, out=zero.copy(), where=ntrue > 0)
    denom = npred + ntrue
    f1 = np.divide(2.0 * tp, denom, out=zero.copy(), where=denom > 0)
    return prec, rec, f1


def _mean(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(a.mean()) if a.size else math.nan


def _weighted(values: np.ndarray, support: np.ndarray) -> float:
    total = support.sum()
    return float((values * support).sum() / total) if total > 0 else 0.0


def label_set_counts(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows (label sets) of a (N, C) 0/1 array and how often each occurs.

    Returns (sets (K, C) uint8, counts (K,)). Fast: up to 64 labels each row becomes one
    integer, so this is a 1-D unique (about 5 ms for 70,000 x 20) rather than a row sort.
    """
    b = np.asarray(rows) != 0
    n, c = b.shape
    if n == 0:
        return np.zeros((0, c), dtype=np.uint8), np.zeros(0, dtype=np.int64)
    packed = np.packbits(b, axis=1)
    if packed.shape[1] <= 8:
        codes = np.zeros((n, 8), dtype=np.uint8)
        codes[:, :packed.shape[1]] = packed
        _, first, counts = np.unique(codes.view(np.uint64).ravel(), return_index=True, return_counts=True)
    else:
        _, first, counts = np.unique(packed, axis=0, return_index=True, return_counts=True)
    return b[first].astype(np.uint8), counts


def _top_set_share(pred: np.ndarray) -> float:
    """Share of rows equal to the most common row (label set)."""
    if pred.shape[0] == 0:
        return math.nan
    return float(label_set_counts(pred)[1].max() / pred.shape[0])


def _ap_auroc(p: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column average precision and ROC AUC from one descending sort; NaN where undefined."""
    n, c = p.shape
    if n == 0:
        return np.full(c, math.nan), np.full(c, math.nan)
    values, cum_tp, end = rank_columns(p, t)  # (C, N) each
    images = np.arange(1, n + 1, dtype=np.float64)[None, :]
    tp = cum_tp.astype(np.float64)
    fp = images - tp
    npos = tp[:, -1]
    nneg = n - npos

    # Index of the first image of each tie group: a cut only ever happens at group boundaries.
    start = np.ones_like(end)
    start[:, 1:] = end[:, :-1]
    first = np.maximum.accumulate(np.where(start, np.arange(n)[None, :], 0), axis=1)
    zeros = np.zeros((c, 1))
    tp_before = np.take_along_axis(np.hstack([zeros, tp]), first, axis=1)  # counts above the group
    fp_before = np.take_along_axis(np.hstack([zeros, fp]), first, axis=1)
    d_tp = np.where(end, tp - tp_before, 0.0)
    d_fp = np.where(end, fp - fp_before, 0.0)

    with np.errstate(divide="ignore", invalid="ignore"):
        # AP = sum over cuts of (recall step) x (precision at the cut).
        ap = (d_tp * (tp / images)).sum(axis=1) / npos
        # Trapezoid: each cut adds (FPR step) x (mean TPR across the step).
        auroc = (d_fp * (tp_before + d_tp / 2.0)).sum(axis=1) / (npos * nneg)
    ap[npos == 0] = math.nan
    auroc[(npos == 0) | (nneg == 0)] = math.nan
    return ap, auroc


def finite_or_none(v: Any) -> float | None:
    """v as a float, or None when it is missing, not a number, NaN or infinite."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
