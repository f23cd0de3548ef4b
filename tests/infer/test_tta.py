"""Test-time augmentation: the views (flips the run trained with, small shifts), their averaging, and the CLI.

Fast: the bundles are written by hand (random cnn-small weights), nothing is trained.
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from labelwise.cli import app
from labelwise.errors import ConfigError
from labelwise.infer.engines import TTA, View, bundle_views, tta_views
from labelwise.infer.predict import Predictor
from labelwise.labels import LabelSpace
from labelwise.models.bundle import ModelMeta, read_meta, save_model
from labelwise.models.classifier import Classifier

SIZE = 32


def _bundle(run, *, augment="default", vflip=False, recorded=True):
    torch.manual_seed(0)
    model = Classifier("cnn-small", 3, in_chans=1)
    with torch.no_grad():  # a random, non-zero head so that views really give different outputs
        model.head.weight.normal_(0, 0.5)
    meta = ModelMeta(labels=LabelSpace(("a", "b", "c"), "multilabel"), backbone="cnn-small", in_chans=1,
                     image_size=SIZE, thresholds=(0.5, 0.5, 0.5),
                     augment=augment if recorded else None, vflip=vflip if recorded else None)
    run.mkdir(parents=True, exist_ok=True)
    save_model(run, model, meta)
    return run


def _names(views):
    return [v.name for v in views]


def test_default_pool_is_flips_then_shifted_flips():
    assert _names(tta_views(None, SIZE)) == ["identity", "hflip"]  # `--tta` alone: the flips
    assert _names(tta_views(6, SIZE)) == ["identity", "hflip", "shift(+2,+2)", "hflip+shift(-2,-2)",
                                          "shift(-2,-2)", "hflip+shift(+2,-2)"]
    # vertical flips only for runs trained with them, right after the mirror
    assert _names(tta_views(4, SIZE, vflip=True)) == ["identity", "hflip", "vflip", "hflip+vflip"]
    assert "vflip" not in " ".join(_names(tta_views(100, SIZE)))
    # every flip x every diagonal shift, once
    assert len(tta_views(100, SIZE)) == 2 + 2 * 4 and len(set(tta_views(100, SIZE, vflip=True))) == 4 + 4 * 4
    # --augment none/light trained no shifts: flips only
    assert _names(tta_views(8, SIZE, shifts=False)) == ["identity", "hflip"]
    assert tta_views(2, 28)[1] == View(hflip=True)
    with pytest.raises(ConfigError, match="--tta-views 0"):
        tta_views(0, SIZE)


def test_a_shift_moves_the_content_and_pads_by_reflection():
    x = np.zeros((1, 1, 8, 8), np.uint8)
    x[0, 0, 3, 4] = 200
    y = View(dy=2, dx=-1).apply(x)
    assert y.shape == x.shape and y[0, 0, 5, 3] == 200 and int(y.sum()) == 200
    ramp = np.tile(np.arange(8, dtype=np.uint8), (1, 1, 8, 1))  # value = column
    # content moves right by 2: the left border is the mirror of columns 1, 2 (reflect, as training pads)
    assert View(dx=2).apply(ramp)[0, 0, 0].tolist() == [2, 1, 0, 1, 2, 3, 4, 5]
    assert View(hflip=True, vflip=True).apply(ramp)[0, 0, 0].tolist() == list(range(7, -1, -1))


class _Recorder:
    """An engine whose probability is the mean pixel of each image's top-left quarter (view-sensitive)."""

    name = "fake"

    def __init__(self):
        self.seen = []

    def probs(self, pixels, batch_size=128):
        self.seen.append(pixels.copy())
        q = pixels[:, :, : pixels.shape[2] // 2, : pixels.shape[3] // 2]
        return q.reshape(len(pixels), -1).mean(1, keepdims=True).astype(np.float32) / 255


def test_tta_is_the_mean_over_its_views():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (5, 1, SIZE, SIZE), dtype=np.uint8)
    views = tta_views(6, SIZE)
    base = _Recorder()
    got = TTA(base, views).probs(x)
    expected = np.mean([_Recorder().probs(v.apply(x)) for v in views], axis=0)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert len(base.seen) == 6 and not np.array_equal(base.seen[0], base.seen[2])


def test_views_follow_the_bundle(tmp_path):
    plain = _bundle(tmp_path / "plain")
    assert "vflip" not in " ".join(_names(bundle_views(plain, read_meta(plain), True)))
    assert bundle_views(plain, read_meta(plain), False) == ()
    assert len(bundle_views(plain, read_meta(plain), 3)) == 3
    sat = _bundle(tmp_path / "sat", vflip=True)
    assert json.loads((sat / "model.json").read_text())["train_augmentation"] == {"preset": "default", "vflip": True}
    assert _names(bundle_views(sat, read_meta(sat), True)) == ["identity", "hflip", "vflip", "hflip+vflip"]
    light = _bundle(tmp_path / "light", augment="light")
    assert _names(bundle_views(light, read_meta(light), True)) == ["identity", "hflip"]
    # a bundle from before model.json recorded the augmentation: its config.yaml says
    old = _bundle(tmp_path / "old", recorded=False)
    (old / "config.yaml").write_text("train:\n  augment: default\n  vflip: true\n")
    assert "vflip" in _names(bundle_views(old, read_meta(old), True))


def test_predictor_and_cli_take_the_number_of_views(tmp_path):
    run = _bundle(tmp_path / "run")
    rng = np.random.default_rng(1)
    folder = tmp_path / "imgs"
    folder.mkdir()
    pixels = rng.integers(0, 255, (4, 1, SIZE, SIZE), dtype=np.uint8)
    for i, p in enumerate(pixels):
        Image.fromarray(p[0]).save(folder / f"{i}.png")
    plain = Predictor.load(run)
    four = Predictor.load(run, tta=4)
    assert four.engine.name == "torch+tta4"
    expected = np.mean([plain.predict_pixels(v.apply(pixels)) for v in tta_views(4, SIZE)], axis=0)
    np.testing.assert_allclose(four.predict_pixels(pixels), expected, atol=1e-5)
    assert not np.allclose(four.predict_pixels(pixels), plain.predict_pixels(pixels), atol=1e-4)
    assert Predictor.load(run, tta=True).engine.name == "torch+tta2"
    assert Predictor.load(run, tta=1).engine.name == "torch"

    out = tmp_path / "p.csv"
    res = CliRunner().invoke(app, ["predict", str(run), str(folder), "--out", str(out), "--tta-views", "4", "--quiet"])
    assert res.exit_code == 0, res.output
    with out.open() as f:
        rows = {r["image"].rsplit("/", 1)[-1]: r for r in csv.DictReader(f)}
    decoded = np.stack([np.asarray(Image.open(folder / f"{i}.png"))[None] for i in range(4)])
    want = four.predict_pixels(decoded)
    got = np.array([[float(rows[f"{i}.png"][n]) for n in "abc"] for i in range(4)])
    np.testing.assert_allclose(got, want, atol=1e-5)
    res = CliRunner().invoke(app, ["predict", str(run), str(folder), "--out", str(out), "--tta", "--quiet"])
    assert res.exit_code == 0, res.output
