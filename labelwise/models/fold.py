"""BatchNorm folded into the convolution before it, for inference.

In eval mode a BatchNorm is a per-channel affine map, so ``conv -> bn`` equals one convolution with
rescaled weights and a bias (``torch.nn.utils.fusion.fuse_conv_bn_eval``). Folding removes one full
pass over every activation map: cnn-small's step profile puts BatchNorm at ~20% of the time, and
at 28 px the network runs ~1.2x faster folded (``bench/predict_speed.py``). The probabilities
change only by float rounding (< 1e-5; tested).

Only a ``Conv2d`` followed directly by a plain ``BatchNorm2d`` inside an ``nn.Sequential`` is folded:
there the order of the forward pass is the order of the children. Anything else (timm's
``BatchNormAct2d``, which also applies an activation, batch statistics, a conv with groups that do
not match) is left as it is, so folding never changes what a network computes.

>>> from labelwise.models.backbones import SmallCNN
>>> folded, n = fold_batchnorm(SmallCNN(in_chans=1).eval())
>>> n
7
"""
from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d and bn.track_running_stats
            and bn.running_mean is not None and bn.num_features == conv.out_channels)


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, int]:
    """A copy of ``model`` (in eval mode) with every foldable conv -> BatchNorm pair merged; the count."""
    folded = copy.deepcopy(model).eval()
    count = 0
    for seq in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = seq._modules[first], seq._modules[second]
            if _foldable(conv, bn):
                seq._modules[first] = fuse_conv_bn_eval(conv, bn)
                seq._modules[second] = nn.Identity()
                count += 1
    return folded, count
