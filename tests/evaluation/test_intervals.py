"""Bootstrap intervals (labelwise.evaluation.intervals): exact per draw, deterministic, ~95% coverage."""
from __future__ import annotations

import numpy as np
import pytest

from labelwise.evaluation.intervals import (
    HEADLINE,
    bootstrap_intervals,
    draw_counts,
    images_needed,
    metric_draws,
    paired_bootstrap,
)
from labelwise.evaluation.metrics import compute_metrics
from labelwise.labels import LabelSpace

ML = LabelSpace(("a", "b", "c", "d"), "multilabel")
MC = LabelSpace(("x", "y", "z"), "multiclass")


def _multilabel(seed: int, n: int = 300, decimals: int | None = 2):
    rng = np.random.default_rng(seed)
    t = (rng.random((n, 4)) < [0.5, 0.2, 0.08, 0.03]).astype(np.uint8)
    p = np.clip(0.35 * t + 0.65 * rng.random(t.shape), 0, 1)
    return (p.round(decimals) if decimals else p), t


def _multiclass(seed: int, n: int, accuracy: float):
    """A classifier that is right with probability ``accuracy`` on each image (its true accuracy)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    right = rng.random(n) < accuracy
    pred = np.where(right, y, (y + rng.integers(1, 3, n)) % 3)
    p = np.full((n, 3), 0.1)
    p[np.arange(n), pred] = 0.8
    return p, np.eye(3, dtype=np.uint8)[y]


@pytest.mark.parametrize("labels", [ML, MC], ids=["multilabel", "multiclass"])
def test_each_draw_equals_the_metrics_of_the_resampled_images(labels):
    p, t = _multilabel(0) if labels.multilabel else _multiclass(0, 300, 0.7)
    th = np.array([0.5, 0.4, 0.3, 0.6]) if labels.multilabel else None
    counts = draw_counts(len(t), 3, seed=5)
    draws = metric_draws(p, t, labels, th, counts)
    assert set(draws) == set(HEADLINE[labels.task])
    for d in range(3):
        rows = np.repeat(np.arange(len(t)), counts[:, d].astype(int))
        m = compute_metrics(p[rows], t[rows], labels, thresholds=th)
        for key, values in draws.items():
            assert values[d] == pytest.approx(m[key], abs=1e-6), key  # float32 counts


def test_intervals_are_deterministic_and_contain_the_point():
    p, t = _multilabel(1, decimals=None)
    a = bootstrap_intervals(p, t, ML, np.full(4, 0.5), seed=3)
    b = bootstrap_intervals(p.copy(), t.copy(), ML, np.full(4, 0.5), seed=3)
    assert a == b and a["draws"] == 1000
    m = compute_metrics(p, t, ML, thresholds=np.full(4, 0.5))
    for key, (lo, hi) in a["intervals"].items():
        assert lo <= m[key] <= hi and hi - lo < 0.3, key
    c = bootstrap_intervals(p, t, ML, np.full(4, 0.5), seed=4)
    assert c["intervals"] != a["intervals"]  # the seed is what decides the resamples


def test_coverage_on_a_classifier_of_known_accuracy():
    # 200 test sets of 400 images from a classifier whose accuracy is 0.8: a 95% interval should
    # contain 0.8 about 95% of the time (binomial spread over 200 repetitions: 91-98%).
    hits = []
    for rep in range(200):
        p, t = _multiclass(100 + rep, 400, 0.8)
        lo, hi = bootstrap_intervals(p, t, MC, draws=1000, seed=rep)["intervals"]["accuracy"]
        hits.append(lo <= 0.8 <= hi)
    assert 0.90 <= np.mean(hits) <= 0.99, np.mean(hits)


def test_margin_over_the_best_baseline():
    p, t = _multiclass(7, 500, 0.8)
    majority = np.zeros((500, 3))
    majority[:, 0] = 1
    uniform = np.full((500, 3), 1 / 3)
    r = bootstrap_intervals(p, t, MC, baseline_probs={"majority_class": majority, "class_frequency": uniform},
                            monitor="accuracy")
    margin = r["margin_interval"]
    assert margin["metric"] == "accuracy" and margin["baseline"] in ("majority_class", "class_frequency")
    lo, hi = margin["interval"]
    assert 0.3 < lo <= margin["margin"] <= hi < 0.6  # ~0.8 against ~1/3
    # a model no better than the baseline has a margin interval that contains 0
    r = bootstrap_intervals(majority, t, MC, baseline_probs={"majority_class": majority}, monitor="accuracy")
    assert r["margin_interval"]["interval"] == [0.0, 0.0]


def test_paired_bootstrap_tells_a_real_difference_from_noise():
    n = 2000
    p, t = _multiclass(8, n, 0.8)
    y = t.argmax(1)
    rng = np.random.default_rng(9)
    # b: the same predictions, with 10% of the right answers turned wrong (a real 8-point drop)
    worse = p.copy()
    flip = (p.argmax(1) == y) & (rng.random(n) < 0.1)
    worse[flip] = np.roll(worse[flip], 1, axis=1)
    r = paired_bootstrap(p, worse, t, MC)
    assert r["accuracy"]["real"] and r["accuracy"]["interval"][0] > 0.05
    assert r["accuracy"]["difference"] == pytest.approx(flip.mean())
    # two equally good models that err on different images: no real difference
    other, _ = _multiclass(10, n, 0.8)
    other_t = t  # scored on the same images and truth
    same = paired_bootstrap(p, _relabel(other, y, rng), other_t, MC)
    lo, hi = same["accuracy"]["interval"]
    assert lo < 0 < hi and not same["accuracy"]["real"]


def _relabel(p: np.ndarray, y: np.ndarray, rng) -> np.ndarray:
    """Probabilities right on a fresh 80% of the images of truth y."""
    n = len(y)
    right = rng.random(n) < 0.8
    pred = np.where(right, y, (y + 1) % 3)
    out = np.full((n, 3), 0.1)
    out[np.arange(n), pred] = 0.8
    return out


def test_images_needed_scales_with_the_square_of_the_width():
    assert images_needed([0.80, 0.84], 1000) == 4000  # half-width 0.02 -> 0.01 needs 4x the images
    assert images_needed([0.80, 0.81], 1000) == 250
    assert images_needed(None, 1000) is None and images_needed([0.8, 0.8], 10) is None
