"""--time-limit: the run plans its schedule into the budget and stops inside it, keeping the best weights."""
from __future__ import annotations

import csv
import time

import pytest

import labelwise
from labelwise.demo_data import build_multiclass, fashion_available

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not fashion_available(), reason="Debian's dataset-fashion-mnist is not installed")]


def test_time_limit_stops_in_time_with_a_completed_schedule(tmp_path):
    data = build_multiclass(tmp_path / "data", n_per_class=40, seed=6, source="fashion")
    budget_s = 25.0
    started = time.monotonic()
    res = labelwise.train(data, tmp_path / "run", epochs=500, time_limit_s=budget_s, backbone="cnn-small",
                          pretrained=False, progress=False, lr=3e-3)
    elapsed = time.monotonic() - started
    assert 1 <= res.epochs_run < 500
    assert res.metrics["run"]["wall_time_s"] <= budget_s * 1.1  # fit time, validation included
    assert elapsed < budget_s + 60  # plus data loading, scoring and writing the bundle
    with (tmp_path / "run" / "history.csv").open() as f:
        lrs = [float(r["lr"]) for r in csv.DictReader(f)]
    assert len(lrs) == res.epochs_run
    if len(lrs) >= 3:  # the cosine schedule was compressed into the budget: it ends decayed, not cut off
        assert lrs[-1] < 0.2 * max(lrs)
    assert res.metrics["model"]["accuracy"] > 0.3


def test_without_epochs_the_time_limit_decides_how_many(tmp_path):
    # --time-limit alone: not the default 10 epochs, but as many as fit (here many short ones)
    data = build_multiclass(tmp_path / "data", n_per_class=20, seed=7, source="fashion")
    budget_s = 20.0
    res = labelwise.train(data, tmp_path / "run", time_limit_s=budget_s, backbone="cnn-small", progress=False)
    assert 10 < res.epochs_run <= 100
    assert res.metrics["run"]["wall_time_s"] <= budget_s * 1.1
    with (tmp_path / "run" / "history.csv").open() as f:
        lrs = [float(r["lr"]) for r in csv.DictReader(f)]
    assert lrs[-1] < 0.2 * max(lrs)  # the schedule was planned into the budget, not cut off at its peak
    assert labelwise.train(data, tmp_path / "plain", backbone="cnn-small", progress=False).epochs_run == 10
