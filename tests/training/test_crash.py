"""Crash safety: SIGKILL mid-training, then --resume completes; every file loads; pickles are refused."""
from __future__ import annotations

import csv
import json
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from labelwise.data.demo import build_multiclass, fashion_available
from labelwise.training.lightning import load_checkpoint
from labelwise.errors import BundleError
from labelwise.infer.predict import Predictor

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not fashion_available(), reason="Debian's dataset-fashion-mnist is not installed")]
EPOCHS = 4


def _train_cmd(data, run, *extra):
    return [sys.executable, "-m", "labelwise", "train", str(data), "--out", str(run), "--epochs", str(EPOCHS),
            "--model", "cnn-small", "--no-pretrained", "--quiet", "--batch-size", "32", *extra]


def _history(run):
    path = run / "history.csv"
    if not path.is_file():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    data = build_multiclass(root / "data", n_per_class=150, seed=4, source="fashion")
    run = root / "run"
    proc = subprocess.Popen(_train_cmd(data, run), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while len(_history(run)) < 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # into the second epoch
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return root, data, run


def test_resume_after_sigkill_completes_all_epochs(killed_run):
    root, data, run = killed_run
    done_before = len(_history(run))
    assert 1 <= done_before < EPOCHS, "the kill should land mid-training"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    saved = load_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] + 1  # epochs the checkpoint holds
    r = subprocess.run(_train_cmd(data, run, "--resume"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"trained {EPOCHS - saved} epochs" in " ".join((r.stdout + r.stderr).split())  # only the epochs left
    epochs = [int(row["epoch"]) for row in _history(run)]
    assert epochs == list(range(1, EPOCHS + 1))
    # every file in the run directory loads
    yaml.safe_load((run / "config.yaml").read_text())
    for name in ("model.json", "metrics.json"):
        json.loads((run / name).read_text())
    for ckpt in (run / "checkpoints").glob("*.ckpt"):
        assert "state_dict" in load_checkpoint(ckpt)
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == EPOCHS - 1
    Predictor.load(run)


def test_last_checkpoint_is_written_every_epoch_even_when_the_metric_does_not_improve(killed_run, tmp_path):
    # lr=0: the validation metric is the same every epoch, so only the first epoch is ever "best"; the
    # resume checkpoint must still follow every epoch (Lightning's save_last alone did not).
    _, data, _ = killed_run
    run = tmp_path / "flat"
    r = subprocess.run(_train_cmd(data, run, "--lr", "0", "--no-report"), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == EPOCHS - 1
    assert load_checkpoint(run / "checkpoints" / "best.ckpt")["epoch"] == 0
    assert f"trained {EPOCHS} epochs" in " ".join((r.stdout + r.stderr).split())


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_pickle_payload_in_a_checkpoint_is_refused_and_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "last.ckpt"
    buf = pickle.dumps({"state_dict": {}, "evil": _Payload()})
    bad.write_bytes(buf)
    with pytest.raises(BundleError, match="plain checkpoint"):
        load_checkpoint(bad)
    assert not (tmp_path / "PWNED").exists()
    torch.save({"epoch": 1, "state_dict": {"w": torch.zeros(2)}}, tmp_path / "ok.ckpt")
    assert load_checkpoint(tmp_path / "ok.ckpt")["epoch"] == 1
