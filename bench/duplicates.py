"""Near-duplicate check across a split: false pairs on data without copies, recall on copies, speed
(issue 15, "False alarms are bugs in an honest tool"). Old (32 px correlation >= 0.99, copied
below) against the current labelwise.data.duplicates.

- False pairs: `make demo`'s multi-label mosaics (6,000 of 56 px, 2x2 Fashion-MNIST items on black,
  split as training splits them: 20% validation, seed 0; `demo_data/multilabel` is reused when
  present), and 10,000 x 2,000 distinct 28 px Fashion-MNIST items. The mosaics hold no copies
  (items are drawn without replacement); Fashion-MNIST holds a few photos of one product, so a
  stray pair there may be honest.
- Recall: 400 training images of each set, copied five ways (resized 0.75x or 1.25x and back,
  bicubic; JPEG quality 60 / 75; 20% brighter, clipped), checked against the whole training set.
- Time: 20,000 x 5,000 Fashion-MNIST items (fingerprinting, then the comparison).

    .venv/bin/python bench/duplicates.py            # ~2 min on 2 CPU cores
    .venv/bin/python bench/duplicates.py --quick    # 100 copies per kind, no timing
"""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from labelwise.data.decoded import decode_all
from labelwise.data.demo import DEMO_MOSAIC_CLASSES, build_mosaics, fashion_available, load_fashion
from labelwise.data.duplicates import (
    DEFAULT_MIN_SIMILARITY,
    cross_split_duplicates,
    fingerprint_gray,
    nearest_training,
)
from labelwise.data.sources import load_samples
from labelwise.data.splits import train_val_split

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo_data" / "multilabel"  # the Makefile's DEMO_DATA
KINDS = ("resize0.75", "resize1.25", "jpeg60", "jpeg75", "bright20")


# ----------------------------------------------------------------------------- old, as it was
def old_fingerprint(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The previous fingerprint: 32x32 area average, centred, unit length; flat rows zero."""
    import torch
    import torch.nn.functional as F

    g = np.asarray(gray, dtype=np.float32)
    if g.shape[1:] != (32, 32):
        g = F.adaptive_avg_pool2d(torch.from_numpy(g)[:, None], (32, 32))[:, 0].numpy()
    g = g.reshape(len(g), -1).copy()
    std = g.std(axis=1)
    g -= g.mean(axis=1, keepdims=True)
    g /= np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-6)
    flat = std < 2.0
    g[flat] = 0.0
    return g, flat


def old_pairs(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
              min_similarity: float = 0.99) -> list[tuple[int, int, float]]:
    """(train row, val row, similarity) for every pair at or above 0.99, as the old check did."""
    (tv, tflat), (vv, vflat) = train, val
    t_rows, v_rows = np.flatnonzero(~tflat), np.flatnonzero(~vflat)
    t_vec = np.ascontiguousarray(tv[t_rows])
    found = []
    for start in range(0, len(v_rows), 1024):
        rows = v_rows[start:start + 1024]
        sim = vv[rows] @ t_vec.T
        vi, ti = np.nonzero(sim >= min_similarity)
        found += [(int(t_rows[t]), int(rows[v]), float(sim[v, t])) for v, t in zip(vi, ti)]
    return found


def new_pairs(train, val) -> list[tuple[int, int, float]]:
    return [(d.train, d.val, d.similarity) for d in cross_split_duplicates(train, val)]


METHODS = {"old": (old_fingerprint, old_pairs), "new": (fingerprint_gray, new_pairs)}


# ----------------------------------------------------------------------------- data
def degrade(a: np.ndarray, kind: str) -> np.ndarray:
    im, w = Image.fromarray(a), a.shape[0]
    if kind.startswith("resize"):
        s = max(1, round(w * float(kind[6:])))
        return np.asarray(im.resize((s, s), Image.BICUBIC).resize((w, w), Image.BICUBIC))
    if kind.startswith("jpeg"):
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=int(kind[4:]))
        return np.asarray(Image.open(buf).convert("L"))
    if kind == "bright20":
        return np.clip(a.astype(np.float32) * 1.2, 0, 255).round().astype(np.uint8)
    raise ValueError(kind)


def demo_mosaics(tmp: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """The demo's training mosaics, split as `labelwise train` splits them (20%, seed 0)."""
    folder, where = DEMO, f"{DEMO.relative_to(ROOT)} (reused)"
    if not (folder / "labels.csv").is_file():
        folder, where = tmp / "multilabel", "built at the demo's settings"
        build_mosaics(folder, 6000, "train", seed=0, classes=DEMO_MOSAIC_CLASSES["fashion"], source="fashion")
    samples = load_samples(folder)
    train_idx, val_idx = train_val_split(samples, 0.2, seed=0)
    pixels, bad = decode_all(list(samples.paths), 56, 1, description="decoding mosaics")
    assert not bad, bad
    gray = pixels[:, 0]
    return gray[train_idx], gray[val_idx], where


def fashion_items(n_train: int, n_val: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    images, _ = load_fashion("train")
    idx = np.random.default_rng(seed).permutation(len(images))[: n_train + n_val]
    return images[idx[:n_train]], images[idx[n_train:]]


def copies(train: np.ndarray, n: int, seed: int = 1) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(source rows, {kind: copies}) of n random non-flat training images."""
    ok = np.flatnonzero(train.reshape(len(train), -1).std(axis=1) >= 2.0)
    src = np.random.default_rng(seed).choice(ok, size=min(n, len(ok)), replace=False)
    return src, {k: np.stack([degrade(train[i], k) for i in src]) for k in KINDS}


# ----------------------------------------------------------------------------- measures
def measure(name: str, train: np.ndarray, val: np.ndarray, n_copies: int) -> dict:
    out: dict = {"set": name, "size": f"{len(train):,} x {len(val):,}"}
    src, cps = copies(train, n_copies)
    for method, (fingerprint, pairs) in METHODS.items():
        fp_t = fingerprint(train)
        false = pairs(fp_t, fingerprint(val))
        out[method] = {"false": len(false), "false_val": len({p[1] for p in false}),
                       "top": sorted((p[2] for p in false), reverse=True)[:3]}
        if method == "new":  # how near the distinct images come to being reported
            _, sim, ratio = nearest_training(fp_t, fingerprint(val))
            out["margin"] = (float(sim.max()), float(ratio[sim >= DEFAULT_MIN_SIMILARITY].min(initial=np.inf)))
        for kind, c in cps.items():
            found = pairs(fp_t, fingerprint(c))
            hit = {(t, v) for t, v, _ in found}
            out[method][kind] = np.mean([(int(s), j) in hit for j, s in enumerate(src)])
            out[method][kind + "_wrong"] = sum(t != src[v] for t, v, _ in found)
    return out


def affine_residual(a: np.ndarray, b: np.ndarray) -> float:
    """RMS difference in gray levels between b and the best brightness/contrast map of a (native size)."""
    x, y = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    design = np.stack([x, np.ones_like(x)], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(np.sqrt(np.mean((design @ coef - y) ** 2)))


def timing(n_train: int, n_val: int) -> dict:
    """{method: (fingerprint wall s, cpu s, comparison wall s, cpu s, pairs)}. CPU seconds are the
    steadier figure on a shared machine (all threads of this process)."""
    images, _ = load_fashion("train")
    idx = np.random.default_rng(2).permutation(len(images))[: n_train + n_val]
    train, val = images[idx[:n_train]], images[idx[n_train:]]
    out = {}
    for method, (fingerprint, pairs) in METHODS.items():
        w0, c0 = time.perf_counter(), time.process_time()
        fp_t, fp_v = fingerprint(train), fingerprint(val)
        w1, c1 = time.perf_counter(), time.process_time()
        found = pairs(fp_t, fp_v)
        w2, c2 = time.perf_counter(), time.process_time()
        out[method] = (w1 - w0, c1 - c0, w2 - w1, c2 - c1, found,
                       [affine_residual(train[t], val[v]) for t, v, _ in found])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="100 copies per kind, no timing")
    args = ap.parse_args(argv)
    if not fashion_available():
        print("Fashion-MNIST (Debian dataset-fashion-mnist) is not installed: nothing to measure")
        return 0
    n_copies = 100 if args.quick else 400
    with tempfile.TemporaryDirectory() as tmp:
        m_train, m_val, where = demo_mosaics(Path(tmp))
    i_train, i_val = fashion_items(10_000, 2_000)
    rows = [measure(f"demo mosaics, 56 px ({where})", m_train, m_val, n_copies),
            measure("Fashion-MNIST items, 28 px", i_train, i_val, n_copies)]
    for r in rows:
        print(f"\n{r['set']}: {r['size']} (train x validation), {n_copies} copies per kind")
        print(f"  {'':28s} {'old':>14s} {'new':>14s}")
        for m in ("old", "new"):
            top = ", ".join(f"{s:.4f}" for s in r[m]["top"]) or "-"
            r[m]["false_str"] = f"{r[m]['false']} ({r[m]['false_val']} val)"
            r[m]["top_str"] = top
        print(f"  {'false pairs (distinct)':28s} {r['old']['false_str']:>14s} {r['new']['false_str']:>14s}")
        print(f"  {'  highest similarities':28s} {r['old']['top_str']:>14s} {r['new']['top_str']:>14s}")
        print(f"  {'  nearest distinct (new)':28s} similarity {r['margin'][0]:.4f} (reported at >= 0.997), "
              f"lowest ratio {r['margin'][1]:.3f} (reported at <= 0.14 with similarity >= 0.98)")
        for kind in KINDS:
            cells = [f"{r[m][kind]:.1%}" + (f" +{r[m][kind + '_wrong']}w" if r[m][kind + "_wrong"] else "")
                     for m in ("old", "new")]
            print(f"  {'recall ' + kind:28s} {cells[0]:>14s} {cells[1]:>14s}")
    print("\n(+Nw: pairs of a copy with a training image other than its original)")
    if not args.quick:
        t = timing(20_000, 5_000)
        print("\nFashion-MNIST items 20,000 x 5,000 (wall / CPU seconds):")
        for m, (fw, fc, cw, cc, found, residual) in t.items():
            close = sum(x < 8 for x in residual)
            print(f"  {m}: fingerprints {fw:.1f} / {fc:.1f} s, comparison {cw:.1f} / {cc:.1f} s; {len(found)} pairs "
                  f"reported ({len({p[1] for p in found})} val), {close} of them the same photo "
                  "(RMS < 8 gray levels after the best brightness/contrast map)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
