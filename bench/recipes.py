"""Compare training recipes on a Fashion-MNIST folder set: plain, freeze-then-unfreeze, augmentation
presets, TTA and a 3-fold ensemble. Prints held-out test accuracy and wall time; never asserts.

Run: .venv/bin/python bench/recipes.py [--per-class 300] [--epochs 4] [--model efficientnet_lite0]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import labelwise
from labelwise.data.demo import build_multiclass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--model", default="efficientnet_lite0")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lw-recipes-"))
    train = build_multiclass(root / "train", args.per_class, split="train", seed=1)
    test = build_multiclass(root / "test", 100, split="test", seed=2)
    base = dict(backbone=args.model, epochs=args.epochs, progress=False)
    recipes = {
        "plain (augment default)": {},
        "freeze 1 epoch, then unfreeze": {"freeze_epochs": 1},
        "augment none": {"augment": "none"},
        "augment light": {"augment": "light"},
        "augment strong": {"augment": "strong"},
        "mixup 0.2": {"mixup": 0.2},
        "3-fold ensemble": {"folds": 3},
    }
    rows = []
    for name, extra in recipes.items():
        t0 = time.monotonic()
        res = labelwise.train(train, root / name.replace(" ", "_").replace(",", ""), **base, **extra)
        wall = time.monotonic() - t0
        acc = labelwise.evaluate(res.run_dir, test, out=root / "e.json")["model"]["accuracy"]
        rows.append((name, acc, wall))
        if name.startswith("plain"):
            t1 = time.monotonic()
            tta = labelwise.evaluate(res.run_dir, test, tta=True, out=root / "e.json")["model"]["accuracy"]
            rows.append(("plain + TTA (flip)", tta, wall + time.monotonic() - t1))
    print(f"\n{args.model}, {args.epochs} epochs, {args.per_class * 10} train images, 1000 held-out test images")
    print(f"{'recipe':34s} {'test acc':>9s} {'wall s':>8s}")
    for name, acc, wall in rows:
        print(f"{name:34s} {acc:9.3f} {wall:8.0f}")


if __name__ == "__main__":
    main()
