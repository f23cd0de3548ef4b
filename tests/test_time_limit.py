"""--time-limit: the run plans its schedule into the budget and stops inside it, keeping the best weights."""
from __future__ import annotations

import csv
import time

import pytest

import labelwise
from labelwise.data.demo import build_multiclass, fashion_available

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


def test_the_plan_follows_the_steady_epochs_not_the_slow_first_one():
    from types import SimpleNamespace

    from labelwise.config import TrainConfig
    from labelwise.training.lightning import LitClassifier

    # 600 s budget (570 s usable); epoch 1 took 46 s with one-off costs, the next ones 37 s
    fake = SimpleNamespace(cfg=TrainConfig(time_limit_s=600), plan={}, steps_per_epoch=10, planned_epochs=None,
                           trainer=SimpleNamespace(fit_loop=SimpleNamespace(max_epochs=100)), _fit_started=0.0)
    fake.current_epoch = 0
    LitClassifier._plan_for_budget(fake, 46.0, 46.0)
    first = fake.planned_epochs
    assert first == 1 + int((570 - 46) // (46 * 1.03))  # what planning from epoch 1 alone gives
    fake.current_epoch = 1
    LitClassifier._plan_for_budget(fake, 83.0, 37.0)
    assert fake.planned_epochs > first  # the steady epochs fit more
    assert fake.trainer.fit_loop.max_epochs == fake.planned_epochs == 2 + int((570 - 83) // (37 * 1.03))
    assert fake.plan["total"] == fake.planned_epochs * 10  # the LR schedule follows the plan
    capped = SimpleNamespace(**{**vars(fake), "cfg": TrainConfig(time_limit_s=600, epochs=5)})
    LitClassifier._plan_for_budget(capped, 83.0, 37.0)
    assert capped.planned_epochs == 5  # --epochs stays the upper bound
