"""Decode every image once, resized, into one uint8 array (N, C, S, S).

Decoding is the slow part of a small-model epoch; doing it once and augmenting whole batches as
tensor ops afterwards keeps per-image Python out of the training loop. Unreadable files are reported
by path and dropped (``strict`` makes them an error), so no epoch can crash on a bad image.
With a cache directory, decoded images persist across runs (cache/): a second run on the same
files decodes nothing, and an edited file is decoded again.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from labelwise.data import images
from labelwise.data.band_scaling import PLAIN, PixelSpec
from labelwise.data.cache import chunks, decode_through_cache
from labelwise.data.samples import Samples
from labelwise.errors import ImageError
from labelwise.progress import progress_bar

log = logging.getLogger("labelwise")


def decode_all(paths: list[Path], size: int, channels: int, *, max_pixels: int = images.DEFAULT_MAX_PIXELS,
               workers: int | None = None, description: str = "decoding", cache_dir: Path | None = None,
               pixel_spec: PixelSpec = PLAIN) -> tuple[np.ndarray, dict[Path, str]]:
    """Return (array of shape (N, channels, size, size) uint8, {bad path: reason}).

    Rows of bad images are left zero; callers drop them using the returned dict, which lists them in
    the order of ``paths``. With ``cache_dir`` (see cache.resolve_cache_dir), images decoded by an
    earlier run are read from the on-disk cache there and new ones are added to it; the array may
    then be a read-only view of the cache file. None decodes everything in memory.
    ``pixel_spec``: the bands and their scaling (a bundle's ``meta.pixel_spec``); part of the cache key.
    """
    def decode(part: list, out: np.ndarray, rows: np.ndarray) -> dict:
        return _decode_into(part, out, rows, size, channels, max_pixels, workers, description, pixel_spec)

    if cache_dir is None:
        out = np.zeros((len(paths), channels, size, size), dtype=np.uint8)
        bad = decode(list(paths), out, np.arange(len(paths)))
        return out, bad
    out, bad, report = decode_through_cache(paths, size, channels, cache_dir, max_pixels=max_pixels,
                                            decode=decode, workers=workers, progress=progress_bar,
                                            variant=pixel_spec.key())
    if report.images:
        log.info(report.summary())
    return out, bad


def _decode_into(paths: list, out: np.ndarray, rows: np.ndarray, size: int, channels: int, max_pixels: int,
                 workers: int | None, description: str, pixel_spec: PixelSpec) -> dict:
    """Decode paths[j] into out[rows[j]] with threads; return {bad path: reason} in the order of ``paths``."""
    bad: dict = {}

    def work(part: range) -> int:
        for j in part:
            try:
                arr = images.read_resized(paths[j], size, channels, max_pixels=max_pixels, pixel_spec=pixel_spec)
                out[rows[j]] = arr.transpose(2, 0, 1)
            except ImageError as e:
                bad[paths[j]] = str(e)
        return len(part)

    # Pillow releases the GIL while decoding and resizing, so threads use every core. Runs of
    # images per task: a future per tiny image would cost as much as decoding it.
    n_workers = workers or os.cpu_count() or 1
    with progress_bar(len(paths), description) as bar, ThreadPoolExecutor(n_workers) as pool:
        task = bar.add_task(description, total=len(paths))
        for done in pool.map(work, chunks(len(paths), n_workers)):
            bar.advance(task, done)
    return {p: bad[p] for p in paths if p in bad}


def decode_samples(samples: Samples, size: int, channels: int, *, strict: bool = False,
                   max_pixels: int = images.DEFAULT_MAX_PIXELS, workers: int | None = None,
                   cache_dir: Path | None = None, pixel_spec: PixelSpec = PLAIN) -> tuple[Samples, np.ndarray]:
    """Decode all samples; drop unreadable ones (recorded in ``Samples.skipped``) unless ``strict``.

    ``cache_dir``, ``pixel_spec``: as in decode_all (None: no cache).
    """
    pixels, bad = decode_all(samples.paths, size, channels, max_pixels=max_pixels, workers=workers,
                             cache_dir=cache_dir, pixel_spec=pixel_spec)
    if bad and strict:
        path, reason = next(iter(bad.items()))
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ImageError(f"{reason}{more}; --strict is set, so unreadable images are errors. "
                         "Remove or fix the file, or drop --strict to skip it")
    if not bad:
        return samples, pixels
    keep = np.array([p not in bad for p in samples.paths])
    return samples.drop(bad), pixels[keep]
