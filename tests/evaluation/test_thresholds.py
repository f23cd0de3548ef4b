from __future__ import annotations

import numpy as np
import pytest

from labelwise.errors import ConfigError
from labelwise.evaluation.metrics import multilabel_metrics
from labelwise.evaluation.thresholds import apply_thresholds, fit_thresholds, fit_thresholds_detailed, parse_objective


def _data(seed: int, n: int = 500, c: int = 5, decimals: int | None = 2):
    rng = np.random.default_rng(seed)
    prevalence = rng.uniform(0.03, 0.5, c)
    t = (rng.random((n, c)) < prevalence).astype(np.uint8)
    p = np.clip(rng.beta(2, 5, (n, c)) + 0.3 * t * rng.random((n, c)), 0, 1)
    return (p.round(decimals) if decimals else p), t


def _f1(p: np.ndarray, t: np.ndarray, th: float) -> float:
    pred = p >= th
    tp = (pred & (t == 1)).sum()
    denom = pred.sum() + t.sum()
    return 2 * tp / denom if denom else 0.0


def _precision_recall(p, t, th):
    pred = p >= th
    tp = (pred & (t == 1)).sum()
    return (tp / pred.sum() if pred.sum() else 0.0), tp / t.sum()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("decimals", [2, None])
def test_f1_beats_every_grid_threshold(seed, decimals):
    p, t = _data(seed, decimals=decimals)
    th = fit_thresholds(p, t, "f1", robust=False)
    grid = np.linspace(0, 1, 1001)
    for j in range(t.shape[1]):
        best_grid = max(_f1(p[:, j], t[:, j], g) for g in grid)
        # Also every observed probability: the search is exact, not a grid.
        best_exact = max(_f1(p[:, j], t[:, j], v) for v in np.unique(p[:, j]))
        got = _f1(p[:, j], t[:, j], th[j])
        assert got >= best_grid - 1e-12
        assert got == pytest.approx(best_exact)


def test_threshold_is_midpoint_between_distinct_probabilities():
    p = np.array([[0.9], [0.6], [0.6], [0.2], [0.1]])
    t = np.array([[1], [1], [0], [0], [0]])
    # Cuts: >=0.9 F1 2/3; >=0.6 F1 2*2/(3+2)=0.8 -> the best; midpoint of 0.6 and 0.2.
    assert fit_thresholds(p, t, robust=False)[0] == pytest.approx(0.4)
    # Predicting every image is optimal: half the lowest probability.
    assert fit_thresholds(np.array([[0.3], [0.2]]), np.array([[1], [1]]), robust=False)[0] == pytest.approx(0.1)


def test_label_without_positives_keeps_fallback():
    p, t = _data(3)
    t[:, 1] = 0
    fit = fit_thresholds_detailed(p, t, "f1", robust=False)
    assert fit.thresholds[1] == 0.5 and not fit.fitted[1] and fit.fitted[0]
    assert fit_thresholds(p, t, fallback=0.7, robust=False)[1] == 0.7
    few = fit_thresholds_detailed(p, t, min_positives=10_000, robust=False)
    assert (few.thresholds == 0.5).all() and not few.fitted.any()


@pytest.mark.parametrize("target", [0.5, 0.7, 0.9])
def test_precision_at(target):
    p, t = _data(4, n=2000, decimals=None)
    fit = fit_thresholds_detailed(p, t, f"precision@{target}")
    for j in range(t.shape[1]):
        prec, rec = _precision_recall(p[:, j], t[:, j], fit.thresholds[j])
        if fit.met[j]:
            assert prec >= target - 1e-12
            # No lower observed cut keeps precision >= target with more recall.
            for v in np.unique(p[:, j]):
                pv, rv = _precision_recall(p[:, j], t[:, j], v)
                if pv >= target:
                    assert rv <= rec + 1e-12
        assert fit.precision[j] == pytest.approx(prec)
    assert fit.met.any()


def test_precision_unreachable_is_reported():
    p = np.array([[0.9], [0.8], [0.1]])
    t = np.array([[0], [1], [0]])
    fit = fit_thresholds_detailed(p, t, "precision@0.9")
    assert not fit.met[0]
    assert fit.precision[0] == pytest.approx(0.5)  # the best reachable


@pytest.mark.parametrize("target", [0.5, 0.8, 1.0])
def test_recall_at(target):
    p, t = _data(5, n=1000)
    th = fit_thresholds(p, t, f"recall@{target}")
    for j in range(t.shape[1]):
        _, rec = _precision_recall(p[:, j], t[:, j], th[j])
        assert rec >= target - 1e-12
        # Cutting one distinct probability higher would miss the target.
        higher = np.unique(p[:, j][p[:, j] > th[j]])  # higher[0] is the lowest one predicted
        if higher.size > 1:
            assert _precision_recall(p[:, j], t[:, j], higher[1])[1] < target


def test_tuned_thresholds_raise_macro_f1_on_skewed_problem():
    rng = np.random.default_rng(7)
    n, c = 4000, 6
    t = (rng.random((n, c)) < np.array([0.02, 0.05, 0.1, 0.3, 0.6, 0.85])).astype(np.uint8)
    # A skewed model: informative ranking, but probabilities far from 0.5 calibration.
    score = rng.normal(size=(n, c)) + 1.5 * t
    p = 1 / (1 + np.exp(-(score - 2.5)))
    half = n // 2
    th = fit_thresholds(p[:half], t[:half])
    base = multilabel_metrics(p[half:], t[half:], 0.5)["f1_macro"]
    tuned = multilabel_metrics(p[half:], t[half:], th)["f1_macro"]
    assert tuned > base + 0.1


def test_parse_objective():
    assert parse_objective("f1") == ("f1", None)
    assert parse_objective(" Precision@0.9 ") == ("precision", 0.9)
    assert parse_objective("recall@.8") == ("recall", 0.8)
    assert parse_objective("recall@1") == ("recall", 1.0)
    for bad in ("f2", "precision", "precision@", "precision@1.5", "recall@0", "accuracy@0.9", ""):
        with pytest.raises(ConfigError, match="--threshold-objective") as e:
            parse_objective(bad)
        assert "precision@" in str(e.value)
    with pytest.raises(ConfigError):
        fit_thresholds(np.zeros((2, 1)), np.zeros((2, 1)), "precision@2")


def test_apply_thresholds():
    p = np.array([[0.6, 0.1], [0.2, 0.3], [0.05, 0.02]])
    assert apply_thresholds(p, 0.5).tolist() == [[1, 0], [0, 0], [0, 0]]
    assert apply_thresholds(p, 0.5).dtype == np.uint8
    th = np.array([0.5, 0.3])
    assert apply_thresholds(p, th).tolist() == [[1, 0], [0, 1], [0, 0]]  # >= threshold
    # at_least_one picks the highest prob/threshold ratio: 0.05/0.5=0.1 < 0.02/0.15=0.13.
    out = apply_thresholds(p, np.array([0.5, 0.15]), at_least_one=True)
    assert out.tolist() == [[1, 0], [0, 1], [0, 1]]
    assert apply_thresholds(p, 0.5, at_least_one=True)[2].tolist() == [1, 0]
    with pytest.raises(ValueError):
        apply_thresholds(p, np.array([0.5, 0.5, 0.5]))


def test_fit_is_consistent_with_apply():
    p, t = _data(8, decimals=2)
    fit = fit_thresholds_detailed(p, t)
    pred = apply_thresholds(p, fit.thresholds)
    m = multilabel_metrics(p, t, fit.thresholds)
    for j in range(t.shape[1]):
        assert m["per_class"][str(j)]["f1"] == pytest.approx(fit.f1[j])
        assert pred[:, j].sum() == m["per_class"][str(j)]["predicted"]


# ----------------------------------------------------------------------------- robust F1 (issue 16)

def _simulated(seed: int, n: int, shift: np.ndarray | float = 0.0):
    """A calibrated model on skewed labels (2-5% rare ones); ``shift`` adds log(pos_weight) to the
    logits, which is what class weights do to a model's probabilities (over-predicting rare labels)."""
    rng = np.random.default_rng(seed)
    prevalence = np.array([0.6, 0.3, 0.12, 0.05, 0.03, 0.02])
    logit = rng.normal(np.log(prevalence / (1 - prevalence)) - 1.0, 2.0, (n, len(prevalence)))
    p = 1 / (1 + np.exp(-logit))
    t = (rng.random(p.shape) < p).astype(np.uint8)
    return 1 / (1 + np.exp(-(logit + shift))), t


def _held_out_gain(shift, seeds=range(8), n_val=400, n_test=4000):
    gains = []
    for seed in seeds:
        pv, tv = _simulated(seed, n_val, shift)
        pt, tt = _simulated(1000 + seed, n_test, shift)
        tuned = multilabel_metrics(pt, tt, fit_thresholds(pv, tv))
        half = multilabel_metrics(pt, tt, 0.5)
        gains.append((tuned["f1_macro"] - half["f1_macro"], tuned["exact_match"] - half["exact_match"]))
    return np.array(gains).mean(axis=0)


def test_robust_thresholds_do_not_lose_to_half_on_a_calibrated_model():
    # On calibrated probabilities 0.5 is already the accuracy-optimal cut: tuning must not cost
    # exact match on new images (the exact F1 optimum did: it trades accuracy for F1 on validation).
    f1_gain, em_gain = _held_out_gain(0.0)
    assert f1_gain > -0.005 and em_gain > -0.005, (f1_gain, em_gain)


def test_robust_thresholds_fix_a_class_weighted_models_cutoff():
    prevalence = np.array([0.6, 0.3, 0.12, 0.05, 0.03, 0.02])
    pos_weight = np.minimum((1 - prevalence) / prevalence, 10.0)
    f1_gain, em_gain = _held_out_gain(np.log(pos_weight))
    assert f1_gain > 0.03 and em_gain > 0.05, (f1_gain, em_gain)


def test_labels_with_few_positives_get_the_global_cut():
    from labelwise.evaluation.thresholds import MIN_SUPPORT, fallback_labels

    p, t = _simulated(3, 300)
    t[:, 5] = 0
    t[:3, 5] = 1  # 3 positives: too few for a cut of its own
    fit = fit_thresholds_detailed(p, t)
    assert fit.fallback.tolist() == (t.sum(0) < MIN_SUPPORT).tolist() == fallback_labels(t).tolist()
    assert fit.fallback[5] and not fit.fallback[0]
    assert fit.thresholds[5] == fit.global_threshold and 0 < fit.global_threshold < 1
    assert not fit.fitted[5] and fit.fitted[0]
    # a label with many positives keeps a cut of its own, shrunk from its own fit toward the global cut
    from labelwise.evaluation.thresholds import _constrained_f1_cut

    own = _constrained_f1_cut(p, t, 0.5)[0]
    lo, hi = sorted((own, fit.global_threshold))
    assert lo - 1e-9 <= fit.thresholds[0] <= hi + 1e-9


def test_robust_fit_is_deterministic_and_valid():
    p, t = _data(9)
    a, b = fit_thresholds(p, t), fit_thresholds(p.copy(), t.copy())
    assert np.array_equal(a, b) and ((a > 0) & (a < 1)).all()
    empty = fit_thresholds_detailed(p[:0], t[:0])
    assert empty.thresholds.tolist() == [0.5] * t.shape[1]
