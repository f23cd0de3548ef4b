"""`labelwise suggest`: the pieces (uncertainty, rare-label weights, k-center diversity) on inputs
with a known answer, then end to end on a small Fashion-MNIST run and pool (API and CLI)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import labelwise
from labelwise.cli import app as cli_app
from labelwise.data.demo import build_mosaics, build_multiclass, fashion_available
from labelwise.errors import ConfigError, DataError
from labelwise.infer.suggest import (
    TO_LABEL_HEADER,
    k_center_greedy,
    pick,
    rare_weights,
    read_to_label,
    suggest,
    uncertainty,
)
from labelwise.labels import LabelSpace

CLASSES = ("trouser", "bag", "sneaker")


def test_uncertainty_multilabel_peaks_at_the_threshold():
    t = np.array([0.3, 0.7])
    p = np.array([[0.3, 0.99], [0.0, 1.0], [0.65, 0.1], [0.1, 0.69]])
    u, about = uncertainty(p, t, True, np.ones(2))
    assert u[0] == pytest.approx(1.0) and about[0] == 0  # on label 0's threshold
    assert u[1] == pytest.approx(0.0)  # certain of everything
    assert about[3] == 1 and u[3] > 0.95
    assert np.argsort(-u).tolist()[:2] == [0, 3]


def test_uncertainty_multiclass_is_the_margin():
    p = np.array([[0.9, 0.05, 0.05], [0.4, 0.38, 0.22], [0.6, 0.3, 0.1]])
    u, about = uncertainty(p, np.full(3, 0.5), False, np.ones(3))
    assert np.argsort(-u).tolist() == [1, 2, 0]
    assert about[1] == 1  # the runner-up
    assert u[1] == pytest.approx(1 - 0.02)


def test_rare_labels_weigh_more():
    w = rare_weights([0.5, 0.4, 0.02], 3)
    assert w[0] == 1.0 and w[2] > 2.0 and w[2] <= 3.0
    assert (rare_weights([], 3) == 1).all()
    # the same doubt about a rare label outranks one about a common label
    p = np.array([[0.5, 0.0, 0.0], [0.0, 0.0, 0.5]])
    u, _ = uncertainty(p, np.full(3, 0.5), True, w)
    assert u[1] > u[0]


def test_k_center_spreads_over_clusters():
    rng = np.random.default_rng(0)
    centres = np.eye(4)[:3] * 10
    # cluster 0 holds 80 points, the others 10 each: a top-k by weight would take only cluster 0
    feats = np.concatenate([centres[0] + rng.normal(0, 0.1, (80, 4)), centres[1] + rng.normal(0, 0.1, (10, 4)),
                            centres[2] + rng.normal(0, 0.1, (10, 4))])
    weights = np.concatenate([np.full(80, 0.9), np.full(20, 0.6)])
    picked = k_center_greedy(feats, 3, weights)
    assert len(set(picked)) == 3
    assert sorted(0 if i < 80 else 1 if i < 90 else 2 for i in picked) == [0, 1, 2]
    assert k_center_greedy(feats, 500, weights) and len(k_center_greedy(feats, 500, weights)) == 100


def test_pick_explains_each_choice():
    labels = LabelSpace(("a", "b"), "multilabel")
    probs = np.array([[0.5, 0.9], [0.1, 0.1], [0.9, 0.52]])
    feats = np.eye(3)
    got = pick(probs, feats, labels, [0.5, 0.5], [0.5, 0.05], 2)
    assert got.rows[0] in (0, 2) and 1 not in got.rows
    assert all("near its threshold" in w for w in got.why)
    assert any("rare in training" in w for w in got.why)


@pytest.fixture(scope="module")
def ml_run(tmp_path_factory):
    if not fashion_available():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    root = tmp_path_factory.mktemp("suggest")
    data = build_mosaics(root / "data", 160, seed=1, classes=CLASSES, source="fashion", empty_fraction=0.1)
    labelwise.train(data, out=root / "run", epochs=2, backbone="cnn-small", pretrained=False, progress=False,
                    image_size=32, batch_size=16, seed=0)
    pool = build_mosaics(root / "pool", 120, split="test", seed=2, classes=CLASSES, source="fashion")
    return root / "run", pool / "images", data


@pytest.mark.slow
def test_suggest_end_to_end(ml_run, tmp_path):
    run, pool, data = ml_run
    (pool / "broken.png").write_bytes(b"not an image")
    try:
        result = suggest(run, pool, n=20)
    finally:
        (pool / "broken.png").unlink()
    assert result.out == run / "review" / "to_label.csv"
    assert result.n_pool == 120 and len(result.skipped) == 1
    assert len(result.picks) == 20 and len({p.path for p in result.picks}) == 20
    with open(result.out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == TO_LABEL_HEADER and len(rows) == 21
    assert all(Path(r[0]).is_absolute() and Path(r[0]).parent == pool.absolute() for r in rows[1:])
    back = read_to_label(result.out, LabelSpace(tuple(sorted(CLASSES)), "multilabel"))
    assert [b.path for b in back] == [p.path.absolute() for p in result.picks]
    assert [b.guess for b in back] == [p.guess for p in result.picks]
    assert all(set(p.guess) <= set(CLASSES) for p in result.picks)
    # picks are the uncertain ones: their mean priority is well above the pool's
    from labelwise.infer.predict import Predictor
    from labelwise.infer.suggest import rare_weights as rw
    from labelwise.infer.suggest import score_pool

    predictor = Predictor.load(run)
    paths, probs, _, _ = score_pool(predictor, sorted(pool.glob("*.png")))
    u, _ = uncertainty(probs, predictor.thresholds, True, rw(predictor.meta.train_label_freq, 3))
    picked = {p.path for p in result.picks}
    got = np.array([u[i] for i, p in enumerate(paths) if p in picked])
    # a 2-epoch model doubts most images; the picks still come from the most doubtful 4 x n
    assert len(got) == 20 and got.min() >= np.sort(u)[::-1][4 * 20 - 1] - 1e-9
    assert got.mean() > np.median(u)
    # more than the pool: every image, once
    assert len(suggest(run, pool, n=500, out=tmp_path / "all.csv").picks) == 120


@pytest.mark.slow
def test_suggest_cli_and_mistakes(ml_run, tmp_path):
    run, pool, _ = ml_run
    out = tmp_path / "picks.csv"
    res = CliRunner().invoke(cli_app, ["suggest", str(run), str(pool), "--n", "7", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert len(out.read_text().splitlines()) == 8
    with pytest.raises(ConfigError):
        suggest(run, pool, n=0)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError):
        suggest(run, empty, n=5)


@pytest.mark.slow
def test_suggest_multiclass(tmp_path):
    if not fashion_available():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    data = build_multiclass(tmp_path / "mc", 10, seed=1, source="fashion")
    labelwise.train(data, out=tmp_path / "run", epochs=2, backbone="cnn-small", pretrained=False, progress=False,
                    image_size=28, batch_size=16, seed=0)
    pool = build_multiclass(tmp_path / "pool", 6, split="test", seed=2, source="fashion")
    result = suggest(tmp_path / "run", pool, n=10)
    assert len(result.picks) == 10
    assert all(len(p.guess) == 1 and "small margin" in p.why for p in result.picks)
