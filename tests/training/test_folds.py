"""k-fold cross-validation, ensembles and reproducibility (small real Fashion-MNIST sets, cnn-small)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import labelwise
from labelwise.data.demo import build_mosaics, fashion_available

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not fashion_available(), reason="Debian's dataset-fashion-mnist is not installed")]
FAST = dict(backbone="cnn-small", pretrained=False, progress=False, epochs=2)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("folds")
    return root, build_mosaics(root / "train", 300, seed=5, classes=("trouser", "bag", "sneaker"), source="fashion")


def test_kfold_writes_every_image_out_of_fold_exactly_once(data):
    root, train = data
    res = labelwise.train(train, root / "kfold", folds=3, **FAST)
    run = res.run_dir
    with (train / "labels.csv").open() as f:
        images = [r["image"] for r in csv.DictReader(f)]
    with (run / "oof_predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["image"].rsplit("/", 1)[-1] for r in rows) == sorted(images)
    assert all(r[c] != "" and 0 <= float(r[c]) <= 1 for r in rows for c in ("trouser", "bag", "sneaker"))
    folds = res.metrics["folds"]
    assert folds["k"] == 3 and len(folds["per_fold"]) == 3
    assert np.isclose(folds["mean"]["map"], np.mean([f["map"] for f in folds["per_fold"]]))
    assert folds["std"]["map"] >= 0
    for i in (1, 2, 3):
        assert (run / f"fold_{i}" / "model.safetensors").is_file()
    # the fold models' union of validation images is the whole set, without overlap
    seen = []
    for i in (1, 2, 3):
        with (run / f"fold_{i}" / "val_predictions.csv").open() as f:
            seen += [r["image"] for r in csv.DictReader(f)]
    assert len(seen) == len(set(seen)) == len(images)
    # the bundle is an ensemble that predicts like any other
    preds = labelwise.load(run).predict(sorted((train / "images").glob("*.png"))[:5])
    assert len(preds) == 5 and all(set(p.probs) == {"trouser", "bag", "sneaker"} for p in preds)


def test_same_seed_same_metrics_and_an_ensemble_of_two_runs(data):
    root, train = data
    a = labelwise.train(train, root / "a", seed=1, **FAST)
    b = labelwise.train(train, root / "b", seed=1, **FAST)
    assert a.metrics["model"]["map"] == b.metrics["model"]["map"]
    assert json.loads((root / "a" / "metrics.json").read_text())["model"] == \
        json.loads((root / "b" / "metrics.json").read_text())["model"]
    c = labelwise.train(train, root / "c", seed=2, lr=1e-3, **FAST)
    from labelwise.infer.ensemble import build_ensemble

    result = build_ensemble([a.run_dir, c.run_dir], root / "ens")
    assert json.loads((root / "ens" / "model.json").read_text())["members"] == ["cnn-small", "cnn-small"]
    ens = labelwise.load(root / "ens")
    paths = sorted((train / "images").glob("*.png"))[:8]
    pe = np.array([[r.probs[n] for n in ens.labels.names] for r in ens.predict(paths)])
    pa = np.array([[r.probs[n] for n in ens.labels.names] for r in labelwise.load(a.run_dir).predict(paths)])
    pc = np.array([[r.probs[n] for n in ens.labels.names] for r in labelwise.load(c.run_dir).predict(paths)])
    np.testing.assert_allclose(pe, (pa + pc) / 2, atol=1e-5)
    if a.metrics["run"]["val_images"]:  # same seed -> same split for a and c? c used seed 2: no shared images
        assert "shared_out_of_sample_images" in result


def test_tta_averages_each_image_with_its_mirror(data):
    root, train = data
    res = labelwise.train(train, root / "tta", **FAST)
    plain, tta = labelwise.load(res.run_dir), labelwise.load(res.run_dir, tta=2)  # 2 views: image + mirror
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (6, 1, plain.meta.image_size, plain.meta.image_size), dtype=np.uint8)
    expected = (plain.predict_pixels(pixels) + plain.predict_pixels(np.ascontiguousarray(pixels[..., ::-1]))) / 2
    np.testing.assert_allclose(tta.predict_pixels(pixels), expected, atol=1e-6)
    m = labelwise.evaluate(res.run_dir, train, tta=True, out=root / "tta.json")
    assert m["tta"] is True and m["model"]["map"] > 0.5


def test_cli_kfold_run_ends_cleanly_with_its_report(data, tmp_path):
    """`labelwise train DATA --folds 3` on the default path (report included) exits 0, and the report is
    built from the out-of-fold predictions, with each fold's scores and their spread."""
    from typer.testing import CliRunner

    from labelwise.cli import app

    root, train = data
    run = tmp_path / "cv"
    result = CliRunner().invoke(app, ["train", str(train), "--out", str(run), "--folds", "3", "--model", "cnn-small",
                                      "--no-pretrained", "--epochs", "2", "--cache", "off"])
    assert result.exit_code == 0, result.output
    assert not (run / "val_predictions.csv").exists() and (run / "oof_predictions.csv").is_file()
    html = (run / "report.html").read_text(encoding="utf-8")
    metrics = json.loads((run / "metrics.json").read_text())
    folds = metrics["folds"]
    scores = html[html.index('<section id="scores">'):html.index("</section>", html.index('<section id="scores">'))]
    assert "Out-of-fold" in scores and "Per fold" in scores
    assert all(f"fold {i}" in scores for i in (1, 2, 3))
    # the mean and spread printed are those of metrics.json
    assert f"{folds['mean']['map']:.3f}" in scores and f"{folds['std']['map']:.3f}" in scores
    with (run / "oof_predictions.csv").open() as f:
        n = sum(1 for _ in csv.DictReader(f))
    assert f"{n:,} images" in scores  # every image, not one split's validation share
    assert "has-map" in html  # the fold ensemble draws its maps too
