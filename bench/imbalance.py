"""Skewed multi-label Fashion-MNIST mosaics: plain BCE at 0.5 vs class weights vs tuned thresholds vs both.

Prints macro F1 / exact-match / mAP on a held-out test set next to the trivial baselines.
Run: .venv/bin/python bench/imbalance.py [--epochs 6] [--train 3000]. A benchmark: prints, never asserts.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import labelwise
from labelwise.data.demo import build_mosaics

CLASSES = ("trouser", "bag", "sneaker", "dress", "shirt")
SKEW = (0.70, 0.15, 0.08, 0.05, 0.02)  # one dominant label, rare ones


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--train", type=int, default=3000)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--model", default="efficientnet_lite0")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lw-imbalance-"))
    kw = dict(classes=CLASSES, class_probs=SKEW, empty_fraction=0.5, cell_fill=0.3, source="fashion")
    train = build_mosaics(root / "train", args.train, split="train", seed=1, **kw)
    test = build_mosaics(root / "test", args.test, split="test", seed=2, **kw)
    rows = []
    baselines = None
    for weights in ("none", "auto"):
        t0 = time.monotonic()
        res = labelwise.train(train, root / f"run-{weights}", epochs=args.epochs, class_weights=weights,
                              backbone=args.model, progress=False)
        wall = time.monotonic() - t0
        for name, thr in (("0.5 cut-off", 0.5), ("tuned thresholds", None)):
            m = labelwise.evaluate(res.run_dir, test, threshold=thr, out=root / f"eval-{weights}-{thr}.json")
            label = ("BCE" if weights == "none" else "BCE + class weights") + f", {name}"
            rows.append((label, m["model"], f"{wall:.0f}s"))
            baselines = m["baselines"]
    for name, b in baselines.items():
        rows.append((f"baseline: {name}", b, ""))
    print(f"\nskewed mosaics: {args.train} train / {args.test} test images, label shares {dict(zip(CLASSES, SKEW))},"
          f" half the images empty; {args.model}, {args.epochs} epochs")
    print(f"{'predictor':42s} {'macro F1':>9s} {'exact':>7s} {'mAP':>7s} {'train':>7s}")
    for label, m, wall in rows:
        f = lambda k: "-" if m.get(k) is None else f"{m[k]:.3f}"  # noqa: E731
        print(f"{label:42s} {f('f1_macro'):>9s} {f('exact_match'):>7s} {f('map'):>7s} {wall:>7s}")


if __name__ == "__main__":
    main()
