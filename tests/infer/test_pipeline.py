"""Prediction over many images in worker processes (labelwise.infer.pipeline): the same probabilities,
in the same order, as in one process; unreadable files reported in place; bounded work in flight;
rows streamed to a file that appears only when complete."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from labelwise.infer import pipeline
from labelwise.infer.engines import TTA, TorchEngine, tta_views
from labelwise.infer.predict import Predictor, list_images
from labelwise.io import atomic_text_stream
from labelwise.labels import LabelSpace
from labelwise.models.bundle import ModelMeta, save_model
from labelwise.models.classifier import Classifier

SIZE = 16
N_IMAGES = 300

pytestmark = pytest.mark.skipif(not pipeline.fork_available(), reason="worker processes need fork (Linux)")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    labels = LabelSpace(("a", "b", "c"), "multilabel")
    model = Classifier("cnn-small", len(labels), in_chans=1)
    with torch.no_grad():
        model.head.weight.normal_(0, 0.5)
    out = tmp_path_factory.mktemp("pipe") / "run"
    save_model(out, model, ModelMeta(labels=labels, backbone="cnn-small", in_chans=1, image_size=SIZE,
                                     thresholds=(0.5, 0.4, 0.6)))
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """N_IMAGES small PNGs and JPEGs of varied sizes, with two unreadable files among them."""
    root = tmp_path_factory.mktemp("imgs") / "set"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        side = int(rng.integers(8, 40))
        arr = rng.integers(0, 256, (side, side + 3), dtype=np.uint8)
        Image.fromarray(arr).save(root / f"img_{i:04d}.{'png' if i % 3 else 'jpg'}")
    (root / "img_0100.png").write_bytes(b"not an image at all")
    (root / "img_0202.png").write_bytes(b"")
    return root


@pytest.fixture()
def small_threshold(monkeypatch):
    """Use worker processes for this test's few hundred images, in small tasks (many tasks, many boundaries)."""
    monkeypatch.setattr(pipeline, "TASK_PIXELS", 20 * SIZE * SIZE)  # 20 images per task (MIN_TASK is 16)


def _collect(predictor: Predictor, paths: list, **kw) -> tuple[list, np.ndarray, dict]:
    items, probs, bad = [], [], {}
    for part, p, b in predictor.iter_probs(paths, **kw):
        items += part
        probs.append(p)
        bad.update(b)
    return items, np.concatenate(probs), bad


def test_workers_give_the_same_results_in_order_as_one_process(run, folder, small_threshold):
    paths = list_images([folder])
    predictor = Predictor.load(run)
    assert pipeline.plan_workers(len(paths), 2, predictor.engine, SIZE, 1) == 2
    assert pipeline.task_size(SIZE, 1) == 20
    items1, probs1, bad1 = _collect(predictor, paths, workers=1)  # in this process
    items2, probs2, bad2 = _collect(predictor, paths, workers=2)  # two worker processes
    assert items1 == items2 == paths
    assert set(bad1) == set(bad2) == {folder / "img_0100.png", folder / "img_0202.png"}
    assert "empty" in bad2[folder / "img_0202.png"]
    assert probs2.shape == (N_IMAGES - 2, 3)
    np.testing.assert_allclose(probs2, probs1, atol=1e-6)
    assert probs2.std(0).min() > 1e-4  # the images differ, so a mix-up of order would show
    # and the per-image API: the same Predictions, errors in place
    one, many = predictor.predict(paths[:40]), predictor.predict(paths)
    assert [r.path for r in many] == [str(p) for p in paths]
    assert many[100].error and not many[100].labels and many[99].probs and not many[99].error
    assert [r.labels for r in many[:40]] == [r.labels for r in one]


def test_test_time_augmentation_runs_in_the_workers_too(run, folder, small_threshold):
    paths = list_images([folder])[:120]
    base = Predictor.load(run)
    tta = Predictor(TTA(TorchEngine(base.model, True), tta_views(4, SIZE)), base.meta)
    _, in_process, _ = _collect(tta, paths, workers=1)
    _, workers, _ = _collect(tta, paths, workers=2)
    np.testing.assert_allclose(workers, in_process, atol=1e-6)
    _, plain, _ = _collect(base, paths, workers=2)
    assert not np.allclose(workers, plain, atol=1e-4)


def test_onnx_engine_in_the_workers(run, folder, small_threshold):
    pytest.importorskip("onnxruntime")
    paths = list_images([folder])[:100]
    fast = Predictor.load(run, engine="onnx")
    assert pipeline.worker_engine(fast.engine)[0] == "onnx"
    _, in_process, _ = _collect(fast, paths, workers=1)
    _, workers, _ = _collect(fast, paths, workers=2)
    np.testing.assert_allclose(workers, in_process, atol=1e-5)


def test_work_in_flight_is_bounded_and_results_stream(run, folder, small_threshold, monkeypatch):
    submitted = []

    class CountingPool(pipeline.ProcessPoolExecutor):
        def submit(self, fn, part):
            submitted.append(len(part))
            return super().submit(fn, part)

    monkeypatch.setattr(pipeline, "ProcessPoolExecutor", CountingPool)
    paths = list_images([folder])
    predictor = Predictor.load(run)
    stream = predictor.iter_probs(paths, workers=2)
    first, _, _ = next(stream)
    assert len(first) == 20
    # 15 tasks in all; when the first result arrives at most 2 per worker (+ its replacement) were handed out
    assert len(submitted) <= 2 * pipeline.IN_FLIGHT_PER_WORKER + 1 < 15
    rest = sum(len(part) for part, _, _ in stream)
    assert len(first) + rest == N_IMAGES and sum(submitted) == N_IMAGES


def test_small_inputs_and_explicit_single_worker_stay_in_process(run, monkeypatch):
    engine = Predictor.load(run).engine
    assert pipeline.task_size(28, 1) == 256 and pipeline.task_size(224, 3) == 31  # ~5 M pixels a task
    assert pipeline.plan_workers(2 * 2 * 256 - 1, 2, engine, 28, 1) == 0  # under 2 tasks per worker
    assert pipeline.plan_workers(2 * 2 * 256, 2, engine, 28, 1) == 2
    assert pipeline.plan_workers(200, 2, engine, 224, 3) == 2  # big images: fewer make it worth it
    assert pipeline.plan_workers(10_000, 1, engine, 28, 1) == 0
    assert pipeline.plan_workers(10_000, 0, engine, 28, 1) == 0
    assert pipeline.plan_workers(10_000, 3, engine, 28, 1) == 3
    assert pipeline.plan_workers(10_000, 3, object(), 28, 1) == 0  # an engine a worker cannot rebuild
    monkeypatch.setenv("LABELWISE_PREDICT_PROCESSES", "0")
    assert pipeline.plan_workers(10_000, 3, engine, 28, 1) == 0


def test_streamed_file_appears_only_when_complete(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError):
        with atomic_text_stream(target) as f:
            f.write("image,labels\n")
            raise RuntimeError("interrupted half way")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_text_stream(target) as f:
        f.write("image,labels\n")
        assert not target.exists()  # still being written
    assert target.read_text() == "image,labels\n"


def test_cli_predict_streams_every_row_in_order(run, folder, small_threshold, tmp_path):
    import typer

    from labelwise.cli.predict import predict

    app = typer.Typer()
    app.command()(predict)
    out = tmp_path / "pred.csv"
    result = CliRunner().invoke(app, [str(run), str(folder), "--out", str(out), "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "298 images, 2 unreadable" in result.output.replace("predicted ", "")
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == [str(p) for p in list_images([folder])]
    expected = Predictor.load(run).predict(list_images([folder]))
    assert [r["labels"] for r in rows] == [" ".join(p.labels) for p in expected]
    assert rows[100]["error"] and rows[100]["a"] == ""
    assert abs(float(rows[5]["b"]) - expected[5].probs["b"]) < 1e-6
