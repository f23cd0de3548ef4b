"""Ctrl-C / SIGTERM during `labelwise train` (real signals to a real process): the best checkpoint so far becomes a
usable bundle marked interrupted, `--resume` continues the same run, and a second Ctrl-C stops at once."""
from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labelwise.infer.predict import Predictor
from labelwise.training.lightning import load_checkpoint

pytestmark = pytest.mark.slow
MANY_EPOCHS = 500  # never reached: the signal ends the run


def tiny_folder(root: Path, n_per_class: int = 40, size: int = 16) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(("a", "b", "c")):
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            img = rng.integers(0, 60, (size, size), dtype=np.uint8)
            img[k * size // 3:(k + 1) * size // 3] += 150
            Image.fromarray(img).save(root / name / f"{name}_{i}.png")
    return root


def _cmd(data: Path, run: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "labelwise", "train", str(data), "--out", str(run), "--model", "cnn-small",
            "--no-pretrained", "--quiet", "--cache", "off", "--batch-size", "16", *extra]


def _history(run: Path) -> list[dict]:
    if not (run / "history.csv").is_file():
        return []
    with (run / "history.csv").open() as f:
        return list(csv.DictReader(f))


def _start_and_wait_for_a_checkpoint(data: Path, run: Path) -> subprocess.Popen:
    proc = subprocess.Popen(_cmd(data, run, "--epochs", str(MANY_EPOCHS)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not (run / "checkpoints" / "last.ckpt").is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    return proc


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return tiny_folder(tmp_path_factory.mktemp("interrupt") / "data")


@pytest.fixture(scope="module")
def stopped_run(data, tmp_path_factory):
    """A training stopped by SIGINT after its first checkpoint; a second training into the same --out tried meanwhile."""
    run = tmp_path_factory.mktemp("sigint") / "run"
    proc = _start_and_wait_for_a_checkpoint(data, run)
    second = subprocess.run(_cmd(data, run, "--epochs", "1"), capture_output=True, text=True, timeout=300)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    return run, proc.returncode, " ".join((out + err).split()), second


def test_sigint_writes_a_usable_bundle_marked_interrupted(stopped_run):
    run, code, output, _ = stopped_run
    assert code == 130, output[-3000:]
    assert "Traceback" not in output and "interrupted:" in output and "--resume" in output
    metrics = json.loads((run / "metrics.json").read_text())
    done = len(_history(run))
    assert metrics["run"]["interrupted"] is True
    assert 1 <= done < MANY_EPOCHS and metrics["run"]["epochs"] == done
    assert 1 <= metrics["run"]["best_checkpoint_epoch"] <= done
    assert any("stopped by SIGINT" in n for n in metrics["notes"])
    predictor = Predictor.load(run)  # the bundle is complete and loads
    assert predictor.labels.names == ("a", "b", "c")
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == done - 1  # the resume point


def test_a_second_training_into_the_same_out_is_refused_while_one_runs(stopped_run):
    _, _, _, second = stopped_run
    err = " ".join(second.stderr.split())
    assert second.returncode == 2 and "being written by another labelwise process" in err, err[-2000:]


def test_resume_continues_the_interrupted_run(stopped_run, data):
    run, _, _, _ = stopped_run
    done = len(_history(run))
    r = subprocess.run(_cmd(data, run, "--epochs", str(done + 2), "--resume", "--no-report"), capture_output=True,
                       text=True, timeout=600)
    output = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 0, output[-3000:]
    assert "trained 2 epochs" in output
    assert [int(row["epoch"]) for row in _history(run)] == list(range(1, done + 3))
    metrics = json.loads((run / "metrics.json").read_text())
    assert "interrupted" not in metrics["run"] and metrics["run"]["epochs"] == done + 2
    Predictor.load(run)


def test_sigterm_stops_gracefully_too(data, tmp_path):
    run = tmp_path / "run"
    proc = _start_and_wait_for_a_checkpoint(data, run)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["run"]["interrupted"] is True
    assert any("stopped by SIGTERM" in n for n in metrics["notes"])
    Predictor.load(run)


def test_a_second_ctrl_c_stops_at_once(data, tmp_path):
    run = tmp_path / "run"
    proc = _start_and_wait_for_a_checkpoint(data, run)
    proc.send_signal(signal.SIGINT)
    seen = []
    for line in proc.stderr:  # wait until the first one was handled, then press again
        seen.append(line)
        if "press Ctrl-C again" in line:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    lines = [line for line in seen + err.splitlines() if line.strip()]
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and lines[-1].startswith("interrupted")
    # whatever it managed to write is whole: both bundle files or neither
    assert (run / "model.json").is_file() == (run / "model.safetensors").is_file()


def test_the_guard_defers_the_first_signal_and_raises_on_the_second():
    """In-process, deterministic: the first SIGINT only records the request (training stops at the next batch),
    the second raises at once; Lightning's sys.exit(1) for a KeyboardInterrupt inside fit becomes the interrupt."""
    import os

    from labelwise.training import interrupt

    before = signal.getsignal(signal.SIGINT)
    with interrupt.stop_on_signal() as guard:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs between bytecodes
        assert interrupt.requested() == "SIGINT" and guard.count == 1
        with pytest.raises(interrupt.StopRequested):
            interrupt.StopOnSignal().on_train_batch_start(None, None, None, 0)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert interrupt.requested() is None and signal.getsignal(signal.SIGINT) is before
    with pytest.raises(KeyboardInterrupt):
        with interrupt.stop_on_signal() as guard:
            guard.count = 2
            sys.exit(1)
