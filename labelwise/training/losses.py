"""Losses by name: ``build_loss("asl", "multilabel")(logits, targets) -> scalar``; the LOSSES registry.

Adding a loss is one nn.Module in labelwise/training/loss_modules.py and one line in the table below;
`--loss`'s choices, help and validation read the registry. The table names modules (torch is imported
only when a loss is built), so the CLI can list the choices without loading it.
"""
from __future__ import annotations

from labelwise.errors import ConfigError, did_you_mean
from labelwise.registry import Registry

LOSSES: Registry = Registry("loss")
DEFAULT_LOSS = {"multilabel": "bce", "multiclass": "ce"}


# name, loss module in labelwise/training/loss_modules.py, task, help
for _name, _module, _task, _help in (
    ("bce", "BCELoss", "multilabel", "binary cross-entropy per label (multi-label default)"),
    ("focal", "FocalLoss", "multilabel", "focal loss: down-weights easy examples (multi-label)"),
    ("asl", "AsymmetricLoss", "multilabel", "asymmetric loss: discounts easy negatives (multi-label)"),
    ("soft-f1", "SoftF1Loss", "multilabel", "differentiable per-label F1 (multi-label)"),
    ("ce", "SoftCrossEntropy", "multiclass", "cross-entropy with label smoothing (multi-class default)"),
):
    LOSSES.add(_name, _module, _help, tasks=(_task,))


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
    from labelwise.training import loss_modules

    module = getattr(loss_modules, LOSSES.get(resolve_loss(name, task)))
    if task == "multiclass":  # one distribution per image: no per-label positive weight
        return module(class_weight=class_weight, label_smoothing=label_smoothing)
    return module(pos_weight=pos_weight, class_weight=class_weight, label_smoothing=label_smoothing)
