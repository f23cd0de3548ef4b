"""Output where people script it: decoder chatter becomes per-file reasons, plain epoch lines when stdout is
not a terminal, unclipped tables, predict --format jsonl, evaluate --json, Predictor on in-memory images."""
from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from labelwise.data import images
from labelwise.data.demo import build_multiclass
from labelwise.errors import ImageError
from labelwise.infer.predict import Predictor, list_images
from labelwise.labels import LabelSpace
from labelwise.models.bundle import ModelMeta, save_model
from labelwise.models.classifier import Classifier

LABELS = ("trouser", "bag", "sneaker")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("b") / "run"
    torch.manual_seed(0)
    model = Classifier("cnn-small", len(LABELS), in_chans=3)
    with torch.no_grad():
        model.head.weight.normal_(0, 0.5)
    save_model(run, model.eval(), ModelMeta(LabelSpace(LABELS, "multilabel"), "cnn-small", 3, 32, (0.5,) * 3,
                                            mean=(0.5,) * 3, std=(0.5,) * 3))
    return run


@pytest.fixture(scope="module")
def odd(tmp_path_factory) -> Path:
    """Files that make Pillow warn and tifffile log, beside ones that fail and ones that are fine."""
    folder = tmp_path_factory.mktemp("odd")
    arr = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff\x12\x01")
    (folder / "bad_exif.jpg").write_bytes(buf.getvalue())  # Pillow: UserWarning "Corrupt EXIF data"
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, extratags=[(65000, "s", 0, "x" * 10, False)])
    data = bytearray(buf.getvalue())
    at = data.find((65000).to_bytes(2, "little"))
    data[at + 8:at + 12] = (10**8).to_bytes(4, "little")  # the tag's value offset points past the end
    (folder / "bad_offset.tif").write_bytes(bytes(data))  # tifffile logs an error, still decodes
    (folder / "notes.png").write_text("not an image")
    Image.fromarray(arr).save(folder / "ok.png")
    return folder


def test_decoder_chatter_never_reaches_the_terminal(bundle, odd, tmp_path):
    out = tmp_path / "p.csv"
    proc = subprocess.run([sys.executable, "-m", "labelwise", "predict", str(bundle), str(odd), "--out", str(out),
                           "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr  # before: Pillow's UserWarning (2 lines) and tifffile's message
    rows = {Path(r.split(",")[0]).name: r for r in out.read_text().splitlines()[1:]}
    assert rows["notes.png"].count("not an image") and rows["bad_exif.jpg"].endswith(",")  # decoded, no error


def test_chatter_before_a_failure_joins_the_reason():
    def noisy_failure():
        with images._guard("x.tif"):
            warnings.warn("Corrupt EXIF data", UserWarning)
            logging.getLogger("tifffile").warning("<TiffTag 65000> invalid value offset")
            raise ValueError("cannot reshape")
    with pytest.raises(ImageError) as info:
        noisy_failure()
    text = str(info.value)
    assert "Corrupt EXIF data" in text and "invalid value offset" in text and text.endswith(": x.tif")


def test_predictor_accepts_paths_pil_arrays_and_bytes(bundle, odd):
    p = Predictor.load(bundle)
    path = odd / "ok.png"
    img = Image.open(path)
    arr = np.asarray(img)
    got = p.predict([path, str(path), path.read_bytes(), img, arr, arr.astype(np.float32) / 255.0, b"junk"])
    base = got[0].probs
    for r in got[1:6]:
        assert not r.error and all(abs(r.probs[k] - base[k]) < 1e-6 for k in base), r
    assert got[6].error and got[6].path == "<bytes 6>"
    with pytest.raises(Exception, match="not an image"):
        p.predict([3.5])


def test_training_prints_one_plain_line_per_epoch_when_piped(tmp_path):
    data = build_multiclass(tmp_path / "data", 6, split="train", seed=0)
    proc = subprocess.run([sys.executable, "-m", "labelwise", "train", str(data), "--out", str(tmp_path / "run"),
                           "--model", "cnn-small", "--epochs", "2", "--cache", "off", "--no-report"],
                          capture_output=True, text=True)  # stdout is a pipe, as under `| cat` or in CI
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]
    assert all("train_loss" in line and "val_accuracy" in line and "elapsed" in line for line in lines)
    table = [line for line in proc.stdout.splitlines() if "baseline" in line]
    assert table and "…" not in proc.stdout  # nothing clipped at 80 columns

    run = tmp_path / "run"
    ev = subprocess.run([sys.executable, "-m", "labelwise", "evaluate", str(run), str(data), "--json"],
                        capture_output=True, text=True)
    assert ev.returncode == 0, ev.stderr
    result = json.loads(ev.stdout)
    assert result["task"] == "multiclass" and "accuracy" in result["model"]
    assert "Held-out scores" in (run / "README.md").read_text()

    pred = subprocess.run([sys.executable, "-m", "labelwise", "predict", str(run), str(data), "--out",
                           str(tmp_path / "p.jsonl"), "--quiet"], capture_output=True, text=True)
    assert pred.returncode == 0, pred.stderr
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(rows) == len(list_images([data])) and set(rows[0]) == {"image", "labels", "probabilities", "error"}
