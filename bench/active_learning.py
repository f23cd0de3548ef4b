"""Active learning, measured: do the 500 images `labelwise suggest` picks teach more than 500 at random?

Data: Fashion-MNIST 2x2 mosaics (``labelwise.data.demo.build_mosaics``, multi-label, 56 px), with
confusable upper-body garments and skewed label frequencies so that some labels are rare:
``CLASSES`` drawn with ``CLASS_PROBS``. Per seed: LABELLED images with labels, a POOL of unlabelled
ones (their labels are looked up only when picked), all from the Fashion-MNIST train split; a
held-out TEST set from the test split (never seen, never picked from).

Per seed:
  1. train the base model on the LABELLED images (the recipe below);
  2. `suggest` picks ADDED images from the pool (timed); a random draw of ADDED is the control;
  3. retrain from scratch with the same recipe on LABELLED + suggested, and on LABELLED + random;
  4. score both (and the base) on TEST: mAP and macro F1 (labelwise.evaluate).
Prints one row per seed, the mean gain of suggest over random with its spread, and suggest's time.

Run: .venv/bin/python bench/active_learning.py [--seeds 2] [--epochs 6] [--size 48] [--labelled 500 --pool 5000 --added 500]
A benchmark: prints, never fails on a number.
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
from labelwise.data.demo import build_mosaics
from labelwise.infer.suggest import suggest

CLASSES = ("tshirt", "trouser", "pullover", "coat", "shirt", "bag", "sneaker")
CLASS_PROBS = (0.22, 0.22, 0.12, 0.12, 0.06, 0.2, 0.06)  # shirt and sneaker rare
TEST_IMAGES = 1500


def recipe(seed: int, epochs: int, size: int) -> dict:
    return dict(epochs=epochs, backbone="cnn-small", pretrained=False, progress=False, image_size=size,
                batch_size=32, seed=seed, cache="off")


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("image", "tags"))
        w.writerows(rows)
    return path


def read_rows(path: Path) -> list[tuple[str, str]]:
    with open(path, newline="") as f:
        return [(r[0], r[1]) for r in list(csv.reader(f))[1:]]


def scores(run: Path, test: Path) -> tuple[float, float]:
    m = labelwise.evaluate(run, test, out=run / "test_evaluation.json")
    model = m.get("model", m)
    return float(model["map"]), float(model["f1_macro"])


def one_seed(root: Path, seed: int, args, test: Path) -> dict:
    data = build_mosaics(root / f"data{seed}", args.labelled + args.pool, split="train", seed=100 + seed,
                         classes=CLASSES, class_probs=CLASS_PROBS, empty_fraction=0.1)
    images = data / "images"
    rows = read_rows(data / "labels.csv")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(rows))
    labelled = [rows[i] for i in order[:args.labelled]]
    pool = [rows[i] for i in order[args.labelled:]]
    pool_dir = root / f"pool{seed}"
    pool_dir.mkdir()
    for name, _ in pool:  # the pool is a folder of images without labels
        (pool_dir / name).symlink_to(images / name)
    truth = dict(pool)

    base_run = root / f"base{seed}"
    labelwise.train(write_csv(root / f"labelled{seed}" / "labels.csv", labelled), out=base_run, images=images,
                    **recipe(seed, args.epochs, args.size))
    t0 = time.perf_counter()
    picked = suggest(base_run, pool_dir, n=args.added, out=root / f"to_label{seed}.csv")
    suggest_s = time.perf_counter() - t0
    chosen = [p.path.name for p in picked.picks]
    random_pick = [pool[i][0] for i in rng.permutation(len(pool))[:args.added]]

    out = {"seed": seed, "suggest_s": suggest_s, "pool": picked.n_pool}
    out["base"] = scores(base_run, test)
    for name, extra in (("suggest", chosen), ("random", random_pick)):
        rows_ = labelled + [(n, truth[n]) for n in extra]
        run = root / f"{name}{seed}"
        labelwise.train(write_csv(root / f"{name}{seed}_data" / "labels.csv", rows_), out=run, images=images,
                        **recipe(seed, args.epochs, args.size))
        out[name] = scores(run, test)
    freq = lambda names: np.mean([len(truth[n].split()) == 0 for n in names])  # noqa: E731
    out["empty_share"] = (freq(chosen), freq(random_pick))
    rare = lambda names: np.mean([any(t in ("shirt", "sneaker") for t in truth[n].split()) for n in names])  # noqa: E731
    out["rare_share"] = (rare(chosen), rare(random_pick))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--size", type=int, default=48, help="training image side, px (the mosaics are 56)")
    ap.add_argument("--labelled", type=int, default=500)
    ap.add_argument("--pool", type=int, default=5000)
    ap.add_argument("--added", type=int, default=500)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args(argv)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="labelwise-al-"))
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    test = build_mosaics(root / "test", TEST_IMAGES, split="test", seed=999, classes=CLASSES,
                         class_probs=CLASS_PROBS, empty_fraction=0.1)
    results = []
    print(f"{'seed':>4} | {'base mAP':>8} {'F1':>6} | {'random mAP':>10} {'F1':>6} | {'suggest mAP':>11} {'F1':>6} | "
          f"{'suggest s':>9} | rare-label share picked (suggest/random)", flush=True)
    for seed in range(args.seeds):
        r = one_seed(root, seed, args, test)
        results.append(r)
        print(f"{seed:>4} | {r['base'][0]:8.3f} {r['base'][1]:6.3f} | {r['random'][0]:10.3f} {r['random'][1]:6.3f} | "
              f"{r['suggest'][0]:11.3f} {r['suggest'][1]:6.3f} | {r['suggest_s']:9.1f} | "
              f"{r['rare_share'][0]:.2f} / {r['rare_share'][1]:.2f}", flush=True)
    gain_map = np.array([r["suggest"][0] - r["random"][0] for r in results])
    gain_f1 = np.array([r["suggest"][1] - r["random"][1] for r in results])
    sd = lambda x: x.std(ddof=1) if len(x) > 1 else float("nan")  # noqa: E731
    print(f"\n{args.labelled} labelled + {args.added} added from a pool of {args.pool}; test {TEST_IMAGES} held-out "
          f"mosaics; cnn-small, {args.size} px, {args.epochs} epochs; {args.seeds} seeds")
    print(f"gain of suggest over random: mAP {gain_map.mean():+.3f} (sd {sd(gain_map):.3f}, per seed "
          f"{', '.join(f'{g:+.3f}' for g in gain_map)}); macro F1 {gain_f1.mean():+.3f} (sd {sd(gain_f1):.3f}, per seed "
          f"{', '.join(f'{g:+.3f}' for g in gain_f1)})")
    print(f"suggest on {results[0]['pool']:,} pool images: {np.mean([r['suggest_s'] for r in results]):.1f} s "
          f"(mean over seeds, model load + decode + score + pick)")
    print(f"total wall time {time.perf_counter() - start:.0f} s; work folder {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
