"""The early stages of a pretrained backbone, which fine-tuning may keep frozen (--frozen-stages).

The stem and first blocks of an ImageNet network detect edges and colours that any photo set shares,
hold few weights (EfficientNet-Lite0: stem + blocks 0-2 = 55k of 3.4M) and run at the highest
resolution, so they cost most of a training step's memory passes. Frozen (no gradient, BatchNorm
statistics as pretrained) they drop out of the backward pass: one EfficientNet-Lite0 training step
at 224 px, batch 32, 2 CPU cores: 17.4 img/s in full, 27.9 with the stem + 2 blocks frozen, 38.3 with
the stem + 3 blocks (2.2x); at 160 px 40.9 / 67.8 / 77.4.

>>> from labelwise.models.backbones import create_backbone
>>> [type(m).__name__ for m in early_stages(create_backbone("efficientnet_lite0"), 2)]
['Conv2dSame', 'BatchNormAct2d', 'Sequential', 'Sequential']
"""
from __future__ import annotations

from torch import nn


def max_stages(backbone: nn.Module) -> int:
    """How many blocks after the stem ``early_stages`` can name (0: it knows no stem for this network)."""
    if all(hasattr(backbone, a) for a in ("conv_stem", "bn1", "blocks")):  # timm EfficientNet / MobileNet
        return len(backbone.blocks)
    if all(hasattr(backbone, a) for a in ("conv1", "bn1", "layer1")):  # timm / torchvision ResNet
        return sum(hasattr(backbone, f"layer{i}") for i in range(1, 5))
    return 0


def early_stages(backbone: nn.Module, n: int) -> list[nn.Module]:
    """The stem and the first ``n`` blocks (stages) of ``backbone``; [] for n = 0 or a network it does not know."""
    if n <= 0 or not max_stages(backbone):
        return []
    n = min(n, max_stages(backbone))
    if hasattr(backbone, "blocks"):
        return [backbone.conv_stem, backbone.bn1, *list(backbone.blocks)[:n]]
    stem = [getattr(backbone, a) for a in ("conv1", "bn1", "act1", "relu", "maxpool") if hasattr(backbone, a)]
    return stem + [getattr(backbone, f"layer{i}") for i in range(1, n + 1)]


def freeze_early(backbone: nn.Module, n: int, eval_mode: bool = True) -> int:
    """Freeze the stem and first ``n`` blocks in place (call after ``train()``: with ``eval_mode`` their
    BatchNorm goes to eval mode); returns how many parameters it froze."""
    frozen = 0
    for module in early_stages(backbone, n):
        module.requires_grad_(False)
        if eval_mode:
            module.eval()
        frozen += sum(p.numel() for p in module.parameters())
    return frozen


def freeze_for_epoch(backbone: nn.Module, epoch: int, freeze_epochs: int, frozen_stages: int | None) -> None:
    """What of ``backbone`` trains in ``epoch`` (call after ``train()``): none of it during the first
    ``freeze_epochs`` (--freeze-epochs: head first, BatchNorm statistics as pretrained), then all of it but
    the stem and first ``frozen_stages`` blocks (--frozen-stages)."""
    head_only = epoch < freeze_epochs
    backbone.requires_grad_(not head_only)
    if head_only:
        backbone.eval()
    elif frozen_stages:
        freeze_early(backbone, frozen_stages)
