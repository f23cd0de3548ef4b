"""Every metric against scikit-learn on random inputs, ties and degenerate cases included.

Conventions under test (see labelwise/metrics.py):
* per-label / micro / macro / weighted precision, recall, F1 use sklearn zero_division=0;
* samples averages: an image with no true and no predicted label scores 1 (sklearn
  zero_division=1 on those images), every other image as sklearn zero_division=0;
* AP / AUROC of a label with no positives is NaN and is left out of map / auroc_macro.
"""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (accuracy_score, average_precision_score, balanced_accuracy_score,
                             confusion_matrix, hamming_loss, precision_recall_fscore_support,
                             roc_auc_score, top_k_accuracy_score)

from labelwise.errors import ConfigError
from labelwise.labels import LabelSpace
from labelwise.evaluation.metrics import HIGHER_IS_BETTER, MONITOR_DEFAULT, MONITOR_KEYS, check_monitor, compute_metrics, format_summary, multiclass_metrics, multilabel_metrics, summary_of, to_jsonable

TOL = 1e-6


@pytest.fixture(autouse=True)
def _quiet_sklearn():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        yield


def _multilabel_data(seed: int, n: int = 300, c: int = 6, decimals: int = 1):
    """Probabilities rounded to create many ties; label 2 never positive; ~1/4 images empty."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, c)) < 0.3).astype(np.uint8)
    targets[:, 2] = 0
    targets[rng.random(n) < 0.25] = 0
    # Informative but noisy probabilities, rounded so that many scores tie.
    probs = np.clip(0.35 * targets + 0.65 * rng.random((n, c)), 0, 1).round(decimals)
    return probs, targets


def _sk_samples(t: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    """Samples-averaged P/R/F1 under labelwise's convention, built from sklearn."""
    both_empty = (t.sum(1) == 0) & (pred.sum(1) == 0)
    rest = ~both_empty
    n = len(t)
    if rest.any():
        p, r, f, _ = precision_recall_fscore_support(t[rest], pred[rest], average="samples", zero_division=0)
    else:
        p = r = f = 0.0
    if both_empty.any():  # sklearn zero_division=1 on those images gives exactly 1
        p1, r1, f1, _ = precision_recall_fscore_support(t[both_empty], pred[both_empty],
                                                        average="samples", zero_division=1)
        assert p1 == r1 == f1 == 1.0
    k = both_empty.sum()
    return tuple(((n - k) * v + k) / n for v in (p, r, f))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("per_class_thresholds", [False, True])
def test_multilabel_matches_sklearn(seed: int, per_class_thresholds: bool):
    probs, t = _multilabel_data(seed)
    c = t.shape[1]
    th = np.linspace(0.3, 0.7, c) if per_class_thresholds else 0.5
    m = multilabel_metrics(probs, t, thresholds=th)
    pred = (probs >= np.broadcast_to(th, (c,))).astype(np.uint8)

    assert m["exact_match"] == pytest.approx(accuracy_score(t, pred), abs=TOL)
    assert m["hamming_accuracy"] == pytest.approx(1 - hamming_loss(t, pred), abs=TOL)
    for avg in ("micro", "macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(t, pred, average=avg, zero_division=0)
        assert (m[f"precision_{avg}"], m[f"recall_{avg}"], m[f"f1_{avg}"]) == pytest.approx((p, r, f), abs=TOL)
    assert (m["precision_samples"], m["recall_samples"], m["f1_samples"]) == pytest.approx(_sk_samples(t, pred), abs=TOL)

    p, r, f, s = precision_recall_fscore_support(t, pred, average=None, zero_division=0)
    aps, aucs = [], []
    for j in range(c):
        pc = m["per_class"][str(j)]
        assert (pc["precision"], pc["recall"], pc["f1"]) == pytest.approx((p[j], r[j], f[j]), abs=TOL)
        assert pc["support"] == s[j]
        assert pc["threshold"] == pytest.approx(np.broadcast_to(th, (c,))[j])
        if t[:, j].any():
            aps.append(average_precision_score(t[:, j], probs[:, j]))
            aucs.append(roc_auc_score(t[:, j], probs[:, j]))
            assert pc["ap"] == pytest.approx(aps[-1], abs=TOL)
            assert pc["auroc"] == pytest.approx(aucs[-1], abs=TOL)
        else:  # undefined, not sklearn's 0.0
            assert math.isnan(pc["ap"]) and math.isnan(pc["auroc"])
    assert m["map"] == pytest.approx(np.mean(aps), abs=TOL)
    assert m["auroc_macro"] == pytest.approx(np.mean(aucs), abs=TOL)
    assert m["map_classes"] == m["auroc_classes"] == c - 1
    # sklearn's macro AP over the defined labels agrees as well.
    keep = t.any(axis=0)
    assert m["map"] == pytest.approx(average_precision_score(t[:, keep], probs[:, keep], average="macro"), abs=TOL)

    assert m["mean_pred_labels"] == pytest.approx(pred.sum(1).mean())
    assert m["mean_true_labels"] == pytest.approx(t.sum(1).mean())
    assert m["empty_pred_share"] == pytest.approx((pred.sum(1) == 0).mean())
    assert m["empty_true_share"] == pytest.approx((t.sum(1) == 0).mean())
    assert m["n"] == len(t)


@pytest.mark.parametrize("decimals", [1, 2, 3, 8])
def test_ap_auroc_with_ties_many_columns(decimals: int):
    rng = np.random.default_rng(decimals)
    n, c = 2000, 12
    t = (rng.random((n, c)) < rng.uniform(0.01, 0.6, c)).astype(np.uint8)
    probs = np.clip(0.2 * t + rng.random((n, c)), 0, 1).round(decimals).astype(np.float32)
    m = multilabel_metrics(probs, t)
    for j in range(c):
        assert m["per_class"][str(j)]["ap"] == pytest.approx(average_precision_score(t[:, j], probs[:, j]), abs=TOL)
        assert m["per_class"][str(j)]["auroc"] == pytest.approx(roc_auc_score(t[:, j], probs[:, j]), abs=TOL)


def test_constant_scores_ap_is_prevalence_auroc_half():
    t = np.array([[1], [0], [0], [1], [0]], dtype=np.uint8)
    m = multilabel_metrics(np.zeros((5, 1)), t)
    assert m["map"] == pytest.approx(average_precision_score(t[:, 0], np.zeros(5))) == pytest.approx(0.4)
    assert m["auroc_macro"] == pytest.approx(0.5)


def test_all_negative_label_and_all_positive_label():
    t = np.array([[1, 0], [1, 0], [1, 0]], dtype=np.uint8)
    m = multilabel_metrics(np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]]), t)
    assert m["per_class"]["0"]["ap"] == pytest.approx(1.0)
    assert math.isnan(m["per_class"]["0"]["auroc"])  # no negatives: AUROC undefined
    assert math.isnan(m["per_class"]["1"]["ap"])
    assert m["map_classes"] == 1 and m["auroc_classes"] == 0 and math.isnan(m["auroc_macro"])


def test_perfect_prediction_with_empty_images_scores_one():
    t = np.array([[1, 0], [0, 0], [0, 1], [0, 0]], dtype=np.uint8)
    m = multilabel_metrics(t.astype(float), t)
    for key in ("exact_match", "hamming_accuracy", "f1_samples", "precision_samples", "recall_samples",
                "f1_macro", "f1_micro", "map", "auroc_macro"):
        assert m[key] == pytest.approx(1.0), key


def test_predict_nothing_is_not_flattered_by_samples_average():
    t = np.array([[1, 0], [0, 0]], dtype=np.uint8)
    m = multilabel_metrics(np.zeros((2, 2)), t)
    assert m["exact_match"] == 0.5
    # Image 0 has a label and got none: 0 (not sklearn zero_division=1's precision 1); image 1: 1.
    assert m["precision_samples"] == m["recall_samples"] == m["f1_samples"] == 0.5
    assert m["empty_pred_share"] == 1.0 and m["top_pred_share"] == 1.0
    assert m["precision_macro"] == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multiclass_matches_sklearn(seed: int):
    rng = np.random.default_rng(seed)
    n, c = 400, 7
    y = rng.integers(0, c - 1, n)  # the last class never occurs in the targets
    logits = rng.normal(size=(n, c)) + 1.5 * np.eye(c)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    probs = probs.round(1)  # ties, including in the top-k ranking
    onehot = np.eye(c, dtype=np.uint8)[y]
    m = multiclass_metrics(probs, onehot, topk=(2, 3, 5, 7))
    pred = probs.argmax(1)
    labels = list(range(c))

    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=TOL)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred), abs=TOL)
    for k in (2, 3, 5):
        assert m[f"top{k}_accuracy"] == pytest.approx(top_k_accuracy_score(y, probs, k=k, labels=labels), abs=TOL)
    assert "top7_accuracy" not in m  # k >= C is trivially 1
    for avg in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y, pred, labels=labels, average=avg, zero_division=0)
        assert m[f"f1_{avg}"] == pytest.approx(f, abs=TOL)
        if avg == "macro":
            assert (m["precision_macro"], m["recall_macro"]) == pytest.approx((p, r), abs=TOL)
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, average=None, zero_division=0)
    for j in range(c):
        pc = m["per_class"][str(j)]
        assert (pc["precision"], pc["recall"], pc["f1"], pc["support"]) == pytest.approx((p[j], r[j], f[j], s[j]), abs=TOL)
    assert m["confusion_matrix"] == confusion_matrix(y, pred, labels=labels).tolist()
    assert m["n"] == n
    # Class indices work as targets too.
    assert multiclass_metrics(probs, y, topk=(2, 3, 5))["accuracy"] == m["accuracy"]


def test_multiclass_rejects_non_one_hot():
    with pytest.raises(ValueError, match="one-hot"):
        multiclass_metrics(np.full((2, 3), 1 / 3), np.array([[1, 1, 0], [0, 0, 1]]))


def test_compute_metrics_dispatch_and_thresholds():
    probs, t = _multilabel_data(5, c=3)
    ml = LabelSpace(("a", "b", "c"), "multilabel")
    m = compute_metrics(probs, t, ml)
    assert set(m["per_class"]) == {"a", "b", "c"} and m["per_class"]["a"]["threshold"] == 0.5
    m2 = compute_metrics(probs, t, ml, thresholds=[0.2, 0.5, 0.8])
    assert m2["per_class"]["c"]["threshold"] == 0.8
    mc = LabelSpace(("a", "b", "c"), "multiclass")
    y = np.eye(3, dtype=np.uint8)[[0, 1, 2, 1]]
    out = compute_metrics(np.eye(3)[[0, 1, 1, 1]], y, mc)
    assert out["accuracy"] == 0.75 and "confusion_matrix" in out
    with pytest.raises(ValueError, match="label space"):
        compute_metrics(probs[:, :2], t[:, :2], ml)


def test_jsonable_and_summary():
    probs, t = _multilabel_data(0)
    m = multilabel_metrics(probs, t)
    text = json.dumps(to_jsonable(m), allow_nan=False)  # NaN AP of the empty label -> null
    assert json.loads(text)["per_class"]["2"]["ap"] is None
    summary = summary_of(m)
    assert "per_class" not in summary and all(isinstance(v, (int, float)) for v in summary.values())
    line = format_summary(m)
    assert line.startswith("map ") and " · f1_macro " in line and "\n" not in line
    assert format_summary({"accuracy": 0.5, "balanced_accuracy": float("nan")}) == "accuracy 0.500 · balanced_accuracy n/a"
    assert format_summary(m, keys=["n", "map"]).startswith(f"n {len(t)} · map ")


def test_higher_is_better_covers_summary_keys():
    probs, t = _multilabel_data(0, c=3)
    ml_keys = set(summary_of(multilabel_metrics(probs, t)))
    mc = multiclass_metrics(np.eye(6)[[0, 1, 2, 3, 4, 5]], np.eye(6)[[0, 1, 2, 3, 4, 5]], topk=(2, 5))
    from labelwise.evaluation.metrics import DESCRIPTIVE_KEYS
    for key in ml_keys | set(summary_of(mc)):
        assert key in HIGHER_IS_BETTER or key in DESCRIPTIVE_KEYS, key
    for task, key in MONITOR_DEFAULT.items():
        assert key in MONITOR_KEYS[task] and HIGHER_IS_BETTER[key]
    assert HIGHER_IS_BETTER["loss"] is False


def test_check_monitor():
    assert check_monitor("val_map", "multilabel") == "map"
    with pytest.raises(ConfigError, match="did you mean 'f1_macro'"):
        check_monitor("f1_makro", "multilabel")
    with pytest.raises(ConfigError, match="--monitor"):
        check_monitor("map", "multiclass")


def test_bad_inputs():
    with pytest.raises(ValueError, match="shape"):
        multilabel_metrics(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        multilabel_metrics(np.full((2, 2), np.nan), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="0/1"):
        multilabel_metrics(np.zeros((2, 2)), np.full((2, 2), 0.5))


@pytest.mark.parametrize("c", [3, 20, 70])  # 70 labels takes the row-sort path
def test_label_set_counts(c: int):
    from labelwise.evaluation.metrics import label_set_counts

    rng = np.random.default_rng(c)
    base = (rng.random((4, c)) < 0.3).astype(np.uint8)
    rows = base[rng.integers(0, 4, 500)]
    sets, counts = label_set_counts(rows)
    ref_sets, ref_counts = np.unique(rows, axis=0, return_counts=True)
    got = {tuple(s): k for s, k in zip(sets.tolist(), counts.tolist())}
    assert got == {tuple(s): k for s, k in zip(ref_sets.tolist(), ref_counts.tolist())}
