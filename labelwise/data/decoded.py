"""Decode every image once, resized, into one uint8 array (N, C, S, S).

Decoding is the slow part of a small-model epoch; doing it once and augmenting whole batches as
tensor ops afterwards keeps per-image Python out of the training loop. Unreadable files are reported
by path and dropped (``strict`` makes them an error), so no epoch can crash on a bad image.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import ImageError
from . import images
from .samples import Samples


def _progress(total: int, description: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    transient=True, disable=total < 500)


def decode_all(paths: list[Path], size: int, channels: int, *, max_pixels: int = images.DEFAULT_MAX_PIXELS,
               workers: int | None = None, description: str = "decoding") -> tuple[np.ndarray, dict[Path, str]]:
    """Return (array of shape (N, channels, size, size) uint8, {bad path: reason}).

    Rows of bad images are left zero; callers drop them using the returned dict.
    """
    out = np.zeros((len(paths), channels, size, size), dtype=np.uint8)
    bad: dict[Path, str] = {}

    def work(i: int) -> None:
        try:
            out[i] = images.read_resized(paths[i], size, channels, max_pixels=max_pixels).transpose(2, 0, 1)
        except ImageError as e:
            bad[paths[i]] = str(e)

    # Pillow releases the GIL while decoding and resizing, so threads use every core.
    n_workers = workers or os.cpu_count() or 1
    with _progress(len(paths), description) as bar, ThreadPoolExecutor(n_workers) as pool:
        task = bar.add_task(description, total=len(paths))
        for _ in pool.map(work, range(len(paths)), chunksize=64):
            bar.advance(task)
    return out, bad


def decode_samples(samples: Samples, size: int, channels: int, *, strict: bool = False,
                   max_pixels: int = images.DEFAULT_MAX_PIXELS, workers: int | None = None
                   ) -> tuple[Samples, np.ndarray]:
    """Decode all samples; drop unreadable ones (recorded in ``Samples.skipped``) unless ``strict``."""
    pixels, bad = decode_all(samples.paths, size, channels, max_pixels=max_pixels, workers=workers)
    if bad and strict:
        path, reason = next(iter(bad.items()))
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ImageError(f"{reason}{more}; --strict is set, so unreadable images are errors. "
                         "Remove or fix the file, or drop --strict to skip it")
    if not bad:
        return samples, pixels
    keep = np.array([p not in bad for p in samples.paths])
    return samples.drop(bad), pixels[keep]
