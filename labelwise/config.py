"""Frozen configuration dataclasses with every default written out, and YAML in/out.

A run's resolved configuration is saved as ``config.yaml`` in its run directory; ``RunConfig.load``
reads it back and rejects unknown keys with a "did you mean ...?" hint.
"""
from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from labelwise.errors import ConfigError
from labelwise.io import atomic_write_text


@dataclass(frozen=True)
class DataConfig:
    data: str = ""
    format: str = "auto"  # auto | folder | csv-tags | csv-onehot | annotations
    images: str | None = None  # folder that CSV image names are relative to
    delimiter: str = "auto"  # separates tags in a csv-tags cell; auto = whitespace , ; |
    val_split: float = 0.2  # fraction of images held out for validation
    image_size: int | None = None  # px, square; None = chosen from the images (see data.module)
    channels: int | None = None  # None = from the images: 1 for all-gray sets, 3 for colour, N for N-band
    strict: bool = False  # an unreadable image is an error instead of being skipped
    max_pixels: int = 100_000_000  # decompression-bomb cap per image
    workers: int | None = None  # decoding threads; None = all cores
    group_by: str | None = None  # CSV column, or regex on image paths: one group never crosses a split
    cache: str = "auto"  # decoded-image cache: auto ($LABELWISE_CACHE_DIR or ~/.cache/labelwise) | off | a folder


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "auto"  # auto = cnn-small for tiny images (<= 48 px), else efficientnet_lite0; or any name
    pretrained: bool | None = None  # None = where weights ship offline (efficientnet_lite0); timm names download
    weights: str | None = None  # local .safetensors file for the backbone
    drop_rate: float = 0.2  # dropout before the head
    fusion: str = "early"  # N-band images: early = adapted first conv; late = RGB backbone + extra-band CNN


DEFAULT_EPOCHS = 10
TIME_LIMITED_MAX_EPOCHS = 100  # --time-limit without --epochs: the budget decides, up to this many


@dataclass(frozen=True)
class TrainConfig:
    epochs: int | None = None  # None = 10; with time_limit_s, as many as fit (at most 100)
    batch_size: int = 64
    lr: float = 2e-3  # peak learning rate, reached after warm-up
    optimizer: str = "adamw"  # adamw | adam | sgd | rmsprop | adadelta
    momentum: float = 0.9  # sgd / rmsprop
    nesterov: bool = True  # sgd
    weight_decay: float = 0.01
    scheduler: str = "cosine"  # cosine | onecycle | step | plateau | constant
    step_size: int = 10  # epochs between decays (step) / patience in epochs (plateau)
    gamma: float = 0.1  # decay factor (step, plateau)
    warmup_epochs: float = 0.5  # linear warm-up (cosine, step, constant)
    freeze_epochs: int = 0  # train the head alone first, then everything
    backbone_lr_mult: float = 0.1  # backbone LR relative to --lr once unfrozen (with --freeze-epochs)
    grad_clip: float | None = None  # max gradient norm
    early_stopping: int | None = None  # patience in epochs on the monitored metric
    loss: str = "auto"  # auto = bce (multi-label) / ce (multi-class)
    label_smoothing: float | None = None  # None = 0.1 for multi-class cross-entropy, 0 for multi-label losses
    class_weights: str = "none"  # none | auto
    sampler: str = "none"  # none | balanced (over-sample images with rare labels)
    max_empty_fraction: float | None = None  # multi-label: cap on the share of no-label images drawn
    monitor: str | None = None  # None = map (multi-label) / accuracy (multi-class)
    augment: str = "default"  # none | light | default | strong
    vflip: bool = False  # vertical flips too
    mixup: float = 0.0  # MixUp Beta(a, a); 0 = off
    cutmix: float = 0.0  # CutMix Beta(a, a); 0 = off
    threshold_objective: str = "f1"  # f1 | precision@P | recall@R
    threshold: float | None = None  # a global cut-off instead of tuned per-class thresholds
    at_least_one: bool = False  # multi-label: always predict the most likely label
    seed: int = 0
    accelerator: str = "auto"
    devices: int | str = "auto"
    strategy: str = "finetune"  # finetune | linear-probe | auto (picked from data size and time limit)
    distributed: str = "auto"  # Lightning strategy for several processes: auto | ddp | ddp_spawn ...
    num_nodes: int = 1
    precision: str = "auto"  # auto | 32 | bf16-mixed | 16-mixed (auto: see labelwise/precision.py)
    time_limit_s: float | None = None
    folds: int = 1  # > 1: k-fold cross-validation with out-of-fold predictions

    @property
    def max_epochs(self) -> int:
        """--epochs as given; unset: DEFAULT_EPOCHS, or with --time-limit as many as fit (the first epoch's
        time plans the rest, see LitClassifier._plan_for_budget), at most TIME_LIMITED_MAX_EPOCHS."""
        if self.epochs is not None:
            return self.epochs
        return TIME_LIMITED_MAX_EPOCHS if self.time_limit_s else DEFAULT_EPOCHS


@dataclass(frozen=True)
class RunConfig:
    out: str = "runs/run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: Path) -> None:

        atomic_write_text(Path(path), yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> "RunConfig":
        d = dict(d)
        sections = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            if key in sections:
                kwargs[key] = _build(sections[key], value or {}, f"{source}: {key}")
            elif key == "out":
                kwargs[key] = str(value)
            else:
                raise ConfigError(_unknown(key, ["out", *sections], source))
        return cls(**kwargs)

    @classmethod
    def load(cls, path: Path) -> "RunConfig":
        try:
            d = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read configuration {path}: {e}") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: expected a mapping of sections (data, model, train)")
        return cls.from_dict(d, str(path))

    def with_(self, **sections: Any) -> "RunConfig":
        return replace(self, **sections)


def _unknown(key: str, known: list[str], where: str) -> str:
    hint = difflib.get_close_matches(key, known, n=1)
    did = f" Did you mean {hint[0]!r}?" if hint else ""
    return f"{where}: unknown option {key!r}.{did} Known options: {', '.join(known)}"


def _build(cls: type, values: dict[str, Any], where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {values!r}")
    known = [f.name for f in fields(cls)]
    for key in values:
        if key not in known:
            raise ConfigError(_unknown(key, known, where))
    return cls(**values)


def make_config(data: str | Path, out: str | Path = "runs/run", **options: Any) -> RunConfig:
    """Build a RunConfig from flat keyword options (``epochs=3, backbone="cnn-small"``).

    An unknown option raises ConfigError with a "did you mean ...?" hint.
    """
    sections: dict[str, dict[str, Any]] = {"data": {"data": str(data)}, "model": {}, "train": {}}
    owners = {f.name: name for name, cls in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig))
              for f in fields(cls)}
    for key, value in options.items():
        if key not in owners:
            import difflib

            hint = difflib.get_close_matches(key, list(owners), n=1)
            raise ConfigError(f"unknown option {key!r}." + (f" Did you mean {hint[0]!r}?" if hint else "")
                              + f" Options: {', '.join(sorted(owners))}")
        sections[owners[key]][key] = value
    return RunConfig(out=str(out), data=DataConfig(**sections["data"]), model=ModelConfig(**sections["model"]),
                     train=TrainConfig(**sections["train"]))


