"""BatchNorm folded into convolutions for inference: same probabilities, fewer passes."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from labelwise.infer.engines import TorchEngine
from labelwise.models.backbones import create_backbone
from labelwise.models.classifier import model_probs
from labelwise.models.fold import fold_batchnorm


def _with_running_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, as after training."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.1)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)
    return model.eval()


def test_folding_cnn_small_keeps_its_outputs_and_removes_every_batchnorm():
    model = _with_running_stats(create_backbone("cnn-small", in_chans=1))
    before = [p.detach().clone() for p in model.parameters()]
    folded, n = fold_batchnorm(model)
    assert n == 7
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the original is untouched
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    x = torch.rand(8, 1, 28, 28)
    with torch.inference_mode():
        ref, out = model(x), folded(x)
    assert ref.abs().max() > 0.1  # a real signal, not zeros on both sides
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_only_a_conv_directly_followed_by_a_plain_batchnorm_is_folded():
    act_bn = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.ReLU(), nn.BatchNorm2d(4))  # bn after ReLU
    grouped = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(5))  # does not match (never built this way)
    for model in (act_bn, grouped):
        folded, n = fold_batchnorm(model.eval())
        assert n == 0 and any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())


def test_the_torch_engine_predicts_with_the_folded_copy_and_keeps_the_trained_network():
    from labelwise.models.classifier import Classifier

    torch.manual_seed(0)
    model = Classifier("cnn-small", 4, in_chans=1)
    nn.init.normal_(model.head.weight, std=0.5)  # the head starts at zero: give the logits a spread
    _with_running_stats(model, seed=1)
    pixels = np.random.default_rng(0).integers(0, 256, (16, 1, 28, 28), dtype=np.uint8)
    with torch.inference_mode():
        ref = model_probs(model, pixels, multilabel=False)
        engine = TorchEngine(model, multilabel=False)
        got = engine.probs(pixels)
    assert engine.model is model  # Grad-CAM and features read the network as trained
    assert not any(isinstance(m, nn.BatchNorm2d) for m in engine.fast.modules())
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert ref.max() > 0.3 and (got.argmax(1) == ref.argmax(1)).all()
