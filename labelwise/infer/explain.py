"""Class-activation maps (Grad-CAM): where in an image the model found the evidence for one label.

Grad-CAM (Selvaraju et al. 2017) weights the channels of a backbone's last spatial feature map by
the mean gradient of the label's logit with respect to them, sums them and keeps the positive
part. It needs nothing from the architecture but a spatial feature map, so it works for every
backbone labelwise trains: cnn-small, efficientnet_lite0 and any convolutional timm model (the
layer is found by running the model once), late fusion (the RGB and the extra-band branch each
give a map; their sum is the label's map, as their features are summed in the logit) and
ensembles (the members' normalised maps are averaged). A multi-label image gets one map per label
asked for; maps are (H, W) float arrays in [0, 1] at the model's input size.

>>> maps = class_activation_maps(model, pixels, [(0, 2), (0, 5), (1, 2)])   # doctest: +SKIP
>>> maps.shape                                                              # doctest: +SKIP
(3, 224, 224)
>>> explain_images("runs/demo", ["a.jpg"], "maps/")                          # doctest: +SKIP
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from labelwise.models.classifier import model_probs
from labelwise.data import images
from labelwise.data.band_scaling import PLAIN, PixelSpec
from labelwise.data.decoded import decode_all
from labelwise.errors import ModelError
from labelwise.io import atomic_write_bytes, write_csv
from labelwise.models.bundle import load_model
from labelwise.models.ensemble import Ensemble

OVERLAY_ALPHA = 0.5  # share of the colour map in an overlay
MIN_OVERLAY_SIDE = 224  # px: tiny images (28 px) are enlarged so that the map can be read
BATCH = 32  # (image, label) pairs per forward/backward pass
MIN_CELLS = 7  # the map is taken from the last feature map at least this many cells a side (see _target_layer)


def class_activation_maps(model: nn.Module, pixels: np.ndarray, pairs: Sequence[tuple[int, int]],
                          batch_size: int = BATCH) -> np.ndarray:
    """Grad-CAM of ``pairs`` [(row in pixels, label index)] -> float32 (len(pairs), S, S) in [0, 1].

    ``pixels``: uint8 (N, C, S, S) as the model's predictor decodes them. Each map is scaled so that
    its peak is 1 (all zeros when no region speaks for the label).
    """
    model.eval()
    pairs = [(int(i), int(c)) for i, c in pairs]
    size = pixels.shape[-2:]
    out = np.zeros((len(pairs), *size), dtype=np.float32)
    for start in range(0, len(pairs), batch_size):
        part = pairs[start:start + batch_size]
        rows = torch.as_tensor([i for i, _ in part], dtype=torch.long)
        classes = torch.as_tensor([c for _, c in part], dtype=torch.long)
        x = torch.from_numpy(np.ascontiguousarray(pixels[rows.numpy()])).float().div_(255.0)
        out[start:start + len(part)] = _maps(model, x, classes).numpy()
    return out


def _maps(model: nn.Module, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """(B, C, S, S) floats in [0, 1], one class per image -> (B, S, S) maps, each max-normalised."""
    if isinstance(model, Ensemble):
        return torch.stack([_maps(m, x, classes) for m in model.members]).mean(0)
    branches = [m for m in (getattr(model, "backbone", None), getattr(model, "extra", None)) if m is not None]
    if not branches:
        raise ModelError(f"no class-activation maps for a {type(model).__name__}: expected a labelwise Classifier")
    targets = [_target_layer(b, model, x) for b in branches]
    acts: list[torch.Tensor] = []
    hooks = [t.register_forward_hook(lambda _m, _i, o: acts.append(o)) for t in targets]
    try:
        with torch.enable_grad(), torch.autocast(device_type=x.device.type, enabled=False):
            xi = x.clone().requires_grad_(True)  # gives the activations a graph without touching the weights
            logits = model(xi)
            score = logits.gather(1, classes.view(-1, 1)).sum()
            grads = torch.autograd.grad(score, acts)
    finally:
        for h in hooks:
            h.remove()
    cam = torch.zeros(x.shape[0], *x.shape[-2:])
    for a, g in zip(acts, grads):
        weights = g.mean(dim=(2, 3), keepdim=True)  # per channel: how much the logit gains from it
        m = torch.relu((weights * a).sum(1, keepdim=True)).detach().float()
        cam += nn.functional.interpolate(m, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    return torch.where(peak > 1e-11, cam / peak, torch.zeros_like(cam))


_TARGETS: dict[int, nn.Module] = {}


def _target_layer(branch: nn.Module, model: nn.Module, x: torch.Tensor) -> nn.Module:
    """The module of ``branch`` whose output is its last spatial feature map (found by one forward pass)."""
    key = id(branch)
    if key in _TARGETS and any(m is _TARGETS[key] for m in branch.modules()):
        return _TARGETS[key]
    seen: list[tuple[nn.Module, int]] = []

    def record(module, _inputs, output):
        if isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[-1] * output.shape[-2] > 1:
            seen.append((module, min(output.shape[-2:])))
    hooks = [m.register_forward_hook(record) for m in branch.modules() if m is not branch]
    try:
        with torch.inference_mode():
            model(x[:1])
    finally:
        for h in hooks:
            h.remove()
    if not seen:
        raise ModelError(f"{type(branch).__name__} has no spatial feature map (a transformer?, or images too small "
                         "for its stride); class-activation maps need a convolutional backbone")
    # Hooks fire in execution order: the last spatial output is the one the pooling reads. On small
    # inputs (a 48 px image leaves cnn-small 6x6 cells, each seeing most of the image) that map cannot
    # localise anything, so take the last one at least MIN_CELLS a side, Grad-CAM's own 7x7 at 224 px.
    fine = [m for m, side in seen if side >= MIN_CELLS]
    _TARGETS[key] = fine[-1] if fine else seen[-1][0]
    return _TARGETS[key]


# ---------------------------------------------------------------------------------------- overlays

def colorize(cam: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) uint8 with a perceptually ordered map (dark blue -> red -> yellow)."""
    stops = np.array([[0, 0, 80], [30, 60, 200], [0, 180, 200], [250, 210, 40], [230, 40, 30]], dtype=np.float32)
    pos = np.clip(cam, 0, 1) * (len(stops) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(stops) - 2)
    frac = (pos - lo)[..., None]
    return (stops[lo] * (1 - frac) + stops[lo + 1] * frac).round().astype(np.uint8)


def overlay(base: Image.Image, cam: np.ndarray, alpha: float = OVERLAY_ALPHA) -> Image.Image:
    """``base`` (any mode) with ``cam`` (any size, [0, 1]) stretched over it in colour; RGB out."""
    rgb = base.convert("RGB")
    heat = Image.fromarray(colorize(cam)).resize(rgb.size, Image.Resampling.BILINEAR)
    return Image.blend(rgb, heat, alpha)


def base_image(path: Path, channels: int, side: int, pixel_spec: PixelSpec = PLAIN) -> Image.Image:
    """The image as the model saw it (squashed to a square, its bands and scaling), at ``side`` px, first three
    bands shown."""
    arr = images.read_resized(path, side, channels, pixel_spec=pixel_spec)
    if arr.shape[2] < 3:
        return Image.fromarray(np.ascontiguousarray(arr[:, :, 0]), "L")
    return Image.fromarray(np.ascontiguousarray(arr[:, :, :3]), "RGB")


# ---------------------------------------------------------------------------------------- CLI helper

@dataclass
class Explanation:
    image: Path
    label: str
    probability: float
    file: Path | None  # the overlay PNG; None for an unreadable image
    error: str = ""


def explain_images(run_dir: str | Path, paths: Sequence[str | Path], out_dir: str | Path, *,
                   threshold: float | None = None, chunk: int = 64) -> list[Explanation]:
    """One overlay PNG per image and predicted label (the top label when none is predicted) in ``out_dir``,
    plus ``out_dir``/explanations.csv listing them. Returns one Explanation per PNG (or per unreadable image)."""
    from labelwise.evaluation.thresholds import apply_thresholds

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    model, meta = load_model(run_dir)
    names = list(meta.labels.names)
    cuts = np.full(len(names), threshold) if threshold is not None else np.asarray(meta.thresholds)
    side = max(meta.image_size, MIN_OVERLAY_SIDE)
    out_dir.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    results: list[Explanation] = []
    paths = [Path(p) for p in paths]
    for start in range(0, len(paths), chunk):
        part = paths[start:start + chunk]
        pixels, bad = decode_all(part, meta.image_size, meta.in_chans, pixel_spec=meta.pixel_spec)
        ok = [p for p in part if p not in bad]
        results += [Explanation(p, "", float("nan"), None, bad[p]) for p in part if p in bad]
        if not ok:
            continue
        pixels = pixels[np.array([p not in bad for p in part], dtype=bool)]
        probs = model_probs(model, pixels, meta.labels.multilabel)  # inference mode, batched
        if meta.labels.multilabel:
            hot = apply_thresholds(probs, cuts, at_least_one=meta.at_least_one)
        else:
            hot = np.zeros_like(probs, dtype=np.uint8)
            hot[np.arange(len(probs)), probs.argmax(1)] = 1
        pairs = [(i, int(c)) for i in range(len(ok)) for c in (np.flatnonzero(hot[i]) if hot[i].any()
                                                                  else [int(probs[i].argmax())])]
        maps = class_activation_maps(model, pixels, pairs)
        bases: dict[int, Image.Image] = {}  # each image decoded once at display size, whatever its label count
        for (i, c), cam in zip(pairs, maps):
            name = _unique(f"{ok[i].stem}__{_safe(names[c])}", used) + ".png"
            if i not in bases:
                bases[i] = base_image(ok[i], meta.in_chans, side, meta.pixel_spec)
            img = overlay(bases[i], cam)
            atomic_write_bytes(out_dir / name, _png(img))
            results.append(Explanation(ok[i], names[c], float(probs[i, c]), out_dir / name))
    write_csv(out_dir / "explanations.csv", ["image", "label", "probability", "file", "error"],
              [[str(r.image), r.label, "" if r.file is None else f"{r.probability:.6f}",
                r.file.name if r.file else "", r.error] for r in results])
    return results


@torch.inference_mode()
def _png(img: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "label"


def _unique(stem: str, used: set[str]) -> str:
    name, n = stem, 2
    while name in used:
        name, n = f"{stem}_{n}", n + 1
    used.add(name)
    return name
