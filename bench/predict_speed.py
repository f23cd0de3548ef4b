"""Prediction speed: `labelwise predict` over a folder (listing, decoding, model, CSV) vs the model alone.

Two cases, each with a bundle of random weights (speed does not depend on them):

png28    Fashion-MNIST test images as 28-px PNG files (10,000; ``--png`` fewer), cnn-small 28 px gray
         (what `labelwise train` picks for them). Target: >= 3,000 images/s on 2 cores.
jpeg224  Photos as 640x480 JPEG files (quality 90, made from scikit-image's sample photos with noise;
         ``--jpeg`` of them), EfficientNet-Lite0 at 224 px RGB. Target: >= 80% of the model alone.

In interleaved rounds (a load change on a shared machine hits all alike), median images/s of:
model alone   ``Predictor.predict_pixels`` on pre-decoded uint8 arrays, torch's default threads
predict       the ``labelwise predict`` command's function in this process: list the folder, load the
              bundle, decode + model in worker processes (labelwise.infer.pipeline), stream the CSV
one process   the same with ``LABELWISE_PREDICT_PROCESSES=0`` (threaded decode, then the model)
and CPU seconds per image (this process + its children): on a busy machine wall-clock rates swing with
the load, while CPU time per image barely moves, so ``cores / cpu-s per image`` estimates the rate of
an idle machine. Memory: the peak RSS growth of this process over a predict run of ``--memory-files``
images (hard links to the PNGs), which stays flat however many files there are.

Run: .venv/bin/python bench/predict_speed.py [--quick] [--only png28,jpeg224]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CASES = ("png28", "jpeg224")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu_s() -> float:
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def vm_hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_bundle(run: Path, backbone: str, channels: int, size: int, n_labels: int) -> Path:
    import torch

    from labelwise.labels import LabelSpace
    from labelwise.models.bundle import ModelMeta, save_model
    from labelwise.models.classifier import Classifier

    torch.manual_seed(0)
    model = Classifier(backbone, n_labels, in_chans=channels).eval()
    torch.nn.init.normal_(model.head.weight, std=0.1)
    labels = LabelSpace(tuple(f"label{i}" for i in range(n_labels)), "multiclass")
    save_model(run, model, ModelMeta(labels=labels, backbone=backbone, in_chans=channels, image_size=size,
                                     thresholds=(0.5,) * n_labels))
    return run


def make_pngs(folder: Path, n: int) -> Path:
    from PIL import Image

    from labelwise.data.demo import fashion_available, load_fashion

    if folder.is_dir() and sum(1 for _ in folder.iterdir()) == n:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    if fashion_available():
        x, _ = load_fashion("test")
    else:  # any 28x28 gray content decodes alike
        x = np.random.default_rng(0).integers(0, 256, (10_000, 28, 28), dtype=np.uint8)
    for i in range(n):
        Image.fromarray(x[i % len(x)]).save(folder / f"t_{i:06d}.png")
    return folder


def make_jpegs(folder: Path, n: int) -> Path:
    import skimage.data
    from PIL import Image

    if folder.is_dir() and sum(1 for _ in folder.iterdir()) == n:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    sources = [np.ascontiguousarray(getattr(skimage.data, s)()[..., :3]) for s in ("astronaut", "chelsea", "coffee",
                                                                                     "rocket")]
    rng = np.random.default_rng(0)
    for i in range(n):
        src = sources[i % len(sources)].astype(np.int16) + rng.integers(-8, 9, sources[i % len(sources)].shape)
        img = Image.fromarray(np.clip(src, 0, 255).astype(np.uint8)).resize((640, 480), Image.Resampling.BILINEAR)
        img.save(folder / f"p_{i:05d}.jpg", quality=90)
    return folder


_APP = None


def cli_predict(run: Path, folder: Path, out: Path) -> None:
    """`labelwise predict RUN FOLDER --out OUT --quiet --overwrite`, in this process (typer's test runner)."""
    global _APP
    import typer
    from typer.testing import CliRunner

    from labelwise.cli.predict import predict

    if _APP is None:
        _APP = typer.Typer()
        _APP.command()(predict)
    res = CliRunner().invoke(_APP, [str(run), str(folder), "--out", str(out), "--quiet", "--overwrite"])
    if res.exit_code != 0:
        raise RuntimeError(f"labelwise predict failed ({res.exit_code}): {res.output[-500:]} {res.exception!r}")


def one_process(fn):
    def wrapped():
        os.environ["LABELWISE_PREDICT_PROCESSES"] = "0"
        try:
            fn()
        finally:
            os.environ.pop("LABELWISE_PREDICT_PROCESSES", None)
    return wrapped


def measure_case(name: str, run: Path, folder: Path, rounds: int, work: Path) -> dict:
    from labelwise.data.decoded import decode_all
    from labelwise.infer.engines import cpu_cores
    from labelwise.infer.predict import Predictor, list_images

    paths = list_images([folder])
    pred = Predictor.load(run)
    pixels, _ = decode_all(paths[:512], pred.meta.image_size, pred.meta.in_chans)
    pred.predict_pixels(pixels[:64])  # warm-up
    out = work / f"{name}.csv"
    modes = {"model alone": (lambda: pred.predict_pixels(pixels), len(pixels)),
             "predict": (lambda: cli_predict(run, folder, out), len(paths)),
             "one process": (one_process(lambda: cli_predict(run, folder, out)), len(paths))}
    rates: dict[str, list[float]] = {m: [] for m in modes}
    cpus: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(rounds):
        for mode, (fn, n) in modes.items():
            c, t = cpu_s(), time.perf_counter()
            fn()
            wall, c = time.perf_counter() - t, cpu_s() - c
            rates[mode].append(n / wall)
            cpus[mode].append(c / n)
            log(f"{name} round {r + 1}/{rounds}: {mode:12s} {n / wall:8.1f} img/s, {c / n * 1e3:7.3f} cpu-ms/img, "
                f"load {os.getloadavg()[0]:.1f}")
    lines = sum(1 for _ in out.open()) - 1
    assert lines == len(paths), f"{out}: {lines} rows for {len(paths)} images"
    med = {m: float(np.median(v)) for m, v in rates.items()}
    cpu = {m: float(np.median(v)) for m, v in cpus.items()}
    cores = cpu_cores()
    return {"images": len(paths), "rounds": rounds, "images_per_s": med, "cpu_s_per_image": cpu,
            "idle_estimate_images_per_s": {m: cores / v for m, v in cpu.items()},
            "ratio_to_model": med["predict"] / med["model alone"],
            "idle_ratio_to_model": cpu["model alone"] / cpu["predict"], "cores": cores,
            "backbone": pred.meta.backbone, "size": pred.meta.image_size}


def measure_memory(run: Path, pngs: Path, n_files: int, work: Path) -> dict:
    """Peak RSS growth of `predict` over n_files (hard links to the PNGs) vs over 1/10 of them."""
    import subprocess

    big = work / f"memory-{n_files}"
    if not big.is_dir():
        big.mkdir()
        src = sorted(pngs.iterdir())
        for i in range(n_files):
            os.link(src[i % len(src)], big / f"m_{i:07d}.png")
    small = work / f"memory-{n_files // 10}"
    if not small.is_dir():
        small.mkdir()
        for i, p in enumerate(sorted(big.iterdir())[: n_files // 10]):
            os.link(p, small / p.name)
    code = ("import sys; sys.path.insert(0, %r); import predict_speed as b; from pathlib import Path; "
            "from labelwise.infer.predict import Predictor; Predictor.load(Path(sys.argv[1])); h0 = b.vm_hwm_mib(); "
            "b.cli_predict(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])); print(h0, b.vm_hwm_mib())"
            % str(Path(__file__).resolve().parent))
    out = {}
    for folder in (small, big):
        t = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", code, str(run), str(folder), str(work / "mem.csv")],
                             capture_output=True, text=True, check=True)
        before, after = map(float, res.stdout.split())
        n = sum(1 for _ in folder.iterdir())
        out[n] = {"rss_before_mib": before, "peak_rss_mib": after, "growth_mib": after - before,
                  "images_per_s": n / (time.perf_counter() - t)}
        log(f"memory: {n} files: peak RSS {after:.0f} MiB ({after - before:+.0f} MiB over the loaded model)")
    return out


def run_bench(args, work: Path) -> dict:
    from labelwise.infer.engines import cpu_cores

    res: dict = {"cores": cpu_cores()}
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    if "png28" in only:
        run = make_bundle(work / "run-png28", "cnn-small", 1, 28, 10)
        folder = make_pngs(Path(args.data) / f"png28-{args.png}", args.png)
        res["png28"] = measure_case("png28", run, folder, args.rounds, work)
        if args.memory_files:
            res["memory"] = measure_memory(run, folder, args.memory_files, Path(args.data))
    if "jpeg224" in only:
        run = make_bundle(work / "run-jpeg224", "efficientnet_lite0", 3, 224, 10)
        folder = make_jpegs(Path(args.data) / f"jpeg-{args.jpeg}", args.jpeg)
        res["jpeg224"] = measure_case("jpeg224", run, folder, args.rounds, work)
    return res


def add_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--png", type=int, default=None, help="28-px PNGs to predict (default 10,000; quick 1,200)")
    ap.add_argument("--jpeg", type=int, default=None, help="640x480 JPEGs to predict (default 400; quick 128)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3; quick 1)")
    ap.add_argument("--memory-files", type=int, default=None,
                    help="files for the flat-memory check (default 100,000; quick: skipped)")
    ap.add_argument("--predict-data", dest="data", default="/tmp/lw-bench-predict",
                    help="where the generated images are kept for later runs")


def defaults(args) -> None:
    quick = getattr(args, "quick", False)
    args.png = args.png or (1200 if quick else 10_000)
    args.jpeg = args.jpeg or (128 if quick else 400)  # 128: enough tasks for the worker processes on 2 cores
    args.rounds = args.rounds or (1 if quick else 3)
    if args.memory_files is None:
        args.memory_files = 0 if quick else 100_000


def print_rows(res: dict) -> None:
    for name in CASES:
        r = res.get(name)
        if not r:
            continue
        ips, idle = r["images_per_s"], r["idle_estimate_images_per_s"]
        print(f"{name}: {r['images']} files, {r['backbone']} {r['size']} px; images/s (median of {r['rounds']}): "
              + ", ".join(f"{m} {v:.0f}" for m, v in ips.items())
              + f"; predict / model alone {r['ratio_to_model']:.2f}; idle estimate (cores / cpu-s per image): "
              + ", ".join(f"{m} {v:.0f}" for m, v in idle.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="seconds-scale smoke run")
    ap.add_argument("--only", default=",".join(CASES))
    ap.add_argument("--json", default=None, help="also write the results here")
    add_args(ap)
    args = ap.parse_args()
    defaults(args)
    work = Path(tempfile.mkdtemp(prefix="lw-predict-speed-"))
    res = run_bench(args, work)
    print_rows(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
