"""Inference speed: PyTorch eager vs ONNX Runtime, through labelwise's two engines.

For each model: images/s at batch 64 and batch-1 latency (p50 / p99, ms), measured in the same run
on the same uint8 input, end to end as ``Predictor.predict_pixels`` runs it (uint8 -> [0, 1] float,
model, sigmoid). PyTorch runs under ``torch.inference_mode`` in NCHW and in channels-last (the torch
engine's layout); the speed-up is ONNX over the faster of the two. The engines take turns (3 rounds)
so a load change on a shared machine hits them alike. Weights are random: speed does not
depend on them. A benchmark: prints, never asserts.

Run: .venv/bin/python bench/inference.py [--seconds 6] [--threads 1] [--only efficientnet_lite0]
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from labelwise.models.bundle import ModelMeta
from labelwise.infer.engines import OnnxEngine, TorchEngine, cpu_cores
from labelwise.infer.export import onnx_bytes
from labelwise.labels import LabelSpace
from labelwise.models.classifier import Classifier

# (backbone, channels, size px): the default at ImageNet size, the default as the demo trains it
# (Fashion-MNIST mosaics: 64 px gray), and the small from-scratch CNN at 32 px.
CONFIGS = (("efficientnet_lite0", 3, 224), ("efficientnet_lite0", 1, 64), ("cnn-small", 1, 32))
NUM_LABELS = 10
BATCH = 64


@dataclass
class Timing:
    images_per_s: float
    p50_ms: float
    p99_ms: float
    n_latency: int


ROUNDS = 3  # the engines take turns, so a load change on a shared machine hits all of them alike


def _timed_calls(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, seconds: float, min_calls: int,
                 max_calls: int) -> list[float]:
    """Seconds per call of fn(x): at least `min_calls`, then more until `seconds` or `max_calls`."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_calls or (len(times) < max_calls and time.perf_counter() - start < seconds):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return times


def measure(engines: dict[str, Callable[[np.ndarray], np.ndarray]], x: np.ndarray, seconds: float) -> dict[str, Timing]:
    """Throughput at batch len(x) and batch-1 latency per engine, in ROUNDS interleaved turns."""
    batch_s: dict[str, list[float]] = {name: [] for name in engines}
    single_s: dict[str, list[float]] = {name: [] for name in engines}
    for fn in engines.values():  # warm-up: first-call allocations, onnxruntime's thread pool
        fn(x[:1])
        fn(x)
    share = seconds / ROUNDS
    for _ in range(ROUNDS):
        for name, fn in engines.items():
            batch_s[name] += _timed_calls(fn, x, share, min_calls=1, max_calls=1000)
            single_s[name] += _timed_calls(fn, x[:1], share, min_calls=7, max_calls=200)
    out = {}
    for name in engines:
        ms = np.asarray(single_s[name]) * 1000
        out[name] = Timing(len(x) / float(np.median(batch_s[name])), float(np.percentile(ms, 50)),
                           float(np.percentile(ms, 99)), len(ms))
    return out


def bench_model(backbone: str, channels: int, size: int, seconds: float, threads: int) -> dict[str, object]:
    torch.manual_seed(0)
    labels = LabelSpace(tuple(f"label{i}" for i in range(NUM_LABELS)), "multilabel")
    meta = ModelMeta(labels=labels, backbone=backbone, in_chans=channels, image_size=size,
                     thresholds=(0.5,) * NUM_LABELS)
    model = Classifier(backbone, NUM_LABELS, in_chans=channels).eval()
    torch.nn.init.normal_(model.head.weight, std=0.1)  # the zero-initialised head would give 0.5 everywhere
    x = np.random.default_rng(0).integers(0, 256, (BATCH, channels, size, size), dtype=np.uint8)

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data, exporter = onnx_bytes(model, meta)
    export_s = time.perf_counter() - start
    onnx_engine = OnnxEngine(data, threads=threads)
    torch_engine = TorchEngine(copy.deepcopy(model), multilabel=True)  # its weights go channels-last
    timings = measure({"nchw": lambda a: _nchw_probs(model, a),
                       "channels_last": lambda a: torch_engine.probs(a, BATCH),
                       "onnx": lambda a: onnx_engine.probs(a, BATCH)}, x, seconds)
    diff = float(np.abs(onnx_engine.probs(x) - torch_engine.probs(x)).max())
    return {"name": f"{backbone} {size}px x{channels}", **timings, "export_s": export_s, "exporter": exporter,
            "max_diff": diff}


@torch.inference_mode()
def _nchw_probs(model: torch.nn.Module, pixels: np.ndarray) -> np.ndarray:
    """PyTorch eager in plain NCHW (contiguous) layout, the way most code runs it."""
    return torch.sigmoid(model(torch.from_numpy(pixels).float().div_(255.0))).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=6.0,
                    help="time per engine and model, for throughput and again for latency")
    ap.add_argument("--only", default=None, help="run only configs whose backbone contains this")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for both engines (default: torch's default and onnxruntime's engine default, "
                         "all usable cores); 1 compares per-core speed and is robust to a busy machine")
    args = ap.parse_args()
    import onnxruntime

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = args.threads or cpu_cores()
    load = os.getloadavg()[0]
    print(f"machine: {platform.processor() or platform.machine()}, {cpu_cores()} cores usable, "
          f"load average {load:.1f} at start; torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), onnxruntime {onnxruntime.__version__} ({threads} intra-op threads, "
          "graph optimisation: all)")
    if load > cpu_cores() and threads > 1:
        print(f"warning: the machine is busy (load {load:.1f} on {cpu_cores()} cores). Multi-threaded PyTorch "
              "(OpenMP) slows down far more than onnxruntime when its threads are descheduled, which inflates "
              "the speed-up; rerun on an idle machine or with --threads 1")
    rows = [bench_model(b, c, s, args.seconds, threads) for b, c, s in CONFIGS if not args.only or args.only in b]
    print(f"\nimages/s at batch {BATCH}, batch-1 latency p50/p99 in ms (uint8 in, probabilities out)")
    head = (f"{'model':28s} {'torch NCHW':>11s} {'torch CL':>9s} {'ONNX RT':>9s} {'speed-up':>8s}   "
            f"{'torch b1 p50/p99':>17s} {'ONNX b1 p50/p99':>16s}   {'export':>7s} {'max|dp|':>8s}")
    print(head)
    print("-" * len(head))
    for r in rows:
        t_best = max((r["nchw"], r["channels_last"]), key=lambda t: t.images_per_s)
        o = r["onnx"]
        print(f"{r['name']:28s} {r['nchw'].images_per_s:11.1f} {r['channels_last'].images_per_s:9.1f} "
              f"{o.images_per_s:9.1f} {o.images_per_s / t_best.images_per_s:7.2f}x   "
              f"{t_best.p50_ms:8.2f}/{t_best.p99_ms:<8.2f} {o.p50_ms:7.2f}/{o.p99_ms:<8.2f}   "
              f"{r['export_s']:6.1f}s {r['max_diff']:8.1e}")
    print(f"\nspeed-up: ONNX Runtime images/s over the faster PyTorch layout; torch latency is that layout's. "
          f"export: seconds to export ({rows[0]['exporter'] if rows else ''}) and verify; max|dp|: largest "
          f"probability difference ONNX vs torch on the batch. Load average at end: {os.getloadavg()[0]:.1f}.")


if __name__ == "__main__":
    main()
