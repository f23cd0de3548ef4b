import pytest

from labelwise.config import RunConfig, TrainConfig
from labelwise.errors import ConfigError
from labelwise.config import make_config


def test_yaml_round_trip_keeps_every_default(tmp_path):
    cfg = make_config("data/", "runs/x", epochs=3, backbone="cnn-small", val_split=0.3)
    cfg.save(tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text()
    assert "weight_decay" in text and "delimiter" in text  # defaults are written out
    assert RunConfig.load(tmp_path / "config.yaml") == cfg


def test_unknown_option_suggests_the_right_one():
    with pytest.raises(ConfigError, match="Did you mean 'epochs'"):
        make_config("data/", epoch=3)


def test_unknown_yaml_key_names_file_and_suggests(tmp_path):
    p = tmp_path / "config.yaml"
    p.write_text("train:\n  batchsize: 3\n")
    with pytest.raises(ConfigError) as e:
        RunConfig.load(p)
    assert str(p) in str(e.value) and "batch_size" in str(e.value)


def test_configs_are_frozen():
    with pytest.raises(Exception):
        TrainConfig().epochs = 3  # type: ignore[misc]
