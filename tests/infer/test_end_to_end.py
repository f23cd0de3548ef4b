"""train -> evaluate -> predict on small real Fashion-MNIST subsets, both tasks, via the CLI and the API."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

import labelwise
from labelwise.cli import app
from labelwise.data.demo import build_mosaics, build_multiclass, fashion_available

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not fashion_available(), reason="Debian's dataset-fashion-mnist is not installed")]
runner = CliRunner()
MOSAIC_CLASSES = ("trouser", "bag", "sneaker", "dress")


def _invoke(args: list[str]):
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def multiclass_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("mc")
    train = build_multiclass(root / "train", n_per_class=60, split="train", seed=1, source="fashion")
    test = build_multiclass(root / "test", n_per_class=20, split="test", seed=2, source="fashion")
    run = root / "run"
    _invoke(["train", str(train), "--out", str(run), "--epochs", "4", "--quiet", "--seed", "0"])
    return run, test


@pytest.fixture(scope="module")
def multilabel_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ml")
    train = build_mosaics(root / "train", 800, split="train", seed=1, classes=MOSAIC_CLASSES, source="fashion")
    test = build_mosaics(root / "test", 200, split="test", seed=2, classes=MOSAIC_CLASSES, source="fashion")
    run = root / "run"
    _invoke(["train", str(train), "--out", str(run), "--epochs", "4", "--quiet", "--seed", "0"])
    return run, test


BUNDLE_FILES = ("config.yaml", "model.safetensors", "model.json", "metrics.json", "history.csv",
                "val_predictions.csv", "checkpoints/last.ckpt", "checkpoints/best.ckpt")


@pytest.mark.parametrize("fixture", ["multiclass_run", "multilabel_run"])
def test_bundle_is_complete(fixture, request):
    run, _ = request.getfixturevalue(fixture)
    for name in BUNDLE_FILES:
        assert (run / name).is_file(), name
    meta = json.loads((run / "model.json").read_text())
    assert meta["backbone"] == "efficientnet_lite0"
    assert meta["input"]["channels"] == 1 and meta["input"]["size"] in (32, 64)
    with (run / "history.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 4


def test_multiclass_beats_chance_on_held_out_data(multiclass_run, tmp_path):
    run, test = multiclass_run
    result = _invoke(["evaluate", str(run), str(test), "--out", str(tmp_path / "eval.json")])
    m = json.loads((tmp_path / "eval.json").read_text())
    assert m["task"] == "multiclass" and m["n_images"] == 200
    assert m["model"]["accuracy"] > 0.5  # chance is 0.1
    assert m["model"]["accuracy"] > m["baselines"]["majority_class"]["accuracy"] + 0.3
    assert not m["warnings"]
    assert "majority class" in result.output


def test_multilabel_beats_baselines_on_held_out_data(multilabel_run, tmp_path):
    run, test = multilabel_run
    _invoke(["evaluate", str(run), str(test), "--out", str(tmp_path / "eval.json")])
    m = json.loads((tmp_path / "eval.json").read_text())
    assert m["task"] == "multilabel"
    best_map_baseline = max(b.get("map") or 0 for b in m["baselines"].values())
    assert m["model"]["map"] > best_map_baseline + 0.3
    assert m["model"]["f1_macro"] > 0.6
    assert m["model"]["exact_match"] > m["baselines"]["predict_nothing"]["exact_match"] + 0.1
    val = json.loads((run / "metrics.json").read_text())
    assert set(val["thresholds"]) == set(MOSAIC_CLASSES) and "model_at_0.5" in val


def test_predict_cli_writes_one_row_per_image(multilabel_run, tmp_path):
    run, test = multilabel_run
    images = sorted((test / "images").glob("*.png"))[:30]
    bad = tmp_path / "broken.png"
    bad.write_text("not an image")
    out = tmp_path / "pred.csv"
    _invoke(["predict", str(run), *map(str, images), str(bad), "--out", str(out)])
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 31
    assert rows[-1]["error"] and "broken.png" in rows[-1]["error"]
    assert all(not r["error"] for r in rows[:-1])
    for r in rows[:-1]:
        probs = [float(r[c]) for c in MOSAIC_CLASSES]
        assert all(0.0 <= p <= 1.0 for p in probs)
        assert set(r["labels"].split()) <= set(MOSAIC_CLASSES)


def test_python_api_predict_matches_truth(multilabel_run):
    run, test = multilabel_run
    predictor = labelwise.load(run)
    with (test / "labels.csv").open() as f:
        truth = {r["image"]: set(r["tags"].split()) for r in csv.DictReader(f)}
    names = sorted(truth)[:100]
    rows = predictor.predict([test / "images" / n for n in names])
    exact = np.mean([set(r.labels) == truth[n] for r, n in zip(rows, names)])
    assert exact > 0.5


def test_val_predictions_are_out_of_sample_rows(multiclass_run):
    run, _ = multiclass_run
    m = json.loads((run / "metrics.json").read_text())
    with (run / "val_predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == m["run"]["val_images"] == 120
    probs = np.array([[float(r[c]) for c in m["model"]["per_class"]] for r in rows])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
