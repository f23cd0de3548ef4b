"""Linear probe (labelwise.probe): embed once with the frozen pretrained backbone, train only the head.

Small real sets (scikit-learn's digits, upscaled by labelwise.demo_data; 32 px multi-class, 64 px
mosaics for multi-label) go through training.prepare -> probe.fit_probe -> training.finalize.
"""
from __future__ import annotations

import csv
import dataclasses
import math

import numpy as np
import pytest
import torch

import labelwise
from labelwise.data.demo import build_mosaics, build_multiclass
from labelwise.errors import ConfigError
from labelwise.evaluation.metrics import multiclass_metrics
from labelwise.training.probe import embed, fit_head, fit_probe

BACKBONE = "efficientnet_lite0"
MOSAIC_CLASSES = ("0", "1", "2", "3")


def _run(prep, root, name):
    from labelwise.data.splits import train_val_split
    from labelwise.training.fit import finalize

    train_idx, val_idx = train_val_split(prep.samples, prep.cfg.data.val_split, prep.cfg.train.seed)
    run_dir = root / name
    fitted = fit_probe(prep, train_idx, val_idx, run_dir, progress=False)
    result = finalize(prep, fitted, train_idx, val_idx, run_dir)
    return fitted, result, train_idx, val_idx


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from labelwise.config import make_config
    from labelwise.training.prepare import prepare

    root = tmp_path_factory.mktemp("probe_digits")
    train = build_multiclass(root / "train", 30, split="train", seed=1, source="digits")
    test = build_multiclass(root / "test", 10, split="test", seed=2, source="digits")
    prep = prepare(make_config(train, root / "run", backbone=BACKBONE, seed=3,
                               strategy="linear-probe"))
    fitted, result, train_idx, val_idx = _run(prep, root, "run")
    return {"root": root, "test": test, "prep": prep, "fitted": fitted, "result": result,
            "train_idx": train_idx, "val_idx": val_idx}


@pytest.fixture(scope="module")
def mosaics(tmp_path_factory):
    from labelwise.config import make_config
    from labelwise.training.prepare import prepare

    root = tmp_path_factory.mktemp("probe_mosaics")
    train = build_mosaics(root / "train", 240, split="train", seed=1, classes=MOSAIC_CLASSES, source="digits")
    prep = prepare(make_config(train, root / "run", backbone=BACKBONE, seed=0,
                               strategy="linear-probe"))
    fitted, result, _, val_idx = _run(prep, root, "run")
    return {"root": root, "prep": prep, "fitted": fitted, "result": result, "val_idx": val_idx}


@pytest.mark.slow
def test_multiclass_probe_writes_a_bundle_that_predicts_well(digits):
    run, result = digits["root"] / "run", digits["result"]
    for name in ("config.yaml", "model.safetensors", "model.json", "metrics.json", "history.csv",
                 "val_predictions.csv"):
        assert (run / name).is_file(), name
    assert result.metrics["model"]["accuracy"] > 0.6  # chance is 0.1
    with (run / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows and {"epoch", "train_loss", "val_loss", "accuracy", "lr", "elapsed_s"} <= set(rows[0])
    assert 1 <= digits["fitted"].best_epoch <= len(rows) == digits["fitted"].epochs_run
    # the bundle is an ordinary model: load, predict, evaluate on held-out images
    paths = sorted(digits["test"].rglob("*.png"))[:6]
    preds = labelwise.load(run).predict(paths)
    assert len(preds) == 6 and all(len(p.labels) == 1 and not p.error for p in preds)
    m = labelwise.evaluate(run, digits["test"], out=digits["root"] / "eval.json")
    assert m["model"]["accuracy"] > 0.5  # 100 held-out images; chance 0.1


@pytest.mark.slow
@pytest.mark.parametrize("which", ["digits", "mosaics"])
def test_val_probs_are_the_full_models_on_the_val_images(which, request):
    from labelwise.infer.predict import model_probs

    data = request.getfixturevalue(which)
    prep, fitted = data["prep"], data["fitted"]
    full = model_probs(fitted.model, prep.pixels[data["val_idx"]], prep.labels.multilabel)
    np.testing.assert_allclose(fitted.val_probs, full, atol=1e-4)
    # and the saved bundle gives them too
    bundle = labelwise.load(data["root"] / "run").predict_pixels(prep.pixels[data["val_idx"]])
    np.testing.assert_allclose(bundle, full, atol=1e-4)


@pytest.mark.slow
def test_backbone_stays_exactly_pretrained(digits):
    from labelwise.models.classifier import Classifier

    prep = digits["prep"]
    fresh = Classifier(BACKBONE, len(prep.labels), in_chans=prep.cfg.data.channels, pretrained=True)
    trained = digits["fitted"].model.backbone.state_dict()
    for key, value in fresh.backbone.state_dict().items():  # weights and BatchNorm statistics
        assert torch.equal(trained[key].cpu(), value), key
    assert digits["fitted"].model.head.weight.abs().sum() > 0


@pytest.mark.slow
def test_same_seed_same_probe(digits, tmp_path):
    prep, first = digits["prep"], digits["fitted"]
    again = fit_probe(prep, digits["train_idx"], digits["val_idx"], tmp_path / "again", progress=False)
    assert torch.equal(again.model.head.weight, first.model.head.weight)
    assert torch.equal(again.model.head.bias, first.model.head.bias)
    np.testing.assert_array_equal(again.val_probs, first.val_probs)
    assert again.best_epoch == first.best_epoch
    assert (tmp_path / "again" / "config.yaml").is_file() and (tmp_path / "again" / "history.csv").is_file()


@pytest.mark.slow
def test_multilabel_probe_beats_the_priors(mosaics):
    m = mosaics["result"].metrics
    prior_map = float(np.mean(mosaics["prep"].samples.targets[mosaics["val_idx"]].mean(0)))
    assert m["model"]["map"] > prior_map + 0.25
    assert m["model"]["map"] > max(b.get("map") or 0 for b in m["baselines"].values()) + 0.25
    assert len(m["model"]["per_class"]) == len(MOSAIC_CLASSES)


@pytest.mark.slow
def test_not_pretrained_is_a_config_error(digits, tmp_path):
    prep = digits["prep"]
    cfg = prep.cfg.with_(model=dataclasses.replace(prep.cfg.model, pretrained=False))
    with pytest.raises(ConfigError, match="pretrained"):
        fit_probe(dataclasses.replace(prep, cfg=cfg), digits["train_idx"], digits["val_idx"], tmp_path / "x",
                  progress=False)
    cfg = prep.cfg.with_(model=dataclasses.replace(prep.cfg.model, backbone="cnn-small", pretrained=None))
    with pytest.raises(ConfigError, match="finetune"):
        fit_probe(dataclasses.replace(prep, cfg=cfg), digits["train_idx"], digits["val_idx"], tmp_path / "y",
                  progress=False)


@pytest.mark.slow
def test_embed_is_batch_independent(digits):
    model, pixels = digits["fitted"].model, digits["prep"].pixels[:37]
    a = embed(model, pixels, batch_size=256, progress=False)
    b = embed(model, pixels, batch_size=5, progress=False)
    assert a.dtype == np.float32 and a.shape == (37, model.head.in_features)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert embed(model, pixels[:0], progress=False).shape == (0, model.head.in_features)


# ----------------------------------------------------------------------------- fit_head on synthetic features

def _blobs(n: int, f: int = 20, k: int = 4, seed: int = 0, multilabel: bool = False):
    """Features whose scale and offset differ per column (standardisation matters), with linear labels."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, f))
    direction = rng.normal(size=(f, k))
    logits = z @ direction
    if multilabel:
        y = (logits + rng.normal(scale=0.5, size=logits.shape) > 0.8).astype(np.uint8)
    else:
        y = np.eye(k, dtype=np.uint8)[(logits + rng.gumbel(size=logits.shape) * 0.5).argmax(1)]
    scale, offset = rng.uniform(0.1, 10, size=f), rng.uniform(-5, 5, size=f)
    return (z * scale + offset).astype(np.float32), y


def _probs(x, w, b, multilabel):
    logits = torch.from_numpy(x) @ w.T + b
    return (torch.sigmoid(logits) if multilabel else torch.softmax(logits, 1)).numpy()


def test_fit_head_folds_the_standardisation_into_the_weights():
    x, y = _blobs(600)
    w, b, history, best = fit_head(x[:400], y[:400], x[400:], y[400:], multilabel=False, seed=0, max_epochs=20,
                                   lr=1e-2)
    assert w.shape == (4, 20) and b.shape == (4,) and w.dtype == torch.float32
    assert len(history) == 20 and 1 <= best <= 20
    # the returned head on raw features scores exactly what the history recorded at the best epoch
    probs = _probs(x[400:], w, b, False)
    assert multiclass_metrics(probs, y[400:])["accuracy"] == pytest.approx(history[best - 1]["accuracy"], abs=1e-6)
    top = max(r["accuracy"] for r in history)
    assert history[best - 1]["accuracy"] == top  # the best epoch; among ties, the lowest validation loss
    assert history[best - 1]["val_loss"] == min(r["val_loss"] for r in history if r["accuracy"] == top)
    assert history[best - 1]["accuracy"] > 0.75  # chance is 0.25
    loss = -np.mean(np.log(probs[y[400:].astype(bool)]))
    assert loss == pytest.approx(history[best - 1]["val_loss"], abs=1e-4)


def test_fit_head_is_deterministic_for_a_seed():
    x, y = _blobs(300, multilabel=True)
    kw = {"multilabel": True, "max_epochs": 8, "monitor": "map"}
    a = fit_head(x[:200], y[:200], x[200:], y[200:], seed=1, **kw)
    b = fit_head(x[:200], y[:200], x[200:], y[200:], seed=1, **kw)
    c = fit_head(x[:200], y[:200], x[200:], y[200:], seed=2, **kw)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[3] == b[3]
    assert [r["map"] for r in a[2]] == [r["map"] for r in b[2]]
    assert not torch.equal(a[0], c[0])  # the seed orders the mini-batches


def test_fit_head_starts_at_the_priors_and_uses_the_runs_loss():
    x, y = _blobs(300, multilabel=True)
    freq = y[:200].mean(0)
    # one epoch at lr 0: the head is its initialisation, the label priors, whatever the features
    w, b, _, _ = fit_head(x[:200], y[:200], x[200:], y[200:], multilabel=True, seed=0, max_epochs=1, lr=0.0)
    np.testing.assert_allclose(_probs(x[200:], w, b, True), np.broadcast_to(freq, (100, 4)), atol=1e-5)
    # every multi-label loss, with pos_weight and smoothing, trains to something useful
    for loss in ("bce", "focal", "asl", "soft-f1"):
        w, b, history, best = fit_head(x[:200], y[:200], x[200:], y[200:], multilabel=True, seed=0, max_epochs=15,
                                       loss_name=loss, class_weights=np.full(4, 2.0, np.float32),
                                       label_smoothing=0.1, monitor="map")
        assert np.isfinite(w.numpy()).all() and history[best - 1]["map"] > 0.7, loss
    with pytest.raises(ConfigError):
        fit_head(x[:200], y[:200], x[200:], y[200:], multilabel=True, loss_name="ce")


def test_fit_head_monitor_loss_time_limit_and_no_validation():
    x, y = _blobs(300)
    _, _, history, best = fit_head(x[:200], y[:200], x[200:], y[200:], multilabel=False, monitor="loss",
                                   max_epochs=10)
    assert history[best - 1]["val_loss"] == min(r["val_loss"] for r in history)
    _, _, history, _ = fit_head(x[:200], y[:200], x[200:], y[200:], multilabel=False, time_limit_s=0.0)
    assert len(history) == 1
    w, _, history, best = fit_head(x[:200], y[:200], x[:0], y[:0], multilabel=False, max_epochs=3)
    assert best == 3 and history[-1]["val_loss"] == "" and np.isfinite(w.numpy()).all()


def test_fit_head_survives_constant_features():
    x, y = _blobs(300)
    x[:200, 3] = 7.0  # dead on the training images (constant), alive on the others: must not blow up
    w, _, _, _ = fit_head(x[:200], y[:200], x[200:], y[200:], multilabel=False, max_epochs=5)
    assert math.isfinite(float(w.abs().max())) and float(w[:, 3].abs().max()) == 0.0
