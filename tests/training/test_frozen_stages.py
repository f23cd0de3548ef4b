"""--frozen-stages: a pretrained backbone's stem and first blocks stay as pretrained while the rest fine-tunes."""
from __future__ import annotations

import pytest
import torch
from builders import shades

import labelwise
from labelwise.config import TrainConfig
from labelwise.errors import ConfigError
from labelwise.models.backbones import create_backbone
from labelwise.models.classifier import Classifier
from labelwise.models.freeze import early_stages, freeze_early, max_stages


def test_frozen_early_stages_get_no_gradient_and_keep_their_batchnorm_statistics():
    torch.manual_seed(0)
    net = create_backbone("efficientnet_lite0").train()
    assert max_stages(net) == 7 and max_stages(create_backbone("cnn-small")) == 0
    frozen = early_stages(net, 3)
    assert frozen[0] is net.conv_stem and frozen[-1] is net.blocks[2]
    n = freeze_early(net, 3)
    assert n == sum(p.numel() for m in frozen for p in m.parameters()) > 0
    stats = {k: v.clone() for k, v in net.blocks[1].state_dict().items() if "running" in k}
    net(torch.rand(4, 3, 64, 64)).sum().backward()
    assert all(p.grad is None for m in frozen for p in m.parameters())
    assert all(p.grad is not None for p in net.blocks[3].parameters())
    assert all(torch.equal(v, net.blocks[1].state_dict()[k]) for k, v in stats.items())  # eval mode: not updated
    assert freeze_early(create_backbone("cnn-small"), 3) == 0  # a network without a known stem: nothing frozen


def test_fine_tuning_keeps_the_frozen_stages_as_pretrained(tmp_path):
    data = shades(tmp_path / "data", 24, side=32)
    run = tmp_path / "run"
    labelwise.train(data, run, backbone="efficientnet_lite0", strategy="finetune", epochs=2, frozen_stages=2,
                    batch_size=8, progress=False)
    assert "frozen_stages: 2" in (run / "config.yaml").read_text()
    trained = labelwise.Predictor.load(run).model.backbone
    pretrained = Classifier("efficientnet_lite0", 2, in_chans=1, pretrained=True).backbone
    for got, ref in zip(early_stages(trained, 2), early_stages(pretrained, 2)):
        for (key, a), b in zip(got.state_dict().items(), ref.state_dict().values()):
            assert torch.equal(a, b), key
    moved = [not torch.equal(a, b) for a, b in zip(trained.blocks[4].state_dict().values(),
                                                   pretrained.blocks[4].state_dict().values())]
    assert any(moved)  # the later blocks did fine-tune


def test_auto_freezes_only_pretrained_rgb_or_gray_backbones_and_a_bad_value_is_an_error(tmp_path):
    from types import SimpleNamespace

    from labelwise.config import ModelConfig
    from labelwise.models.backbones import get_spec
    from labelwise.training.prepare import _frozen_stages

    lite = ModelConfig(backbone="efficientnet_lite0")
    auto, notes = TrainConfig(), []
    photo = SimpleNamespace(size=224, channels=3)
    assert _frozen_stages(auto, lite, photo, notes) == get_spec("efficientnet_lite0").frozen_stages > 0
    assert "frozen" in notes[0]
    assert _frozen_stages(auto, lite, SimpleNamespace(size=224, channels=4), []) == 0  # extra bands: stem trains
    assert _frozen_stages(TrainConfig(frozen_stages=1), lite, photo, []) == 1  # as given
    assert _frozen_stages(auto, ModelConfig(backbone="efficientnet_lite0", pretrained=False), photo, []) == 0
    assert _frozen_stages(TrainConfig(frozen_stages=3), ModelConfig(backbone="cnn-small"), photo, []) == 0
    with pytest.raises(ConfigError, match="--frozen-stages"):
        labelwise.train(tmp_path / "missing", tmp_path / "run", frozen_stages=-1, progress=False)


def test_a_frozen_stages_value_that_cannot_work_is_warned_about():
    from labelwise.config import ModelConfig
    from labelwise.training.prepare import _frozen_stages_warnings

    lite = ModelConfig(backbone="efficientnet_lite0")
    assert _frozen_stages_warnings(TrainConfig(), lite, 3) == []  # auto: nothing to say
    assert _frozen_stages_warnings(TrainConfig(frozen_stages=3), lite, 3) == []
    assert "has 7 blocks" in _frozen_stages_warnings(TrainConfig(frozen_stages=9), lite, 3)[0]
    assert "extra bands" in _frozen_stages_warnings(TrainConfig(frozen_stages=2), lite, 4)[0]
    assert "from scratch" in _frozen_stages_warnings(TrainConfig(frozen_stages=2), ModelConfig(backbone="cnn-small"), 1)[0]
