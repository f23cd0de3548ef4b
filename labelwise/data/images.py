"""The one safe image decoder for the whole project.

Every image labelwise reads goes through here, so every odd file behaves the same everywhere:

* Pillow decodes the common formats; tifffile decodes TIFFs with any number of bands (HWC or
  CHW: the band axis is the small one; tiff.py). The format is sniffed from the content, not the name.
* EXIF orientation is applied; palette -> RGB; CMYK/YCbCr/LAB -> RGB; transparent images
  (LA, RGBA, palette with transparency) are composited on white; grayscale stays 1 channel.
* ``pixel_spec`` (band_scaling.PixelSpec, stored in a model's bundle) chooses and orders the bands
  (``--bands 3,2,1``) and scales high-bit samples to uint8 per band by the training data's 1st-99th
  percentiles. Without statistics, sample values become uint8 by type (tiff.to_uint8): 16-bit is x / 257,
  rounded (the full range is mapped, never clipped); floats are taken as [0, 1] when all values lie in
  [0, 1], else min-max scaled per image; other integer types as 16-bit when they fit [0, 65535], else
  min-max scaled. 8-bit images are never rescaled.
* The pixel count is checked from the header before anything is decoded (decompression bombs).
* Anything wrong with a file raises ImageError("<plain reason>: <path>").

>>> arr = read_resized("photo.jpg", size=224, channels=3)   # doctest: +SKIP
>>> arr.shape, arr.dtype
((224, 224, 3), dtype('uint8'))
"""
from __future__ import annotations

import functools
import io
import logging
import os
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, Iterator, Union

import numpy as np
import tifffile
from PIL import Image

from labelwise.data.band_scaling import PLAIN, PixelSpec
from labelwise.data.sources.base import IMAGE_EXTENSIONS  # noqa: F401  (re-exported: what counts as an image)
from labelwise.data.tiff import TIFF_MAGIC, CodecError, check_pixels, read_tiff, tiff_layout
from labelwise.errors import ImageError, ImageTooLargeError

log = logging.getLogger("labelwise")
DEFAULT_MAX_PIXELS: int = 100_000_000

PathLike = Union[str, "os.PathLike[str]"]

# Only the Pillow plugins for the formats above (MPO: multi-picture JPEGs from cameras). A
# whitelist keeps risky plugins (EPS runs Ghostscript) away from a file that merely has a nice name.
_PIL_FORMATS = ("JPEG", "MPO", "PNG", "BMP", "GIF", "WEBP", "TIFF")
# Pillow modes the decoder turns into 1 channel; every other Pillow mode becomes RGB.
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_COLOR_MODES = frozenset({"P", "PA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"})
_RESAMPLE = Image.Resampling.BILINEAR  # antialiased when shrinking (Pillow widens the kernel)
_REDUCING_GAP = 3.0  # box-reduce first down to 3x the target: fast and visually equal to a full filter


@dataclass(frozen=True)
class ImageInfo:
    """What the header says. width/height are after EXIF rotation where it is in the header.

    mode is Pillow's mode ("RGB", "L", "I;16", "P", ...) or, for TIFFs read with tifffile, the
    sample type ("uint8", "uint16", "float32"). channels counts the bands stored in the file
    (a palette image has 1, RGBA has 4); image_channels() says what the decoder produces.
    """

    width: int
    height: int
    mode: str
    channels: int
    format: str


def image_channels(info: ImageInfo) -> int:
    """Channels the decoder produces for this image: 1 (gray), 3 (RGB) or N (multi-band TIFF)."""
    if info.mode in _GRAY_MODES:
        return 1
    if info.mode in _COLOR_MODES:
        return 3
    return info.channels


def probe(path: PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Read only the header: size, mode, bands, format. Raises ImageError."""
    with _open_file(path) as (f, name), _guard(name):
        if _sniff(f, name) in TIFF_MAGIC:
            with tifffile.TiffFile(f) as tif:
                layout = tiff_layout(tif, name, max_pixels)
                if layout is not None:
                    h, w, c = layout.hwc
                    if layout.orientation in (5, 6, 7, 8):
                        h, w = w, h
                    return ImageInfo(w, h, str(layout.dtype), c, "TIFF")
            f.seek(0)
        img = _open_pil(f, name, max_pixels)
        w, h = img.size
        # A PNG may keep its EXIF after the pixel data; fetching it would decode everything.
        if (img.format != "PNG" or "exif" in img.info) and _orientation(img) in (5, 6, 7, 8):
            w, h = h, w
        return ImageInfo(w, h, img.mode, len(img.getbands()), img.format or "")


def read_image(path: PathLike, max_pixels: int = DEFAULT_MAX_PIXELS, pixel_spec: PixelSpec = PLAIN) -> np.ndarray:
    """Decode a whole image to an HxWxC uint8 array (C = 1, 3, the TIFF's band count or len(bands))."""
    with _open_file(path) as (f, name):
        return _decode(f, name, max_pixels, None, None, pixel_spec)


def read_resized(path: PathLike, size: int, channels: int, max_pixels: int = DEFAULT_MAX_PIXELS,
                 pixel_spec: PixelSpec = PLAIN) -> np.ndarray:
    """Decode and squash to (size, size, channels) uint8.

    Squashing (no crop) keeps objects at the edges, which multi-label targets may depend on.
    channels: 1 -> luminance, 3 -> RGB (gray is replicated), N -> needs an N-band image.
    pixel_spec: the bands and their scaling (a model's ``ModelMeta.pixel_spec``; see band_scaling).
    """
    _check_request(size, channels)
    with _open_file(path) as (f, name):
        return _decode(f, name, max_pixels, size, channels, pixel_spec)


def read_resized_bytes(data: bytes, size: int, channels: int, max_pixels: int = DEFAULT_MAX_PIXELS,
                       name: str = "upload", pixel_spec: PixelSpec = PLAIN) -> np.ndarray:
    """read_resized for in-memory bytes (an HTTP upload); ``name`` appears in error messages."""
    _check_request(size, channels)
    return _decode(io.BytesIO(data), name, max_pixels, size, channels, pixel_spec)


def read_samples(path: PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The samples as stored: HxWxC in the file's own type (uint16, float32, ...), every band, not rotated.

    For band statistics (band_stats.py); a picture Pillow decodes (JPEG, 8-bit PNG) comes back as read_image's
    uint8 would (every band, no scaling)."""
    with _open_file(path) as (f, name), _guard(name):
        if _sniff(f, name) in TIFF_MAGIC:
            try:
                got = read_tiff(f, name, max_pixels)
            except CodecError:
                got = None  # Pillow may manage; _read_pil raises the plain reason if not
            if got is not None:
                return got[0]
            f.seek(0)
        return _read_pil(f, name, max_pixels, None, None, keep_alpha=True, pixel_spec=None)[0]


# --------------------------------------------------------------------------- decoding


def _decode(f: BinaryIO, name: str, max_pixels: int, size: int | None, channels: int | None,
            pixel_spec: PixelSpec) -> np.ndarray:
    with _guard(name):
        got: tuple[np.ndarray, int] | None = None
        tiff_error: BaseException | None = None
        if _sniff(f, name) in TIFF_MAGIC:
            try:
                got = read_tiff(f, name, max_pixels)
            except CodecError as exc:  # e.g. LZW without imagecodecs: Pillow may still manage
                tiff_error = exc.__cause__
            if got is not None:
                arr = pixel_spec.convert(got[0], name)  # choose bands, then scale: before the (uint8) resize
                got = (arr if size is None else _resize_bands(arr, size)), got[1]
            f.seek(0)
        if got is None:
            try:
                # Falling back from tifffile, keep every band (no compositing), as tifffile would.
                got = _read_pil(f, name, max_pixels, size, channels, keep_alpha=tiff_error is not None,
                                pixel_spec=pixel_spec)
            except Exception:
                if tiff_error is not None:
                    raise ImageError(f"cannot decode TIFF ({tiff_error}); LZW/JPEG-compressed TIFFs "
                                     f"need the 'imagecodecs' package: {name}") from tiff_error
                raise
        arr, orientation = got
        # Orientation after the resize: the target is square, so it commutes and costs less.
        arr = _orient(arr, orientation)
        if channels is not None:
            arr = _match_channels(arr, channels, name)
        return np.ascontiguousarray(arr)


def _read_pil(f: BinaryIO, name: str, max_pixels: int, size: int | None, channels: int | None,
              keep_alpha: bool = False, pixel_spec: PixelSpec | None = PLAIN) -> tuple[np.ndarray, int]:
    """(HxWxC uint8, EXIF orientation); pixel_spec None: samples as stored (16-bit/float gray unscaled)."""
    img = _open_pil(f, name, max_pixels)
    if size is not None and img.format in ("JPEG", "MPO"):
        # Reduced DCT decode (1/2, 1/4, 1/8) while staying >= size: the big win on camera photos.
        # Decoding straight to luma is also free when the model wants gray (and chose no bands).
        gray = channels == 1 and img.mode == "RGB" and pixel_spec is not None and pixel_spec.bands is None
        img.draft("L" if gray else img.mode, (size, size))
    img.load()
    orientation = _orientation(img)
    if img.mode.startswith("I") or img.mode == "F":  # 16/32-bit integer or float gray: one band of samples
        arr = np.asarray(img)[:, :, None]
        if pixel_spec is None:
            return arr, orientation
        arr = pixel_spec.convert(arr, name)
        return (arr if size is None else _resize_bands(arr, size)), orientation
    img = _standard_mode(img)
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), _RESAMPLE, reducing_gap=_REDUCING_GAP)
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if img.mode in ("LA", "RGBA") and not keep_alpha:
        arr = _composite_on_white(arr)  # after the resize: Pillow resizes premultiplied, so it commutes
    return (arr if pixel_spec is None else pixel_spec.select(arr, name)), orientation


def _open_pil(f: BinaryIO, name: str, max_pixels: int) -> Image.Image:
    img = Image.open(f, formats=_pil_formats())
    check_pixels(*img.size, max_pixels, name)
    return img


@functools.cache
def _pil_formats() -> tuple[str, ...]:
    Image.init()  # registers every plugin once; Image.open(formats=...) only sees registered ones
    return tuple(fmt for fmt in _PIL_FORMATS if fmt in Image.OPEN)


def _standard_mode(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> L, LA, RGB or RGBA (alpha is composited later)."""
    mode = img.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return img
    if mode == "1":
        return img.convert("L")
    if mode in ("La", "PA", "RGBa"):
        return img.convert("LA" if mode == "La" else "RGBA")
    if mode == "P":
        return img.convert("RGBA" if "transparency" in img.info else "RGB")
    return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX


# --------------------------------------------------------------------------- pixels


def _resize_bands(arr: np.ndarray, size: int) -> np.ndarray:
    """Squash an HxWxC uint8 array to (size, size, C) with the same filter as Pillow images."""
    if arr.shape[:2] == (size, size):
        return arr
    c = arr.shape[2]
    if c in (1, 3):
        out = np.asarray(Image.fromarray(arr[:, :, 0] if c == 1 else arr)
                         .resize((size, size), _RESAMPLE, reducing_gap=_REDUCING_GAP))
        return out.reshape(size, size, c)
    bands = [np.asarray(Image.fromarray(np.ascontiguousarray(arr[:, :, i]))
                        .resize((size, size), _RESAMPLE, reducing_gap=_REDUCING_GAP)) for i in range(c)]
    return np.stack(bands, axis=-1)


def _composite_on_white(arr: np.ndarray) -> np.ndarray:
    """(..., C+1) uint8 with alpha last -> (..., C) on a white background."""
    color = arr[..., :-1].astype(np.uint16)
    alpha = arr[..., -1:].astype(np.uint16)
    return ((color * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)


def _match_channels(arr: np.ndarray, channels: int, name: str) -> np.ndarray:
    have = arr.shape[2]
    if have == channels:
        return arr
    if channels == 1 and have == 3:
        # Pillow's "L" weights (ITU-R 601-2) in 16.16 fixed point, so both paths agree.
        rgb = arr.astype(np.uint32)
        lum = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16
        return lum.astype(np.uint8)[:, :, None]
    if channels == 3 and have == 1:
        return np.repeat(arr, 3, axis=2)
    raise ImageError(f"image has {have} channels but the model expects {channels}: {name}")


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an HxWxC array, as PIL.ImageOps.exif_transpose does."""
    if orientation == 2:
        return arr[:, ::-1]
    if orientation == 3:
        return arr[::-1, ::-1]
    if orientation == 4:
        return arr[::-1]
    if orientation == 5:
        return arr.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(arr, -1)
    if orientation == 7:
        return arr[::-1, ::-1].transpose(1, 0, 2)
    if orientation == 8:
        return np.rot90(arr, 1)
    return arr


def _orientation(img: Image.Image) -> int:
    try:
        value = int(img.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block should not make the picture unreadable
        return 1
    return value if 1 <= value <= 8 else 1


# --------------------------------------------------------------------------- safety


def _check_request(size: int, channels: int) -> None:
    if int(size) < 1 or int(channels) < 1:
        raise ValueError(f"size and channels must be >= 1, got size={size}, channels={channels}")


def _sniff(f: BinaryIO, name: str) -> bytes:
    """The first 4 bytes (the format is told by content, never by the name)."""
    head = f.read(4)
    f.seek(0)
    if not head:
        raise ImageError(f"file is empty (0 bytes): {name}")
    return head


@contextmanager
def _open_file(path: PathLike) -> Iterator[tuple[BinaryIO, str]]:
    name = os.fspath(path)
    try:
        f = open(name, "rb")
    except FileNotFoundError:
        raise ImageError(f"file not found: {name}") from None
    except IsADirectoryError:
        raise ImageError(f"a folder, not an image file: {name}") from None
    except PermissionError:
        raise ImageError(f"permission denied: {name}") from None
    except OSError as exc:
        raise ImageError(f"cannot open ({exc.strerror or exc}): {name}") from None
    with f:
        yield f, name


class _Chatter(logging.Handler):
    """Collects tifffile's log messages for the file this thread is decoding (see _guard)."""

    local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        bucket = getattr(self.local, "bucket", None)
        if bucket is not None:
            bucket.append(record.getMessage())


@functools.cache
def _quiet_tifffile() -> None:
    # A handler of its own keeps tifffile's messages off the terminal (logging's last-resort
    # stderr printer only runs when a logger has none); _guard reports them per file.
    logging.getLogger("tifffile").addHandler(_Chatter())


@contextmanager
def _guard(name: str) -> Iterator[None]:
    """Turn whatever a decoder raises on a bad file into ImageError("<reason>: <name>").

    Third-party chatter (Pillow's UserWarnings, tifffile's log messages) never reaches the terminal:
    on a file that fails it joins the reason; on one that decodes it is logged at debug level."""
    _quiet_tifffile()
    _Chatter.local.bucket = tiff_said = []
    with warnings.catch_warnings(record=True) as caught:
        # Our own cap (checked from the header before decoding) replaces Pillow's warning. Before
        # Python 3.14 catch_warnings is process-wide; racing threads can at worst leave this
        # harmless "ignore" filter behind, or file one thread's warning under another's image.
        # (DataLoader workers are processes: no race there.)
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            yield
        except ImageError:
            raise
        except Image.DecompressionBombError as exc:
            raise ImageTooLargeError(f"image too large for Pillow ({exc}): {name}") from exc
        except Image.UnidentifiedImageError as exc:
            raise ImageError(f"not an image, or an unsupported format: {name}") from exc
        except MemoryError as exc:
            raise ImageTooLargeError(f"not enough memory to decode the image: {name}") from exc
        except Exception as exc:  # decoders raise OSError, ValueError, SyntaxError, struct.error, ...
            text = str(exc) or type(exc).__name__
            reason = "file is truncated (an incomplete download or copy?)" if "truncated" in text \
                else f"corrupt or unsupported image data ({text})"
            said = _said(caught, tiff_said)
            raise ImageError(f"{reason}{f' [decoder said: {said}]' if said else ''}: {name}") from exc
        finally:
            _Chatter.local.bucket = None
    said = _said(caught, tiff_said)
    if said:
        log.debug("%s: decoded despite: %s", name, said)


def _said(caught: list, tiff_said: list[str]) -> str:
    lines = [" ".join(str(w.message).split()) for w in caught] + [" ".join(m.split()) for m in tiff_said]
    return "; ".join(dict.fromkeys(line for line in lines if line))[:300]
