"""Losses by name: ``build_loss("asl", "multilabel")(logits, targets) -> scalar``; the LOSSES registry.

Adding a loss is one module in labelwise/training/loss_modules.py (or any nn.Module) and one registered
builder here; `--loss`'s choices, help and validation read the registry. Builders import torch lazily,
so the CLI can list the choices without loading it.
"""
from __future__ import annotations

from typing import Any

from labelwise.errors import ConfigError, did_you_mean
from labelwise.registry import Registry

LOSSES: Registry = Registry("loss")
DEFAULT_LOSS = {"multilabel": "bce", "multiclass": "ce"}


@LOSSES.register("bce", "binary cross-entropy per label (multi-label default)", tasks=("multilabel",))
def _bce(**kw: Any):
    from labelwise.training.loss_modules import BCELoss

    return BCELoss(**kw)


@LOSSES.register("focal", "focal loss: down-weights easy examples (multi-label)", tasks=("multilabel",))
def _focal(**kw: Any):
    from labelwise.training.loss_modules import FocalLoss

    return FocalLoss(**kw)


@LOSSES.register("asl", "asymmetric loss: discounts easy negatives (multi-label)", tasks=("multilabel",))
def _asl(**kw: Any):
    from labelwise.training.loss_modules import AsymmetricLoss

    return AsymmetricLoss(**kw)


@LOSSES.register("soft-f1", "differentiable per-label F1 (multi-label)", tasks=("multilabel",))
def _soft_f1(**kw: Any):
    from labelwise.training.loss_modules import SoftF1Loss

    return SoftF1Loss(**kw)


@LOSSES.register("ce", "cross-entropy with label smoothing (multi-class default)", tasks=("multiclass",))
def _ce(pos_weight=None, class_weight=None, label_smoothing: float = 0.0):
    from labelwise.training.loss_modules import SoftCrossEntropy

    return SoftCrossEntropy(class_weight=class_weight, label_smoothing=label_smoothing)


def losses_for(task: str) -> tuple[str, ...]:
    return tuple(e.name for e in LOSSES if task in e.extra["tasks"])


def resolve_loss(name: str, task: str) -> str:
    """``auto`` -> the task's default; a loss of the other task or an unknown name -> ConfigError."""
    if task not in DEFAULT_LOSS:
        raise ConfigError(f"task must be multilabel or multiclass, got {task!r}")
    key = str(name).strip().lower().replace("_", "-")
    if key == "auto":
        return DEFAULT_LOSS[task]
    valid = losses_for(task)
    if key in valid:
        return key
    if key in LOSSES:
        other = "multiclass" if task == "multilabel" else "multilabel"
        why = f"--loss {name!r} is a {other} loss, but this is a {task} task."
    else:
        why = f"--loss {name!r} is unknown{did_you_mean(key, valid)}."
    raise ConfigError(f"{why} {task} losses: {', '.join(valid)}")


def build_loss(name: str, task: str, *, pos_weight=None, class_weight=None, label_smoothing: float = 0.0):
    """The loss module for ``name`` and ``task``; ``name="auto"`` picks bce / ce.

    >>> build_loss("asl", "multilabel")(torch.zeros(2, 3), torch.ones(2, 3)).shape   # doctest: +SKIP
    torch.Size([])
    """
    key = resolve_loss(name, task)
    return LOSSES.get(key)(pos_weight=pos_weight, class_weight=class_weight, label_smoothing=label_smoothing)
