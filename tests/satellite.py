"""Tiny 16-bit multispectral tiles for tests that need a run over such data (see tests/data/test_multispectral.py
for the full-size set and why its numbers are what they are)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

BASE = (3000, 3050, 3100, 2980)  # DN per band (blue, green, red, near-infrared): x / 257 makes every value 12
SIGNAL = 40  # DN added to band 4 for "vegetation"
NOISE = 20  # DN, uniform +-


def write_tiles(root: Path, n_per_class: int = 24, side: int = 12, seed: int = 0) -> Path:
    """Class folders bare/ and vegetation/ of 4-band uint16 TIFFs (HWC, as Planet's analytic tiles)."""
    rng = np.random.default_rng(seed)
    for label, plus in (("bare", 0), ("vegetation", SIGNAL)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            tile = np.array(BASE) + np.array([0, 0, 0, plus]) + rng.integers(-NOISE, NOISE + 1, size=(side, side, 4))
            tifffile.imwrite(root / label / f"{label}_{i:03d}.tif", tile.astype(np.uint16), photometric="minisblack")
    return root
