"""The run directory / model bundle: atomic writes, save and load.

``predict``, ``evaluate``, ``export`` and ``serve`` need only ``model.safetensors`` (weights, no
pickle) and ``model.json`` (everything needed to rebuild and feed the model).
"""
from __future__ import annotations

import csv
import io
import json
import os
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import BundleError
from .labels import LabelSpace

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def library_versions() -> dict[str, str]:
    import lightning
    import timm
    import torchvision

    from . import __version__

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

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "task": self.labels.task,
            "labels": list(self.labels.names),
            "backbone": self.backbone,
            "input": {"channels": self.in_chans, "size": self.image_size, "range": "0-1 (the model normalises)",
                      "mean": list(self.mean), "std": list(self.std), "resize": "squash to size x size"},
            "thresholds": [float(t) for t in self.thresholds],
            "at_least_one": self.at_least_one,
            "drop_rate": self.drop_rate,
            "train_label_freq": [float(f) for f in self.train_label_freq],
            "train_most_common_set": list(self.train_most_common_set),
            "seed": self.seed,
            "versions": self.versions or {},
            "members": list(self.members),
            "fusion": self.fusion,
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
                       members=tuple(str(m) for m in d.get("members", ())), fusion=str(d.get("fusion", "early")))
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


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file that must hold an object; BundleError naming the file otherwise."""
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BundleError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise BundleError(f"{path}: expected a JSON object")
    return d


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
    from .models.classifier import Classifier

    meta = read_meta(run_dir)
    if meta.backbone == "ensemble":
        from .ensemble import Ensemble

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
