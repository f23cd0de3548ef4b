"""`labelwise serve`: endpoints, token, limits before decoding, the bounded queue, hostile uploads,
and the upload page in headless Chromium. Servers run for real (uvicorn on 127.0.0.1, a free port)."""
from __future__ import annotations

import base64
import pickle
import re
import shutil
import socket
import threading
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import typer
import uvicorn
from hostile import make_hostile_corpus
from PIL import Image
from servers import running, wait_for
from typer.testing import CliRunner

from labelwise.cli.serve import serve_command
from labelwise.errors import BundleError, ConfigError, ImageError, ImageTooLargeError
from labelwise.infer.predict import Predictor
from labelwise.labels import LabelSpace
from labelwise.models.bundle import ModelMeta, save_model
from labelwise.models.classifier import Classifier
from labelwise.serve.app import ServeLimits, create_app, make_limits, sniff_format
from labelwise.serve.service import _error_result

LABELS = ("bag", "dress", "sneaker")
CHROMIUM = Path("/usr/bin/chromium")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A multi-label cnn-small bundle (1 channel, 32 px) whose head bias makes the answer clear:
    bag ~0.88 (predicted), dress ~0.12, sneaker ~0.5 under a 0.6 cut-off. No training needed."""
    run = tmp_path_factory.mktemp("bundle")
    torch.manual_seed(0)
    model = Classifier("cnn-small", len(LABELS), in_chans=1)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([2.0, -2.0, 0.0]))
    meta = ModelMeta(LabelSpace(LABELS, "multilabel"), "cnn-small", in_chans=1, image_size=32,
                     thresholds=(0.5, 0.5, 0.6), mean=tuple(model.mean.flatten().tolist()),
                     std=tuple(model.std.flatten().tolist()))
    save_model(run, model, meta)
    return run


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    return folder, make_hostile_corpus(folder)


def _png_bytes(side: int = 40, seed: int = 0) -> bytes:
    import io

    arr = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def base_url(bundle):
    with running(create_app(bundle)) as url:
        yield url


# --------------------------------------------------------------------------- endpoints


def test_health_model_and_page(base_url):
    assert httpx.get(f"{base_url}/health").json()["status"] == "ok"
    info = httpx.get(f"{base_url}/model").json()
    assert info["labels"] == list(LABELS) and info["task"] == "multilabel"
    assert info["input"]["channels"] == 1 and info["input"]["size"] == 32
    assert info["thresholds"] == {"bag": 0.5, "dress": 0.5, "sneaker": 0.6}
    assert info["limits"]["queue_size"] == ServeLimits.queue_size
    page = httpx.get(f"{base_url}/")
    assert page.status_code == 200 and 'id="file"' in page.text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page.text), "the page must not load from a CDN"
    assert "script-src 'sha256-" in page.headers["content-security-policy"]


def test_predict_matches_the_predictor(base_url, bundle, tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(_png_bytes())
    response = httpx.post(f"{base_url}/predict", files={"file": ("photo.png", path.read_bytes(), "image/png")})
    assert response.status_code == 200
    [result] = response.json()["results"]
    expected = Predictor.load(bundle).predict([path])[0]
    assert result["file"] == "photo.png" and result["labels"] == expected.labels == ["bag"]
    for name in LABELS:
        assert result["probabilities"][name] == pytest.approx(expected.probs[name], abs=1e-5)


def test_several_files_in_one_request_keep_their_order(base_url):
    files = [("files", (f"{i}.png", _png_bytes(seed=i), "image/png")) for i in range(3)]
    files.insert(1, ("files", ("notes.png", b"plain text", "image/png")))
    response = httpx.post(f"{base_url}/predict", files=files)
    assert response.status_code == 200  # at least one image was predicted
    results = response.json()["results"]
    assert [r["file"] for r in results] == ["0.png", "notes.png", "1.png", "2.png"]
    assert results[1]["status"] == 415 and "not an image" in results[1]["error"]
    assert all(r["labels"] == ["bag"] for i, r in enumerate(results) if i != 1)


def test_every_hostile_file_gets_its_4xx_with_a_reason(base_url, corpus):
    folder, expected = corpus
    for name, exp in expected.items():
        response = httpx.post(f"{base_url}/predict", files={"file": (name, (folder / name).read_bytes())})
        assert response.status_code == exp.status, (name, response.text)
        [result] = response.json()["results"]
        if exp.ok:
            assert result["labels"] == ["bag"], name
        else:
            assert result["status"] == exp.status and re.search(exp.reason, result["error"]), (name, result)
            assert name in result["error"]
    everything = [("file", (name, (folder / name).read_bytes())) for name in expected]
    response = httpx.post(f"{base_url}/predict", files=everything)
    assert response.status_code == 200
    statuses = [r.get("status", 200) for r in response.json()["results"]]
    assert statuses == [e.status for e in expected.values()]


def test_a_pickle_upload_is_refused_and_never_loaded(base_url, tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    data = pickle.dumps(Payload())
    for name, kind in (("model.pkl", "application/octet-stream"), ("photo.png", "image/png"),
                       ("weights.pt", "application/x-pickle")):
        response = httpx.post(f"{base_url}/predict", files={"file": (name, data, kind)})
        assert response.status_code == 415, response.text
    assert not marker.exists()


def test_request_mistakes_are_4xx(base_url):
    raw = httpx.post(f"{base_url}/predict", content=_png_bytes(), headers={"content-type": "image/png"})
    assert raw.status_code == 415 and "multipart/form-data" in raw.json()["error"]
    fields_only = httpx.post(f"{base_url}/predict", content=b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b--\r\n",
                             headers={"content-type": "multipart/form-data; boundary=b"})
    assert fields_only.status_code == 422 and "no image" in fields_only.json()["error"]
    text = httpx.post(f"{base_url}/predict", files={"file": ("a.txt", b"hello", "text/plain")})
    assert text.status_code == 415 and "text/plain" in text.json()["results"][0]["error"]
    broken = httpx.post(f"{base_url}/predict", content=b"--b\r\ngarbage",
                        headers={"content-type": "multipart/form-data; boundary=b"})
    assert 400 <= broken.status_code < 500
    assert httpx.get(f"{base_url}/nowhere").status_code == 404


# --------------------------------------------------------------------------- limits


def test_body_size_is_checked_from_the_header_and_while_streaming(bundle):
    app = create_app(bundle, max_body_bytes=20_000, max_files=2)
    big = _png_bytes(side=120)  # ~43 KB of noise
    with running(app) as url:
        declared = httpx.post(f"{url}/predict", files={"file": ("big.png", big, "image/png")})
        assert declared.status_code == 413 and "over the limit" in declared.json()["error"]

        def chunks():  # no Content-Length: chunked transfer, counted as it arrives
            body = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n"
                    b"Content-Type: image/png\r\n\r\n" + big + b"\r\n--b--\r\n")
            for i in range(0, len(body), 4096):
                yield body[i:i + 4096]

        streamed = httpx.post(f"{url}/predict", content=chunks(),
                              headers={"content-type": "multipart/form-data; boundary=b"})
        assert streamed.status_code == 413 and "over the limit" in streamed.json()["error"]
        many = [("file", (f"{i}.png", _png_bytes(side=8), "image/png")) for i in range(3)]
        too_many = httpx.post(f"{url}/predict", files=many)
        assert too_many.status_code == 413 and "2 files" in too_many.json()["error"]
        ok = httpx.post(f"{url}/predict", files=many[:2])
        assert ok.status_code == 200 and len(ok.json()["results"]) == 2


def test_a_client_that_stalls_mid_body_gets_408_and_frees_its_slot(bundle):
    app = create_app(bundle, read_timeout_s=1, queue_size=1)
    with running(app) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as raw:
            # Promise 10 kB, send a few bytes, then stall: only the server's read timeout ends this.
            raw.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n"
                        b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n")
            raw.settimeout(60)
            answer = b""
            while b"did not arrive" not in answer and (chunk := raw.recv(65536)):
                answer += chunk
            answer = answer.decode("latin-1")
        assert answer.startswith("HTTP/1.1 408") and "did not arrive" in answer
        ok = httpx.post(f"{url}/predict", files={"file": ("a.png", _png_bytes(), "image/png")})
        assert ok.status_code == 200  # the slot was freed


def test_pixel_cap_comes_from_the_header(bundle):
    app = create_app(bundle, max_pixels=1_000)
    with running(app) as url:
        over = httpx.post(f"{url}/predict", files={"file": ("a.png", _png_bytes(side=40), "image/png")})
        assert over.status_code == 413 and "1,600 pixels, over the limit of 1,000" in over.text
        under = httpx.post(f"{url}/predict", files={"file": ("b.png", _png_bytes(side=30), "image/png")})
        assert under.status_code == 200
        body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                            "data": [base64.b64encode(_png_bytes(side=40)).decode()]}]}
        oip = httpx.post(f"{url}/v2/models/{app.state.model_name}/infer", json=body)
        assert oip.status_code == 413 and "over the limit of 1,000" in oip.json()["error"]


def test_too_large_is_told_by_the_error_type_not_its_wording():
    assert _error_result("a.png", ImageTooLargeError("image is huge: a.png")).status == 413
    assert _error_result("a.png", ImageError("a chunk length is over the limit of the file: a.png")).status == 422
    assert _error_result("a.png", ValueError("decoder bug")).status == 422


class GatedPredictor:
    """The real predictor, but every forward pass waits for ``gate``: requests pile up on purpose."""

    def __init__(self, inner):
        self.inner, self.gate, self.entered = inner, threading.Event(), threading.Event()
        self.batch_sizes: list[int] = []

    def predict_pixels(self, pixels):
        self.batch_sizes.append(len(pixels))
        self.entered.set()
        self.gate.wait(60)
        return self.inner.predict_pixels(pixels)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_full_queue_answers_503_at_once_and_the_loop_stays_free(bundle):
    app = create_app(bundle, queue_size=2)
    gated = GatedPredictor(app.state.service.predictor)
    app.state.service.predictor = gated
    files = {"file": ("a.png", _png_bytes(), "image/png")}
    with running(app) as url:
        answers: list[int] = []
        clients = [threading.Thread(target=lambda: answers.append(httpx.post(f"{url}/predict", files=files,
                                                                             timeout=60).status_code))
                   for _ in range(2)]
        for c in clients:
            c.start()
        wait_for(lambda: httpx.get(f"{url}/health").json()["in_flight"] == 2, "two requests in flight")
        assert gated.entered.wait(60)  # inference is running (blocked) in the model thread...
        busy = httpx.post(f"{url}/predict", files=files, timeout=60)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert "queue size 2" in busy.json()["error"]
        assert httpx.get(f"{url}/model").status_code == 200  # ...while the event loop still answers
        gated.gate.set()
        for c in clients:
            c.join(60)
        assert answers == [200, 200]
        assert httpx.get(f"{url}/health").json()["in_flight"] == 0
        assert httpx.post(f"{url}/predict", files=files).status_code == 200


def test_requests_waiting_for_the_model_share_one_forward_pass(bundle):
    app = create_app(bundle, queue_size=8)
    service = app.state.service
    gated = service.predictor = GatedPredictor(service.predictor)
    bodies = [[("file", (f"{i}-{j}.png", _png_bytes(seed=10 * i + j), "image/png")) for j in range(n)]
              for i, n in enumerate((1, 2, 1, 3))]
    with running(app) as url:
        answers: dict[int, dict] = {}

        def post(i):
            answers[i] = httpx.post(f"{url}/predict", files=bodies[i], timeout=60).json()

        first = threading.Thread(target=post, args=(0,))
        first.start()
        assert gated.entered.wait(60)  # request 0 is in the model; the others queue up behind it
        others = [threading.Thread(target=post, args=(i,)) for i in (1, 2, 3)]
        for t in others:
            t.start()
        wait_for(lambda: len(service._waiting) == 3, "three requests waiting for the model")
        gated.gate.set()
        for t in (first, *others):
            t.join(60)
    assert gated.batch_sizes == [1, 6]  # 2 + 1 + 3 images of three requests in one pass
    reference = Predictor.load(bundle)
    for i, files in enumerate(bodies):
        results = answers[i]["results"]
        assert [r["file"] for r in results] == [name for _, (name, _, _) in files]
        for r, p in zip(results, _alone(reference, files)):
            assert r["labels"] == ["bag"]
            for k, name in enumerate(LABELS):
                assert r["probabilities"][name] == pytest.approx(float(p[k]), abs=1e-5)


def _alone(predictor, files) -> np.ndarray:
    """What the predictor says for these uploads on their own (no batching), through the same decoder."""
    from labelwise.data.images import read_resized_bytes

    pixels = np.stack([read_resized_bytes(data, 32, 1).transpose(2, 0, 1) for _, (_, data, _) in files])
    return predictor.predict_pixels(pixels)


def test_limits_are_validated():
    with pytest.raises(ConfigError, match="did you mean 'queue_size'"):
        make_limits(queue_sise=3)
    with pytest.raises(ConfigError, match="max_files must be at least 1"):
        make_limits(max_files=0)
    assert sniff_format(b"\x89PNG\r\n\x1a\n....") == "PNG" and sniff_format(b"RIFF\0\0\0\0WEBPVP8 ") == "WebP"
    assert sniff_format(b"<svg xmlns=") is None and sniff_format(b"") is None


# --------------------------------------------------------------------------- token, bundle, engine


def test_bearer_token(bundle):
    files = {"file": ("a.png", _png_bytes(), "image/png")}
    with running(create_app(bundle, token="s3cret-token")) as url:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"},
                        {"Authorization": "Basic s3cret-token"}):
            response = httpx.post(f"{url}/predict", files=files, headers=headers)
            assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
            assert httpx.get(f"{url}/model", headers=headers).status_code == 401
        good = {"Authorization": "Bearer s3cret-token"}
        assert httpx.post(f"{url}/predict", files=files, headers=good).status_code == 200
        assert httpx.get(f"{url}/model", headers={"authorization": "bearer s3cret-token"}).status_code == 200
        assert httpx.get(f"{url}/health").status_code == 200  # liveness needs no token
        assert httpx.get(f"{url}/").status_code == 200  # the page asks for the token itself


def test_only_weights_and_json_are_needed(bundle, tmp_path):
    lean = tmp_path / "lean"
    lean.mkdir()
    for name in ("model.safetensors", "model.json"):
        shutil.copy(bundle / name, lean / name)
    with running(create_app(lean)) as url:
        response = httpx.post(f"{url}/predict", files={"file": ("a.png", _png_bytes(), "image/png")})
        assert response.json()["results"][0]["labels"] == ["bag"]
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(bundle / "model.json", pickled / "model.json")
    (pickled / "model.safetensors").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(BundleError, match="never loads pickled"):
        create_app(pickled)


def test_engines(bundle, tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'onnx'"):
        create_app(bundle, engine="onxx")
    run = tmp_path / "run"
    shutil.copytree(bundle, run)
    try:
        app = create_app(run, engine="onnx")
    except ConfigError as err:
        pytest.skip(str(err))
    files = {"file": ("a.png", _png_bytes(), "image/png")}
    with running(app) as url:
        onnx = httpx.post(f"{url}/predict", files=files).json()["results"][0]
        assert httpx.get(f"{url}/model").json()["engine"] == "onnx"
    with running(create_app(bundle)) as url:
        eager = httpx.post(f"{url}/predict", files=files).json()["results"][0]
    assert onnx["labels"] == eager["labels"]
    for name in LABELS:
        assert onnx["probabilities"][name] == pytest.approx(eager["probabilities"][name], abs=1e-4)


# --------------------------------------------------------------------------- the command


def test_serve_command(bundle, monkeypatch):
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    cli = typer.Typer()
    cli.command()(serve_command)
    runner = CliRunner()
    monkeypatch.setenv("LABELWISE_TOKEN", "from-the-env")
    result = runner.invoke(cli, [str(bundle), "--port", "8123", "--queue-size", "4", "--max-body-mb", "1"])
    assert result.exit_code == 0, result.output
    app, kw = calls[-1]
    assert (kw["host"], kw["port"]) == ("127.0.0.1", 8123)
    limits = app.state.service.limits
    assert (limits.queue_size, limits.max_body_bytes) == (4, 2**20)
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        assert client.get("/model").status_code == 401
        assert client.get("/model", headers={"Authorization": "Bearer from-the-env"}).status_code == 200
    monkeypatch.delenv("LABELWISE_TOKEN")
    exposed = runner.invoke(cli, [str(bundle), "--host", "0.0.0.0"])
    assert exposed.exit_code == 0 and "without a token" in exposed.output
    assert calls[-1][0].state.service.model_info()["tta"] is None
    tta = runner.invoke(cli, [str(bundle), "--tta"])
    assert tta.exit_code == 0 and "TTA over 2 views" in tta.output
    assert calls[-1][0].state.service.model_info()["tta"]["names"] == ["identity", "hflip"]
    views = runner.invoke(cli, [str(bundle), "--tta-views", "6"])
    assert views.exit_code == 0 and calls[-1][0].state.service.model_info()["tta"]["views"] == 6
    none = runner.invoke(cli, [str(bundle), "--tta-views", "0"])
    assert isinstance(none.exception, ConfigError) and "--tta-views 0" in str(none.exception)
    bad = runner.invoke(cli, [str(bundle), "--engine", "tensorrt"])
    assert isinstance(bad.exception, ConfigError) and "--engine" in str(bad.exception)
    missing = runner.invoke(cli, [str(bundle / "nope")])
    assert isinstance(missing.exception, BundleError)


# --------------------------------------------------------------------------- the page, in Chromium


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Debian's Chromium, headless, with a fresh profile; skips where it or playwright is missing."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("profile")), executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            yield context
        finally:
            context.close()


@contextmanager
def opened(browser, url: str):
    """A page on ``url`` that collects script errors and CSP violations; asserts none at the end."""
    problems: list[str] = []
    page = browser.new_page()
    # A refused upload is logged as "Failed to load resource": expected, not a problem.
    page.on("console", lambda msg: problems.append(msg.text)
            if msg.type == "error" and "Failed to load resource" not in msg.text else None)
    page.on("pageerror", lambda err: problems.append(str(err)))
    try:
        page.goto(url)
        yield page
    finally:
        page.close()
    assert not problems, problems


def test_upload_page_in_headless_chromium(browser, base_url, corpus, tmp_path):
    folder, _ = corpus
    photo = tmp_path / "photo.png"
    photo.write_bytes(_png_bytes())
    expected = httpx.post(f"{base_url}/predict", files={"file": ("photo.png", photo.read_bytes(), "image/png")}
                          ).json()["results"][0]
    with opened(browser, base_url) as page:
        page.locator("#status", has_text=re.compile(r"^ready$")).wait_for()  # no eval: the page's CSP forbids it
        assert "multilabel" in page.text_content("#model")
        page.set_input_files("#file", str(photo))
        page.wait_for_selector(".result .row")
        rows = page.eval_on_selector_all(".result .row", "rows => rows.map(r => [r.dataset.label, "
                                         "Number(r.dataset.prob), r.classList.contains('predicted')])")
        assert page.text_content(".result .labels") == "bag"
        assert {label for label, _, hit in rows if hit} == {"bag"}
        for label, prob, _ in rows:
            assert prob == pytest.approx(expected["probabilities"][label], abs=1e-6)
        assert [p for _, p, _ in rows] == sorted((p for _, p, _ in rows), reverse=True)
        page.set_input_files("#file", str(folder / "text_named.png"))
        page.wait_for_selector(".result.failed .error")
        assert page.text_content(".result.failed .error").startswith("415: not an image")


def test_upload_page_asks_for_the_token(browser, bundle, tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(_png_bytes())
    with running(create_app(bundle, token="page-token")) as url, opened(browser, url) as page:
        page.wait_for_selector("#auth", state="visible")
        page.fill("#token", "page-token")
        page.dispatch_event("#token", "change")
        page.locator("#status", has_text=re.compile(r"^ready$")).wait_for()  # no eval: the page's CSP forbids it
        assert page.is_hidden("#auth")
        page.set_input_files("#file", str(photo))
        page.wait_for_selector(".result .row")
        assert page.text_content(".result .labels") == "bag"
