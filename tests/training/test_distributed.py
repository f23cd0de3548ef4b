"""DDP on CPU: 2 processes (gloo) end to end; validation metrics are over the whole set, not per process."""
from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from labelwise.data.demo import build_multiclass, fashion_available
from labelwise.evaluation.metrics import compute_metrics
from labelwise.infer.predict import Predictor

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not fashion_available(), reason="Debian's dataset-fashion-mnist is not installed")]


def test_two_process_ddp_metrics_match_a_single_process_evaluation(tmp_path):
    # 301 images and val 0.25 -> 75 validation images: an odd count, so DistributedSampler pads a shard.
    data = build_multiclass(tmp_path / "data", n_per_class=30, seed=3, source="fashion")
    (next((data / "bag").iterdir())).unlink()  # 299 images
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    r = subprocess.run([sys.executable, "-m", "labelwise", "train", str(data), "--out", str(run), "--epochs", "1",
                        "--model", "cnn-small", "--no-pretrained", "--quiet", "--accelerator", "cpu",
                        "--devices", "2", "--distributed", "ddp", "--val-split", "0.25"],
                       capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    with (run / "history.csv").open() as f:
        logged = list(csv.DictReader(f))[-1]
    with (run / "val_predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    predictor = Predictor.load(run)
    names = predictor.labels.names
    paths = [r["image"] for r in rows]
    targets = np.array([[int(r["true_labels"] == n) for n in names] for r in rows], dtype=np.uint8)
    probs = np.concatenate([p for _, p, _ in predictor.iter_probs(paths)])
    single = compute_metrics(probs, targets, predictor.labels)
    assert len(rows) == single["n"]
    assert abs(float(logged["accuracy"]) - single["accuracy"]) < 1e-6
    assert abs(float(logged["f1_macro"]) - single["f1_macro"]) < 1e-5


def test_ddp_trains_head_first_with_freeze_epochs(tmp_path):
    # the backbone is wrapped trainable and frozen for the first epoch: DDP must not wait for its gradients
    data = build_multiclass(tmp_path / "data", n_per_class=12, seed=4, source="fashion")
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "labelwise", "train", str(data), "--out", str(run), "--epochs", "2",
                        "--model", "cnn-small", "--no-pretrained", "--quiet", "--accelerator", "cpu", "--batch-size", "16",
                        "--devices", "2", "--distributed", "ddp", "--freeze-epochs", "1", "--no-report"],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    with (run / "history.csv").open() as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["1", "2"]
    assert Predictor.load(run).labels.names
