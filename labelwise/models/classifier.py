"""Classifier = input normalisation + backbone + linear head.

The model takes images as floats in [0, 1] and normalises them itself, with mean/std buffers
saved in its state dict: the preprocessing travels with the weights, so a bundle, an ONNX export
or a server needs nothing but [0, 1] pixels. Logits come out; the task (multi-label sigmoid or
multi-class softmax) is decided by the loss and the predictor, not here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from labelwise.errors import ModelError
from labelwise.models.backbones import channel_stats, create_backbone, get_spec

FUSIONS = ("early", "late")


class Classifier(nn.Module):
    def __init__(self, backbone: str, num_classes: int, in_chans: int = 3, pretrained: bool = False,
                 weights: str | Path | None = None, drop_rate: float = 0.0, fusion: str = "early"):
        super().__init__()
        if num_classes < 1:
            raise ModelError(f"num_classes must be at least 1, got {num_classes}")
        if not 0.0 <= drop_rate < 1.0:
            raise ModelError(f"drop_rate must be in [0, 1), got {drop_rate}")
        self.backbone_name = backbone
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.spec = get_spec(backbone)
        if fusion not in FUSIONS:
            raise ModelError(f"--fusion {fusion!r} is not known; choose one of {', '.join(FUSIONS)}")
        if fusion == "late" and in_chans <= 3:
            raise ModelError(f"--fusion late needs images with more than 3 bands (these have {in_chans}); "
                             "use the default --fusion early")
        self.fusion = fusion
        # early: one backbone whose first convolution takes every band (pretrained RGB filters kept).
        # late: the backbone sees RGB only, a small from-scratch CNN sees the extra bands, and their
        # pooled features are concatenated before the head (the rainforest report's "two networks").
        rgb_chans = 3 if fusion == "late" else in_chans
        self.backbone = create_backbone(backbone, in_chans=rgb_chans, pretrained=pretrained, weights=weights)
        self.extra = create_backbone("cnn-small", in_chans=in_chans - 3) if fusion == "late" else None
        features = self.backbone.num_features + (self.extra.num_features if self.extra is not None else 0)
        self.drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(features, num_classes)
        # Zero init: every logit starts at 0 (p = 0.5 for sigmoid, uniform for softmax), so the first
        # steps do not push random, confident predictions back into a pretrained backbone. The
        # engine may set head.bias to the label priors (log-odds) before training.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        mean, std = channel_stats(self.spec, in_chans)
        self.register_buffer("mean", torch.tensor(mean).view(1, in_chans, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, in_chans, 1, 1))

    def features(self, x: Tensor) -> Tensor:
        """(B, C, H, W) floats in [0, 1] -> pooled backbone features (B, num_features)."""
        x = (x - self.mean) / self.std
        if self.extra is None:
            return self.backbone(x)
        return torch.cat([self.backbone(x[:, :3]), self.extra(x[:, 3:])], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) floats in [0, 1] -> logits (B, num_classes)."""
        return self.head(self.drop(self.features(x)))


@torch.inference_mode()
def model_probs(model: torch.nn.Module, pixels: np.ndarray, multilabel: bool, batch_size: int = 128) -> np.ndarray:
    """uint8 array (N, C, S, S) -> probabilities (N, num_labels) float32, in eval mode."""
    model.eval()
    out = []
    for start in range(0, len(pixels), batch_size):
        x = torch.from_numpy(pixels[start:start + batch_size]).float().div_(255.0)
        logits = model(x.contiguous(memory_format=torch.channels_last))
        out.append((torch.sigmoid(logits) if multilabel else torch.softmax(logits, 1)).float().numpy())
    if not out:
        return np.zeros((0, model.head.out_features), dtype=np.float32)
    return np.concatenate(out)


