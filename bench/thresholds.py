"""Tuned per-class thresholds vs the plain 0.5 cut-off, on held-out images (issue 16).

A skewed multi-label Fashion-MNIST mosaic set (two labels at 2-5% of images) trains a plain and a
class-weighted (``class_weights="auto"``) cnn-small over 3 seeds; each model is scored on held-out
test images at its tuned thresholds (fitted on its validation images, as ``train`` does) and at
0.5. The rule it checks: tuning never loses macro F1 or exact match to 0.5 by more than 0.005, and
wins clearly where 0.5 is wrong (the class-weighted models). Also shown: the exact F1 optimum
(``robust=False``), the fit labelwise used before.

    .venv/bin/python bench/thresholds.py              # ~4 min on 2 CPU cores
    .venv/bin/python bench/thresholds.py --rescore    # re-score the saved probabilities only
"""
from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import labelwise
from labelwise.data.demo import build_mosaics, fashion_available
from labelwise.evaluation.metrics import multilabel_metrics
from labelwise.evaluation.thresholds import fit_thresholds

CLASSES = ("trouser", "bag", "sneaker", "dress", "shirt", "sandal")
SKEW = dict(classes=CLASSES, class_probs=(0.45, 0.25, 0.12, 0.08, 0.04, 0.025), empty_fraction=0.3,
            cell_fill=0.35, source="fashion")
TRAIN = dict(backbone="cnn-small", pretrained=False, image_size=32, epochs=5, lr=3e-3, precision="32",
             progress=False, cache="off")
NAMES = tuple(sorted(CLASSES))  # the model's label order
TOLERANCE = 0.005


def _read_val(run: Path, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    with (run / "val_predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    probs = np.array([[float(r[n]) for n in names] for r in rows])
    targets = np.array([[int(n in r["true_labels"].split()) for n in names] for r in rows], dtype=np.uint8)
    return probs, targets


def _read_labels(data: Path, names: tuple[str, ...]) -> tuple[list[Path], np.ndarray]:
    with (data / "labels.csv").open() as f:
        rows = list(csv.DictReader(f))
    paths = [data / "images" / r["image"] for r in rows]
    return paths, np.array([[int(n in r["tags"].split()) for n in names] for r in rows], dtype=np.uint8)


def train_all(root: Path, seeds: list[int], n_train: int, n_test: int) -> None:
    train = build_mosaics(root / "train", n_train, split="train", seed=1, **SKEW)
    test = build_mosaics(root / "test", n_test, split="test", seed=2, **SKEW)
    test_paths, test_targets = _read_labels(test, NAMES)
    for seed in seeds:
        for kind in ("plain", "weighted"):
            started = time.monotonic()
            extra = {"class_weights": "auto"} if kind == "weighted" else {}
            res = labelwise.train(train, root / f"{kind}_{seed}", seed=seed, **TRAIN, **extra)
            names = tuple(res.metrics["model"]["per_class"])
            assert names == NAMES, names
            val_p, val_t = _read_val(res.run_dir, NAMES)
            predictor = labelwise.load(res.run_dir)
            test_p = np.concatenate([p for _, p, _ in predictor.iter_probs(test_paths)])
            np.savez(root / f"{kind}_{seed}.npz", val_p=val_p, val_t=val_t, test_p=test_p, test_t=test_targets,
                     shipped=np.asarray(predictor.thresholds))
            print(f"trained {kind} seed {seed} in {time.monotonic() - started:.0f} s", file=sys.stderr)


def rescore(root: Path, seeds: list[int]) -> bool:
    header = f"{'model':9} {'seed':>4} {'n_val':>5} | {'F1 0.5':>6} {'tuned':>6} {'exact':>6} | " \
             f"{'EM 0.5':>6} {'tuned':>6} {'exact':>6} | fallback"
    print(header)
    print("-" * len(header))
    ok = True
    for kind in ("plain", "weighted"):
        gains = []
        for seed in seeds:
            d = np.load(root / f"{kind}_{seed}.npz")
            cuts = {"0.5": np.full(len(NAMES), 0.5),
                    "tuned": fit_thresholds(d["val_p"], d["val_t"]),
                    "exact": fit_thresholds(d["val_p"], d["val_t"], robust=False)}
            m = {k: multilabel_metrics(d["test_p"], d["test_t"], th) for k, th in cuts.items()}
            f1 = {k: v["f1_macro"] for k, v in m.items()}
            em = {k: v["exact_match"] for k, v in m.items()}
            few = [n for n, s in zip(NAMES, d["val_t"].sum(0)) if s < 5]
            print(f"{kind:9} {seed:>4} {len(d['val_t']):>5} | {f1['0.5']:.3f}  {f1['tuned']:.3f}  {f1['exact']:.3f} | "
                  f"{em['0.5']:.3f}  {em['tuned']:.3f}  {em['exact']:.3f} | {' '.join(few) or '-'}")
            gains.append((f1["tuned"] - f1["0.5"], em["tuned"] - em["0.5"]))
            if min(gains[-1]) < -TOLERANCE:
                ok = False
        g = np.array(gains)
        print(f"{kind:9} mean gain of tuned over 0.5: macro F1 {g[:, 0].mean():+.3f}, exact match {g[:, 1].mean():+.3f}"
              f" (worst {g[:, 0].min():+.3f} / {g[:, 1].min():+.3f})")
    print(f"test images: {len(d['test_t'])}; label share in test: "
          + ", ".join(f"{n} {s:.1%}" for n, s in zip(NAMES, d["test_t"].mean(0))))
    print("rule (tuned never loses more than 0.005 to 0.5):", "holds" if ok else "BROKEN")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="working folder (default: a temporary one)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--n-train", type=int, default=1200)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--rescore", action="store_true", help="only re-score the probabilities saved in --out")
    args = ap.parse_args()
    if not fashion_available():
        print("Fashion-MNIST (Debian's dataset-fashion-mnist) is not installed", file=sys.stderr)
        return 1
    root = args.out or Path(tempfile.mkdtemp(prefix="lw-thresholds-"))
    root.mkdir(parents=True, exist_ok=True)
    seeds = list(range(args.seeds))
    if not args.rescore:
        train_all(root, seeds, args.n_train, args.n_test)
    rescore(root, seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
