"""--init-from RUN: a new run starts from an earlier run's weights (head too when the labels match) and says so."""
from __future__ import annotations

import json

import pytest
import torch
import yaml
from satellite import write_tiles
from typer.testing import CliRunner

import labelwise
from labelwise.cli import app
from labelwise.data.demo import build_multiclass, fashion_available
from labelwise.errors import ConfigError
from labelwise.labels import LabelSpace
from labelwise.models.bundle import ModelMeta, read_meta, read_weights, save_model
from labelwise.models.classifier import Classifier
from labelwise.training.init_from import load_init_weights

FAST = dict(backbone="cnn-small", pretrained=False, progress=False, cache="off", batch_size=16)


def _toy_bundle(run, names=("a", "b", "c"), task="multiclass", backbone="cnn-small"):
    torch.manual_seed(3)
    model = Classifier(backbone, len(names), in_chans=1)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    save_model(run, model, ModelMeta(labels=LabelSpace(names, task), backbone=backbone, in_chans=1, image_size=28,
                                     thresholds=(0.5,) * len(names)))
    return model


def test_weights_come_along_and_the_head_is_reordered_to_the_new_labels(tmp_path):
    old = _toy_bundle(tmp_path / "a")
    new = Classifier("cnn-small", 3, in_chans=1)
    rec = load_init_weights(new, str(tmp_path / "a"), LabelSpace(("c", "a", "b"), "multiclass"))
    assert rec["head"] is True
    for k, v in old.state_dict().items():
        if not k.startswith("head."):
            assert torch.equal(new.state_dict()[k], v), k
    assert torch.equal(new.head.weight[0], old.head.weight[2]) and torch.equal(new.head.bias[1], old.head.bias[0])

    other = Classifier("cnn-small", 2, in_chans=1)
    rec = load_init_weights(other, str(tmp_path / "a"), LabelSpace(("a", "x"), "multiclass"))
    assert rec["head"] is False and "backbone only" in rec["note"]
    assert torch.equal(other.backbone.features[0].weight, old.backbone.features[0].weight)
    assert torch.count_nonzero(other.head.weight) == 0  # the fresh head, untouched

    # same names, other task: the head does not transfer (sigmoid vs softmax logits)
    assert load_init_weights(Classifier("cnn-small", 3, in_chans=1), str(tmp_path / "a"),
                             LabelSpace(("a", "b", "c"), "multilabel"))["head"] is False
    with pytest.raises(ConfigError, match="do not fit"):
        load_init_weights(Classifier("cnn-small", 3, in_chans=3), str(tmp_path / "a"),
                          LabelSpace(("a", "b", "c"), "multiclass"))


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    if not fashion_available():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    root = tmp_path_factory.mktemp("init_from")
    data = build_multiclass(root / "three", 60, seed=4, source="fashion")
    for name in ("tshirt", "pullover", "dress", "coat", "shirt", "sandal", "boot"):  # keep trouser, bag, sneaker
        for p in (data / name).glob("*.png"):
            p.unlink()
        (data / name).rmdir()
    first = labelwise.train(data, root / "first", epochs=5, **FAST)
    return root, data, first


@pytest.mark.slow
def test_a_second_round_starts_where_the_first_ended(fashion, tmp_path):
    root, data, first = fashion
    assert first.metrics["model"]["accuracy"] > 0.8
    # lr 1e-7: the second run can only be as good as the first if it started from the first's weights
    tiny = dict(epochs=1, lr=1e-7, warmup_epochs=0.0, **FAST)
    second = labelwise.train(data, tmp_path / "second", init_from=str(first.run_dir), **tiny)
    scratch = labelwise.train(data, tmp_path / "scratch", **tiny)
    assert second.metrics["model"]["accuracy"] > 0.8 > scratch.metrics["model"]["accuracy"] + 0.3
    rec = json.loads((tmp_path / "second" / "metrics.json").read_text())["run"]["init_from"]
    assert rec["run"] == str(first.run_dir.resolve()) and rec["head"] is True
    cfg = yaml.safe_load((tmp_path / "second" / "config.yaml").read_text())
    assert cfg["model"]["init_from"] == str(first.run_dir.resolve()) and cfg["model"]["backbone"] == "cnn-small"
    assert json.loads((tmp_path / "scratch" / "metrics.json").read_text())["run"]["init_from"] is None


@pytest.mark.slow
def test_cli_other_labels_keep_the_backbone_only_with_a_note(fashion, tmp_path):
    root, data, first = fashion
    two = root / "two"
    two.mkdir()
    for name in ("bag", "sneaker"):
        (two / name).symlink_to(data / name)
    res = CliRunner().invoke(app, ["train", str(two), "--out", str(tmp_path / "r"), "--init-from", str(first.run_dir),
                                   "--epochs", "1", "--no-pretrained", "--cache", "off", "--quiet", "--no-report"])
    assert res.exit_code == 0, res.output
    run = json.loads((tmp_path / "r" / "metrics.json").read_text())["run"]
    assert run["init_from"]["head"] is False and "backbone only" in run["init_from"]["note"]
    assert any("--init-from" in c for c in run["choices"])
    conv = "backbone.features.0.weight"
    w_first, w_new = read_weights(first.run_dir)[conv], read_weights(tmp_path / "r")[conv]
    assert torch.allclose(w_first, w_new, atol=0.05) and not torch.equal(w_first, w_new)  # started there, trained on
    # an explicit, different backbone is refused with a one-line message
    res = CliRunner().invoke(app, ["train", str(two), "--out", str(tmp_path / "x"), "--init-from", str(first.run_dir),
                                   "--model", "resnet18", "--quiet"])
    assert res.exit_code != 0 and "cnn-small" in str(res.exception or res.output)


def test_ensemble_runs_are_refused(tmp_path):
    _toy_bundle(tmp_path / "a")
    meta = json.loads((tmp_path / "a" / "model.json").read_text())
    meta["backbone"], meta["members"] = "ensemble", ["cnn-small"]
    (tmp_path / "a" / "model.json").write_text(json.dumps(meta))
    from labelwise.config import make_config
    from labelwise.training.init_from import resolve_init_from

    with pytest.raises(ConfigError, match="ensemble"):
        resolve_init_from(make_config("d", "o", init_from=str(tmp_path / "a")))


# ----------------------------------------------------------------------------------------- --bands carried over


def _rgb_bundle(run, bands=(3, 2, 1)):
    """A cnn-small bundle over bare/vegetation that saw ``bands`` of 4-band 16-bit tiles."""
    from labelwise.data.band_scaling import PixelSpec

    torch.manual_seed(3)
    model = Classifier("cnn-small", 2, in_chans=len(bands))
    spec = PixelSpec(bands=bands, low=(2990.0,) * len(bands), high=(3110.0,) * len(bands))
    save_model(run, model, ModelMeta(labels=LabelSpace(("bare", "vegetation"), "multiclass"), backbone="cnn-small",
                                     in_chans=len(bands), image_size=12, thresholds=(0.5, 0.5), pixel_spec=spec))
    return run


def test_the_earlier_runs_bands_come_along_unless_other_bands_of_the_same_count_are_given(tmp_path):
    from labelwise.config import make_config
    from labelwise.training.init_from import resolve_init_from

    first = str(_rgb_bundle(tmp_path / "rgb"))
    cfg, notes = resolve_init_from(make_config("d", "o", init_from=first))
    assert cfg.data.bands == "3,2,1" and cfg.data.channels == 3
    assert any("--bands 3,2,1 as in that run" in n for n in notes)
    cfg, notes = resolve_init_from(make_config("d", "o", init_from=first, bands="4,3,2"))  # 3 bands: weights fit
    assert cfg.data.bands == "4,3,2" and any("that run saw --bands 3,2,1; this one sees --bands 4,3,2" in n
                                             for n in notes)
    cfg, notes = resolve_init_from(make_config("d", "o", init_from=first, bands="3, 2,1"))
    assert cfg.data.bands == "3,2,1" and len(notes) == 1  # the same bands: nothing to add
    with pytest.raises(ConfigError, match=r"takes 3 channels \(--bands 3,2,1\), not the 4 of --bands 4,3,2,1"):
        resolve_init_from(make_config("d", "o", init_from=first, bands="4,3,2,1"))
    _toy_bundle(tmp_path / "gray")  # 1 channel, every band: --bands of 2 cannot start from it
    with pytest.raises(ConfigError, match=r"takes 1 channel \(every band .*\), not the 2 of --bands 1,2"):
        resolve_init_from(make_config("d", "o", init_from=str(tmp_path / "gray"), bands="1,2"))


def test_cli_a_bands_run_carries_its_bands_to_the_next_round(tmp_path):
    tiles = write_tiles(tmp_path / "tiles")
    first = _rgb_bundle(tmp_path / "rgb")
    res = CliRunner().invoke(app, ["train", str(tiles), "--out", str(tmp_path / "r"), "--init-from", str(first),
                                   "--epochs", "1", "--batch-size", "32", "--cache", "off", "--quiet",
                                   "--no-report"])
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "r" / "model.json").read_text())
    assert meta["input"]["bands"] == [3, 2, 1] and meta["input"]["channels"] == 3
    assert len(meta["input"]["scaling"]["low"]) == 3  # the new run's statistics, over the chosen bands
    run = json.loads((tmp_path / "r" / "metrics.json").read_text())["run"]
    assert run["init_from"]["head"] is True and any("--bands 3,2,1 as in that run" in c for c in run["choices"])
    assert read_meta(tmp_path / "r").pixel_spec.bands == (3, 2, 1)
    res = CliRunner().invoke(app, ["train", str(tiles), "--out", str(tmp_path / "x"), "--init-from", str(first),
                                   "--bands", "1,2,3,4", "--quiet"])
    assert isinstance(res.exception, ConfigError) and "--bands 3,2,1" in str(res.exception)
