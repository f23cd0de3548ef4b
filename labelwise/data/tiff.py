"""TIFFs with any number of bands (tifffile), the plain scale of samples to uint8, and the pixel-count cap.

Used by images.py, the one decoder: a TIFF that is a picture (palette, CMYK, YCbCr, bilevel) is left
to Pillow; everything else is read here, HWC or CHW (the band axis is the small one), every band kept,
samples in their stored type. images.py turns them into uint8 through a band_scaling.PixelSpec: robust
per-band scaling when the model has band statistics, else ``to_uint8`` below.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import tifffile

from labelwise.errors import ImageError, ImageTooLargeError

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF


class CodecError(Exception):
    """tifffile read the header but not the pixel data (cause attached)."""


@dataclass(frozen=True)
class TiffLayout:
    shape: tuple[int, ...]  # the series shape without singleton axes (Y and X always kept)
    band_axis: int | None  # index into shape, None for a single band
    hwc: tuple[int, int, int]
    dtype: np.dtype
    orientation: int


def tiff_layout(tif: tifffile.TiffFile, name: str, max_pixels: int) -> TiffLayout | None:
    """Header facts for a TIFF that tifffile should read, or None to let Pillow handle it."""
    series = tif.series[0]
    page = tif.pages[0]
    photometric = tifffile.PHOTOMETRIC
    if page.photometric not in (photometric.MINISBLACK, photometric.RGB) or page.bitspersample == 1:
        # Palette, CMYK, YCbCr, min-is-white and bilevel TIFFs are pictures: Pillow renders them.
        # Extra samples (alpha or not) stay bands: a 4th band may be near-infrared, never drop it.
        return None
    dims = [(n, a) for n, a in zip(series.shape, series.axes) if n != 1 or a in "YX"]
    sizes = tuple(n for n, _ in dims)
    axes = "".join(a for _, a in dims)
    if len(sizes) == 2:
        band_axis = None
        (h, w), c = sizes, 1
    elif len(sizes) == 3:
        # A declared sample axis wins; else the bands are the small axis (tie: HWC).
        band_axis = axes.index("S") if "S" in axes else (2 if sizes[2] <= sizes[0] else 0)
        if band_axis == 1:
            raise ImageError(f"TIFF has an unsupported layout {series.shape} ({series.axes}): {name}")
        c = sizes[band_axis]
        h, w = (sizes[0], sizes[1]) if band_axis == 2 else (sizes[1], sizes[2])
    else:
        raise ImageError(f"TIFF has shape {series.shape} ({series.axes}); expected HxW, HxWxC "
                         f"or CxHxW (a stack or pyramid is not one image): {name}")
    check_pixels(w, h, max_pixels, name)
    if h * w * c > 4 * max_pixels:  # same byte budget as an RGBA image at the pixel cap
        raise ImageTooLargeError(f"TIFF has {c} bands of {w}x{h}, over the limit of {4 * max_pixels:,} "
                         f"values; raise max_pixels if it is genuine: {name}")
    tag = page.tags.get(274)  # Orientation: rare in TIFFs, but the same EXIF meaning
    orientation = int(tag.value) if tag is not None and 1 <= int(tag.value) <= 8 else 1
    return TiffLayout(sizes, band_axis, (h, w, c), np.dtype(series.dtype), orientation)


def read_tiff(f: BinaryIO, name: str, max_pixels: int) -> tuple[np.ndarray, int] | None:
    """(HxWxC samples in their stored type, EXIF orientation), or None when Pillow should read the file."""
    with tifffile.TiffFile(f) as tif:
        layout = tiff_layout(tif, name, max_pixels)
        if layout is None:
            return None
        try:
            data = tif.series[0].asarray()
        except Exception as exc:
            raise CodecError() from exc
    data = data.reshape(layout.shape)
    if layout.band_axis is None:
        data = data[:, :, None]
    elif layout.band_axis == 0:
        data = np.moveaxis(data, 0, -1)
    return data, layout.orientation


def to_uint8(a: np.ndarray) -> np.ndarray:
    """The plain scale to uint8, by sample type; multi-band images share one scale.

    uint16 (and other integers within 0..65535): x / 257, rounded (the full range, never clipped); floats:
    x * 255 when all lie in [0, 1], else min-max per image; other integers: min-max per image."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if a.dtype == np.uint16:
        return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)  # round(x / 257): 65535 -> 255
    if np.issubdtype(a.dtype, np.integer):
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        if lo >= 0 and hi <= 65535:
            return ((a.astype(np.int64) + 128) // 257).astype(np.uint8)
        return _minmax(a.astype(np.float64), lo, hi)
    a = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if lo >= 0.0 and hi <= 1.0:
        return np.rint(a * 255.0).astype(np.uint8)
    return _minmax(a, lo, hi)


def _minmax(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.rint((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def check_pixels(width: int, height: int, max_pixels: int, name: str) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"image header says {width}x{height} pixels: {name}")
    if width * height > max_pixels:
        raise ImageTooLargeError(f"image is {width}x{height} = {width * height:,} pixels, over the limit of "
                         f"{max_pixels:,} (a decompression bomb?); raise max_pixels if it is genuine: {name}")
