"""Open Inference Protocol (V2) in `labelwise serve`, checked with the real tritonclient against a running server.

The bundle is written directly (cnn-small with perturbed weights, 1 channel, 32 px) and the images
are real Fashion-MNIST mosaics; every answer is compared with labelwise's own Predictor.
"""
from __future__ import annotations

import base64
import json
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from servers import running as serving

from labelwise.data import images as image_io
from labelwise.data.demo import build_mosaics
from labelwise.infer.predict import Predictor, list_images
from labelwise.labels import LabelSpace
from labelwise.models.bundle import ModelMeta, save_model
from labelwise.models.classifier import Classifier
from labelwise.serve.app import create_app

http = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

LABELS = ("trouser", "bag", "sneaker", "dress")
NAME = "fashion"


def _random_bundle(run: Path, bn_var: float | None = None) -> tuple[Classifier, ModelMeta]:
    """cnn-small with random weights (seed 0), saved to ``run``: BatchNorm variances uniform in [0.5, 1.5], or
    all ``bn_var`` (below 1, each layer amplifies contrast: the output depends visibly on the image)."""
    torch.manual_seed(0)
    model = Classifier("cnn-small", len(LABELS), in_chans=1)
    with torch.no_grad():
        model.head.weight.normal_(0, 0.5)
        model.head.bias.normal_(0, 0.3)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                if bn_var is None:
                    m.running_var.uniform_(0.5, 1.5)
                else:
                    m.running_var.fill_(bn_var)
    meta = ModelMeta(LabelSpace(LABELS, "multilabel"), "cnn-small", in_chans=1, image_size=32,
                     thresholds=(0.4, 0.5, 0.5, 0.6), mean=tuple(model.mean.flatten().tolist()),
                     std=tuple(model.std.flatten().tolist()))
    save_model(run, model.eval(), meta)
    return model, meta


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, pictures) -> Path:
    """Random weights; thresholds at each label's median probability on the pictures, so that half of
    them carry each label: the decisions then depend on the thresholds being applied."""
    run = tmp_path_factory.mktemp("oip") / "run"
    model, meta = _random_bundle(run)
    preds = Predictor.load(run).predict(pictures)
    probs = np.array([[r.probs[n] for n in LABELS] for r in preds])
    save_model(run, model, replace(meta, thresholds=tuple(float(t) for t in np.median(probs, axis=0))))
    return run


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> list[Path]:
    root = build_mosaics(tmp_path_factory.mktemp("pics") / "set", 6, split="test", seed=2, classes=LABELS)
    return list_images([root / "images"])


@contextmanager
def running(app):
    """The shared test server, as the host:port tritonclient takes."""
    with serving(app) as url:
        yield url.removeprefix("http://")


@pytest.fixture(scope="module")
def server(bundle):
    with running(create_app(bundle, model_name=NAME, max_files=8, max_body_bytes=2 * 2**20)) as url:
        yield url


@pytest.fixture(scope="module")
def expected(bundle, pictures):
    p = Predictor.load(bundle)
    preds = p.predict(pictures)
    return np.array([[r.probs[n] for n in LABELS] for r in preds], dtype=np.float32), [r.labels for r in preds]


def _image_input(files: list[Path], binary: bool = True):
    x = http.InferInput("image", [len(files)], "BYTES")
    data = [f.read_bytes() for f in files]
    if not binary:  # JSON carries text: image files go as base64 strings
        data = [base64.b64encode(d).decode() for d in data]
    x.set_data_from_numpy(np.array(data, dtype=np.object_), binary_data=binary)
    return x


def test_health_and_metadata(server):
    client = http.InferenceServerClient(server)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(NAME)
    meta = client.get_model_metadata(NAME)
    assert meta["name"] == NAME and meta["labels"] == list(LABELS) and meta["task"] == "multilabel"
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {"image": "BYTES", "pixels": "FP32"}
    assert [o["name"] for o in meta["outputs"]] == ["probabilities", "decisions", "labels"]
    assert meta["inputs"][1]["shape"] == [-1, 1, 32, 32]
    assert client.get_server_metadata()["name"] == "labelwise"
    assert not client.is_model_ready("other")


@pytest.mark.parametrize("binary", [True, False], ids=["binary-extension", "json"])
def test_image_bytes_give_labelwise_answers(server, pictures, expected, binary):
    client = http.InferenceServerClient(server)
    outputs = None if binary else [http.InferRequestedOutput(n, binary_data=False) for n in
                                   ("probabilities", "decisions", "labels")]
    result = client.infer(NAME, [_image_input(pictures, binary)], outputs=outputs)
    probs, want_labels = expected
    got = result.as_numpy("probabilities")
    assert got.shape == (len(pictures), len(LABELS)) and np.abs(got - probs).max() < 1e-5
    labels = [json.loads(v.decode() if isinstance(v, bytes) else v) for v in result.as_numpy("labels")]
    assert labels == want_labels
    decisions = result.as_numpy("decisions")
    assert [[LABELS[k] for k in np.flatnonzero(row)] for row in decisions] == want_labels
    assert len({tuple(l) for l in want_labels}) > 2  # the thresholds decide: images get different label sets


@pytest.mark.parametrize("dtype", ["UINT8", "FP32"])
def test_pixel_tensors(server, pictures, expected, dtype):
    pixels = np.stack([image_io.read_resized(p, 32, 1).transpose(2, 0, 1) for p in pictures])
    data = pixels if dtype == "UINT8" else pixels.astype(np.float32) / 255.0
    x = http.InferInput("pixels", list(data.shape), dtype)
    x.set_data_from_numpy(data)
    got = http.InferenceServerClient(server).infer(NAME, [x]).as_numpy("probabilities")
    assert np.abs(got - expected[0]).max() < 1e-5


def _status(call) -> str:
    with pytest.raises(InferenceServerException) as info:
        call()
    return f"{info.value.status()} {info.value.message()}"


def test_errors_are_the_same_4xx_as_predict(server, pictures, bundle, tmp_path):
    client = http.InferenceServerClient(server)
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"just text, not an image")
    assert _status(lambda: client.infer(NAME, [_image_input([pictures[0], bad])])).startswith("415")
    assert "413" in _status(lambda: client.infer(NAME, [_image_input(pictures[:1] * 9)]))  # max_files=8
    x = http.InferInput("pixels", [1, 3, 32, 32], "UINT8")
    x.set_data_from_numpy(np.zeros((1, 3, 32, 32), np.uint8))
    assert "400" in _status(lambda: client.infer(NAME, [x])) and "[N, 1, 32, 32]" in _status(lambda: client.infer(NAME, [x]))
    f = http.InferInput("pixels", [1, 1, 32, 32], "FP32")
    f.set_data_from_numpy(np.full((1, 1, 32, 32), 255.0, np.float32))
    assert "[0, 1]" in _status(lambda: client.infer(NAME, [f]))
    assert "404" in _status(lambda: client.infer("nope", [_image_input(pictures[:1])]))
    big = http.InferInput("image", [1], "BYTES")
    big.set_data_from_numpy(np.array([b"\x89PNG\r\n\x1a\n" + bytes(3 * 2**20)], dtype=np.object_))
    assert "413" in _status(lambda: client.infer(NAME, [big]))
    raw = httpx.post(f"http://{server}/v2/models/{NAME}/infer", content=b"{not json")
    assert raw.status_code == 400 and "error" in raw.json()


def test_token_is_required_except_for_health(bundle, pictures):
    with running(create_app(bundle, token="s3cret", model_name=NAME)) as url:
        client = http.InferenceServerClient(url)
        assert client.is_server_live()
        assert "401" in _status(lambda: client.infer(NAME, [_image_input(pictures[:1])]))
        ok = client.infer(NAME, [_image_input(pictures[:1])], headers={"Authorization": "Bearer s3cret"})
        assert ok.as_numpy("probabilities").shape == (1, len(LABELS))


@pytest.fixture(scope="module")
def contrasty(tmp_path_factory) -> Path:
    """Random weights with BatchNorm variances of 0.3, so that a mirror changes the probabilities by ~0.02."""
    run = tmp_path_factory.mktemp("contrasty") / "run"
    _random_bundle(run, bn_var=0.3)
    return run


def test_tta_serves_what_predict_tta_says(contrasty, pictures, tmp_path):
    """`labelwise serve --tta-views 4`: the JSON /predict, the OIP image and pixel inputs all average the same
    views as `labelwise predict --tta-views 4` / Predictor.load(tta=4), and that differs from no TTA."""
    from typer.testing import CliRunner

    from labelwise.cli import app as cli

    out = tmp_path / "tta.jsonl"
    res = CliRunner().invoke(cli, ["predict", str(contrasty), *map(str, pictures), "--out", str(out),
                                   "--tta-views", "4", "--quiet"])
    assert res.exit_code == 0, res.output
    rows = {Path(r["image"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    cli_probs = np.array([[rows[p.name]["probabilities"][n] for n in LABELS] for p in pictures])
    api = Predictor.load(contrasty, tta=4).predict(pictures)
    api_probs = np.array([[r.probs[n] for n in LABELS] for r in api])
    assert np.abs(api_probs - cli_probs).max() < 1e-5
    plain = np.array([[r.probs[n] for n in LABELS] for r in Predictor.load(contrasty).predict(pictures)])
    assert np.abs(api_probs - plain).max() > 5e-3  # the mosaics are not mirror-symmetric: the views matter

    with serving(create_app(contrasty, model_name=NAME, tta=4)) as url:
        info = httpx.get(f"{url}/model").json()["tta"]
        assert info == {"views": 4, "names": ["identity", "hflip", "shift(+2,+2)", "hflip+shift(-2,-2)"]}
        client = http.InferenceServerClient(url.removeprefix("http://"))
        assert client.get_model_metadata(NAME)["tta"]["views"] == 4
        by_image = client.infer(NAME, [_image_input(pictures)]).as_numpy("probabilities")
        pixels = np.stack([image_io.read_resized(p, 32, 1).transpose(2, 0, 1) for p in pictures])
        x = http.InferInput("pixels", list(pixels.shape), "UINT8")
        x.set_data_from_numpy(pixels)
        by_pixels = client.infer(NAME, [x]).as_numpy("probabilities")
        files = [("file", (p.name, p.read_bytes(), "image/png")) for p in pictures]
        results = httpx.post(f"{url}/predict", files=files, timeout=60).json()["results"]
        by_json = np.array([[r["probabilities"][n] for n in LABELS] for r in results])
    for got in (by_image, by_pixels, by_json):
        assert np.abs(got - api_probs).max() < 1e-5
    with serving(create_app(contrasty, model_name=NAME)) as url:
        assert httpx.get(f"{url}/model").json()["tta"] is None
        assert http.InferenceServerClient(url.removeprefix("http://")).get_model_metadata(NAME)["tta"] is None
