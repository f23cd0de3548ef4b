"""--logger csv,tensorboard,mlflow: a short real training run, its logs read back with TensorBoard's
EventAccumulator and MLflow's client API (and the CSV logger's metrics.csv)."""
from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import labelwise
from labelwise.data.demo import build_multiclass
from labelwise.errors import ConfigError
from labelwise.training.loggers import parse_loggers

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("loggers")
    data = build_multiclass(root / "data", 8, split="train", seed=0)
    result = labelwise.train(data, root / "run", backbone="cnn-small", epochs=2, batch_size=16, cache="off",
                             logger="csv,tensorboard,mlflow", progress=False)
    return result.run_dir


def test_tensorboard_event_files_hold_the_curves(logged_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    versions = list((logged_run / "logs" / "run").glob("version_*"))
    assert len(versions) == 1
    acc = EventAccumulator(str(versions[0]))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"val_accuracy", "val_loss", "train_loss_epoch", "lr", "final_val_accuracy"} <= tags, tags
    assert len(acc.Scalars("val_accuracy")) == 2 and len(acc.Scalars("train_loss_epoch")) == 2
    assert acc.Scalars("lr")[0].value > 0
    hparams = yaml.safe_load((versions[0] / "hparams.yaml").read_text())
    assert hparams["train"]["epochs"] == 2 and hparams["model"]["backbone"] == "cnn-small"


def test_mlflow_local_store_holds_params_metrics_and_final_scores(logged_run, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads its file store only with this

    client = MlflowClient(tracking_uri=(logged_run / "logs" / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("labelwise")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_name == "run" and run.info.status == "FINISHED"
    assert run.data.params["train/epochs"] == "2" and run.data.params["model/backbone"] == "cnn-small"
    assert len(client.get_metric_history(run.info.run_id, "val_accuracy")) == 2
    assert len(client.get_metric_history(run.info.run_id, "train_loss_epoch")) == 2
    import json

    final = json.loads((logged_run / "metrics.json").read_text())["model"]["accuracy"]
    assert run.data.metrics["final_val_accuracy"] == pytest.approx(final)


def test_csv_logger_and_history_both_written(logged_run):
    with open(next((logged_run / "logs" / "csv").glob("version_*/metrics.csv")), newline="") as f:
        rows = list(csv.DictReader(f))
    assert any(r.get("val_accuracy") for r in rows) and any(r.get("final_val_accuracy") for r in rows)
    assert (logged_run / "history.csv").read_text().count("\n") == 3  # header + 2 epochs, as without loggers


def test_logger_names_and_missing_packages_are_plain_errors(monkeypatch, tmp_path):
    assert parse_loggers(" tensorboard , csv,csv") == ("tensorboard", "csv") and parse_loggers("") == ()
    with pytest.raises(ConfigError, match="did you mean 'tensorboard'"):
        parse_loggers("tensorbord")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install labelwise\[loggers\]"):
        parse_loggers("csv,mlflow")
    proc = subprocess.run([sys.executable, "-m", "labelwise", "train", str(tmp_path), "--logger", "mlfow"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "--logger" in proc.stderr and "Traceback" not in proc.stderr
