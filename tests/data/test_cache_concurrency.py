"""Two `labelwise train` processes on the same data at the same time share one decode cache safely."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labelwise.data.cache import decode_through_cache  # noqa: F401  (the cache under test)
from labelwise.data.decoded import decode_samples
from labelwise.data.sources import load_samples

pytestmark = pytest.mark.slow


def _data(root: Path, n_per_class: int = 150, size: int = 20) -> Path:
    rng = np.random.default_rng(1)
    for k, name in enumerate(("a", "b")):
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            img[..., k] = 255
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


def _probs(run: Path) -> dict[str, list[float]]:
    with (run / "val_predictions.csv").open() as f:
        return {r["image"]: [float(r["a"]), float(r["b"])] for r in csv.DictReader(f)}


def test_two_trainings_at_once_share_the_decode_cache(tmp_path):
    data, cache = _data(tmp_path / "data"), tmp_path / "cache"
    cmd = [sys.executable, "-m", "labelwise", "train", str(data), "--model", "cnn-small", "--no-pretrained",
           "--epochs", "1", "--quiet", "--no-report", "--cache", str(cache), "--precision", "32"]
    procs = [subprocess.Popen([*cmd, "--out", str(tmp_path / f"run{i}")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in (1, 2)]
    results = [(p.wait(timeout=900), p.stderr.read()) for p in procs]
    for code, err in results:
        assert code == 0 and "Traceback" not in err, err[-3000:]
        assert "cache" not in err.lower(), err[-2000:]  # no warning that the cache failed and was bypassed
    # both saw the same pixels: same seed, same split, same decoded images -> the same model
    p1, p2 = _probs(tmp_path / "run1"), _probs(tmp_path / "run2")
    assert p1.keys() == p2.keys()
    assert max(abs(a - b) for k in p1 for a, b in zip(p1[k], p2[k])) < 1e-4
    # and every cached entry is whole: read back through the cache it equals a fresh decode
    samples = load_samples(data)
    _, cached = decode_samples(samples, 20, 3, cache_dir=cache)
    _, fresh = decode_samples(samples, 20, 3, cache_dir=None)
    assert np.array_equal(cached, fresh)
    assert any(cache.rglob("pixels.u8"))
