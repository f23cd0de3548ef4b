"""The loss modules behind the LOSSES registry (labelwise/training/losses.py), and class weights.

Every loss takes raw logits (B, C) and float targets (B, C): multi-hot for multi-label, one-hot
or soft (MixUp/CutMix) for multi-class. All are written with ``logsigmoid`` / ``log_softmax`` so
they stay finite for logits of +-100 and beyond.

Reduction: the multi-label element-wise losses (bce, focal, asl) average over every
(image, label) pair, like ``BCEWithLogitsLoss``, so switching loss keeps the loss scale (and the
learning rate) comparable. ``label_smoothing`` eps moves multi-label targets towards 0.5
(t * (1 - eps) + eps / 2) and multi-class targets towards uniform (t * (1 - eps) + eps / C).

Weights: ``pos_weight`` (C,) multiplies the positive term of a label (bce, focal, asl);
``class_weight`` (C,) multiplies a label's whole loss (multi-label) or a class's share of the
cross-entropy (multi-class). soft-f1 uses ``class_weight`` for a weighted mean of per-label F1
and ignores ``pos_weight``: F1 is computed per label, so it is already insensitive to how
rare a label is, which is what pos_weight would correct for.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labelwise.errors import ConfigError


class _WeightedLoss(nn.Module):
    """Holds the optional (C,) weights as buffers so ``.to(device)`` moves them with the model."""

    def __init__(self, pos_weight: Tensor | None, class_weight: Tensor | None, label_smoothing: float):
        super().__init__()
        self.register_buffer("pos_weight", _as_weight(pos_weight, "pos_weight"), persistent=False)
        self.register_buffer("class_weight", _as_weight(class_weight, "class_weight"), persistent=False)
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"--label-smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def _smooth(self, targets: Tensor) -> Tensor:
        t = targets.float()
        return t * (1 - self.label_smoothing) + self.label_smoothing / 2 if self.label_smoothing else t

    def _reduce(self, pos_term: Tensor, neg_term: Tensor) -> Tensor:
        """pos_term / neg_term: (B, C) losses for the positive and negative part; weight, mean."""
        if self.pos_weight is not None:
            pos_term = pos_term * self.pos_weight
        loss = pos_term + neg_term
        if self.class_weight is not None:
            loss = loss * self.class_weight
        return loss.mean()


class BCELoss(_WeightedLoss):
    """Binary cross-entropy on logits, per label: ``BCEWithLogitsLoss`` plus smoothing and weights."""

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        t = self._smooth(targets)
        x = logits.float()
        return self._reduce(-t * F.logsigmoid(x), -(1 - t) * F.logsigmoid(-x))


class FocalLoss(_WeightedLoss):
    """Focal loss (Lin et al. 2017) on logits: BCE scaled by (1 - p_t)^gamma; alpha weights positives."""

    def __init__(self, gamma: float = 2.0, alpha: float | None = None, **kw):
        super().__init__(**kw)
        self.gamma, self.alpha = float(gamma), alpha

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        t = self._smooth(targets)
        x = logits.float()
        log_p, log_q = F.logsigmoid(x), F.logsigmoid(-x)  # log p, log (1 - p), both stable
        pos = -t * torch.exp(self.gamma * log_q) * log_p
        neg = -(1 - t) * torch.exp(self.gamma * log_p) * log_q
        if self.alpha is not None:
            pos, neg = self.alpha * pos, (1 - self.alpha) * neg
        return self._reduce(pos, neg)


class AsymmetricLoss(_WeightedLoss):
    """ASL (Ridnik et al. 2021): focusing gamma_neg on negatives, gamma_pos on positives, and a
    probability margin ``clip`` that discards easy negatives (p < clip) entirely."""

    def __init__(self, gamma_neg: float = 4.0, gamma_pos: float = 0.0, clip: float = 0.05, **kw):
        super().__init__(**kw)
        self.gamma_neg, self.gamma_pos, self.clip = float(gamma_neg), float(gamma_pos), float(clip)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        t = self._smooth(targets)
        x = logits.float()
        log_p, log_q = F.logsigmoid(x), F.logsigmoid(-x)
        pos = -t * torch.exp(self.gamma_pos * log_q) * log_p
        if self.clip > 0:
            # Shifted probability p_m = max(p - clip, 0); 1 - p_m = min(sigmoid(-x) + clip, 1),
            # whose log is finite for any x because clip > 0.
            p_m = (torch.sigmoid(x) - self.clip).clamp(min=0)
            log_q_m = torch.log((torch.sigmoid(-x) + self.clip).clamp(max=1.0))
        else:
            p_m, log_q_m = torch.sigmoid(x), log_q
        neg = -(1 - t) * p_m.pow(self.gamma_neg) * log_q_m
        return self._reduce(pos, neg)


class SoftF1Loss(_WeightedLoss):
    """1 - macro soft-F1 over the batch, with probabilities in place of hard decisions.

    Pure (not mixed with BCE). A label with no positive in the batch has soft F1 = 0 whatever
    the model does, so it adds a constant and no gradient: with many rare labels or small
    batches prefer bce/asl, or fine-tune with soft-f1 after them.
    """

    eps = 1e-7

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        t = self._smooth(targets)
        p = torch.sigmoid(logits.float())
        tp = (p * t).sum(0)
        # 2TP + FP + FN = sum(p) + sum(t): one expression, no separate FP/FN terms.
        f1 = 2 * tp / (p.sum(0) + t.sum(0) + self.eps)
        if self.class_weight is not None:
            return 1 - (f1 * self.class_weight).sum() / self.class_weight.sum()
        return 1 - f1.mean()


class SoftCrossEntropy(nn.Module):
    """Cross-entropy with one-hot *or* soft targets (B, C), label smoothing and class weights.

    With weights the mean is weighted: sum_i sum_c w_c t'_ic (-log p_ic) / sum_i sum_c w_c t_ic,
    (t' smoothed, t raw), which equals ``F.cross_entropy(weight=..., label_smoothing=...)`` with
    class-index targets for one-hot rows and extends it to soft rows. Class indices (B,) are
    accepted too.
    """

    def __init__(self, class_weight: Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.register_buffer("class_weight", _as_weight(class_weight, "class_weight"), persistent=False)
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"--label-smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        x = logits.float()
        t = F.one_hot(targets.long(), x.shape[1]).float() if targets.ndim == 1 else targets.float()
        smoothed = t * (1 - self.label_smoothing) + self.label_smoothing / x.shape[1]
        nll = -(smoothed * F.log_softmax(x, dim=1))
        if self.class_weight is None:
            return nll.sum(1).mean()
        w = self.class_weight
        return (nll * w).sum() / (t * w).sum().clamp(min=torch.finfo(x.dtype).tiny)


def class_weights(targets: np.ndarray, task: str, clip: float = 10.0) -> torch.Tensor:
    """Weights from training targets (N, C) multi-hot, float32 tensor (C,).

    multilabel: ``pos_weight`` = negatives / positives per label, clipped to [1/clip, clip];
    a label with no positive gets ``clip``. Pass as ``build_loss(..., pos_weight=...)``.
    multiclass: inverse class frequency, normalised to mean 1 over classes, clipped to
    [1/clip, clip] and normalised again (so a weight may end slightly past a bound); a class
    absent from training gets the weight of the rarest present class. Pass as ``class_weight``.
    """
    t = np.asarray(targets, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] == 0:
        raise ValueError(f"targets must be a non-empty (N, C) array, got shape {t.shape}")
    if clip < 1:
        raise ConfigError(f"class-weight clip must be >= 1, got {clip}")
    n = t.shape[0]
    pos = t.sum(axis=0)
    if task == "multilabel":
        with np.errstate(divide="ignore"):
            w = np.where(pos > 0, (n - pos) / np.maximum(pos, 1), clip)
        w = np.clip(w, 1.0 / clip, clip)
    elif task == "multiclass":
        present = pos > 0
        if not present.any():
            raise ValueError("no class has a training example")
        inv = np.where(present, 1.0 / np.maximum(pos, 1), 0.0)
        inv[~present] = inv[present].max()
        w = inv / inv.mean()
        w = np.clip(w, 1.0 / clip, clip)
        w = w / w.mean()
    else:
        raise ConfigError(f"task must be multilabel or multiclass, got {task!r}")
    return torch.tensor(w, dtype=torch.float32)


def _as_weight(w: Tensor | np.ndarray | None, what: str) -> Tensor | None:
    if w is None:
        return None
    w = torch.as_tensor(w, dtype=torch.float32).detach().clone()
    if w.ndim != 1 or not torch.isfinite(w).all() or (w < 0).any():
        raise ConfigError(f"{what} must be a 1-D tensor of finite non-negative weights")
    return w
