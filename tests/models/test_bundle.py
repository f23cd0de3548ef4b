import json
import pickle

import pytest
import torch

from labelwise.models.bundle import ModelMeta, load_model, read_meta, save_model
from labelwise.io import atomic_write_text
from labelwise.errors import BundleError
from labelwise.labels import LabelSpace
from labelwise.models.classifier import Classifier
from labelwise.infer.predict import Predictor

LABELS = LabelSpace(("a", "b", "c"), "multilabel")


def _bundle(tmp_path):
    model = Classifier("cnn-small", 3, in_chans=1, pretrained=False).eval()
    meta = ModelMeta(labels=LABELS, backbone="cnn-small", in_chans=1, image_size=32, thresholds=(0.3, 0.5, 0.7))
    save_model(tmp_path, model, meta)
    return model, meta


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    model, meta = _bundle(tmp_path)
    loaded, meta2 = load_model(tmp_path)
    x = torch.rand(4, 1, 32, 32)
    assert torch.equal(model(x), loaded(x))
    assert meta2.thresholds == (0.3, 0.5, 0.7) and meta2.labels == LABELS


class _Payload:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_pickled_weights_are_refused_and_never_executed(tmp_path, monkeypatch):
    _bundle(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(pickle.dumps({"w": _Payload()}))
    with pytest.raises(BundleError, match="safetensors"):
        Predictor.load(tmp_path)
    assert not (tmp_path / "PWNED").exists()


def test_bad_model_json_is_a_clear_error(tmp_path):
    _bundle(tmp_path)
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(BundleError, match="model.json"):
        read_meta(tmp_path)
    d = ModelMeta(labels=LABELS, backbone="cnn-small", in_chans=1, image_size=32, thresholds=(0.5,) * 3).to_dict()
    del d["input"]
    (tmp_path / "model.json").write_text(json.dumps(d))
    with pytest.raises(BundleError, match="malformed"):
        read_meta(tmp_path)
    with pytest.raises(BundleError, match="no such run directory"):
        read_meta(tmp_path / "nope")


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_text(tmp_path / "f.txt", "hello")
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]
