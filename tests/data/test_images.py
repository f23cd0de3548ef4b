"""The odd-image corpus: every file a user may have, decoded safely or refused clearly."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageOps

from labelwise.data.images import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, ImageInfo, image_channels, probe, read_image, read_resized, read_resized_bytes
from labelwise.errors import ImageError


def _rgb(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    """A smooth colour image (JPEG-friendly) with some texture."""
    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    base = np.stack([x * 255 / max(w - 1, 1), y * 255 / max(h - 1, 1), (x + y) * 127 / max(h + w - 2, 1)], -1)
    return np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)


def _save(path: Path, arr_or_img, **kw) -> Path:
    img = arr_or_img if isinstance(arr_or_img, Image.Image) else Image.fromarray(arr_or_img)
    img.save(path, **kw)
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A ~60-byte PNG whose header claims width x height (8-bit gray); the data is a stub."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + _png_chunk(b"IEND", b""))
    path.write_bytes(data)
    return path


def _tiff_header_only(path: Path, width: int, height: int, bands: int) -> Path:
    """A tiny little-endian TIFF whose IFD claims width x height x bands uint8 (no real data)."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1),
               (262, 3, 1, 1), (273, 4, 1, 8), (277, 3, 1, bands), (278, 4, 1, height),
               (279, 4, 1, width * height * bands % 2**32), (284, 3, 1, 1)]
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        ifd += struct.pack("<HHI", tag, typ, count) + (struct.pack("<HH", value, 0) if typ == 3
                                                         else struct.pack("<I", value))
    ifd += struct.pack("<I", 0)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 16) + b"\x00" * 8 + ifd)
    return path


# --------------------------------------------------------------------------- broken files


def test_truncated_jpeg(tmp_path):
    path = _save(tmp_path / "cut.jpg", _rgb(64, 64), quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated") as err:
        read_image(path)
    assert str(path) in str(err.value)
    with pytest.raises(ImageError, match="truncated"):
        read_resized(path, 16, 3)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    for fn in (read_image, probe, lambda p: read_resized(p, 8, 3)):
        with pytest.raises(ImageError, match="empty") as err:
            fn(path)
        assert str(path) in str(err.value)
    with pytest.raises(ImageError, match="empty.*upload"):
        read_resized_bytes(b"", 8, 3)


def test_text_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture\n")
    with pytest.raises(ImageError, match="not an image") as err:
        read_image(path)
    assert str(path) in str(err.value)
    with pytest.raises(ImageError, match="not an image"):
        probe(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        read_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="folder"):
        probe(tmp_path)


def test_risky_pillow_plugins_are_not_used(tmp_path):
    # An EPS would run Ghostscript if Pillow's EPS plugin were allowed to open it.
    path = tmp_path / "evil.png"
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    with pytest.raises(ImageError, match="not an image"):
        read_image(path)


def test_png_named_jpg_decodes(tmp_path):
    arr = _rgb()
    path = _save(tmp_path / "really_a_png.jpg", arr, format="PNG")
    np.testing.assert_array_equal(read_image(path), arr)
    assert probe(path).format == "PNG"


# --------------------------------------------------------------------------- modes


def test_cmyk_jpeg(tmp_path):
    img = Image.fromarray(_rgb()).convert("CMYK")
    path = _save(tmp_path / "cmyk.jpg", img, quality=95)
    info = probe(path)
    assert (info.mode, info.channels, image_channels(info)) == ("CMYK", 4, 3)
    out = read_image(path)
    assert out.shape == (24, 32, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - _rgb().astype(int)).mean() < 12


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    path = _save(tmp_path / "deep.png", values)
    assert probe(path).mode.startswith("I")
    out = read_image(path)
    assert out.shape == (1, 4, 1)
    assert out.ravel().tolist() == [0, 1, 128, 255]


def test_palette_png_with_transparency_is_on_white(tmp_path):
    img = Image.new("P", (4, 2))
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.putdata([0, 1, 0, 1, 1, 1, 0, 0])
    img.info["transparency"] = 1
    path = tmp_path / "pal.png"
    img.save(path, transparency=1)
    info = probe(path)
    assert info.mode == "P" and image_channels(info) == 3
    out = read_image(path)
    assert out.shape == (2, 4, 3)
    assert out[0, 0].tolist() == [255, 0, 0]  # opaque red
    assert out[0, 1].tolist() == [255, 255, 255]  # transparent -> white


def test_grayscale_stays_one_channel(tmp_path):
    gray = _rgb()[:, :, 0]
    path = _save(tmp_path / "gray.png", gray)
    out = read_image(path)
    assert out.shape == (24, 32, 1)
    np.testing.assert_array_equal(out[:, :, 0], gray)
    assert read_resized(path, 8, 3).shape == (8, 8, 3)  # replicated
    r3 = read_resized(path, 8, 3)
    assert (r3[..., 0] == r3[..., 1]).all() and (r3[..., 1] == r3[..., 2]).all()


def test_rgba_and_la_are_composited_on_white(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = [255, 0, 0, 255]  # opaque red
    rgba[0, 1] = [255, 0, 0, 0]  # invisible
    rgba[1, 0] = [0, 0, 0, 128]  # half-transparent black
    path = _save(tmp_path / "rgba.png", rgba)
    out = read_image(path)
    assert out.shape == (2, 2, 3)
    assert out[0, 0].tolist() == [255, 0, 0]
    assert out[0, 1].tolist() == [255, 255, 255]
    assert all(abs(v - 127) <= 1 for v in out[1, 0])
    assert read_resized(path, 2, 3).shape == (2, 2, 3)  # an RGBA picture is a 3-channel image

    la = Image.new("LA", (2, 1))
    la.putdata([(0, 255), (0, 0)])
    path = _save(tmp_path / "la.png", la)
    assert read_image(path)[0, :, 0].tolist() == [0, 255]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation(tmp_path, orientation):
    arr = _rgb(20, 30)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(tmp_path / "o.png", arr, exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    np.testing.assert_array_equal(read_image(path), expected)
    h, w = expected.shape[:2]
    info = probe(path)
    assert (info.width, info.height) == (w, h)


def test_orientation_6_equals_rotated_copy(tmp_path):
    arr = _rgb(20, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    tagged = _save(tmp_path / "tagged.png", arr, exif=exif)
    rotated = _save(tmp_path / "rotated.png", np.ascontiguousarray(np.rot90(arr, -1)))
    np.testing.assert_array_equal(read_image(tagged), read_image(rotated))
    # rotating after the (separable) resize only changes rounding
    diff = read_resized(tagged, 10, 3).astype(int) - read_resized(rotated, 10, 3).astype(int)
    assert np.abs(diff).max() <= 1
    jpg = _save(tmp_path / "tagged.jpg", arr, exif=exif, quality=95)
    assert read_image(jpg).shape == (30, 20, 3)
    assert (probe(jpg).width, probe(jpg).height) == (20, 30)


# --------------------------------------------------------------------------- TIFF


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("layout", ["hwc", "chw", "planar"])
def test_five_band_tiff(tmp_path, dtype, layout):
    rng = np.random.default_rng(1)
    top = 255 if dtype == np.uint8 else 65535
    hwc = rng.integers(0, top + 1, (12, 16, 5)).astype(dtype)
    hwc[0, 0] = top
    path = tmp_path / "bands.tif"
    if layout == "hwc":
        tifffile.imwrite(path, hwc, photometric="minisblack", planarconfig="contig")
    elif layout == "planar":
        tifffile.imwrite(path, np.moveaxis(hwc, -1, 0), photometric="minisblack", planarconfig="separate")
    else:  # five pages of HxW
        tifffile.imwrite(path, np.moveaxis(hwc, -1, 0), photometric="minisblack")
    info = probe(path)
    assert (info.width, info.height, info.channels, image_channels(info)) == (16, 12, 5, 5)
    out = read_image(path)
    assert out.shape == (12, 16, 5) and out.dtype == np.uint8
    expected = hwc if dtype == np.uint8 else ((hwc.astype(np.uint32) + 128) // 257).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)
    assert out[0, 0].tolist() == [255] * 5
    resized = read_resized(path, 8, 5)
    assert resized.shape == (8, 8, 5) and resized.dtype == np.uint8
    with pytest.raises(ImageError, match="image has 5 channels but the model expects 3"):
        read_resized(path, 8, 3)


def test_four_band_tiff_does_not_drop_a_band(tmp_path):
    path = tmp_path / "rgbn.tif"
    tifffile.imwrite(path, np.zeros((8, 8, 4), np.uint8), photometric="rgb")  # RGB + NIR (unspecified extra)
    assert image_channels(probe(path)) == 4
    assert read_resized(path, 4, 4).shape == (4, 4, 4)
    with pytest.raises(ImageError, match=f"image has 4 channels but the model expects 3: {path}"):
        read_resized(path, 4, 3)


def test_float_tiff_scaling(tmp_path):
    unit = tmp_path / "unit.tif"
    tifffile.imwrite(unit, np.array([[0.0, 0.5, 1.0]], np.float32))
    assert read_image(unit).ravel().tolist() == [0, 128, 255]
    wide = tmp_path / "wide.tif"
    tifffile.imwrite(wide, np.array([[-10.0, 0.0, 10.0]], np.float32))
    assert read_image(wide).ravel().tolist() == [0, 128, 255]  # min-max


def test_rgb_tiff_and_palette_tiff(tmp_path):
    arr = _rgb()
    path = tmp_path / "rgb.tiff"
    tifffile.imwrite(path, arr, photometric="rgb")
    np.testing.assert_array_equal(read_image(path), arr)
    pal = Image.new("P", (3, 1))
    pal.putpalette([10, 20, 30] * 256)
    pal_path = _save(tmp_path / "pal.tif", pal)
    assert read_image(pal_path)[0, 0].tolist() == [10, 20, 30]


# --------------------------------------------------------------------------- pixel caps


def test_decompression_bomb_header(tmp_path):
    path = _png_header_only(tmp_path / "bomb.png", 20000, 20000)
    assert path.stat().st_size < 200
    for fn in (probe, read_image, lambda p: read_resized(p, 8, 3)):
        with pytest.raises(ImageError) as err:
            fn(path)
        assert str(path) in str(err.value)


def test_pixel_cap_is_checked_before_decoding(tmp_path):
    path = _png_header_only(tmp_path / "claims.png", 3000, 3000)  # a stub body: decoding would fail
    with pytest.raises(ImageError, match="over the limit"):
        read_image(path, max_pixels=1_000_000)
    with pytest.raises(ImageError, match="over the limit"):
        probe(path, max_pixels=1_000_000)
    ok = _save(tmp_path / "ok.png", _rgb(100, 100))
    with pytest.raises(ImageError, match="over the limit"):
        read_resized(ok, 8, 3, max_pixels=5_000)
    assert read_resized(ok, 8, 3, max_pixels=10_000).shape == (8, 8, 3)


def test_huge_dimension_headers(tmp_path):
    png = _png_header_only(tmp_path / "wide.png", 2**31 - 1, 1)
    with pytest.raises(ImageError):
        read_image(png)
    tif = _tiff_header_only(tmp_path / "huge.tif", 100_000, 100_000, 5)
    with pytest.raises(ImageError, match="over the limit"):
        probe(tif)
    with pytest.raises(ImageError, match="over the limit"):
        read_resized(tif, 8, 5)


# --------------------------------------------------------------------------- read_resized


@pytest.mark.parametrize("channels", [1, 3])
def test_read_resized_shapes(tmp_path, channels):
    path = _save(tmp_path / "a.png", _rgb(40, 60))
    out = read_resized(path, 16, channels)
    assert out.shape == (16, 16, channels) and out.dtype == np.uint8 and out.flags.c_contiguous


def test_read_resized_to_gray_is_luminance(tmp_path):
    arr = _rgb(16, 16)
    path = _save(tmp_path / "a.png", arr)
    expected = np.asarray(Image.fromarray(arr).convert("L"))
    np.testing.assert_array_equal(read_resized(path, 16, 1)[:, :, 0], expected)


def test_channel_mismatch_error(tmp_path):
    path = _save(tmp_path / "rgb.png", _rgb())
    with pytest.raises(ImageError, match=f"image has 3 channels but the model expects 4: {path}"):
        read_resized(path, 8, 4)


def test_draft_mode_on_a_large_jpeg(tmp_path):
    from skimage import data, transform

    big = (transform.resize(data.chelsea(), (1200, 1600), order=1) * 255).astype(np.uint8)
    path = _save(tmp_path / "big.jpg", big, quality=92)
    fast = read_resized(path, 112, 3)
    slow = np.asarray(Image.fromarray(read_image(path)).resize((112, 112), Image.Resampling.LANCZOS))
    assert fast.shape == (112, 112, 3)
    assert np.abs(fast.astype(int) - slow.astype(int)).mean() < 3
    gray = read_resized(path, 112, 1)
    assert gray.shape == (112, 112, 1)
    slow_gray = np.asarray(Image.fromarray(slow).convert("L"))
    assert np.abs(gray[:, :, 0].astype(int) - slow_gray.astype(int)).mean() < 3


def test_read_resized_bytes_matches_file(tmp_path):
    path = _save(tmp_path / "a.jpg", _rgb(50, 70), quality=90)
    np.testing.assert_array_equal(read_resized_bytes(path.read_bytes(), 20, 3), read_resized(path, 20, 3))
    with pytest.raises(ImageError, match="not an image.*photo.jpg"):
        read_resized_bytes(b"hello", 20, 3, name="photo.jpg")


def test_probe_and_constants(tmp_path):
    path = _save(tmp_path / "a.png", _rgb(24, 32))
    assert probe(path) == ImageInfo(32, 24, "RGB", 3, "PNG")
    assert image_channels(ImageInfo(1, 1, "I;16", 1, "PNG")) == 1
    assert image_channels(ImageInfo(1, 1, "RGBA", 4, "PNG")) == 3
    assert all(e == e.lower() and e.startswith(".") for e in IMAGE_EXTENSIONS)
    assert ".tiff" in IMAGE_EXTENSIONS and DEFAULT_MAX_PIXELS == 100_000_000


def test_str_paths_and_bmp(tmp_path):
    path = _save(tmp_path / "a.bmp", _rgb())
    np.testing.assert_array_equal(read_image(str(path)), _rgb())


def test_lzw_tiff_falls_back_to_pillow_and_keeps_bands(tmp_path):
    # Without the optional imagecodecs package tifffile cannot decode LZW; Pillow can, and the
    # result must not depend on which decoder ran: alpha stays a band, as for tifffile.
    rgba = np.zeros((6, 6, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 100
    path = _save(tmp_path / "lzw.tif", rgba, compression="tiff_lzw")
    out = read_image(path)
    np.testing.assert_array_equal(out, rgba)
    assert image_channels(probe(path)) == 4
    rgb_path = _save(tmp_path / "lzw_rgb.tif", _rgb(), compression="tiff_lzw")
    np.testing.assert_array_equal(read_image(rgb_path), _rgb())
