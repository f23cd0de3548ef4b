"""16-bit multispectral TIFFs: band statistics instead of x / 257, --bands, and Planet's layout.

The generated set mimics analytic satellite data: 4 bands around 3000 DN (16-bit) whose only signal is
+40 DN in band 4 (near-infrared). After x / 257 every pixel of both classes is grey level 12; the
per-band 1st-99th percentile scaling spreads band 4 over the whole 0..255 range.
"""
from __future__ import annotations

import contextlib
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from labelwise.cli import app
from labelwise.config import make_config
from labelwise.data import images
from labelwise.data.band_scaling import PLAIN, PixelSpec, parse_bands
from labelwise.data.band_stats import fit_pixel_spec
from labelwise.data.decoded import decode_all
from labelwise.data.sources import load_samples
from labelwise.errors import ConfigError, ImageError
from labelwise.models.bundle import ModelMeta, read_meta
from labelwise.training.prepare import prepare

runner = CliRunner()
BASE = (3000, 3050, 3100, 2980)  # DN per band (blue, green, red, near-infrared)
SIGNAL = 40  # DN added to band 4 for the "vegetation" class: under a sixth of a grey level after x / 257
NOISE = 20  # DN, uniform +-: every value stays in 2956..3212, which x / 257 rounds to 12


def satellite_tile(rng: np.random.Generator, side: int, positive: bool) -> np.ndarray:
    """(side, side, 4) uint16 around BASE; band 4 raised by SIGNAL when ``positive``."""
    base = np.array(BASE, dtype=np.int32) + np.array([0, 0, 0, SIGNAL if positive else 0])
    return (base + rng.integers(-NOISE, NOISE + 1, size=(side, side, 4))).astype(np.uint16)


def write_classes(root: Path, n_per_class: int, side: int = 20, seed: int = 0) -> Path:
    """Class folders bare/ and vegetation/ of 4-band uint16 TIFFs (HWC, as Planet's analytic tiles)."""
    rng = np.random.default_rng(seed)
    for label, positive in (("bare", False), ("vegetation", True)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            tifffile.imwrite(root / label / f"{label}_{i:04d}.tif", satellite_tile(rng, side, positive),
                             photometric="minisblack")
    return root


def write_planet(root: Path, n: int, side: int = 16, seed: int = 0) -> Path:
    """Planet's Kaggle layout: train_v2.csv (image_name,tags; no extension) beside train-tif/*.tif."""
    rng = np.random.default_rng(seed)
    (root / "train-tif").mkdir(parents=True)
    rows = []
    for i in range(n):
        green = i % 2 == 0
        tifffile.imwrite(root / "train-tif" / f"train_{i}.tif", satellite_tile(rng, side, green),
                         photometric="minisblack")
        rows.append((f"train_{i}", "primary clear" if green else "haze"))
    with (root / "train_v2.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("image_name", "tags"), *rows])
    return root


@pytest.fixture(scope="module")
def tiles(tmp_path_factory) -> Path:
    return write_classes(tmp_path_factory.mktemp("tiles"), n_per_class=120)


# ----------------------------------------------------------------------------------------- the scaling


def test_plain_scale_erases_the_signal_and_band_statistics_keep_it(tiles):
    paths = sorted(tiles.glob("*/*.tif"))
    positive = np.array(["vegetation" in p.parent.name for p in paths])
    plain, _ = decode_all(paths, 20, 4, cache_dir=None)
    assert (plain == 12).all()  # x / 257: both classes are one grey level, so no model can beat chance
    spec = fit_pixel_spec(paths)
    assert spec.bands is None and spec.scaled
    assert BASE[3] - NOISE <= spec.low[3] < BASE[3] and BASE[3] + SIGNAL < spec.high[3] <= BASE[3] + SIGNAL + NOISE
    scaled, _ = decode_all(paths, 20, 4, cache_dir=None, pixel_spec=spec)
    band4 = scaled[:, 3].reshape(len(paths), -1).mean(1)
    assert band4[positive].min() > band4[~positive].max() + 60  # the classes do not even overlap
    assert abs(scaled[:, :3].mean() - 127.5) < 10  # the other bands use the whole range too


def test_the_decode_cache_keys_on_the_scaling(tiles, tmp_path):
    paths = sorted(tiles.glob("*/*.tif"))[:20]
    plain, _ = decode_all(paths, 20, 4, cache_dir=tmp_path)
    spec = fit_pixel_spec(paths)
    scaled, _ = decode_all(paths, 20, 4, cache_dir=tmp_path, pixel_spec=spec)  # a miss, not the x / 257 rows
    fresh, _ = decode_all(paths, 20, 4, cache_dir=None, pixel_spec=spec)
    np.testing.assert_array_equal(scaled, fresh)
    assert not np.array_equal(scaled, plain)
    again, _ = decode_all(paths, 20, 4, cache_dir=tmp_path, pixel_spec=spec)  # now a hit
    np.testing.assert_array_equal(again, fresh)
    np.testing.assert_array_equal(decode_all(paths, 20, 4, cache_dir=tmp_path)[0], plain)


def test_eight_bit_images_are_untouched_by_band_statistics(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, size=(12, 12, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    spec = PixelSpec(low=(100.0, 100.0, 100.0), high=(200.0, 200.0, 200.0))
    np.testing.assert_array_equal(images.read_image(tmp_path / "rgb.tif", pixel_spec=spec), rgb)
    assert not fit_pixel_spec([tmp_path / "rgb.tif"]).scaled  # no high-bit image: no statistics


def test_float_tiffs_and_16_bit_pngs_are_scaled_by_their_statistics(tmp_path):
    from PIL import Image

    ramp = np.linspace(0.0, 0.02, 100, dtype=np.float32).reshape(10, 10)  # reflectance: a tiny range
    tifffile.imwrite(tmp_path / "f.tif", ramp)
    spec = fit_pixel_spec([tmp_path / "f.tif"])
    out = images.read_image(tmp_path / "f.tif", pixel_spec=spec)[:, :, 0]
    assert out.min() == 0 and out.max() == 255  # x * 255 would leave it all at 0..5
    assert images.read_image(tmp_path / "f.tif").max() <= 6
    Image.fromarray((np.arange(100, dtype=np.uint16).reshape(10, 10) * 10 + 3000)).save(tmp_path / "g.png")
    spec = fit_pixel_spec([tmp_path / "g.png"])
    assert spec.scaled and images.read_image(tmp_path / "g.png", pixel_spec=spec).max() == 255


def test_band_choice_orders_and_checks_bands(tmp_path):
    tile = np.stack([np.full((8, 8), v, np.uint16) for v in (1000, 2000, 3000, 4000)], -1)
    tifffile.imwrite(tmp_path / "t.tif", tile, photometric="minisblack")
    spec = fit_pixel_spec([tmp_path / "t.tif"], bands=(3, 2, 1))
    assert spec.bands == (3, 2, 1) and len(spec.low) == 3 and spec.low[0] == 3000.0
    arr = images.read_resized(tmp_path / "t.tif", 8, 3, pixel_spec=PixelSpec(bands=(4, 1, 1)))
    assert arr.shape == (8, 8, 3) and arr[0, 0].tolist() == [16, 4, 4]  # 4000/257, 1000/257 (no statistics)
    with pytest.raises(ImageError, match=r"4 bands but --bands 5 asks for band 5: .*t\.tif"):
        images.read_resized(tmp_path / "t.tif", 8, 1, pixel_spec=PixelSpec(bands=(5,)))
    with pytest.raises(ConfigError, match=r"--bands 2,6: band 6 is out of range for .*t\.tif \(4 bands"):
        fit_pixel_spec([tmp_path / "t.tif"], bands=(2, 6))
    for bad, says in (("3,x", "'x' is not a band number"), ("0,1", "numbered from 1")):
        with pytest.raises(ConfigError, match=f"--bands.*{says}"):
            parse_bands(bad)
    assert parse_bands(" 3, 2,1 ") == (3, 2, 1) and parse_bands(4) == (4,) and parse_bands("") is None


def test_a_pixel_spec_survives_model_json(tiles):
    spec = fit_pixel_spec(sorted(tiles.glob("*/*.tif")), bands=(4, 3, 2))
    d = {"format_version": 1, "task": "multiclass", "labels": ["a", "b"], "backbone": "cnn-small",
         "input": {"channels": 3, "size": 20, **spec.to_dict()}}
    assert ModelMeta.from_dict(json.loads(json.dumps(d)), "model.json").pixel_spec == spec  # exact floats
    del d["input"]["scaling"], d["input"]["bands"]
    assert ModelMeta.from_dict(d, "model.json").pixel_spec == PLAIN  # a bundle from before: x / 257


def test_bands_option_sets_the_channels_and_names_itself(tiles, tmp_path):
    prep = prepare(make_config(tiles, tmp_path / "r", bands="4", backbone="cnn-small", cache="off"))
    assert prep.cfg.data.channels == 1 and prep.cfg.data.bands == "4" and prep.pixels.shape[1] == 1
    assert prep.pixel_spec.bands == (4,) and prep.pixel_spec.scaled
    with pytest.raises(ConfigError, match="--bands 3,2,1 gives 3 channels, not the 4 asked for"):
        prepare(make_config(tiles, tmp_path / "r", bands="3,2,1", channels=4, cache="off"))
    result = runner.invoke(app, ["train", str(tiles), "--out", str(tmp_path / "r2"), "--bands", "1,9"])
    assert isinstance(result.exception, ConfigError)  # main() prints it as one line, exit code 2
    assert "--bands 1,9: band 9 is out of range for" in str(result.exception)


# ----------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def trained(tiles, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("trained") / "run"
    result = runner.invoke(app, ["train", str(tiles), "--out", str(run), "--model", "cnn-small", "--epochs", "6",
                                 "--batch-size", "32", "--cache", "off", "--seed", "0", "--quiet"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return run


@pytest.mark.slow
def test_sixteen_bit_signal_trains_and_predict_reproduces_the_scaling(tiles, trained, tmp_path):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["model"]["f1_macro"] >= 0.9, metrics["model"]  # x / 257 leaves one grey level: chance
    assert read_meta(trained).pixel_spec.scaled
    assert len(json.loads((trained / "model.json").read_text())["input"]["scaling"]["low"]) == 4
    with (trained / "val_predictions.csv").open() as f:
        val = {Path(r["image"]).name: r for r in csv.DictReader(f)}
    paths = sorted(p for p in tiles.glob("*/*.tif") if p.name in val)
    out = tmp_path / "pred.csv"
    result = runner.invoke(app, ["predict", str(trained), *map(str, paths), "--out", str(out)],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with out.open() as f:
        pred = {Path(r["image"]).name: r for r in csv.DictReader(f)}
    assert len(pred) == len(val) >= 40
    for name, row in pred.items():
        for label in ("bare", "vegetation"):
            assert abs(float(row[label]) - float(val[name][label])) < 1e-4, (name, label)


@pytest.mark.slow
def test_every_decode_for_the_bundle_applies_its_scaling(tiles, trained):
    from labelwise.data.duplicates import fingerprint_paths
    from labelwise.infer import pipeline
    from labelwise.infer.export import export_metadata
    from labelwise.infer.predict import InMemory, Predictor
    from labelwise.report.gallery import thumbnail
    from labelwise.serve.limits import ServeLimits
    from labelwise.serve.service import Service, _Upload

    predictor = Predictor.load(trained)
    meta = predictor.meta
    paths = sorted(tiles.glob("*/*.tif"))[::12]
    want, _ = decode_all(paths, meta.image_size, 4, cache_dir=None, pixel_spec=meta.pixel_spec)
    service = Service(predictor, ServeLimits(), "torch")
    for i, p in enumerate(paths):  # serve: an uploaded TIFF
        np.testing.assert_array_equal(service.decode(_Upload(p.name, "image/tiff", p.read_bytes())), want[i])
    probs = predictor.predict_pixels(want)
    in_memory = [InMemory(p.name, p.read_bytes()) for p in paths]
    got = np.concatenate([pr for _, pr, _ in predictor.iter_probs(in_memory, workers=1)])
    np.testing.assert_allclose(got, probs, atol=1e-6)
    streamed = pipeline.stream_probs(predictor.engine, paths, meta.image_size, 4, 2, _no_progress, chunk=16,
                                     pixel_spec=meta.pixel_spec)  # worker processes
    np.testing.assert_allclose(np.concatenate([pr for _, pr, _ in streamed]), probs, atol=1e-6)
    described = json.loads(export_metadata(meta, "0" * 64)["labelwise.input"])
    assert described["scaling"]["low"] == list(meta.pixel_spec.low) and "scale each band" in described["preprocess"]
    assert np.asarray(thumbnail(paths[0], 4, pixel_spec=meta.pixel_spec)).std() > 20  # not one flat grey
    assert np.asarray(thumbnail(paths[0], 4)).std() == 0
    assert not fingerprint_paths(paths, 4, pixel_spec=meta.pixel_spec)[0].flat.any()


@contextlib.contextmanager
def _no_progress(total: int):
    yield lambda n: None


def test_planet_layout_is_found_as_it_comes(tmp_path):
    root = write_planet(tmp_path / "planet", 12)
    for data in (root / "train_v2.csv", root):
        samples = load_samples(data)
        assert samples.labels.names == ("clear", "haze", "primary") and len(samples) == 12
        assert all(p.parent.name == "train-tif" and p.suffix == ".tif" for p in samples.paths)
    prep = prepare(make_config(root, tmp_path / "r", backbone="cnn-small", bands="3,2,1", cache="off"))
    assert prep.pixels.shape[1:] == (3, 16, 16) and prep.pixel_spec.scaled
