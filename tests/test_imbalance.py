"""Issue 3 on real data: a skewed multi-label Fashion-MNIST mosaic set."""
from __future__ import annotations

import pytest

import labelwise
from labelwise.data.demo import build_mosaics, fashion_available

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not fashion_available(), reason="Debian's dataset-fashion-mnist is not installed")]
CLASSES = ("trouser", "bag", "sneaker", "dress", "shirt")
SKEW = dict(classes=CLASSES, class_probs=(0.70, 0.15, 0.08, 0.05, 0.02), empty_fraction=0.5, cell_fill=0.3,
            source="fashion")


@pytest.fixture(scope="module")
def skewed(tmp_path_factory):
    root = tmp_path_factory.mktemp("skewed")
    train = build_mosaics(root / "train", 1000, split="train", seed=1, **SKEW)
    test = build_mosaics(root / "test", 400, split="test", seed=2, **SKEW)
    return root, train, test


@pytest.fixture(scope="module")
def weighted(skewed):
    root, train, _ = skewed
    return labelwise.train(train, root / "weighted", epochs=4, class_weights="auto", progress=False)


def _held_out(run, test, tmp, threshold=None):
    return labelwise.evaluate(run, test, threshold=threshold, out=tmp / "e.json")["model"]


def test_tuned_thresholds_undo_what_a_fixed_cutoff_gets_wrong(skewed, weighted, tmp_path):
    # Scored on held-out images: the thresholds were tuned on validation, not on these.
    # Class weights (pos_weight up to 10 for rare labels) inflate the rare labels' probabilities, so a
    # plain 0.5 cut-off over-predicts them; the per-class thresholds put the cut where F1 is best.
    root, train, test = skewed
    w_tuned, w_half = _held_out(weighted.run_dir, test, tmp_path), _held_out(weighted.run_dir, test, tmp_path, 0.5)
    assert w_tuned["f1_macro"] > w_half["f1_macro"] + 0.05, (w_tuned["f1_macro"], w_half["f1_macro"])
    assert w_tuned["exact_match"] > w_half["exact_match"]
    assert w_tuned["exact_match"] > 0.5  # half the images are empty: predicting nothing scores 0.5
    # ... and on an unweighted model, tuning does not cost F1 against the cut-off it replaces
    plain = labelwise.train(train, root / "plain", epochs=4, progress=False).run_dir
    p_tuned, p_half = _held_out(plain, test, tmp_path), _held_out(plain, test, tmp_path, 0.5)
    assert p_tuned["f1_macro"] > p_half["f1_macro"] - 0.03, (p_tuned["f1_macro"], p_half["f1_macro"])


def test_a_constant_model_is_flagged_and_a_trained_one_is_not(skewed, weighted):
    root, train, _ = skewed
    frozen = labelwise.train(train, root / "lr0", epochs=1, lr=0.0, backbone="cnn-small", pretrained=False,
                             progress=False)
    text = " ".join(frozen.warnings)
    assert frozen.warnings and ("same" in text or "baseline" in text or "no label" in text), frozen.warnings
    assert "--class-weights auto" in text  # it says what to try
    assert not weighted.warnings, weighted.warnings
