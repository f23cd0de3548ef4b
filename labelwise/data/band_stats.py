"""Fit a PixelSpec's band statistics from a sample of the training images (see band_scaling.py).

Up to ``MAX_IMAGES`` images (a seeded sample), up to ``PIXELS_PER_IMAGE`` pixels of each: the 1st and 99th
percentiles of every chosen band. Only high-bit images count (8-bit ones are used as they are); with none,
the spec has no statistics. Headers are read first, so a folder of JPEGs costs header reads only.

>>> spec = fit_pixel_spec(samples.paths, bands=(3, 2, 1))   # doctest: +SKIP
>>> spec.low, spec.high                                      # doctest: +SKIP
((412.0, 530.0, 298.0), (1480.0, 1210.0, 905.0))
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from labelwise.data import images
from labelwise.data.band_scaling import BANDS_FLAG, PERCENTILES, PixelSpec, format_bands
from labelwise.errors import ConfigError, ImageError

log = logging.getLogger("labelwise")

MAX_IMAGES = 256
PIXELS_PER_IMAGE = 4096
_EIGHT_BIT_MODES = frozenset({"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr",
                              "LAB", "HSV", "uint8", "bool"})


def fit_pixel_spec(paths: list[Path], bands: tuple[int, ...] | None = None, *, seed: int = 0,
                   max_pixels: int = images.DEFAULT_MAX_PIXELS, max_images: int = MAX_IMAGES,
                   pixels_per_image: int = PIXELS_PER_IMAGE, workers: int | None = None) -> PixelSpec:
    """The bands and, for high-bit data, their 1st-99th percentile range over a sample of ``paths``.

    ConfigError when ``bands`` asks for a band most sampled images lack (naming one such file); an
    image that is unreadable, or one of a few lacking the band, is left to the decoder to report."""
    rng = np.random.default_rng(seed)
    idx = np.arange(len(paths))
    if len(idx) > max_images:
        idx = np.sort(rng.choice(idx, max_images, replace=False))
    chosen = [paths[i] for i in idx]
    seeds = rng.integers(0, 2**31, size=len(chosen))

    def sample(k: int) -> tuple[np.ndarray | None, int]:
        """(sampled pixels (n, bands) as float64, or None for an 8-bit / unreadable image; bands in the file)."""
        path = chosen[k]
        try:
            info = images.probe(path, max_pixels=max_pixels)
            if info.mode in _EIGHT_BIT_MODES:  # used as they are: only the band count matters
                return None, images.image_channels(info)
            arr = images.read_samples(path, max_pixels=max_pixels)
        except ImageError:
            return None, -1
        have = arr.shape[2]
        if arr.dtype in (np.uint8, np.bool_) or (bands is not None and max(bands) > have):
            return None, have
        arr = arr.reshape(-1, have) if bands is None else arr.reshape(-1, have)[:, [b - 1 for b in bands]]
        if len(arr) > pixels_per_image:
            arr = arr[np.random.default_rng(seeds[k]).choice(len(arr), pixels_per_image, replace=False)]
        return arr.astype(np.float64), have

    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        got = list(pool.map(sample, range(len(chosen))))
    if bands is not None:
        _check_bands(bands, chosen, [have for _, have in got])
    values = [v for v, _ in got if v is not None]
    if not values:
        return PixelSpec(bands=bands)
    width = Counter(v.shape[1] for v in values).most_common(1)[0][0]  # mixed band counts: the usual one
    stacked = np.concatenate([v for v in values if v.shape[1] == width])
    stacked[~np.isfinite(stacked)] = np.nan  # no-data in float rasters does not set the scale
    low, high = np.zeros(width), np.ones(width)
    for b in range(width):
        column = stacked[:, b][~np.isnan(stacked[:, b])]
        if len(column):
            low[b], high[b] = np.percentile(column, PERCENTILES)
    high = np.where(high > low, high, low + 1.0)  # a flat band maps to 0 rather than dividing by zero
    spec = PixelSpec(bands=bands, low=tuple(float(x) for x in low), high=tuple(float(x) for x in high))
    log.debug("band scaling from %d high-bit images: per band %s", len(values),
             ", ".join(f"{lo:g}..{hi:g}" for lo, hi in zip(spec.low, spec.high)))
    return spec


def _check_bands(bands: tuple[int, ...], paths: list[Path], have: list[int]) -> None:
    read = [(p, h) for p, h in zip(paths, have) if h >= 0]
    short = [(p, h) for p, h in read if h < max(bands)]
    if short and 2 * len(short) > len(read):
        path, h = short[0]
        raise ConfigError(f"{BANDS_FLAG} {format_bands(bands)}: band {max(bands)} is out of range for {path} "
                          f"({h} band{'s' if h != 1 else ''}; {len(short)} of {len(read)} images read lack it); "
                          f"choose bands between 1 and {h}")
