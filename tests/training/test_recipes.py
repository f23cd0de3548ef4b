"""Training recipes: mixing targets, augmentation presets, freeze-then-unfreeze, optimisers and schedules."""
from __future__ import annotations

import itertools

import lightning.pytorch as L
import numpy as np
import pytest
import torch

from labelwise.config import TrainConfig
from labelwise.data.loaders import ArrayDataset, make_loader
from labelwise.data.transforms import AUGMENT_PRESETS, AugmentConfig, augment_batch, mix_batch
from labelwise.training.optim import OPTIMIZERS, SCHEDULERS, build_optimizer
from labelwise.training.lightning import LitClassifier
from labelwise.labels import LabelSpace
from labelwise.training.losses import build_loss
from labelwise.models.classifier import Classifier


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_mixed_multiclass_targets_sum_to_one_and_match_the_mix(kind):
    gen = torch.Generator().manual_seed(0)
    x = torch.stack([torch.full((1, 16, 16), float(i % 2)) for i in range(8)])  # images are all-0 or all-1
    y = torch.eye(2)[torch.arange(8) % 2]
    cfg = AugmentConfig(mixup=0.4 if kind == "mixup" else 0, cutmix=1.0 if kind == "cutmix" else 0)
    for _ in range(5):
        xm, ym = mix_batch(x, y, cfg, gen)
        torch.testing.assert_close(ym.sum(1), torch.ones(8))
        # the share of class 1 in the target equals the share of "1" pixels in the mixed image
        torch.testing.assert_close(ym[:, 1], xm.mean((1, 2, 3)), atol=1e-5, rtol=0)


def test_mixed_multilabel_targets_are_the_area_weighted_union():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(6, 3, 20, 20)
    y = torch.tensor([[1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 0], [0, 0, 1], [1, 0, 1]], dtype=torch.float32)
    xm, ym = mix_batch(x, y, AugmentConfig(cutmix=1.0), gen)
    assert ym.min() >= 0 and ym.max() <= 1
    # each label's target is at least its share from either source, and 1 where both images carry it
    lam_rows = ym.max(1).values
    assert torch.all((y.sum(1) == 0) | (lam_rows > 0))


@pytest.mark.parametrize("preset", AUGMENT_PRESETS.names())
def test_every_preset_keeps_shape_and_range(preset):
    x = torch.rand(5, 3, 32, 32)
    out = augment_batch(x, preset, torch.Generator().manual_seed(0), vflip=True)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    if preset != "none":
        assert not torch.equal(out, x)


def _tiny_lit(cfg: TrainConfig):
    labels = LabelSpace(("a", "b"), "multiclass")
    model = Classifier("cnn-small", 2, in_chans=1)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (64, 1, 16, 16), dtype=np.uint8)
    targets = np.eye(2, dtype=np.uint8)[rng.integers(0, 2, 64)]
    dl = make_loader(ArrayDataset(pixels, targets), 16, shuffle=True)
    lit = LitClassifier(model, labels, cfg, build_loss("ce", "multiclass"), steps_per_epoch=len(dl),
                        monitor="accuracy")
    return lit, dl


def _fit(lit, dl, epochs):
    L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0).fit(lit, dl, dl)


def test_freeze_epochs_train_only_the_head_then_everything():
    lit, dl = _tiny_lit(TrainConfig(epochs=2, freeze_epochs=1, lr=1e-2))
    before = {k: v.clone() for k, v in lit.model.backbone.state_dict().items()}
    head_before = lit.model.head.weight.clone()
    _fit(lit, dl, 1)
    after = lit.model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics untouched
    assert not torch.equal(head_before, lit.model.head.weight)
    lit2, dl2 = _tiny_lit(TrainConfig(epochs=2, freeze_epochs=1, lr=1e-2))
    start = {k: v.clone() for k, v in lit2.model.backbone.state_dict().items()}
    _fit(lit2, dl2, 2)
    assert any(not torch.equal(start[k], v) for k, v in lit2.model.backbone.state_dict().items())


def test_discriminative_lr_after_freeze():
    model = Classifier("cnn-small", 3, in_chans=1)
    opt = build_optimizer(model, TrainConfig(freeze_epochs=2, lr=1e-2, backbone_lr_mult=0.1), 10, "accuracy")["optimizer"]
    head = {id(p) for p in model.head.parameters()}
    lrs = {("head" if id(g["params"][0]) in head else "backbone"): g["initial_lr"] for g in opt.param_groups}
    assert lrs == {"head": 1e-2, "backbone": pytest.approx(1e-3)}


@pytest.mark.parametrize("optimizer,scheduler", list(itertools.product(OPTIMIZERS.names(), SCHEDULERS.names())))
def test_every_optimizer_and_schedule_trains(optimizer, scheduler):
    lit, dl = _tiny_lit(TrainConfig(epochs=2, optimizer=optimizer, scheduler=scheduler, lr=1e-2, step_size=1,
                                    grad_clip=1.0))
    start = lit.model.head.weight.clone()
    _fit(lit, dl, 2)
    assert not torch.equal(start, lit.model.head.weight)
    assert all(torch.isfinite(p).all() for p in lit.model.parameters())


@pytest.mark.parametrize("n_val, scored", [(30, 64), (400, 200), (3000, 1000)])
def test_the_training_sample_scored_each_epoch_is_at_most_half_the_validation_set(n_val, scored):
    # scoring training images (for history.csv's train_* columns) must not cost more than validating:
    # half the validation set, at least 64 and at most 1,000 images, in batches of the run's batch size
    labels = LabelSpace(("a", "b"), "multiclass")
    rng = np.random.default_rng(0)

    def loader(n, bs):
        pixels = rng.integers(0, 255, (n, 1, 16, 16), dtype=np.uint8)
        return make_loader(ArrayDataset(pixels, np.eye(2, dtype=np.uint8)[rng.integers(0, 2, n)]), bs, shuffle=False)

    train, val = loader(1200, 32), loader(n_val, 256)
    lit = LitClassifier(Classifier("cnn-small", 2, in_chans=1), labels, TrainConfig(epochs=1, batch_size=32),
                        build_loss("ce", "multiclass"), steps_per_epoch=len(train), monitor="accuracy")
    batches: list[int] = []
    validation_end = lit.on_validation_epoch_end

    def count_scoring_batches():  # the forwards after validation's own are the training sample's
        hook = lit.model.register_forward_hook(lambda module, args, out: batches.append(len(args[0])))
        try:
            validation_end()
        finally:
            hook.remove()

    lit.on_validation_epoch_end = count_scoring_batches
    L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0).fit(lit, train, val)
    assert len(lit._train_sample[0]) == scored
    assert "train_accuracy" in lit.last_train
    assert max(batches) <= 32 and sum(batches) == scored
