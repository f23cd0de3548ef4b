"""A model bundle in timm's Hugging Face Hub layout: RUN/hub/config.json + RUN/hub/model.safetensors.

timm (and so anything built on it) loads the folder as it is, and its own eval transform feeds it
the way labelwise does (squash-resize with the bilinear filter, then mean/std):

>>> import timm                                                                        # doctest: +SKIP
>>> model = timm.create_model("local-dir:runs/demo/hub", pretrained=True).eval()      # doctest: +SKIP
>>> cfg = timm.data.resolve_data_config({}, model=model)                             # doctest: +SKIP
>>> x = timm.data.create_transform(**cfg)(Image.open("a.png").convert("RGB"))[None]  # doctest: +SKIP
>>> probs = model(x).sigmoid()   # multi-label (softmax for multi-class: see labelwise.task)  # doctest: +SKIP

What is where:
  config.json        architecture, num_classes, label_names, pretrained_cfg (input_size, mean, std,
                     interpolation, crop_pct 1.0 with crop_mode "squash"), model_args (in_chans), and
                     under the one key "labelwise" (ignored by timm) the whole model.json: task,
                     per-label thresholds, input spec.
  model.safetensors  timm's own key names: labelwise's ``backbone.*`` without the prefix, its
                     ``head.*`` as timm's classifier (``classifier.*``, ``fc.*``, ``head.fc.*``). The
                     normalisation buffers move into pretrained_cfg mean/std: timm normalises in the
                     transform, not in the network.

Every folder is checked before it is written: a timm model built from config.json loads the
weights strictly and gives the labelwise model's logits on a random batch.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from labelwise.errors import BundleError, ModelError
from labelwise.io import atomic_write_bytes, read_json_object, write_json
from labelwise.models import effnet_lite
from labelwise.models.backbones import list_backbones
from labelwise.models.classifier import Classifier

HUB_DIR = "hub"  # inside a run directory
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
EXTRA_KEY = "labelwise"  # the one top-level key of config.json that timm ignores
VERIFY_TOLERANCE = 1e-4  # max |logit difference| between the timm model and labelwise's
# Registered backbones that are timm architectures under another name.
_TIMM_NAMES = {"efficientnet_lite0": effnet_lite.TIMM_ARCH}


class NotExpressible(ModelError):
    """The model is not one timm network (cnn-small, late fusion, an ensemble)."""


def timm_architecture(backbone: str, fusion: str = "early", members: tuple[str, ...] = ()) -> str:
    """The timm architecture that is exactly this labelwise model, or NotExpressible saying why."""
    if backbone == "ensemble":
        raise NotExpressible(f"this bundle is an ensemble of {len(members) or 'several'} models (k-fold or "
                             "`labelwise ensemble`); timm loads one network. Export one member instead, e.g. "
                             "`labelwise export RUN/fold_1 --format timm`")
    if fusion == "late":
        raise NotExpressible("--fusion late joins two networks (an RGB backbone and a CNN on the extra bands); "
                             "timm has no such architecture. Train with --fusion early for a timm-loadable model")
    if backbone in _TIMM_NAMES:
        return _TIMM_NAMES[backbone]
    if backbone in list_backbones():
        raise NotExpressible(f"backbone {backbone!r} is labelwise's own network, not a timm architecture; "
                             "train with --model efficientnet_lite0 or any timm model name for a timm-loadable model")
    import timm

    return timm.models.split_model_name_tag(backbone)[0]


def _reference(arch: str, num_classes: int, in_chans: int) -> nn.Module:
    import timm

    return timm.create_model(arch, pretrained=False, num_classes=num_classes, in_chans=in_chans)


def _classifier_prefix(reference: nn.Module) -> str:
    name = reference.pretrained_cfg.get("classifier") or "classifier"
    return name[0] if isinstance(name, (list, tuple)) else name


def to_timm_state_dict(model: Classifier, reference: nn.Module) -> dict[str, torch.Tensor]:
    """labelwise keys -> timm keys (``backbone.X`` -> ``X``, ``head.*`` -> the timm classifier)."""
    prefix = _classifier_prefix(reference)
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if key.startswith("backbone."):
            out[key[len("backbone."):]] = value
        elif key.startswith("head."):
            out[f"{prefix}.{key[len('head.'):]}"] = value
        elif key not in ("mean", "std"):  # the normalisation goes to pretrained_cfg
            raise NotExpressible(f"weight {key!r} has no place in a timm model")
    return {k: v.detach().cpu().contiguous() for k, v in out.items()}


def from_timm_state_dict(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The inverse of to_timm_state_dict, without mean/std (the caller adds them)."""
    out = {}
    for key, value in state.items():
        out[f"head.{key[len(prefix) + 1:]}" if key.startswith(prefix + ".") else f"backbone.{key}"] = value
    return out


def hub_config(meta_dict: dict[str, Any], arch: str, reference: nn.Module) -> dict[str, Any]:
    """config.json: what timm reads, plus labelwise's model.json under EXTRA_KEY."""
    inp = meta_dict["input"]
    c, s = int(inp["channels"]), int(inp["size"])
    labels = list(meta_dict["labels"])
    pretrained_cfg = {
        "input_size": [c, s, s],
        "fixed_input_size": False,
        "interpolation": "bilinear",  # Pillow's bilinear, as labelwise's decoder (antialiased when shrinking)
        "crop_pct": 1.0,
        "crop_mode": "squash",  # resize to size x size without keeping the aspect ratio: no crop, as labelwise
        "mean": [float(m) for m in inp["mean"]],
        "std": [float(v) for v in inp["std"]],
        "num_classes": len(labels),
        "first_conv": reference.pretrained_cfg.get("first_conv"),
        "classifier": _classifier_prefix(reference),
        "license": "other",
        "tag": "labelwise",
    }
    return {
        "architecture": arch,
        "num_classes": len(labels),
        "num_features": int(getattr(reference, "num_features", 0)),
        "label_names": labels,
        "global_pool": "avg",
        "pretrained_cfg": pretrained_cfg,
        "model_args": {"in_chans": c},
        EXTRA_KEY: {**meta_dict, "activation": "sigmoid" if meta_dict["task"] == "multilabel" else "softmax",
                    "note": "timm returns logits: apply the activation, then the thresholds (multi-label) "
                            "or the argmax (multi-class)"},
    }


def write_hub(out_dir: Path, model: Classifier, meta_dict: dict[str, Any]) -> float:
    """Write config.json + model.safetensors into ``out_dir``; returns the max logit difference found
    when checking the folder's timm model against ``model`` (NotExpressible / ModelError when it fails)."""
    from safetensors.torch import save

    arch = timm_architecture(str(meta_dict["backbone"]), str(meta_dict.get("fusion", "early")),
                             tuple(meta_dict.get("members", ())))
    n, c, s = len(meta_dict["labels"]), int(meta_dict["input"]["channels"]), int(meta_dict["input"]["size"])
    reference = _reference(arch, n, c)
    state = to_timm_state_dict(model, reference)
    try:
        reference.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise NotExpressible(f"backbone {meta_dict['backbone']!r}: weights do not fit timm's {arch!r} "
                             f"({str(e).splitlines()[0][:200]})") from None
    diff = _verify(model, reference, c, s)
    out_dir = Path(out_dir)
    atomic_write_bytes(out_dir / WEIGHTS_FILE, save(state, metadata={"format": "pt"}))
    write_json(out_dir / CONFIG_FILE, hub_config(meta_dict, arch, reference))
    return diff


@torch.inference_mode()
def _verify(model: Classifier, reference: nn.Module, c: int, s: int) -> float:
    model.eval(), reference.eval()
    x = torch.rand(2, c, s, s, generator=torch.Generator().manual_seed(0))
    mean = model.mean.detach().cpu().view(1, c, 1, 1)
    std = model.std.detach().cpu().view(1, c, 1, 1)
    ours = model.cpu().float()(x)
    theirs = reference((x - mean) / std)
    diff = float((ours - theirs).abs().max())
    if not diff <= VERIFY_TOLERANCE * max(1.0, float(ours.abs().max())):
        raise ModelError(f"the timm model differs from labelwise's by {diff:.2g} in logits; please report this")
    return diff


def is_hub_dir(path: str | Path) -> bool:
    """A folder written by write_hub (config.json carrying labelwise's extras)."""
    cfg = Path(path) / CONFIG_FILE
    if not cfg.is_file() or (Path(path) / "model.json").is_file():
        return False
    try:
        return EXTRA_KEY in json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def read_hub(path: str | Path) -> tuple[dict[str, Any], Classifier]:
    """(model.json dict, Classifier in eval mode) from a hub folder. Weights: safetensors only."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    cfg = read_json_object(path / CONFIG_FILE)
    meta = cfg.get(EXTRA_KEY)
    if not isinstance(meta, dict):
        raise BundleError(f"{path / CONFIG_FILE}: no '{EXTRA_KEY}' section; this folder was not written by "
                          "labelwise (load it with timm.create_model('local-dir:...') instead)")
    try:
        state = load_file(str(path / WEIGHTS_FILE))
    except (SafetensorError, OSError, ValueError) as e:
        raise BundleError(f"{path / WEIGHTS_FILE}: not a readable safetensors file ({e})") from None
    prefix = str(cfg.get("pretrained_cfg", {}).get("classifier") or "classifier")
    model = Classifier(str(meta["backbone"]), len(meta["labels"]), in_chans=int(meta["input"]["channels"]),
                       pretrained=False, drop_rate=float(meta.get("drop_rate", 0.0)))
    sd = from_timm_state_dict(state, prefix)
    pc = cfg["pretrained_cfg"]
    sd["mean"] = torch.tensor(pc["mean"], dtype=torch.float32).view(model.mean.shape)
    sd["std"] = torch.tensor(pc["std"], dtype=torch.float32).view(model.std.shape)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise BundleError(f"{path / WEIGHTS_FILE}: weights do not fit backbone {meta['backbone']!r} "
                          f"({str(e).splitlines()[0][:200]})") from None
    return meta, model.eval()
