"""The automatic choices (--model auto, --strategy auto): each returns what it picked and why, in words
the user sees at the start of a run and finds again in metrics.json."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from labelwise.config import TrainConfig, field_choices

TINY_SIDE = 48  # px: at or below this median side, a small from-scratch CNN beats upsampling for ImageNet
SCRATCH_MIN_IMAGES = 5000  # ... given this many images; with fewer, pretrained features carry more
SMALL_MODEL = "cnn-small"
PHOTO_MODEL = "efficientnet_lite0"
STRATEGIES = field_choices(TrainConfig, "strategy")
PROBE_MAX_IMAGES = 1000  # auto: at most this many training images -> linear probe on pretrained features
MIN_FINETUNE_EPOCHS = 3  # auto with --time-limit: fewer fine-tuning epochs than this fit -> linear probe


@dataclass(frozen=True)
class Choice:
    value: str
    reason: str  # "" when the user chose it


PROBE_MIN_SIDE = 64  # px: ImageNet features of 32 px inputs are weak (Fashion-MNIST probe: 0.745 at 32, 0.845 at 64)


def choose_backbone(requested: str, median_side: int | None, n_images: int, strategy: str = "finetune") -> Choice:
    """auto: tiny images (median side <= TINY_SIDE) in quantity (>= SCRATCH_MIN_IMAGES) get a small CNN
    trained from scratch at their own size — several times the throughput of an ImageNet backbone and
    no upsampling; everything else (and any linear probe) gets the pretrained EfficientNet-Lite0."""
    if requested != "auto":
        return Choice(requested, "")
    side = f"median side {median_side} px" if median_side else "image size unknown"
    if strategy == "linear-probe":
        return Choice(PHOTO_MODEL, f"--model auto: a linear probe needs pretrained features, so {PHOTO_MODEL}")
    if median_side is not None and median_side <= TINY_SIDE:
        if n_images >= SCRATCH_MIN_IMAGES:
            return Choice(SMALL_MODEL, f"--model auto: {n_images} tiny images ({side} <= {TINY_SIDE}), so a small "
                                       f"CNN trained from scratch at their own size ({SMALL_MODEL})")
        return Choice(PHOTO_MODEL, f"--model auto: tiny images ({side}) but only {n_images} of them "
                                   f"(< {SCRATCH_MIN_IMAGES}), so ImageNet-pretrained {PHOTO_MODEL}")
    return Choice(PHOTO_MODEL, f"--model auto: {side}, so ImageNet-pretrained {PHOTO_MODEL}")


def min_input_side(backbone_min: int, pretrained: bool, strategy: str, median_side: int | None) -> int:
    """Smallest input side: the backbone's; at least PROBE_MIN_SIDE when pretrained features of tiny
    images may be probed (--strategy linear-probe, or auto, which probes small sets)."""
    tiny = median_side is not None and median_side < PROBE_MIN_SIDE
    if pretrained and strategy in ("linear-probe", "auto") and tiny:
        return max(backbone_min, PROBE_MIN_SIDE)
    return backbone_min


def choose_strategy(requested: str, *, pretrained: bool, n_train: int, time_limit_s: float | None,
                    epoch_estimate_s: "callable | None" = None) -> Choice:
    """finetune / linear-probe as asked; auto: a linear probe when the backbone is pretrained and either the
    training set is small (<= PROBE_MAX_IMAGES: pretrained features + a linear head generalise better than
    fine-tuning on so few images, in seconds) or --time-limit leaves room for fewer than MIN_FINETUNE_EPOCHS
    epochs of fine-tuning (estimated from timed training steps). Otherwise fine-tune."""
    if requested != "auto":
        return Choice(requested, "")
    if not pretrained:
        return Choice("finetune", "--strategy auto: the backbone starts from scratch, so it is trained in full "
                                  "(a linear probe needs pretrained features)")
    if n_train <= PROBE_MAX_IMAGES:
        return Choice("linear-probe", f"--strategy auto: {n_train} training images (<= {PROBE_MAX_IMAGES}), so a "
                                      "linear probe on the pretrained features (fine-tuning would overfit)")
    if time_limit_s is not None and epoch_estimate_s is not None:
        per_epoch = epoch_estimate_s()
        fits = time_limit_s / per_epoch
        if fits < MIN_FINETUNE_EPOCHS:
            return Choice("linear-probe", f"--strategy auto: one fine-tuning epoch would take about {per_epoch:.0f} s, "
                                          f"so only {fits:.1f} fit in --time-limit {time_limit_s:.0f}s; a linear "
                                          "probe on the pretrained features instead")
        return Choice("finetune", f"--strategy auto: {n_train} training images and about {fits:.0f} fine-tuning "
                                  f"epochs fit in --time-limit {time_limit_s:.0f}s, so fine-tuning")
    return Choice("finetune", f"--strategy auto: {n_train} training images (> {PROBE_MAX_IMAGES}), so fine-tuning")


def estimate_epoch_s(model: torch.nn.Module, image_shape: tuple[int, int, int], n_train: int, n_val: int,
                     batch_size: int, steps: int = 2) -> float:
    """Seconds for one fine-tuning epoch (train + validation), from timed forward/backward steps."""
    x = torch.rand(batch_size, *image_shape).contiguous(memory_format=torch.channels_last)
    model = model.to(memory_format=torch.channels_last).train()
    params = [p for p in model.parameters() if p.requires_grad]
    model(x).float().mean().backward()  # warm-up (allocations, kernel selection)
    started = time.perf_counter()
    for _ in range(steps):
        model(x).float().mean().backward()
    per_image = (time.perf_counter() - started) / (steps * batch_size)
    for p in params:
        p.grad = None
    # inference costs about a third of a training step
    return float(per_image * (n_train + np.ceil(n_val / 3)))
