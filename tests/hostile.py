"""A corpus of hostile and odd image files, for training, predict and serve tests.

``make_hostile_corpus(folder)`` writes every file and returns {file name: Expected}. Each Expected
says whether a 1- or 3-channel model can read the file, a regex its error message matches when it
cannot, and the HTTP status ``labelwise serve`` answers when the file is posted on its own.

Files that decode show one upright picture (``base``): the EXIF-tagged JPEGs store it turned the
other way and carry the orientation that turns it back, so every readable file should get the same
prediction as ``upright.jpg`` (JPEG rounding aside).

>>> corpus = make_hostile_corpus(tmp_path / "odd")                 # doctest: +SKIP
>>> [name for name, e in corpus.items() if not e.ok]               # doctest: +SKIP
['truncated.jpg', 'empty.jpg', 'text_named.png', 'bands5.tif', 'bomb.png', 'huge_header.png', 'huge_header.tif']
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

# EXIF orientation -> how the stored pixels relate to the displayed picture: the stored array is
# np.rot90(displayed, k) so that the viewer's rotation (3: 180, 6: 90 clockwise, 8: 90 counter-
# clockwise) brings it back upright.
EXIF_ORIENTATIONS: dict[int, int] = {3: 2, 6: 1, 8: -1}
BOMB_SIDE = 12_000  # px: 144 M pixels, over labelwise's 100 M default cap, ~140 KB as a PNG


@dataclass(frozen=True)
class Expected:
    """What should happen to one corpus file with a 1- or 3-channel model."""

    ok: bool  # decodes (and should be predicted / trained on)
    reason: str = ""  # regex the error message matches when not ok
    status: int = 200  # `labelwise serve` answer when the file is posted alone


def default_base(height: int = 48, width: int = 64) -> np.ndarray:
    """A colour picture with no symmetry (a gradient, a dark bar at the top left): rotations differ."""
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([x * 255 // (width - 1), y * 255 // (height - 1), np.full_like(x, 96)], -1)
    img[: height // 4, : width // 2] = (20, 20, 20)
    return img.astype(np.uint8)


def make_hostile_corpus(folder: str | Path, base: np.ndarray | None = None) -> dict[str, Expected]:
    """Write the corpus into ``folder`` (created) and return {file name: Expected}.

    ``base``: the upright HxW or HxWx3 uint8 picture the readable files show (default: default_base()).
    Sides that are multiples of 8 keep the JPEG rounding of rotated copies small.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rgb = default_base() if base is None else np.asarray(base, dtype=np.uint8)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    expected: dict[str, Expected] = {}

    def add(name: str, exp: Expected) -> Path:
        expected[name] = exp
        return out / name

    def bad(reason: str, status: int) -> Expected:
        return Expected(False, reason, status)

    good = Expected(True)

    # --- broken or disguised files
    jpeg = _jpeg_bytes(rgb)
    add("upright.jpg", good).write_bytes(jpeg)
    add("truncated.jpg", bad("truncated", 422)).write_bytes(jpeg[: len(jpeg) // 2])
    add("empty.jpg", bad("empty", 422)).write_bytes(b"")
    Image.fromarray(rgb).save(add("png_named.jpg", good), format="PNG")
    add("text_named.png", bad("not an image", 415)).write_text("just some text, not a picture\n" * 4)

    # --- odd but valid encodings of the same picture
    Image.fromarray(rgb).convert("CMYK").save(add("cmyk.jpg", good), quality=95)
    gray16 = (np.asarray(Image.fromarray(rgb).convert("L")).astype(np.uint16) * 257)
    Image.fromarray(gray16).save(add("gray16.png", good))  # mode I;16
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    pal.save(add("palette_alpha.png", good), transparency=0)
    for orientation, k in EXIF_ORIENTATIONS.items():
        exif = Image.Exif()
        exif[0x0112] = orientation
        stored = np.ascontiguousarray(np.rot90(rgb, k))
        add(f"exif_{orientation}.jpg", good).write_bytes(_jpeg_bytes(stored, exif=exif))

    # --- valid, but not for a 1- or 3-channel model
    bands = np.concatenate([rgb, rgb[:, :, :2]], axis=2)
    tifffile.imwrite(add("bands5.tif", bad("5 channels", 422)), bands, photometric="minisblack",
                     planarconfig="contig")

    # --- pixel bombs: tiny files whose headers promise enormous images
    add("bomb.png", bad("over the limit|too large", 413)).write_bytes(_png_bomb(BOMB_SIDE, BOMB_SIDE))
    add("huge_header.png", bad("over the limit|too large", 413)).write_bytes(
        _png_header_only(2**31 - 1, 2**31 - 1))
    add("huge_header.tif", bad("over the limit|too large", 413)).write_bytes(
        _tiff_header_only(100_000, 100_000, 3))
    return expected


# --------------------------------------------------------------------------- encoders


def _jpeg_bytes(rgb: np.ndarray, exif: Image.Exif | None = None) -> bytes:
    import io

    buf = io.BytesIO()
    # 4:4:4 at high quality: rotated copies then differ by rounding only.
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95, subsampling=0,
                              **({"exif": exif.tobytes()} if exif is not None else {}))
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, idat: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit gray, no interlace
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def _png_bomb(width: int, height: int, rows_per_block: int = 100) -> bytes:
    """A complete, valid all-black PNG, ~1000x smaller than its pixels (deflate of zeros).

    One block of rows is deflated once and repeated (a full flush makes blocks independent), so
    a 144 MB image costs milliseconds to write.
    """
    if height % rows_per_block:
        raise ValueError(f"height {height} must be a multiple of {rows_per_block}")
    raw = b"\x00" * ((width + 1) * rows_per_block)  # per row: filter byte + pixels
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: we write the zlib wrapper
    block = comp.compress(raw) + comp.flush(zlib.Z_FULL_FLUSH)
    final = zlib.compressobj(9, zlib.DEFLATED, -15).flush()  # an empty last block
    n = (width + 1) * height
    adler = ((n % 65521) << 16) | 1  # Adler-32 of n zero bytes
    idat = b"\x78\xda" + block * (height // rows_per_block) + final + struct.pack(">I", adler)
    return _png(width, height, idat)


def _png_header_only(width: int, height: int) -> bytes:
    """A ~60-byte PNG whose header claims width x height; the data is a stub."""
    return _png(width, height, zlib.compress(b"\x00" * 16))


def _tiff_header_only(width: int, height: int, bands: int) -> bytes:
    """A tiny little-endian TIFF whose IFD claims width x height x bands uint8 (no pixel data)."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1),
               (262, 3, 1, 1), (273, 4, 1, 8), (277, 3, 1, bands), (278, 4, 1, height),
               (279, 4, 1, width * height * bands % 2**32), (284, 3, 1, 1)]
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        ifd += struct.pack("<HHI", tag, typ, count) + (struct.pack("<HH", value, 0) if typ == 3
                                                         else struct.pack("<I", value))
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 16) + b"\x00" * 8 + ifd
