"""Experiment loggers (--logger csv,tensorboard,mlflow) through Lightning's own logger classes.

What they receive: the resolved configuration (RUN/config.yaml) as hyper-parameters, per step the
training loss, per epoch the mean training loss, the validation metrics (val_*), the training-sample
metrics (train_*) and the learning rate, and once the bundle is written the final scores at the
tuned thresholds (final_val_*). history.csv is written as always, whatever is chosen here.

Where: --logger-dir (default RUN/logs): csv/, <run name>/version_N/ for TensorBoard, mlruns/ for
MLflow (a local file store: no server needed; read it with
`MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri RUN/logs/mlruns`; --tracking-uri points
elsewhere, e.g. http://host:5000 or sqlite:///mlflow.db).

>>> parse_loggers("tensorboard, mlflow")
('tensorboard', 'mlflow')
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import yaml

from labelwise.errors import ConfigError, check_choice

LOGGERS = ("csv", "tensorboard", "mlflow")
# Python module each logger needs beyond Lightning, and the package that brings it
_NEEDS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow-skinny")}
EXPERIMENT = "labelwise"
_OPEN: dict[str, list[Any]] = {}  # run directory -> its loggers, until the final scores are logged


def parse_loggers(text: str | None) -> tuple[str, ...]:
    """'csv,tensorboard' -> ('csv', 'tensorboard'); unknown names and missing packages are ConfigErrors."""
    names = tuple(dict.fromkeys(n.strip().lower() for n in (text or "").replace(";", ",").split(",") if n.strip()))
    for name in names:
        check_choice("--logger", name, LOGGERS)
        if name in _NEEDS and importlib.util.find_spec(_NEEDS[name][0]) is None:
            raise ConfigError(f"--logger {name} needs the '{_NEEDS[name][1]}' package, which is not installed: "
                              f"pip install labelwise[loggers]")
    return names


def build_loggers(cfg: Any, run_dir: Path) -> list[Any]:
    """Lightning loggers for TrainConfig ``cfg`` (fields logger, logger_dir, tracking_uri); [] for none.
    The hyper-parameters are logged here, from RUN/config.yaml (written before training starts)."""
    names = parse_loggers(getattr(cfg, "logger", ""))
    if not names:
        return []
    from lightning.pytorch import loggers as pl_loggers

    run_dir = Path(run_dir)
    root = Path(getattr(cfg, "logger_dir", None) or run_dir / "logs")
    run_name = run_dir.resolve().name
    out: list[Any] = []
    for name in names:
        if name == "csv":
            out.append(pl_loggers.CSVLogger(save_dir=str(root), name="csv"))
        elif name == "tensorboard":
            out.append(pl_loggers.TensorBoardLogger(save_dir=str(root), name=run_name, default_hp_metric=False))
        else:
            uri = getattr(cfg, "tracking_uri", None)
            if not uri:
                uri = (root / "mlruns").resolve().as_uri()
                # MLflow 3 keeps its file store (no server, no database) in maintenance mode behind this
                # opt-in; a local store is what we want by default, so opt in (a user's own setting wins).
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            out.append(pl_loggers.MLFlowLogger(experiment_name=EXPERIMENT, run_name=run_name, tracking_uri=uri,
                                               tags={"labelwise.run_dir": str(run_dir.resolve())}))
    params = _config_params(run_dir)
    for lg in out:
        lg.log_hyperparams(params)
    _OPEN[str(run_dir.resolve())] = out
    return out


def _config_params(run_dir: Path) -> dict[str, Any]:
    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    # None is not a parameter value TensorBoard or MLflow accept: write it as text
    return {section: ({k: ("none" if v is None else v) for k, v in values.items()} if isinstance(values, dict)
                      else values) for section, values in cfg.items()}


def epoch_metrics(trainer: Any, pl_module: Any) -> None:
    """Per-epoch values Lightning does not log itself: mean training loss, train_* sample metrics, lr."""
    if not trainer.loggers or trainer.sanity_checking:
        return
    values = {"train_loss_epoch": float(pl_module.train_loss_epoch())}  # Lightning logs "epoch" (0-based) itself
    values.update({k: float(v) for k, v in getattr(pl_module, "last_train", {}).items()})
    if trainer.optimizers:
        values["lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
    for lg in trainer.loggers:
        lg.log_metrics(values, step=trainer.global_step)


def log_final(run_dir: Path, metrics: dict[str, Any]) -> None:
    """The scores written to metrics.json (validation, tuned thresholds) as final_val_*; closes the loggers."""
    loggers = _OPEN.pop(str(Path(run_dir).resolve()), [])
    if not loggers:
        return
    model = metrics.get("model", {})
    final = {f"final_val_{k}": float(v) for k, v in model.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "n" and v == v}
    for lg in loggers:
        lg.log_metrics(final, step=0)
        lg.save()
        lg.finalize("success")
