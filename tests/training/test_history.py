"""history.csv carries the training-side curves; early stopping waits for the unfrozen backbone."""
from __future__ import annotations

import csv
from types import SimpleNamespace

import pytest
import torch

import labelwise
from labelwise.data.demo import build_mosaics, fashion_available
from labelwise.training.lightning import EarlyStoppingAfterUnfreeze

MAIN_MULTILABEL = ("map", "f1_macro", "f1_micro", "f1_weighted", "exact_match", "hamming_accuracy",
                   "precision_macro", "recall_macro")


def _stub_trainer(epoch: int, value: float) -> SimpleNamespace:
    strategy = SimpleNamespace(reduce_boolean_decision=lambda decision, all=True: decision)
    return SimpleNamespace(current_epoch=epoch, callback_metrics={"val_map": torch.tensor(value)},
                           fast_dev_run=False, should_stop=False, strategy=strategy, is_global_zero=True,
                           world_size=1, global_rank=0, state=SimpleNamespace(fn="fit"), sanity_checking=False)


def _stopped_at(callback, values: list[float]) -> int | None:
    for epoch, v in enumerate(values):
        trainer = _stub_trainer(epoch, v)
        callback._run_early_stopping_check(trainer)
        if trainer.should_stop:
            return epoch
    return None


def test_early_stopping_counts_only_epochs_after_unfreezing():
    # head-only epochs score high on a frozen pretrained backbone, then dip when it starts to train
    values = [0.80, 0.81, 0.82, 0.60, 0.60, 0.70, 0.75]
    plain = EarlyStoppingAfterUnfreeze(0, monitor="val_map", patience=1, mode="max")
    assert _stopped_at(plain, values) == 3  # without freezing: the dip stops it at once
    after = EarlyStoppingAfterUnfreeze(3, monitor="val_map", patience=1, mode="max")
    assert _stopped_at(after, values) == 4  # epochs 0-2 do not count; 3 sets the best, 4 does not improve
    patient = EarlyStoppingAfterUnfreeze(3, monitor="val_map", patience=2, mode="max")
    assert _stopped_at(patient, values) is None  # 3 -> 0.60, 4 same, 5 improves, 6 improves


@pytest.mark.slow
@pytest.mark.skipif(not fashion_available(), reason="Debian's dataset-fashion-mnist is not installed")
def test_history_has_train_sample_columns(tmp_path):
    data = build_mosaics(tmp_path / "data", 120, seed=3, classes=("trouser", "bag", "sneaker"), source="fashion")
    labelwise.train(data, out=tmp_path / "run", backbone="cnn-small", pretrained=False, progress=False, epochs=2,
                    image_size=32, batch_size=16, cache="off", freeze_epochs=1, early_stopping=1)
    with open(tmp_path / "run" / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2  # the frozen first epoch cannot stop the run
    for key in MAIN_MULTILABEL:
        assert key in rows[0] and f"train_{key}" in rows[0], key
        assert all(0 <= float(r[f"train_{key}"]) <= 1 for r in rows), key
    # scored without augmentation on a fixed sample: a real metric, not the running training loss
    assert float(rows[-1]["train_map"]) > 0.3
