from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from labelwise.errors import ConfigError
from labelwise.training.loss_modules import class_weights
from labelwise.training.losses import build_loss, losses_for

LOSSES_MULTILABEL, LOSSES_MULTICLASS = losses_for("multilabel"), losses_for("multiclass")

ALL = [(n, "multilabel") for n in LOSSES_MULTILABEL] + [(n, "multiclass") for n in LOSSES_MULTICLASS]


def _batch(seed: int = 0, b: int = 16, c: int = 5):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, generator=g) * 2
    targets = (torch.rand(b, c, generator=g) < 0.3).float()
    return logits, targets


def _onehot(seed: int = 0, b: int = 16, c: int = 5):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (b,), generator=g)
    return torch.randn(b, c, generator=g) * 2, y, F.one_hot(y, c).float()


@pytest.mark.parametrize("name,task", ALL)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_finite_loss_and_grad_on_extreme_logits(name, task, smoothing):
    c = 4
    logits = torch.tensor([[100.0, -100.0, 1e4, -1e4], [-100.0, 100.0, 0.0, 50.0]], requires_grad=True)
    targets = torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 0]]) if task == "multilabel" else torch.eye(c)[[0, 1]]
    w = torch.full((c,), 2.0)
    kw = dict(pos_weight=w) if task == "multilabel" else dict(class_weight=w)
    loss = build_loss(name, task, label_smoothing=smoothing, **kw)(logits, targets)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_bce_equals_torch_reference():
    logits, t = _batch()
    pw, cw = torch.rand(5) + 0.5, torch.rand(5) + 0.5
    assert torch.allclose(build_loss("bce", "multilabel")(logits, t), F.binary_cross_entropy_with_logits(logits, t))
    ref = F.binary_cross_entropy_with_logits(logits, t, pos_weight=pw, weight=cw)
    assert torch.allclose(build_loss("bce", "multilabel", pos_weight=pw, class_weight=cw)(logits, t), ref)
    # Label smoothing for multi-label = targets pulled towards 0.5.
    ref = F.binary_cross_entropy_with_logits(logits, t * 0.8 + 0.1)
    assert torch.allclose(build_loss("bce", "multilabel", label_smoothing=0.2)(logits, t), ref)


def test_pos_weight_raises_positive_gradient():
    logits, t = _batch(1)
    grads = []
    for pw in (None, torch.full((5,), 4.0)):
        x = logits.clone().requires_grad_(True)
        build_loss("bce", "multilabel", pos_weight=pw)(x, t).backward()
        grads.append(x.grad)
    pos = t.bool()
    assert torch.allclose(grads[1][pos], 4 * grads[0][pos])
    assert (grads[1][pos].abs() > grads[0][pos].abs()).all()
    assert torch.allclose(grads[1][~pos], grads[0][~pos])  # negatives unchanged


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_ce_one_hot_equals_torch(smoothing, weighted):
    logits, y, onehot = _onehot()
    w = torch.rand(5) + 0.2 if weighted else None
    ref = F.cross_entropy(logits, y, weight=w, label_smoothing=smoothing)
    loss = build_loss("ce", "multiclass", class_weight=w, label_smoothing=smoothing)
    assert torch.allclose(loss(logits, onehot), ref, atol=1e-6)
    assert torch.allclose(loss(logits, y), ref, atol=1e-6)  # class indices accepted too


def test_ce_soft_targets_equal_torch_probability_targets():
    logits, _, _ = _onehot(2)
    soft = torch.softmax(torch.randn(16, 5), dim=1)  # e.g. MixUp targets
    ref = F.cross_entropy(logits, soft, label_smoothing=0.1)
    assert torch.allclose(build_loss("ce", "multiclass", label_smoothing=0.1)(logits, soft), ref, atol=1e-6)


def test_focal_reduces_to_bce_and_downweights_easy_examples():
    logits, t = _batch(3)
    bce = F.binary_cross_entropy_with_logits(logits, t)
    focal0 = build_loss("focal", "multilabel")
    focal0.gamma = 0.0
    assert torch.allclose(focal0(logits, t), bce, atol=1e-6)
    focal = build_loss("focal", "multilabel")
    assert 0 < focal(logits, t) < bce
    # Easy (confident, correct) examples lose nearly everything, hard ones keep most.
    easy = focal(torch.tensor([[4.0]]), torch.tensor([[1.0]])) / F.binary_cross_entropy_with_logits(
        torch.tensor([[4.0]]), torch.tensor([[1.0]]))
    hard = focal(torch.tensor([[-4.0]]), torch.tensor([[1.0]])) / F.binary_cross_entropy_with_logits(
        torch.tensor([[-4.0]]), torch.tensor([[1.0]]))
    assert easy < 1e-3 and hard > 0.9


def test_asl_values():
    asl = build_loss("asl", "multilabel")
    # Positives with gamma_pos=0: plain -log(sigmoid(x)).
    x = torch.tensor([[0.3, -1.2, 2.0]])
    assert torch.allclose(asl(x, torch.ones(1, 3)), -F.logsigmoid(x).mean())
    # Easy negatives (p < clip=0.05) cost exactly nothing.
    assert asl(torch.tensor([[-4.0]]), torch.zeros(1, 1)) == 0
    # A hard negative is charged p_m^4 * -log(1 - p_m).
    p = torch.sigmoid(torch.tensor(2.0))
    pm = p - 0.05
    assert torch.allclose(asl(torch.tensor([[2.0]]), torch.zeros(1, 1)), -(pm ** 4) * torch.log(1 - pm))
    # Negatives cost less than under BCE.
    logits, t = _batch(4)
    assert asl(logits, t) < F.binary_cross_entropy_with_logits(logits, t)


def test_soft_f1_value_and_gradient():
    loss = build_loss("soft-f1", "multilabel")
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert loss(torch.tensor([[60.0, -60.0], [-60.0, 60.0]]), t) < 1e-6  # perfect -> ~0
    assert loss(torch.tensor([[-60.0, 60.0], [60.0, -60.0]]), t) > 1 - 1e-6  # all wrong -> ~1
    logits, t = _batch(5)
    x = logits.clone().requires_grad_(True)
    loss(x, t).backward()
    assert x.grad.abs().sum() > 0
    # class_weight gives a weighted mean of per-label F1 (all weight on label 0 = its own 1 - F1).
    w = torch.tensor([1.0, 0, 0, 0, 0])
    single = build_loss("soft-f1", "multilabel")(logits[:, :1], t[:, :1])
    assert torch.allclose(build_loss("soft-f1", "multilabel", class_weight=w)(logits, t), single)


def test_loss_moves_with_module_device_and_dtype():
    loss = build_loss("bce", "multilabel", pos_weight=torch.ones(3))
    assert "pos_weight" in dict(loss.named_buffers())
    out = loss(torch.zeros(2, 3, dtype=torch.float16), torch.ones(2, 3))
    assert out.dtype == torch.float32 and torch.isfinite(out)


def test_wrong_names():
    with pytest.raises(ConfigError, match="did you mean 'focal'"):
        build_loss("focl", "multilabel")
    with pytest.raises(ConfigError, match="multiclass loss") as e:
        build_loss("ce", "multilabel")
    assert "bce, focal, asl, soft-f1" in str(e.value)
    with pytest.raises(ConfigError, match="multiclass losses: ce"):
        build_loss("bce", "multiclass")
    with pytest.raises(ConfigError, match="label-smoothing"):
        build_loss("ce", "multiclass", label_smoothing=1.5)
    assert isinstance(build_loss("auto", "multiclass"), torch.nn.Module)
    assert isinstance(build_loss("SOFT_F1", "multilabel"), torch.nn.Module)


def test_class_weights_multilabel():
    t = np.zeros((100, 4), dtype=np.uint8)
    t[:10, 0] = 1   # 10 pos, 90 neg -> 9
    t[:1, 1] = 1    # 1 pos, 99 neg -> 99 -> clipped to 10
    t[:, 2] = 1     # 100 pos, 0 neg -> 0 -> clipped to 1/10
    # label 3: no positive -> clip
    w = class_weights(t, "multilabel", clip=10.0)
    assert w.dtype == torch.float32
    assert torch.allclose(w, torch.tensor([9.0, 10.0, 0.1, 10.0]))


def test_class_weights_multiclass():
    y = np.array([0] * 60 + [1] * 30 + [2] * 10)
    w = class_weights(np.eye(4)[y], "multiclass", clip=100.0)
    # inverse frequency 1/60 : 1/30 : 1/10, absent class 3 -> like the rarest (1/10); mean 1.
    expected = np.array([1 / 60, 1 / 30, 1 / 10, 1 / 10])
    expected /= expected.mean()
    assert torch.allclose(w, torch.tensor(expected, dtype=torch.float32))
    assert w.mean().item() == pytest.approx(1.0)
    clipped = class_weights(np.eye(2)[np.array([0] * 999 + [1])], "multiclass", clip=4.0)
    assert clipped.mean().item() == pytest.approx(1.0)
    assert clipped.max() / clipped.min() <= 16 + 1e-4
