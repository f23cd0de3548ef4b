"""Small data sets several test folders build (importable from any test folder; see conftest.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def shades(root: Path, n: int, seed: int = 0, levels: tuple[int, int] = (50, 200), spread: float = 40,
           side: int = 16) -> Path:
    """Class folders dark/ and light/ of noise around two grey levels: a signal a tiny CNN learns in an epoch
    or two on any CPU."""
    rng = np.random.default_rng(seed)
    for name, level in zip(("dark", "light"), levels):
        (root / name).mkdir(parents=True)
        for i in range(n):
            img = np.clip(rng.normal(level, spread, (side, side)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root
