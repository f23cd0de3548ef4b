"""Thumbnails for the report's galleries: small JPEGs beside report.html, one per distinct image.

Every image goes through the project's decoder (EXIF, 16-bit, N-band TIFF all handled the same
way as in training); an N-band image shows its first three bands. A file that cannot be read
gets no thumbnail (the report shows a placeholder instead of a broken image).
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from labelwise.data import images
from labelwise.data.band_scaling import PLAIN, PixelSpec
from labelwise.errors import ImageError

THUMB_SIDE = 128  # px, longest side; tiny images (28 px) stay tiny and are scaled up by the browser
JPEG_QUALITY = 85


@dataclass(frozen=True)
class Thumb:
    src: str  # relative to report.html
    width: int
    height: int


class Thumbnails:
    """Collect image paths, then write all their thumbnails at once (threads: Pillow releases the GIL).

    >>> thumbs = Thumbnails(Path("run/report_files/thumbs"), "report_files/thumbs", channels=3)  # doctest: +SKIP
    >>> thumbs.add(Path("a.jpg")); made = thumbs.write()                                     # doctest: +SKIP
    """

    def __init__(self, folder: Path, href: str, channels: int, side: int = THUMB_SIDE,
                 pixel_spec: PixelSpec = PLAIN) -> None:
        self.folder, self.href, self.channels, self.side = Path(folder), href.rstrip("/"), channels, side
        self.pixel_spec = pixel_spec  # the model's bands and band scaling: 16-bit data is not shown black
        self._paths: dict[Path, None] = {}  # insertion-ordered set

    def add(self, path: Path) -> None:
        self._paths[Path(path)] = None

    def __len__(self) -> int:
        return len(self._paths)

    def write(self, workers: int | None = None) -> dict[Path, Thumb | None]:
        """Write every thumbnail; returns {path: Thumb, or None where the image could not be read}."""
        self.folder.mkdir(parents=True, exist_ok=True)
        paths = list(self._paths)
        with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
            made = list(pool.map(self._one, paths))
        return dict(zip(paths, made))

    def _one(self, path: Path) -> Thumb | None:
        name = hashlib.sha1(str(path).encode("utf-8")).hexdigest()[:20] + ".jpg"
        try:
            img = thumbnail(path, self.channels, self.side, self.pixel_spec)
        except (ImageError, OSError):
            return None
        img.save(self.folder / name, format="JPEG", quality=JPEG_QUALITY)
        return Thumb(f"{self.href}/{name}", img.width, img.height)


def thumbnail(path: Path, channels: int, side: int = THUMB_SIDE, pixel_spec: PixelSpec = PLAIN) -> Image.Image:
    """Decode ``path`` with the project's decoder to at most ``side`` px, keeping its aspect ratio."""
    info = images.probe(path)
    w, h = max(1, info.width), max(1, info.height)
    square = max(1, min(side, max(w, h)))  # never upscale
    # squashed square: the decoder's fast reduced decode; the model's bands and band scaling
    arr = images.read_resized(path, square, channels, pixel_spec=pixel_spec)
    if arr.shape[2] == 1 or arr.shape[2] == 2:
        img = Image.fromarray(np.ascontiguousarray(arr[:, :, 0]), "L")
    else:
        img = Image.fromarray(np.ascontiguousarray(arr[:, :, :3]), "RGB")
    if w >= h:
        size = (square, max(1, round(square * h / w)))
    else:
        size = (max(1, round(square * w / h)), square)
    return img.resize(size, Image.Resampling.BILINEAR) if size != img.size else img
