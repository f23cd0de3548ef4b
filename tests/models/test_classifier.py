"""Classifier: normalisation inside the model, state-dict round trips, weight files."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from labelwise.errors import ModelError
from labelwise.models.backbones import list_backbones
from labelwise.models.classifier import Classifier


def trained_a_little(model: Classifier, in_chans: int) -> Classifier:
    """One SGD step in train mode, so weights, head and BN statistics are all off their init."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    model(torch.rand(4, in_chans, 32, 32)).square().mean().backward()
    opt.step()
    with torch.no_grad():
        model.head.weight.normal_()
    return model.eval()


@pytest.mark.parametrize("name", list_backbones())
def test_state_dict_round_trip(name):
    source = trained_a_little(Classifier(name, num_classes=5, in_chans=4, drop_rate=0.2), 4)
    state = source.state_dict()
    assert state["mean"].shape == (1, 4, 1, 1) and state["std"].shape == (1, 4, 1, 1)
    fresh = Classifier(name, num_classes=5, in_chans=4, drop_rate=0.2)
    fresh.load_state_dict(state)
    fresh.eval()
    x = torch.rand(3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(fresh(x), source(x))


def test_normalisation_lives_in_the_model():
    model = Classifier("efficientnet_lite0", num_classes=3).eval()
    assert model.mean.flatten().tolist() == [0.5, 0.5, 0.5] and model.std.flatten().tolist() == [0.5, 0.5, 0.5]
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.features(x), model.backbone((x - 0.5) / 0.5))


def test_shapes_and_zero_head():
    model = Classifier("cnn-small", num_classes=10, in_chans=1)
    x = torch.rand(2, 1, 28, 28)
    assert model.features(x).shape == (2, 192)
    logits = model(x)
    assert logits.shape == (2, 10) and torch.equal(logits, torch.zeros(2, 10))  # zero-initialised head
    assert model.mean.shape == (1, 1, 1, 1)


def test_backbone_weights_from_a_saved_classifier(tmp_path):
    """A classifier's state dict (backbone. prefix, head, mean/std) is a valid --weights file."""
    source = trained_a_little(Classifier("cnn-small", num_classes=7, in_chans=3), 3)
    path = tmp_path / "classifier.safetensors"
    save_file(source.state_dict(), str(path))
    target = Classifier("cnn-small", num_classes=2, in_chans=3, weights=path).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(target.features(x), source.features(x))


def test_bad_arguments():
    with pytest.raises(ModelError):
        Classifier("cnn-small", num_classes=0)
    with pytest.raises(ModelError):
        Classifier("cnn-small", num_classes=2, drop_rate=1.0)
    with pytest.raises(ModelError, match="did you mean"):
        Classifier("cnn_small", num_classes=2)
