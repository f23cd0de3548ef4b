"""The run directory / model bundle: atomic writes, save and load.

``predict``, ``evaluate``, ``export`` and ``serve`` need only ``model.safetensors`` (weights, no
pickle) and ``model.json`` (everything needed to rebuild and feed the model).
"""
from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labelwise.data.band_scaling import PLAIN, PixelSpec
from labelwise.version import __version__
from labelwise.errors import BundleError
from labelwise.io import atomic_write_bytes, read_json_object, write_json
from labelwise.labels import LabelSpace
from labelwise.models.classifier import Classifier
from labelwise.models.ensemble import Ensemble

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"


def library_versions() -> dict[str, str]:
    import lightning
    import timm
    import torchvision


    return {"labelwise": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "timm": timm.__version__, "lightning": lightning.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


@dataclass(frozen=True)
class ModelMeta:
    """Everything in model.json: how to rebuild the network and feed it."""

    labels: LabelSpace
    backbone: str
    in_chans: int
    image_size: int  # px, square
    thresholds: tuple[float, ...]  # per label (multi-label); ignored for multi-class
    at_least_one: bool = False
    drop_rate: float = 0.0
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    train_label_freq: tuple[float, ...] = ()  # share of training images carrying each label
    train_most_common_set: tuple[str, ...] = ()  # the most frequent label set in training
    seed: int = 0
    versions: dict | None = None
    members: tuple[str, ...] = ()  # backbone of each member when backbone == "ensemble"
    fusion: str = "early"
    # the training augmentation (--augment, --vflip): test-time augmentation uses only views the model saw;
    # None = not recorded (bundles written before labelwise recorded it)
    augment: str | None = None
    vflip: bool | None = None
    # the bands (--bands) and the per-band scaling of high-bit samples every decode for this model applies;
    # PLAIN (all bands, x / 257) for bundles written before labelwise stored them
    pixel_spec: PixelSpec = PLAIN

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "task": self.labels.task,
            "labels": list(self.labels.names),
            "backbone": self.backbone,
            "input": {"channels": self.in_chans, "size": self.image_size, "range": "0-1 (the model normalises)",
                      "mean": list(self.mean), "std": list(self.std), "resize": "squash to size x size",
                      **self.pixel_spec.to_dict()},
            "thresholds": [float(t) for t in self.thresholds],
            "at_least_one": self.at_least_one,
            "drop_rate": self.drop_rate,
            "train_label_freq": [float(f) for f in self.train_label_freq],
            "train_most_common_set": list(self.train_most_common_set),
            "seed": self.seed,
            "versions": self.versions or {},
            "members": list(self.members),
            "fusion": self.fusion,
            "train_augmentation": {"preset": self.augment, "vflip": self.vflip},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str) -> "ModelMeta":
        try:
            if d.get("format_version") != FORMAT_VERSION:
                raise BundleError(f"{source}: format_version {d.get('format_version')!r} is not supported "
                                  f"(this labelwise reads {FORMAT_VERSION})")
            labels = LabelSpace(tuple(d["labels"]), d["task"])
            inp = d["input"]
            thresholds = tuple(float(t) for t in d.get("thresholds") or [0.5] * len(labels))
            if len(thresholds) != len(labels):
                raise BundleError(f"{source}: {len(thresholds)} thresholds for {len(labels)} labels")
            return cls(labels=labels, backbone=str(d["backbone"]), in_chans=int(inp["channels"]),
                       image_size=int(inp["size"]), thresholds=thresholds,
                       at_least_one=bool(d.get("at_least_one", False)), drop_rate=float(d.get("drop_rate", 0.0)),
                       mean=tuple(inp.get("mean", ())), std=tuple(inp.get("std", ())),
                       train_label_freq=tuple(d.get("train_label_freq", ())),
                       train_most_common_set=tuple(d.get("train_most_common_set", ())),
                       seed=int(d.get("seed", 0)), versions=d.get("versions"),
                       members=tuple(str(m) for m in d.get("members", ())), fusion=str(d.get("fusion", "early")),
                       augment=(d.get("train_augmentation") or {}).get("preset"),
                       vflip=(d.get("train_augmentation") or {}).get("vflip"), pixel_spec=PixelSpec.from_dict(inp))
        except BundleError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise BundleError(f"{source}: malformed model.json ({type(e).__name__}: {e}); "
                              "re-create the bundle with `labelwise train`") from None


def save_model(run_dir: Path, model: torch.nn.Module, meta: ModelMeta) -> None:
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(Path(run_dir) / WEIGHTS_FILE, save(state))
    write_json(Path(run_dir) / META_FILE, meta.to_dict())


def read_meta(run_dir: Path) -> ModelMeta:
    run_dir = Path(run_dir)
    path = run_dir / META_FILE
    if not run_dir.is_dir():
        raise BundleError(f"{run_dir}: no such run directory; pass the --out folder of `labelwise train`")
    if not path.is_file():
        raise BundleError(f"{path}: missing; a run directory needs model.json and model.safetensors")
    return ModelMeta.from_dict(read_json_object(path), str(path))


def read_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """Load weights from safetensors only; anything else (a pickle) is refused, never executed."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(run_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise BundleError(f"{path}: missing; a run directory needs model.json and model.safetensors")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise BundleError(f"{path}: not a valid safetensors file ({e}); labelwise never loads pickled "
                          "weights — re-export the model with `labelwise train`") from None


def load_model(run_dir: Path) -> tuple[torch.nn.Module, ModelMeta]:
    """Rebuild the classifier from model.json and load model.safetensors into it (eval mode)."""

    meta = read_meta(run_dir)
    if meta.backbone == "ensemble":

        if not meta.members:
            raise BundleError(f"{Path(run_dir) / META_FILE}: an ensemble bundle must list its members")
        model = Ensemble([Classifier(b, len(meta.labels), in_chans=meta.in_chans, pretrained=False,
                                     drop_rate=meta.drop_rate, fusion=meta.fusion) for b in meta.members],
                         meta.labels.multilabel)
    else:
        model = Classifier(meta.backbone, len(meta.labels), in_chans=meta.in_chans, pretrained=False,
                           drop_rate=meta.drop_rate, fusion=meta.fusion)
    state = read_weights(run_dir)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise BundleError(f"{Path(run_dir) / WEIGHTS_FILE}: weights do not fit backbone {meta.backbone!r} "
                          f"with {len(meta.labels)} labels ({str(e).splitlines()[0]})") from None
    model.eval()
    return model, meta
