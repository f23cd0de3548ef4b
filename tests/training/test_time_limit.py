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
        # uncompressed, 500 cosine epochs would still be near the peak; room for epoch-time jitter under load
        assert lrs[-1] < 0.5 * max(lrs)
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
    assert lrs[-1] < 0.5 * max(lrs)  # the schedule was planned into the budget, not cut off at its peak
    assert labelwise.train(data, tmp_path / "plain", backbone="cnn-small", progress=False).epochs_run == 10


def test_the_plan_follows_the_steady_epochs_not_the_slow_first_one():
    from types import SimpleNamespace

    from labelwise.config import TrainConfig
    from labelwise.training.lightning import LitClassifier

    # 600 s budget (590 s usable: validation takes 1 s a pass); epoch 1 took 46 s with one-off costs, the next 37 s
    fake = SimpleNamespace(cfg=TrainConfig(time_limit_s=600), plan={}, steps_per_epoch=10, planned_epochs=None, val_s=1.0,
                           trainer=SimpleNamespace(fit_loop=SimpleNamespace(max_epochs=100)), _fit_started=0.0)
    fake.current_epoch = 0
    LitClassifier._plan_for_budget(fake, 46.0, 46.0)
    first = fake.planned_epochs
    assert first == 1 + int((590 - 46) // (46 * 1.03))  # what planning from epoch 1 alone gives
    fake.current_epoch = 1
    LitClassifier._plan_for_budget(fake, 83.0, 37.0)
    assert fake.planned_epochs > first  # the steady epochs fit more
    assert fake.trainer.fit_loop.max_epochs == fake.planned_epochs == 2 + int((590 - 83) // (37 * 1.03))
    assert fake.plan["total"] == fake.planned_epochs * 10  # the LR schedule follows the plan
    capped = SimpleNamespace(**{**vars(fake), "cfg": TrainConfig(time_limit_s=600, epochs=5)})
    LitClassifier._plan_for_budget(capped, 83.0, 37.0)
    assert capped.planned_epochs == 5  # --epochs stays the upper bound


def test_the_plan_is_revised_until_half_way_through_the_schedule():
    # the first epochs of a run can be slower than the rest (Fashion-MNIST in fp32: 42 s, then 33-34 s): planning from
    # the first three alone left 20% of a 10-minute budget unused. Later epochs revise it until half-way.
    from types import SimpleNamespace

    from labelwise.config import TrainConfig
    from labelwise.training.lightning import LitClassifier

    revised = []
    fake = SimpleNamespace(cfg=TrainConfig(time_limit_s=600), planned_epochs=None, _epochs_this_fit=0,
                           _last_epoch_end=0.0)
    fake._plan_for_budget = lambda now, epoch_s: revised.append(fake.current_epoch + 1)
    for epoch in range(14):
        fake.current_epoch = epoch
        fake.planned_epochs = 12 if epoch >= 2 else None  # planned after epoch 3
        LitClassifier.on_train_epoch_end(fake)
    assert revised == [1, 2, 3, 4, 5, 6]
    fake.cfg, revised[:] = TrainConfig(), []
    LitClassifier.on_train_epoch_end(fake)
    assert revised == []  # no --time-limit: no plan


def test_the_training_budget_is_what_preparation_and_the_report_leave():
    from labelwise.config import TrainConfig
    from labelwise.training import budget

    assert budget.training_limit_s(600, spent_s=50, report_s=8) == 542
    assert budget.training_limit_s(600, spent_s=0) == 600 - budget.REPORT_S
    assert budget.report_reserve_s(60) == 60 * budget.REPORT_MAX_SHARE  # small budgets: a share, not 8 s
    assert budget.training_limit_s(100, spent_s=500) == 100 * budget.MIN_TRAINING_SHARE  # one epoch stays possible
    cfg = budget.for_training(TrainConfig(time_limit_s=600, epochs=7), 92.0)
    assert cfg.time_limit_s == 600 - 92 - budget.REPORT_S and cfg.epochs == 7
    assert budget.for_training(TrainConfig(), 92.0).time_limit_s is None


def test_the_epoch_plan_subtracts_the_time_spent_before_training():
    # fake clocks: the same measured epochs plan fewer of them when decoding took 100 s of a 600 s budget
    from types import SimpleNamespace

    from labelwise.config import TrainConfig
    from labelwise.training.budget import for_training
    from labelwise.training.lightning import LitClassifier

    def plan(cfg: TrainConfig) -> int:
        fake = SimpleNamespace(cfg=cfg, plan={}, steps_per_epoch=10, planned_epochs=None, current_epoch=1, val_s=1.0,
                               trainer=SimpleNamespace(fit_loop=SimpleNamespace(max_epochs=100)), _fit_started=0.0)
        LitClassifier._plan_for_budget(fake, 80.0, 40.0)  # 2 epochs done at 80 s, 40 s each
        return fake.planned_epochs

    whole = plan(TrainConfig(time_limit_s=600))
    after_decoding = plan(for_training(TrainConfig(time_limit_s=600), 100.0))
    assert whole == 2 + int((590 - 80) // (40 * 1.03))
    limit = 600 - 100 - 8.0
    assert after_decoding == 2 + int((limit - (4 + 0.01 * limit) - 80) // (40 * 1.03)) < whole


def test_the_time_kept_after_training_follows_the_validation_pass():
    # scoring after the last epoch = about one more validation pass: a fast one keeps seconds, not 5% of
    # the limit (which left almost two Fashion-MNIST epochs unused); a slow one keeps at most the 5%
    from types import SimpleNamespace

    from labelwise.config import TrainConfig
    from labelwise.training.lightning import LitClassifier, after_training_reserve_s

    assert after_training_reserve_s(544, 1.0) < 10 < after_training_reserve_s(544, 4.0) < 0.05 * 544
    assert after_training_reserve_s(544, 300.0) == pytest.approx(0.05 * 544)

    def plan(val_s: float) -> int:
        fake = SimpleNamespace(cfg=TrainConfig(time_limit_s=544), plan={}, steps_per_epoch=10, planned_epochs=None,
                               current_epoch=2, val_s=val_s, _fit_started=0.0,
                               trainer=SimpleNamespace(fit_loop=SimpleNamespace(max_epochs=100)))
        LitClassifier._plan_for_budget(fake, 60.0, 20.0)  # 3 epochs of 20 s
        return fake.planned_epochs

    assert plan(1.0) == 3 + int((544 - 9.44 - 60) // (20 * 1.03)) == 26
    assert plan(30.0) == 3 + int((544 - 27.2 - 60) // (20 * 1.03)) == 25


def test_a_run_plans_its_training_into_what_decoding_left(tmp_path, monkeypatch):
    import yaml

    from labelwise.training import fit as fit_module
    from labelwise.training import prepare as prepare_module

    slow_s = 3.0
    original_decode = prepare_module.decode_samples

    def slow_decode(*args, **kwargs):  # decoding that takes at least slow_s (a lower bound, not a timing)
        time.sleep(slow_s)
        return original_decode(*args, **kwargs)

    seen = []
    original_for_training = fit_module.for_training

    def spy(tcfg, spent_s):
        out = original_for_training(tcfg, spent_s)
        seen.append((spent_s, out.time_limit_s))
        return out

    monkeypatch.setattr(prepare_module, "decode_samples", slow_decode)
    monkeypatch.setattr(fit_module, "for_training", spy)
    data = build_multiclass(tmp_path / "data", n_per_class=10, seed=8, source="fashion")
    budget_s = 30.0
    res = labelwise.train(data, tmp_path / "run", time_limit_s=budget_s, backbone="cnn-small", progress=False)
    (spent, training_limit), = seen
    assert spent >= slow_s
    assert training_limit <= budget_s - slow_s - min(8.0, 0.05 * budget_s) + 1e-9
    assert res.metrics["run"]["wall_time_s"] <= training_limit * 1.1
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["train"]["time_limit_s"] == budget_s  # the user's limit is what the run records
