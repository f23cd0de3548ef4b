"""Backbone registry, offline EfficientNet-Lite0 weights, channel adaptation, weight files."""
from __future__ import annotations

import time

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from skimage import data

from labelwise.errors import ModelError
from labelwise.models import backbones, effnet_lite
from labelwise.models.backbones import adapt_first_conv_weight, channel_stats, create_backbone, get_spec, list_backbones, load_weights, register

CATS = {281, 282, 285}  # ImageNet tabby, tiger cat, Egyptian cat
ESPRESSO = 967


def to_tensor(img) -> torch.Tensor:
    """HWC uint8 -> (1, C, 224, 224) float in [0, 1]: shorter side to 256, centre crop 224."""
    x = torch.from_numpy(img).float().div(255)
    x = x.permute(2, 0, 1)[None] if x.ndim == 3 else x[None, None]
    h, w = x.shape[-2:]
    scale = 256 / min(h, w)
    x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bilinear", antialias=True)
    top, left = (x.shape[-2] - 224) // 2, (x.shape[-1] - 224) // 2
    return x[..., top:top + 224, left:left + 224]


def normalise(x: torch.Tensor, spec, in_chans: int) -> torch.Tensor:
    mean, std = channel_stats(spec, in_chans)
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


@pytest.fixture(scope="module")
def imagenet_lite0():
    return effnet_lite.efficientnet_lite0_imagenet()


@pytest.fixture(scope="module")
def cat() -> torch.Tensor:
    return to_tensor(data.chelsea())


def gray(x: torch.Tensor) -> torch.Tensor:
    return (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)


# --------------------------------------------------------------------------- registry

@pytest.mark.parametrize("name", list_backbones())
@pytest.mark.parametrize("in_chans", [1, 3, 4])
def test_every_backbone_builds_and_trains(name, in_chans):
    model = create_backbone(name, in_chans=in_chans)
    x = torch.rand(2, in_chans, 64, 64)
    feats = model(x)
    assert feats.shape == (2, model.num_features)
    feats.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert get_spec(name).min_size <= 64


def test_cnn_small_takes_tiny_inputs():
    model = create_backbone("cnn-small", in_chans=1).eval()
    assert model(torch.rand(3, 1, 16, 16)).shape == (3, 192)
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 192)


def test_cnn_small_has_no_pretrained_weights():
    with pytest.raises(ModelError, match="no pretrained weights"):
        create_backbone("cnn-small", pretrained=True)


def test_duplicate_register_refused():
    with pytest.raises(ModelError, match="already registered"):
        register("cnn-small", backbones.SmallCNN, mean=(0.5,) * 3, std=(0.5,) * 3,
                 pretrained="none", min_size=16, description="again")


def test_unknown_name_suggests():
    with pytest.raises(ModelError, match=r"did you mean 'efficientnet_lite0'"):
        create_backbone("efficientnet-lite0")
    with pytest.raises(ModelError, match=r"did you mean .*'resnet18'"):
        get_spec("resnt18")


def test_timm_names_work():
    spec = get_spec("resnet18")
    assert spec.pretrained == "timm" and spec.mean == backbones.IMAGENET_MEAN
    model = create_backbone("resnet18", in_chans=4)
    assert model(torch.rand(2, 4, 32, 32)).shape == (2, model.num_features)


def test_channel_stats():
    spec = get_spec("resnet18")
    mean, std = channel_stats(spec, 1)
    assert mean == pytest.approx((sum(spec.mean) / 3,)) and std == pytest.approx((sum(spec.std) / 3,))
    mean, std = channel_stats(spec, 5)
    assert mean[:3] == spec.mean and mean[3:] == pytest.approx((sum(spec.mean) / 3,) * 2)
    assert channel_stats(spec, 3) == (spec.mean, spec.std)


# --------------------------------------------------------------------------- offline EfficientNet-Lite0

def test_converted_lite0_is_an_imagenet_model(imagenet_lite0, cat):
    spec = get_spec("efficientnet_lite0")
    assert spec.pretrained == "builtin-offline" and spec.mean == (0.5, 0.5, 0.5)
    coffee = to_tensor(data.coffee())
    with torch.no_grad():
        logits = imagenet_lite0(normalise(torch.cat([cat, coffee]), spec, 3))
    top1 = logits.argmax(1).tolist()
    assert top1[0] in CATS and top1[1] == ESPRESSO


def test_lite0_weights_expect_half_mean_half_std(imagenet_lite0, cat):
    """Why mean=std=0.5: the stem BatchNorm's running mean fits natural images normalised that way
    far better than with the ImageNet mean/std (measured: 0.35 vs 0.53 in running-std units)."""
    images = torch.cat([cat, to_tensor(data.coffee()), to_tensor(data.astronaut()), to_tensor(data.rocket())])
    bn = imagenet_lite0.bn1

    def misfit(mean, std) -> float:
        x = (images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        with torch.no_grad():
            act = imagenet_lite0.conv_stem(x)
        return ((act.mean((0, 2, 3)) - bn.running_mean).abs().mean() / bn.running_var.sqrt().mean()).item()
    assert misfit(effnet_lite.MEAN, effnet_lite.STD) < 0.8 * misfit(backbones.IMAGENET_MEAN, backbones.IMAGENET_STD)


def test_pretrained_backbone_matches_imagenet_features(imagenet_lite0, cat):
    backbone = create_backbone("efficientnet_lite0", pretrained=True).eval()
    x = normalise(cat, get_spec("efficientnet_lite0"), 3)
    with torch.no_grad():
        torch.testing.assert_close(backbone(x), imagenet_lite0.forward_head(imagenet_lite0.forward_features(x), pre_logits=True))


# --------------------------------------------------------------------------- channel adaptation

def test_adapt_first_conv_weight():
    w = torch.randn(8, 3, 3, 3)
    w4 = adapt_first_conv_weight(w, 4)
    assert torch.equal(w4[:, :3], w) and torch.allclose(w4[:, 3], w.mean(1))
    assert torch.allclose(adapt_first_conv_weight(w, 1)[:, 0], w.sum(1))
    assert adapt_first_conv_weight(w, 2).shape == (8, 2, 3, 3)
    assert torch.equal(adapt_first_conv_weight(w, 3), w)


def imagenet_lite0_with(in_chans: int) -> torch.nn.Module:
    model = timm.create_model(effnet_lite.TIMM_ARCH, num_classes=1000, in_chans=in_chans)
    load_weights(model, effnet_lite.imagenet_state_dict(), source="test")
    return model.eval()


def test_four_channel_model_on_rgb_plus_gray(cat):
    model = imagenet_lite0_with(4)
    x = normalise(torch.cat([cat, gray(cat)], 1), get_spec("efficientnet_lite0"), 4)
    with torch.no_grad():
        probs = model(x).softmax(1)[0]
    assert probs.argmax().item() in CATS
    assert probs[list(CATS)].sum() > 0.5


def test_one_channel_model_on_gray_cat(cat):
    model = imagenet_lite0_with(1)
    x = normalise(gray(cat), get_spec("efficientnet_lite0"), 1)
    with torch.no_grad():
        assert model(x).argmax().item() in CATS


def test_pretrained_lite0_with_extra_channels_keeps_rgb_filters():
    rgb = create_backbone("efficientnet_lite0", pretrained=True)
    four = create_backbone("efficientnet_lite0", in_chans=4, pretrained=True)
    assert torch.equal(four.conv_stem.weight[:, :3], rgb.conv_stem.weight)


# --------------------------------------------------------------------------- weight files

def test_weights_file_round_trip(tmp_path):
    source = create_backbone("cnn-small", in_chans=1).eval()
    with torch.no_grad():  # move BN statistics off their defaults so the test sees them travel
        source(torch.rand(8, 1, 28, 28))
    # A classifier-style file: backbone. prefix, a head and normalisation buffers to ignore.
    sd = {f"backbone.{k}": v for k, v in source.state_dict().items()}
    sd |= {"head.weight": torch.zeros(10, 256), "head.bias": torch.zeros(10), "mean": torch.zeros(1), "std": torch.ones(1)}
    path = tmp_path / "w.safetensors"
    save_file(sd, str(path))
    loaded = create_backbone("cnn-small", in_chans=1, weights=path).eval()
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))


def test_weights_file_adapts_channels_for_timm_models(tmp_path):
    rgb = create_backbone("resnet18")
    path = tmp_path / "r18.safetensors"
    save_file(rgb.state_dict() | {"fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}, str(path))
    four = create_backbone("resnet18", in_chans=4, weights=path)
    assert torch.equal(four.conv1.weight[:, :3], rgb.conv1.weight)


def test_weights_file_that_does_not_fit(tmp_path):
    path = tmp_path / "small.safetensors"
    save_file(create_backbone("cnn-small").state_dict(), str(path))
    with pytest.raises(ModelError, match=r"small\.safetensors.*(missing|unexpected) keys"):
        create_backbone("efficientnet_lite0", weights=path)


@pytest.mark.parametrize("name", ["model.pth", "model.pt", "model.ckpt", "pytorch_model.bin"])
def test_pickles_refused(tmp_path, name):
    path = tmp_path / name
    torch.save({}, path)
    with pytest.raises(ModelError, match="safetensors"):
        create_backbone("cnn-small", weights=path)


def test_missing_or_corrupt_weights_file(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        create_backbone("cnn-small", weights=tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="not a readable"):
        create_backbone("cnn-small", weights=bad)


# --------------------------------------------------------------------------- timm pretrained, offline

def test_timm_pretrained_unreachable_fails_with_advice(monkeypatch):
    monkeypatch.setattr(backbones, "_cached_timm_file", lambda cfg: None)
    monkeypatch.setattr(backbones, "_reachable", lambda host, **kw: False)
    with pytest.raises(ModelError, match=r"'resnet18' need a download .* --weights PATH"):
        create_backbone("resnet18", pretrained=True)


def test_hf_hub_offline_env_means_unreachable(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert backbones._reachable("huggingface.co") is False


def test_timm_pretrained_offline_fails_fast(monkeypatch):
    """The real check (no patched network) on an offline machine: a clear error within seconds."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(backbones, "_cached_timm_file", lambda cfg: None)
    start = time.monotonic()
    if backbones._reachable("huggingface.co"):
        pytest.skip("the hub is reachable here; this test is about offline machines")
    with pytest.raises(ModelError, match="not reachable"):
        create_backbone("mobilenetv3_small_100", pretrained=True)
    assert time.monotonic() - start < 15
