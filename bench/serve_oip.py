"""Latency of one image through the Open Inference Protocol (tritonclient) vs labelwise's own /predict.

A `labelwise serve` subprocess on 127.0.0.1 serves a bundle written directly (efficientnet_lite0 with
its offline ImageNet weights and a random 4-label head, at --image-size px, or ``--run RUN``). One
client at a time sends the same real Fashion-MNIST mosaic PNG: N requests through tritonclient's
HTTP client (BYTES input, binary tensor extension) and N through httpx to POST /predict (multipart).
Prints p50 / mean / p90 in ms. A benchmark: prints, never asserts.

Run: .venv/bin/python bench/serve_oip.py [--requests 200] [--image-size 64]
"""
from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bundle(run: Path, size: int) -> Path:
    import torch

    from labelwise.labels import LabelSpace
    from labelwise.models.bundle import ModelMeta, save_model
    from labelwise.models.classifier import Classifier

    labels = LabelSpace(("trouser", "bag", "sneaker", "dress"), "multilabel")
    model = Classifier("efficientnet_lite0", len(labels), in_chans=1, pretrained=True)
    with torch.no_grad():
        model.head.weight.normal_(0, 0.05)
    save_model(run, model.eval(), ModelMeta(labels, "efficientnet_lite0", 1, size, (0.5,) * 4,
                                            mean=tuple(model.mean.flatten().tolist()),
                                            std=tuple(model.std.flatten().tolist())))
    return run


def _times(fn, n: int) -> list[float]:
    for _ in range(5):  # warm-up: connections, first forward passes
        fn()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--run", type=Path)
    args = ap.parse_args()
    import tritonclient.http as http

    from labelwise.data.demo import build_mosaics

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or _bundle(Path(tmp) / "run", args.image_size)
        image = sorted((build_mosaics(Path(tmp) / "pics", 1, split="test") / "images").iterdir())[0].read_bytes()
        port = _port()
        server = subprocess.Popen([sys.executable, "-m", "labelwise", "serve", str(run), "--port", str(port),
                                   "--model-name", "m", "--log-level", "warning"])
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            client = http.InferenceServerClient(f"127.0.0.1:{port}")
            x = http.InferInput("image", [1], "BYTES")
            x.set_data_from_numpy(np.array([image], dtype=np.object_))
            triton = _times(lambda: client.infer("m", [x]).as_numpy("probabilities"), args.requests)
            with httpx.Client() as h:
                files = {"file": ("a.png", image, "image/png")}
                ours = _times(lambda: h.post(f"http://127.0.0.1:{port}/predict", files=files).raise_for_status(),
                              args.requests)
        finally:
            server.terminate()
            server.wait(30)
    for name, t in (("OIP /v2/.../infer (tritonclient)", triton), ("/predict (httpx multipart)", ours)):
        q = statistics.quantiles(t, n=10)
        print(f"{name:36s} p50 {statistics.median(t):6.2f} ms  mean {statistics.mean(t):6.2f} ms  "
              f"p90 {q[-1]:6.2f} ms  ({len(t)} requests, {args.image_size} px, 1 image each)")


if __name__ == "__main__":
    main()
