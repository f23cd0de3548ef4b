"""Export (ONNX, TorchScript) and the onnx inference engine: same outputs as PyTorch, kept up to date.

Bundles are written directly (random head, perturbed BatchNorm statistics) instead of trained: the
exports must reproduce whatever weights they are given, and this keeps the file fast. Predictions
run on real Fashion-MNIST images where Debian's package is installed, generated ones otherwise.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

import labelwise.infer.export as export_mod
from labelwise.models.bundle import WEIGHTS_FILE, ModelMeta, load_model, read_meta, save_model
from labelwise.data.demo import build_mosaics
from labelwise.errors import ConfigError, LabelwiseError
from labelwise.infer.export import ExportError, export_metadata, export_model, file_sha256, read_onnx_metadata
from labelwise.cli.export import export_command
from labelwise.labels import LabelSpace
from labelwise.models.classifier import Classifier
from labelwise.infer.predict import Predictor, list_images

ort = pytest.importorskip("onnxruntime")
TOL = 1e-4


def _write_bundle(run: Path, backbone: str, labels: LabelSpace, in_chans: int, size: int, seed: int = 0,
                  thresholds: tuple[float, ...] | None = None) -> Path:
    """A bundle with non-trivial weights: random head and BatchNorm running statistics."""
    torch.manual_seed(seed)
    model = Classifier(backbone, len(labels), in_chans=in_chans)
    with torch.no_grad():
        model.head.weight.normal_(0, 0.3)
        model.head.bias.normal_(0, 0.3)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    meta = ModelMeta(labels=labels, backbone=backbone, in_chans=in_chans, image_size=size,
                     thresholds=thresholds or tuple(np.linspace(0.3, 0.6, len(labels)).round(3)))
    save_model(run, model, meta)
    return run


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory) -> Path:
    labels = LabelSpace(("trouser", "bag", "sneaker", "dress"), "multilabel")
    return _write_bundle(tmp_path_factory.mktemp("cnn") / "run", "cnn-small", labels, in_chans=1, size=32)


@pytest.fixture(scope="module")
def lite0_run(tmp_path_factory) -> Path:
    labels = LabelSpace(("cat", "dog", "bird"), "multiclass")
    return _write_bundle(tmp_path_factory.mktemp("lite0") / "run", "efficientnet_lite0", labels, in_chans=3, size=64)


@pytest.fixture(scope="module")
def cnn_onnx(cnn_run) -> Path:
    """RUN/model.onnx of cnn_run, written by the `export` command."""
    app = typer.Typer()
    app.command()(export_command)
    result = CliRunner().invoke(app, [str(cnn_run)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "model.onnx" in result.output and "probs" in result.output
    return cnn_run / "model.onnx"


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    """40 real mosaics (or generated ones without Fashion-MNIST) plus one unreadable file."""
    root = build_mosaics(tmp_path_factory.mktemp("imgs") / "set", 40, split="test", seed=3,
                         classes=("trouser", "bag", "sneaker", "dress"))
    (root / "images" / "broken.png").write_bytes(b"not a png")
    return list_images([root / "images"])


def _torch_outputs(run: Path, *inputs: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(logits, probabilities) of the bundle's PyTorch model for each input batch."""
    model, meta = load_model(run)
    out = []
    with torch.inference_mode():
        for x in inputs:
            logits = model(torch.from_numpy(x))
            probs = torch.sigmoid(logits) if meta.labels.multilabel else torch.softmax(logits, 1)
            out.append((logits.numpy(), probs.numpy()))
    return out


def _inputs(meta: ModelMeta, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, meta.in_chans, meta.image_size, meta.image_size), dtype=np.float32)


def _check_onnx_file(run: Path, path: Path) -> None:
    meta = read_meta(run)
    # A plain session, none of labelwise's engine code: this is how a user would run the file.
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["pixels"]
    assert [o.name for o in session.get_outputs()] == ["logits", "probs"]
    batches = [_inputs(meta, n, seed=n) for n in (1, 7)]
    for x, (want_logits, want_probs) in zip(batches, _torch_outputs(run, *batches)):
        n = len(x)
        logits, probs = session.run(None, {"pixels": x})
        assert logits.shape == (n, len(meta.labels))
        np.testing.assert_allclose(logits, want_logits, atol=TOL, rtol=0)
        np.testing.assert_allclose(probs, want_probs, atol=TOL, rtol=0)


def test_onnx_export_of_cnn_small_matches_pytorch(cnn_run, cnn_onnx):
    _check_onnx_file(cnn_run, cnn_onnx)


@pytest.mark.slow
def test_onnx_export_of_efficientnet_lite0_matches_pytorch(lite0_run, tmp_path):
    result = export_model(lite0_run, "onnx", out=tmp_path / "lite0.onnx")
    assert result.path == tmp_path / "lite0.onnx" and result.exporter == "torch.export"
    assert result.max_prob_diff <= TOL
    _check_onnx_file(lite0_run, result.path)


@pytest.mark.parametrize("run_fixture", ["cnn_run", pytest.param("lite0_run", marks=pytest.mark.slow)])
def test_torchscript_export_matches_pytorch(run_fixture, request, tmp_path):
    run = request.getfixturevalue(run_fixture)
    meta = read_meta(run)
    result = export_model(run, "torchscript", out=tmp_path)
    assert result.path == tmp_path / "model.torchscript.pt"
    extra = {"labelwise.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in PyTorch, still asked for
        loaded = torch.jit.load(str(result.path), _extra_files=extra)  # our own file, just written
    assert json.loads(extra["labelwise.json"])["labelwise.labels"] == json.dumps(list(meta.labels.names))
    batches = [_inputs(meta, n, seed=10 + n) for n in (1, 7)]
    for x, (want_logits, want_probs) in zip(batches, _torch_outputs(run, *batches)):
        with torch.inference_mode():
            logits, probs = (t.numpy() for t in loaded(torch.from_numpy(x)))
        np.testing.assert_allclose(logits, want_logits, atol=TOL, rtol=0)
        np.testing.assert_allclose(probs, want_probs, atol=TOL, rtol=0)


def test_onnx_metadata_describes_the_model(cnn_run, cnn_onnx):
    props = read_onnx_metadata(cnn_onnx)
    meta = read_meta(cnn_run)
    assert props["labelwise.task"] == "multilabel"
    assert json.loads(props["labelwise.labels"]) == list(meta.labels.names)
    assert json.loads(props["labelwise.evaluation.thresholds"]) == pytest.approx(list(meta.thresholds))
    spec = json.loads(props["labelwise.input"])
    assert (spec["name"], spec["channels"], spec["size"], spec["range"]) == ("pixels", 1, 32, [0.0, 1.0])
    assert props["labelwise.weights_sha256"] == file_sha256(cnn_run / WEIGHTS_FILE)


def test_onnx_runs_without_torch_or_labelwise(cnn_run, cnn_onnx, tmp_path):
    x = _inputs(read_meta(cnn_run), 7, seed=5)
    np.save(tmp_path / "x.npy", x)
    code = ("import sys, numpy as np, onnxruntime as ort\n"
            f"s = ort.InferenceSession({str(cnn_onnx)!r}, providers=['CPUExecutionProvider'])\n"
            f"np.save({str(tmp_path / 'p.npy')!r}, s.run(['probs'], {{'pixels': np.load({str(tmp_path / 'x.npy')!r})}})[0])\n"
            "assert 'torch' not in sys.modules and 'labelwise' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), _torch_outputs(cnn_run, x)[0][1], atol=TOL, rtol=0)


def test_onnx_engine_gives_the_same_predictions_as_torch(cnn_run, images):
    fast, eager = Predictor.load(cnn_run, engine="onnx"), Predictor.load(cnn_run)
    assert (fast.engine.name, eager.engine.name) == ("onnx", "torch")
    got, want = fast.predict(images, chunk=16), eager.predict(images, chunk=16)
    assert [r.path for r in got] == [str(p) for p in images]
    assert [r.error != "" for r in got] == [r.error != "" for r in want] == [p.name == "broken.png" for p in images]
    assert [r.labels for r in got] == [r.labels for r in want]
    for a, b in zip(got, want):
        assert a.probs.keys() == b.probs.keys()
        assert all(abs(a.probs[k] - b.probs[k]) <= TOL for k in a.probs)
    pixels = (np.random.default_rng(0).random((9, 1, 32, 32)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(fast.decide(fast.predict_pixels(pixels)), eager.decide(eager.predict_pixels(pixels)))


def test_current_onnx_export_is_reused(cnn_run, cnn_onnx):
    before = cnn_onnx.stat().st_mtime_ns
    heard: list[str] = []
    source, made = export_mod.current_onnx(cnn_run, notify=heard.append)
    assert (source, made, heard) == (cnn_onnx, None, [])
    assert cnn_onnx.stat().st_mtime_ns == before


def test_stale_onnx_is_reexported_to_the_cache_when_the_run_is_read_only(cnn_run, cnn_onnx, tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("model.json", "model.onnx"):
        shutil.copy(cnn_run / name, run / name)
    _write_bundle(run, "cnn-small", read_meta(cnn_run).labels, in_chans=1, size=32, seed=1)  # new weights
    stale = (run / "model.onnx").read_bytes()

    # Root can write anywhere, so "read-only" is simulated where the export is written.
    real_write = export_mod.atomic_write_bytes

    def write(path, data):
        if Path(path).parent == run:
            raise PermissionError(13, "Permission denied", str(path))
        real_write(path, data)
    monkeypatch.setattr(export_mod, "atomic_write_bytes", write)
    monkeypatch.setenv("LABELWISE_CACHE_DIR", str(tmp_path / "cache"))

    heard: list[str] = []
    predictor = Predictor.load(run, engine="onnx", notify=heard.append)
    assert len(heard) == 1 and "out of date" in heard[0]
    assert (run / "model.onnx").read_bytes() == stale  # untouched
    cached = list((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert len(cached) == 1 and predictor.engine.source == cached[0]
    pixels = (np.random.default_rng(1).random((7, 1, 32, 32)) * 255).astype(np.uint8)
    np.testing.assert_allclose(predictor.predict_pixels(pixels), Predictor.load(run).predict_pixels(pixels), atol=TOL)

    again: list[str] = []
    assert Predictor.load(run, engine="onnx", notify=again.append).engine.source == cached[0]
    assert again == []


def test_changed_thresholds_make_an_export_stale(cnn_run, cnn_onnx):
    meta = read_meta(cnn_run)
    sha = file_sha256(cnn_run / WEIGHTS_FILE)
    props = read_onnx_metadata(cnn_onnx)
    assert export_mod._stale_keys(props, export_metadata(meta, sha)) == []
    changed = ModelMeta(**{**meta.__dict__, "thresholds": (0.9,) * len(meta.labels)})
    assert export_mod._stale_keys(props, export_metadata(changed, sha)) == ["labelwise.evaluation.thresholds"]
    assert export_mod._stale_keys(props, export_metadata(meta, "0" * 64)) == ["labelwise.weights_sha256"]


def test_unreadable_onnx_counts_as_stale(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"\x00garbage")
    assert read_onnx_metadata(tmp_path / "model.onnx") == {}


def test_progress_reports_every_image(cnn_run, images):
    seen: list[tuple[int, int]] = []
    Predictor.load(cnn_run).predict(images, chunk=16, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (len(images), len(images))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_user_errors_name_the_option(cnn_run, tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'onnx'"):
        Predictor.load(cnn_run, engine="onxx")
    with pytest.raises(ConfigError, match="--format 'torchscrpt'.*did you mean 'torchscript'"):
        export_model(cnn_run, "torchscrpt")
    with pytest.raises(LabelwiseError, match="no such run directory"):
        export_model(tmp_path / "missing")
    assert issubclass(ExportError, LabelwiseError)


def test_export_command_reports_a_user_error_without_traceback(tmp_path):
    app = typer.Typer()
    app.command()(export_command)
    result = CliRunner().invoke(app, [str(tmp_path / "nope")])
    assert isinstance(result.exception, LabelwiseError)  # cli.main() prints these as one red line
