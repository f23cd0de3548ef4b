from __future__ import annotations

import numpy as np
import pytest

from labelwise.evaluation.baselines import baseline_scores, sanity_warnings
from labelwise.labels import LabelSpace
from labelwise.evaluation.metrics import compute_metrics

ML = LabelSpace(("cloud", "road", "water", "farm"), "multilabel")
MC = LabelSpace(("cat", "dog", "fox"), "multiclass")


def _multilabel_targets(seed: int, n: int = 400, empty_share: float = 0.5):
    rng = np.random.default_rng(seed)
    t = (rng.random((n, 4)) < [0.6, 0.3, 0.2, 0.1]).astype(np.uint8)
    t[rng.random(n) < empty_share] = 0
    return t


def test_multilabel_baselines():
    train, ev = _multilabel_targets(0), _multilabel_targets(1)
    b = baseline_scores(train, ev, ML)
    assert set(b) == {"predict_nothing", "label_frequency", "most_common_set"}
    assert all("per_class" not in v for v in b.values())
    empty_share = (ev.sum(1) == 0).mean()
    assert b["predict_nothing"]["exact_match"] == pytest.approx(empty_share)
    assert b["predict_nothing"]["empty_pred_share"] == 1.0
    # Constant scores: AP is each label's prevalence, AUROC one half.
    assert b["label_frequency"]["map"] == pytest.approx(ev.mean(0).mean())
    assert b["label_frequency"]["auroc_macro"] == pytest.approx(0.5)
    # Training is ~50% empty: the most common set is the empty set, i.e. predict nothing.
    assert b["most_common_set"]["exact_match"] == pytest.approx(empty_share)


def test_most_common_set_and_frequency_threshold():
    train = np.array([[1, 1, 0, 0]] * 6 + [[0, 0, 0, 0]] * 4, dtype=np.uint8)
    ev = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]], dtype=np.uint8)
    b = baseline_scores(train, ev, ML)
    assert b["most_common_set"]["exact_match"] == pytest.approx(1 / 3)
    assert b["most_common_set"]["mean_pred_labels"] == 2.0
    # label_frequency predicts labels with training frequency >= 0.5 (here 0.6 for two labels).
    assert b["label_frequency"]["mean_pred_labels"] == 2.0


def test_multiclass_baselines():
    train = np.eye(3, dtype=np.uint8)[[0] * 5 + [1] * 3 + [2] * 2]
    ev = np.eye(3, dtype=np.uint8)[[0, 1, 1, 2]]
    b = baseline_scores(train, ev, MC)
    assert set(b) == {"majority_class", "class_frequency"}
    assert b["majority_class"]["accuracy"] == 0.25
    assert b["majority_class"]["balanced_accuracy"] == pytest.approx(1 / 3)
    assert b["class_frequency"]["accuracy"] == 0.25
    assert "confusion_matrix" not in b["majority_class"]


def test_warns_for_constant_model_equal_to_predict_nothing():
    train, ev = _multilabel_targets(2), _multilabel_targets(3)
    b = baseline_scores(train, ev, ML)
    probs = np.full((len(ev), 4), 0.1)  # the model that learned to predict no label
    m = compute_metrics(probs, ev, ML)
    warnings = sanity_warnings(m, b, "map", ML, probs)
    text = " ".join(warnings)
    assert f"exact-match {m['exact_match']:.3f} equals predicting no label at all" in text
    assert "mAP" in text
    assert "same probabilities for every image" in text
    assert "--class-weights auto" in text and "threshold" in text
    # Without probabilities the collapse is still seen, from the metrics alone.
    text = " ".join(sanity_warnings(m, b, "map", ML))
    assert "no label at all for 100% of images" in text


def test_no_warning_for_good_model():
    rng = np.random.default_rng(4)
    train, ev = _multilabel_targets(5), _multilabel_targets(6)
    probs = np.clip(0.7 * ev + 0.3 * rng.random(ev.shape), 0, 1)
    m = compute_metrics(probs, ev, ML)
    b = baseline_scores(train, ev, ML)
    assert sanity_warnings(m, b, "map", ML, probs) == []


def test_multiclass_warnings():
    train = np.eye(3, dtype=np.uint8)[[0] * 5 + [1] * 3 + [2] * 2]
    rng = np.random.default_rng(7)
    y = rng.integers(0, 3, 300)
    ev = np.eye(3, dtype=np.uint8)[y]
    b = baseline_scores(train, ev, MC)
    # Collapsed: always "cat", with slightly varying probabilities.
    probs = np.tile([0.5, 0.3, 0.2], (300, 1)) + rng.normal(0, 0.01, (300, 3))
    m = compute_metrics(probs, ev, MC)
    text = " ".join(sanity_warnings(m, b, "accuracy", MC, probs))
    assert "same class for 100% of images" in text and "most common training class" in text
    good = np.eye(3)[y] * 0.8 + 0.1
    mg = compute_metrics(good, ev, MC)
    assert sanity_warnings(mg, b, "accuracy", MC, good) == []


def test_skewed_data_is_not_called_a_collapse():
    # 97% of images are "cat": predicting cat 98% of the time is what the data says.
    y = np.array([0] * 970 + [1] * 20 + [2] * 10)
    ev = np.eye(3, dtype=np.uint8)[y]
    probs = np.eye(3)[y] * 0.8 + 0.1
    probs[970:980] = [0.9, 0.05, 0.05]  # a few mistakes
    m = compute_metrics(probs, ev, MC)
    b = baseline_scores(ev, ev, MC)
    warnings = sanity_warnings(m, b, "balanced_accuracy", MC, probs)
    assert not any("same class" in w for w in warnings)
