"""The one schema of training options: frozen dataclasses whose fields carry their help, flag, section and choices.

Everything reads it: the CLI options of `train` and `lr-find` (generated, see labelwise/cli/options.py),
``labelwise.train(**options)``, ``train --config run.yaml`` and the ``config.yaml`` each run writes.
A default exists here and nowhere else.

>>> cfg = make_config("data/", "runs/a", epochs=3, backbone="cnn-small")
>>> cfg.train.epochs, cfg.model.backbone
(3, 'cnn-small')
"""
from __future__ import annotations

import types
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from labelwise.errors import ConfigError, did_you_mean

# Help sections of `labelwise train --help`, in order.
PANELS = ("Data", "Model", "Training", "Evaluation", "Run")


def opt(default: Any, help: str, *, panel: str, flag: str | None = None, choices: tuple[str, ...] | str | None = None,
        parse: str | None = None, metavar: str | None = None) -> Any:
    """A config field. ``choices``: a tuple of values, or the name of a registry (see labelwise/training/options.py).
    ``parse``: how the CLI reads the text ("duration": 90s, 10m, 1h -> seconds; "devices": auto or a count)."""
    assert panel in PANELS, panel
    return field(default=default, metadata={"help": help, "panel": panel, "flag": flag, "choices": choices,
                                            "parse": parse, "metavar": metavar})


@dataclass(frozen=True)
class DataConfig:
    data: str = opt("", "A folder (class subfolders; labels.csv + images/; annotations/ + images/) or a CSV file.",
                    panel="Data")
    format: str = opt("auto", "Data format (auto = detected from the files).", panel="Data", choices="format")
    images: str | None = opt(None, "Folder the CSV's image names are relative to.", panel="Data")
    delimiter: str = opt("auto", "Separator between tags in a csv-tags cell; auto = whitespace, commas, semicolons or |.",
                         panel="Data")
    val_split: float | None = opt(None, "Share of images held out for validation (default 0.2, but at most 5,000 "
                                  "images: large sets keep more for training).", panel="Data")
    image_size: int | None = opt(None, "Square input side in px (default: from the images).", panel="Data")
    channels: int | None = opt(None, "Input channels (default: from the images: 1 gray, 3 colour, N bands).",
                               panel="Data")
    bands: int | str | None = opt(None, "Bands the model sees, in order, numbered from 1 as in GDAL/rasterio, e.g. "
                                  "3,2,1 = RGB of a 4-band Planet TIFF (B,G,R,NIR); --channels becomes their count "
                                  "(default: every band).", panel="Data", metavar="LIST")
    strict: bool = opt(False, "Unreadable images are an error instead of skipped.", panel="Data")
    max_pixels: int = opt(100_000_000, "Decompression-bomb cap per image, in pixels.", panel="Data")
    workers: int | None = opt(None, "Decoding threads (default: all cores).", panel="Data")
    group_by: str | None = opt(None, "CSV column, or regex on image paths (first capture group = key): images of "
                               "one group never cross a split.", panel="Data")
    cache: str = opt("auto", "Decoded-image cache, reused across runs: auto ($LABELWISE_CACHE_DIR or "
                     "~/.cache/labelwise), off, or a folder.", panel="Data")


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = opt("auto", "Backbone: see `labelwise models`, or a timm name; auto = cnn-small for tiny images "
                        "(<= 48 px), else efficientnet_lite0.", panel="Model", flag="model")
    pretrained: bool | None = opt(None, "Start from ImageNet weights (default: when they ship offline, as for "
                                  "efficientnet_lite0).", panel="Model")
    weights: str | None = opt(None, "Local .safetensors weights for the backbone.", panel="Model")
    drop_rate: float = opt(0.2, "Dropout before the head.", panel="Model")
    fusion: str = opt("early", "N-band images: early (adapted first conv) or late (RGB backbone + small CNN on the "
                      "extra bands, features joined).", panel="Model", choices=("early", "late"))
    init_from: str | None = opt(None, "Start from an earlier run's weights (its folder): the head too when the labels "
                                "match, else the backbone only; that run's backbone unless --model is given.",
                                panel="Model", metavar="RUN")


DEFAULT_EPOCHS = 10
TIME_LIMITED_MAX_EPOCHS = 100  # --time-limit without --epochs: the budget decides, up to this many


@dataclass(frozen=True)
class TrainConfig:
    epochs: int | None = opt(None, f"Epochs (default {DEFAULT_EPOCHS}; with --time-limit, as many as fit, at most "
                             f"{TIME_LIMITED_MAX_EPOCHS}).", panel="Training")
    batch_size: int | None = opt(None, "Images per step (default: the backbone's, 256 for cnn-small but at most about "
                                 "1/32 of the training images, at least 64; else 64; see `labelwise models`).",
                                 panel="Training")
    lr: float | None = opt(None, "Peak learning rate, reached after warm-up (default: the backbone's recipe, scaled to the "
                           "batch; else the optimizer's, see --optimizer).", panel="Training")
    optimizer: str = opt("auto", "Optimizer (auto = the backbone's recipe on sets large enough for it, see "
                         "`labelwise models`; else AdamW).", panel="Training", choices="optimizer")
    momentum: float = opt(0.9, "sgd / rmsprop momentum.", panel="Training")
    nesterov: bool = opt(True, "sgd: Nesterov momentum.", panel="Training")
    weight_decay: float | None = opt(None, "Weight decay, never on norms and biases (default: the optimizer's: sgd "
                                     "5e-4, the others 0.01).", panel="Training")
    scheduler: str = opt("cosine", "Learning-rate schedule.", panel="Training", choices="scheduler")
    step_size: int = opt(10, "step: epochs between decays; plateau: patience in epochs.", panel="Training")
    gamma: float = opt(0.1, "LR decay factor for step / plateau.", panel="Training")
    warmup_epochs: float = opt(0.5, "Linear warm-up, in epochs (cosine, step, constant).", panel="Training")
    freeze_epochs: int = opt(0, "Train the head alone for N epochs, then everything.", panel="Training")
    backbone_lr_mult: float = opt(0.1, "Backbone LR = --lr x this after unfreezing (with --freeze-epochs).",
                                  panel="Training")
    frozen_stages: int | None = opt(None, "Keep a pretrained backbone's stem and first N blocks frozen while fine-tuning "
                                    "(no backward through them: 2.2x the training speed of EfficientNet-Lite0 at 224 "
                                    "px with 3). Default: auto (see `labelwise models`); 0 trains every layer.",
                                    panel="Training")
    grad_clip: float | None = opt(None, "Clip the gradient norm to this.", panel="Training")
    early_stopping: int | None = opt(None, "Stop after N epochs without improvement of the monitored metric.",
                                     panel="Training")
    loss: str = opt("auto", "Loss (auto = bce for multi-label, ce for multi-class).", panel="Training", choices="loss")
    label_smoothing: float | None = opt(None, "Label smoothing (default 0.1 for multi-class cross-entropy, 0 for "
                                        "multi-label).", panel="Training")
    class_weights: str = opt("none", "auto: weight rare labels up; none.", panel="Training", choices=("none", "auto"))
    sampler: str = opt("none", "balanced: over-sample images carrying rare labels.", panel="Training",
                       choices=("none", "balanced"))
    max_empty_fraction: float | None = opt(None, "Multi-label: at most this share of drawn images has no label.",
                                           panel="Training")
    augment: str = opt("default", "Augmentation preset.", panel="Training", choices="augment")
    vflip: bool = opt(False, "Vertical flips too (satellite, microscopy, plants).", panel="Training")
    mixup: float = opt(0.0, "MixUp with Beta(A, A), e.g. 0.2; 0 = off.", panel="Training")
    cutmix: float = opt(0.0, "CutMix with Beta(A, A), e.g. 1.0; 0 = off.", panel="Training")
    seed: int = opt(0, "Seed of the split, the initialisation and the augmentation.", panel="Training")
    strategy: str = opt("finetune", "finetune (train everything), linear-probe (embed once with the frozen pretrained "
                        "backbone, train the head: seconds), auto (picks from the data size and --time-limit).",
                        panel="Training", choices=("finetune", "linear-probe", "auto"))
    time_limit_s: float | None = opt(None, "Stop after this long, e.g. 90s, 10m, 1h.", panel="Training",
                                     flag="time-limit", parse="duration", metavar="DURATION")
    folds: int = opt(1, "K-fold cross-validation: K models, out-of-fold predictions, their ensemble as the bundle.",
                     panel="Training")
    monitor: str | None = opt(None, "Metric that picks the best epoch (default map / accuracy).", panel="Evaluation")
    threshold_objective: str = opt("f1", "What per-class thresholds maximise: f1, precision@P or recall@R.",
                                   panel="Evaluation")
    threshold: float | None = opt(None, "One global cut-off instead of tuned per-class ones.", panel="Evaluation")
    at_least_one: bool = opt(False, "Multi-label: always predict the most likely label.", panel="Evaluation")
    accelerator: str = opt("auto", "auto, cpu, gpu.", panel="Run")
    devices: int | str = opt("auto", "Devices (processes) per node, e.g. 2.", panel="Run", parse="devices")
    distributed: str = opt("auto", "Lightning strategy for several processes, e.g. ddp.", panel="Run")
    num_nodes: int = opt(1, "Machines taking part (with --distributed ddp).", panel="Run")
    precision: str = opt("auto", "auto (mixed precision where measured to be faster: GPUs, and cnn-small on CPUs "
                         "with bf16 units, AMX or AVX512_BF16), 32, bf16-mixed, 16-mixed.", panel="Run",
                         choices=("auto", "32", "bf16-mixed", "16-mixed"))
    logger: str = opt("", "Experiment loggers beside history.csv, comma-separated: csv, tensorboard, mlflow (e.g. "
                      "tensorboard,mlflow; the last two need pip install labelwise[loggers]).", panel="Run")
    logger_dir: str | None = opt(None, "Folder the loggers write to (default RUN/logs; MLflow: a local store in it).",
                                 panel="Run")
    tracking_uri: str | None = opt(None, "MLflow tracking URI instead of the local store, e.g. http://127.0.0.1:5000.",
                                   panel="Run")
    overwrite: bool = opt(False, "Replace the run in --out even when it was trained on other data, or write into a "
                          "non-empty folder labelwise did not make.", panel="Run")

    @property
    def max_epochs(self) -> int:
        """--epochs as given; unset: DEFAULT_EPOCHS, or with --time-limit as many as fit (the first epochs' time plans
        the rest, see LitClassifier._plan_for_budget), at most TIME_LIMITED_MAX_EPOCHS."""
        if self.epochs is not None:
            return self.epochs
        return TIME_LIMITED_MAX_EPOCHS if self.time_limit_s else DEFAULT_EPOCHS


SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


@dataclass(frozen=True)
class RunConfig:
    out: str = "runs/run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: Path) -> None:
        from labelwise.io import atomic_write_text

        atomic_write_text(Path(path), self.to_yaml())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "config", lines: Mapping[str, int] | None = None
                  ) -> "RunConfig":
        """Build from the nested shape of config.yaml; unknown keys and wrong types name the key (and line)."""
        lines = lines or {}
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            where = _where(source, lines, key)
            if key in SECTIONS:
                if value is None:
                    value = {}
                if not isinstance(value, Mapping):
                    raise ConfigError(f"{where}: '{key}' must be a mapping of options, got {value!r}")
                kwargs[key] = _build(SECTIONS[key], value, source, lines, key)
            elif key == "out":
                kwargs[key] = str(value)
            else:
                raise ConfigError(f"{where}: unknown section {key!r}{did_you_mean(key, ['out', *SECTIONS])}; "
                                  f"a config has: out, {', '.join(SECTIONS)}")
        return cls(**kwargs)

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            node = yaml.compose(text)
            d = yaml.safe_load(text) or {}
        except OSError as e:
            raise ConfigError(f"cannot read configuration {path}: {e.strerror or e}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: expected a mapping of sections (out, data, model, train)")
        return cls.from_dict(d, str(path), _key_lines(node))

    def with_(self, **sections: Any) -> "RunConfig":
        return replace(self, **sections)


def option_fields() -> list[tuple[str, Any]]:
    """(section, dataclass field) for every option, in schema order."""
    return [(section, f) for section, cls in SECTIONS.items() for f in fields(cls)]


def field_choices(cls: type, name: str) -> tuple[str, ...]:
    """The fixed choices of a field (e.g. ``field_choices(TrainConfig, "precision")``)."""
    choices = next(f for f in fields(cls) if f.name == name).metadata["choices"]
    assert isinstance(choices, tuple), f"{cls.__name__}.{name} takes its choices from a registry"
    return choices


def make_config(data: str | Path | None = None, out: str | Path | None = None, *, base: RunConfig | None = None,
                **options: Any) -> RunConfig:
    """A RunConfig from flat options (``epochs=3, backbone="cnn-small"``) over ``base`` (default: all defaults).

    Values are type-checked; an unknown option raises ConfigError with a did-you-mean.
    """
    cfg = base or RunConfig()
    owners = {f.name: section for section, f in option_fields()}
    updates: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    if data is not None:
        updates["data"]["data"] = str(data)
    for key, value in options.items():
        if key not in owners:
            raise ConfigError(f"unknown option {key!r}{did_you_mean(key, owners)}; options: {', '.join(sorted(owners))}")
        updates[owners[key]][key] = value
    sections = {}
    for name, values in updates.items():
        current = asdict(getattr(cfg, name))
        current.update(values)
        sections[name] = _build(SECTIONS[name], current, "options", {}, name, flat=True)
    return replace(cfg, out=str(out) if out is not None else cfg.out, **sections)


def parse_duration(text: str, option: str = "--time-limit") -> float:
    """'90', '90s', '10m', '1.5h' -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    t = str(text).strip().lower()
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise ConfigError(f"{option} {text!r}: use a number of seconds or e.g. 90s, 10m, 1h") from None
    if not value > 0:
        raise ConfigError(f"{option} {text!r} must be positive")
    return value


def flag_of(f: Any) -> str:
    return "--" + (f.metadata.get("flag") or f.name.replace("_", "-"))


# --- type checking -------------------------------------------------------------------------------

def _build(cls: type, values: Mapping[str, Any], source: str, lines: Mapping[str, int], section: str,
           flat: bool = False):
    known = {f.name: f for f in fields(cls)}
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = key if flat else f"{section}.{key}"
        where = _where(source, lines, f"{section}.{key}")
        if key not in known:
            raise ConfigError(f"{where}: unknown option {name!r}{did_you_mean(key, known)}; "
                              f"{section} options: {', '.join(known)}")
        label = flag_of(known[key]) if flat else name
        out[key] = _coerce(value, hints[key], f"{where}: {label}" if not flat else label)
    return cls(**out)


def _coerce(value: Any, tp: Any, what: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (int, float, bool, str, X | None, int | str)."""
    args = typing.get_args(tp) if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union else (tp,)
    if value is None:
        if type(None) in args:
            return None
        raise ConfigError(f"{what}: a value is required (got nothing)")
    for t in args:
        if t is bool and isinstance(value, bool):
            return value
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if t is str and isinstance(value, (str, Path)):
            return str(value)
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}
    wanted = " or ".join(names[t] for t in args if t in names)
    raise ConfigError(f"{what}: expected {wanted}, got {value!r}")


def _where(source: str, lines: Mapping[str, int], key: str) -> str:
    line = lines.get(key)
    return f"{source}, line {line}" if line else source


def _key_lines(node: Any) -> dict[str, int]:
    """'section.key' -> 1-based line of the key in the YAML text (for error messages)."""
    found: dict[str, int] = {}
    if not isinstance(node, yaml.MappingNode):
        return found
    for k, v in node.value:
        found[str(k.value)] = k.start_mark.line + 1
        if isinstance(v, yaml.MappingNode):
            for k2, _ in v.value:
                found[f"{k.value}.{k2.value}"] = k2.start_mark.line + 1
    return found


def check_choices(cfg: RunConfig, registries: Mapping[str, Iterable[str]]) -> None:
    """Every choice option holds one of its choices (``registries`` maps a registry name to its names)."""
    for section, f in option_fields():
        choices = f.metadata.get("choices")
        if choices is None:
            continue
        value = getattr(getattr(cfg, section), f.name)
        allowed = tuple(registries[choices]) if isinstance(choices, str) else choices
        if value == "auto" and f.default == "auto":
            continue
        if value not in allowed:
            raise ConfigError(f"{flag_of(f)} {value!r} is not known; choose one of {', '.join(allowed)}"
                              + did_you_mean(value, allowed))
