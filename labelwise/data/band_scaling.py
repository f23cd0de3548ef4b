"""Which bands of an image a model sees (``--bands``), and how their samples become uint8.

Analytic satellite data (Planet, Sentinel-2, Landsat as 16-bit TIFFs) holds values of a few thousand
DN whose differences of tens of DN carry the signal. Dividing by 257 (the full 16-bit range onto
0..255) crushes such a band into one or two grey levels. A ``PixelSpec`` with statistics scales each
band by robust statistics of the training data instead: value ``v`` of band ``i`` becomes
``clip(round((v - low[i]) * 255 / (high[i] - low[i])), 0, 255)``, with ``low``/``high`` the 1st and
99th percentiles of that band over a sample of the training images (band_stats.fit_pixel_spec).
8-bit images are used as they are. The spec is stored in the bundle (model.json, ``input``) so that
predict, evaluate, serve and the exports' preprocessing apply exactly the same scaling, and its
``key()`` is part of the decode cache's key. Without statistics (no high-bit images, or a bundle
written before labelwise stored them) high-bit samples keep the old scale (tiff.to_uint8: x / 257).

>>> spec = PixelSpec(bands=(4, 3, 2), low=(2900.0, 410.0, 520.0), high=(3400.0, 980.0, 1100.0))
>>> spec.convert(raw_hwc_uint16, "a.tif").dtype            # doctest: +SKIP
dtype('uint8')
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labelwise.data.tiff import to_uint8
from labelwise.errors import ConfigError, ImageError

BANDS_FLAG = "--bands"
PERCENTILES = (1.0, 99.0)  # robust range per band: a few hot or dead pixels do not set the scale


def parse_bands(value: Any) -> tuple[int, ...] | None:
    """``--bands`` text ("3,2,1"), a number or a list -> 1-based band numbers in order; None/"" -> all bands."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    parts = list(value) if isinstance(value, (list, tuple)) else str(value).replace(" ", "").split(",")
    bands = []
    for part in parts:
        text = str(part).strip()
        if not text.isdigit():
            raise ConfigError(f"{BANDS_FLAG} {value!r}: {text!r} is not a band number; give 1-based band numbers "
                              f"separated by commas, e.g. {BANDS_FLAG} 3,2,1 (red, green, blue of a 4-band "
                              "Planet TIFF)")
        if int(text) < 1:
            raise ConfigError(f"{BANDS_FLAG} {value!r}: bands are numbered from 1 (as in GDAL and rasterio), "
                              f"got {text}")
        bands.append(int(text))
    return tuple(bands)


def format_bands(bands: tuple[int, ...] | None) -> str | None:
    return None if bands is None else ",".join(str(b) for b in bands)


@dataclass(frozen=True)
class PixelSpec:
    """How a decoded image's samples become the model's uint8 channels: band choice, then scaling."""

    bands: tuple[int, ...] | None = None  # 1-based, in the order the model sees them; None = every band
    low: tuple[float, ...] = ()  # per model channel: the value mapped to 0; () = no statistics (x / 257)
    high: tuple[float, ...] = ()  # per model channel: the value mapped to 255

    def __post_init__(self) -> None:
        if len(self.low) != len(self.high):
            raise ValueError(f"low and high differ in length: {self.low} vs {self.high}")

    @property
    def scaled(self) -> bool:
        return bool(self.low)

    def key(self) -> str:
        """What the decoded pixels depend on beyond the file and the decoder ("" = the plain decode).

        repr() of a float round-trips exactly, so equal keys mean bit-identical scaling."""
        parts = []
        if self.bands is not None:
            parts.append("bands=" + format_bands(self.bands))
        if self.scaled:
            parts.append("scale=" + ",".join(f"{lo!r}:{hi!r}" for lo, hi in zip(self.low, self.high)))
        return ";".join(parts)

    def select(self, arr: np.ndarray, name: str) -> np.ndarray:
        """HxWxC -> HxWxlen(bands): the chosen bands in order; ImageError naming the file when one is missing."""
        if self.bands is None:
            return arr
        have = arr.shape[2]
        if max(self.bands) > have:
            raise ImageError(f"image has {have} band{'s' if have != 1 else ''} but {BANDS_FLAG} "
                             f"{format_bands(self.bands)} asks for band {max(self.bands)}: {name}")
        return arr[:, :, [b - 1 for b in self.bands]]

    def to_uint8(self, arr: np.ndarray, name: str) -> np.ndarray:
        """HxWxC samples (bands already chosen) -> uint8: robust per-band scaling for high-bit samples when
        the spec has statistics; uint8 (and bool) images as they are; else the plain scale (tiff.to_uint8)."""
        if arr.dtype in (np.uint8, np.bool_) or not self.scaled:
            return to_uint8(arr)
        if arr.shape[2] != len(self.low):
            raise ImageError(f"image has {arr.shape[2]} band{'s' if arr.shape[2] != 1 else ''} but the model's "
                             f"band scaling was fitted on {len(self.low)}-band images: {name}")
        # float32 (exact for 16-bit values; IEEE-rounded per operation, so the same bytes on every CPU)
        low = np.asarray(self.low, dtype=np.float32)
        gain = (255.0 / (np.asarray(self.high, dtype=np.float64) - np.asarray(self.low))).astype(np.float32)
        a = arr.astype(np.float32)
        if arr.dtype.kind == "f":
            a = np.where(np.isfinite(a), a, low)  # NaN / inf (no-data in float rasters) -> the band's low end
        a -= low
        a *= gain
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)

    def convert(self, arr: np.ndarray, name: str) -> np.ndarray:
        """HxWxC samples as stored -> HxWxC' uint8 as the model sees them (select, then scale)."""
        return self.to_uint8(self.select(arr, name), name)

    def to_dict(self) -> dict[str, Any]:
        """The model.json ``input`` keys (none for the plain decode: older readers see what they know)."""
        d: dict[str, Any] = {}
        if self.bands is not None:
            d["bands"] = list(self.bands)
        if self.scaled:
            d["scaling"] = {
                "method": "per-band percentiles", "percentiles": list(PERCENTILES),
                "low": list(self.low), "high": list(self.high),
                "formula": "uint8 = clip(round((v - low[i]) * 255 / (high[i] - low[i])), 0, 255) for band i of a "
                           "high-bit image (after choosing bands); 8-bit images as they are; then / 255"}
        return d

    @classmethod
    def from_dict(cls, inp: dict[str, Any]) -> "PixelSpec":
        """From model.json's ``input``; keys absent (bundles written before) -> the plain decode."""
        bands = inp.get("bands")
        scaling = inp.get("scaling") or {}
        low = tuple(float(v) for v in scaling.get("low", ()))
        high = tuple(float(v) for v in scaling.get("high", ()))
        if len(low) != len(high) or any(not h > lo for lo, h in zip(low, high)):
            raise ValueError(f"input.scaling low {list(low)} / high {list(high)}: need one high > low per band")
        return cls(bands=None if bands is None else tuple(int(b) for b in bands), low=low, high=high)


PLAIN = PixelSpec()  # every band, high-bit samples / 257: what labelwise did before band statistics
