"""The one option schema: YAML in/out, type and choice checks with line numbers, the generated CLI, --config."""
import json
import subprocess
import sys
from dataclasses import fields, replace

import pytest
from builders import shades
from typer.testing import CliRunner

from labelwise.cli import app
from labelwise.config import (
    SECTIONS,
    RunConfig,
    TrainConfig,
    flag_of,
    make_config,
    option_fields,
)
from labelwise.errors import ConfigError
from labelwise.training.options import REGISTRIES

runner = CliRunner()


def test_yaml_round_trip_keeps_every_default(tmp_path):
    cfg = make_config("data/", "runs/x", epochs=3, backbone="cnn-small", val_split=0.3)
    cfg.save(tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text()
    assert "weight_decay" in text and "delimiter" in text  # defaults are written out
    assert RunConfig.load(tmp_path / "config.yaml") == cfg


def test_unknown_option_suggests_the_right_one():
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        make_config("data/", epoch=3)


def test_unknown_yaml_key_names_file_line_and_suggests(tmp_path):
    p = tmp_path / "config.yaml"
    p.write_text("out: runs/a\ntrain:\n  epochs: 2\n  batchsize: 3\n")
    with pytest.raises(ConfigError) as e:
        RunConfig.load(p)
    assert f"{p}, line 4" in str(e.value) and "did you mean 'batch_size'" in str(e.value)


def test_wrong_type_names_key_and_line(tmp_path):
    p = tmp_path / "config.yaml"
    p.write_text("train:\n  seed: 1\n  epochs: ten\n")
    with pytest.raises(ConfigError, match=r"line 3: train.epochs: expected a whole number, got 'ten'"):
        RunConfig.load(p)
    with pytest.raises(ConfigError, match="--val-split: expected a number"):
        make_config("d", val_split="lots")


def test_configs_are_frozen():
    with pytest.raises(Exception):
        TrainConfig().epochs = 3  # type: ignore[misc]


def test_every_field_has_help_and_a_known_choice_source():
    for _, f in option_fields():
        assert f.metadata.get("help"), f.name
        choices = f.metadata.get("choices")
        assert choices is None or isinstance(choices, tuple) or choices in REGISTRIES, f.name
    flags = [flag_of(f) for _, f in option_fields()]
    assert len(flags) == len(set(flags)), "two options share a flag"


def test_help_lists_every_option_and_the_registry_choices():
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for _, f in option_fields():
        if f.name != "data":
            assert flag_of(f) in result.output, flag_of(f)
    for name in REGISTRIES["loss"].names() + REGISTRIES["optimizer"].names():
        assert name in result.output
    for panel in ("Data", "Model", "Training", "Evaluation", "Run"):
        assert panel in result.output


def _tiny_folder(root, n=12):
    return shades(root, n, seed=0, levels=(40, 210), spread=20)


def test_print_config_merges_file_and_flags(tmp_path):
    data = _tiny_folder(tmp_path / "data")
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"data:\n  data: {data}\ntrain:\n  epochs: 7\n  optimizer: sgd\n")
    result = runner.invoke(app, ["train", "--config", str(cfg), "--epochs", "3", "--print-config"])
    assert result.exit_code == 0, result.output
    printed = RunConfig.from_dict(__import__("yaml").safe_load(result.output))
    assert printed.train.epochs == 3 and printed.train.optimizer == "sgd" and printed.data.data == str(data)
    assert printed.train.weight_decay == TrainConfig().weight_decay  # defaults written out


@pytest.mark.parametrize("args, message", [
    (["--optimizer", "adamm"], "did you mean 'adam"),
    (["--loss", "focall"], "did you mean 'focal'"),
    (["--augment", "strnog"], "did you mean 'strong'"),
    (["--scheduler", "cosin"], "did you mean 'cosine'"),
])
def test_a_bad_choice_is_caught_before_any_image_is_read(tmp_path, args, message):
    data = tmp_path / "missing-data"  # never read: the choice is checked first
    result = subprocess.run([sys.executable, "-m", "labelwise", "train", str(data), *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_bad_choice_in_a_config_file(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("data:\n  data: somewhere\ntrain:\n  optimizer: adamm\n")
    result = runner.invoke(app, ["train", "--config", str(cfg)])
    assert result.exit_code != 0
    assert "did you mean 'adam" in str(result.exception) + result.output


def test_adadelta_defaults_to_its_usual_learning_rate(tmp_path):
    from labelwise.training.optim import default_lr

    assert default_lr("adadelta") == 1.0 and default_lr("adamw") == 2e-3


def test_the_backbone_recipe_fills_only_what_the_user_left_unset():
    from labelwise.training.optim import resolve_recipe

    auto = TrainConfig()
    assert (auto.optimizer, auto.lr, auto.weight_decay) == ("auto", None, None)
    r = resolve_recipe(auto, "sgd", 0.2)
    assert (r.optimizer, r.lr, r.weight_decay) == ("sgd", 0.2, 5e-4)
    # another optimizer than the recipe's: that optimizer's own defaults, not the recipe's lr
    r = resolve_recipe(replace(auto, optimizer="adamw"), "sgd", 0.2)
    assert (r.optimizer, r.lr, r.weight_decay) == ("adamw", 2e-3, 0.01)
    r = resolve_recipe(replace(auto, lr=0.05, weight_decay=0.0), "sgd", 0.2)  # given values always win
    assert (r.optimizer, r.lr, r.weight_decay) == ("sgd", 0.05, 0.0)
    r = resolve_recipe(auto, "adamw", None)
    assert (r.optimizer, r.lr, r.weight_decay) == ("adamw", 2e-3, 0.01)


def test_the_default_batch_leaves_small_sets_several_steps_per_epoch():
    from labelwise.training.prepare import auto_batch_size

    assert [auto_batch_size(256, n) for n in (40, 1000, 4000, 4800, 8192, 55_000)] == [64, 64, 64, 128, 256, 256]
    assert auto_batch_size(64, 20) == 64  # a backbone asking for 64 or less gets it


def test_retraining_from_a_runs_own_config_reproduces_its_metrics(tmp_path):
    """The run's config.yaml records every resolved choice; training again from it gives the same scores."""
    data = _tiny_folder(tmp_path / "data")
    first = tmp_path / "first"
    r = runner.invoke(app, ["train", str(data), "--out", str(first), "--epochs", "2", "--model", "cnn-small",
                            "--precision", "32", "--cache", "off", "--quiet", "--no-report", "--seed", "3"])
    assert r.exit_code == 0, r.output
    written = RunConfig.load(first / "config.yaml")
    assert written.train.loss == "ce" and written.train.monitor == "accuracy"
    # cnn-small on a small set: AdamW at its defaults (its sgd recipe needs >= 4,096 images), batch 64, written out
    assert (written.train.optimizer, written.train.lr, written.train.weight_decay, written.train.batch_size) == \
        ("adamw", 2e-3, 0.01, 64)
    assert written.model.pretrained is False and written.train.epochs == 2  # auto choices resolved in the file
    second = tmp_path / "second"
    r = runner.invoke(app, ["train", "--config", str(first / "config.yaml"), "--out", str(second), "--quiet",
                            "--no-report"])
    assert r.exit_code == 0, r.output
    a = json.loads((first / "metrics.json").read_text())["model"]
    b = json.loads((second / "metrics.json").read_text())["model"]
    assert a == b
    assert RunConfig.load(second / "config.yaml").train == written.train


def test_python_api_takes_the_same_options_and_config(tmp_path):
    import labelwise

    cfg = tmp_path / "run.yaml"
    cfg.write_text("train:\n  epochs: 1\n")
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        labelwise.train(tmp_path, tmp_path / "out", config=cfg, epoch=2)


def test_sections_cover_every_dataclass():
    assert set(SECTIONS) == {"data", "model", "train"}
    assert all(fields(cls) for cls in SECTIONS.values())


def test_help_does_not_import_torch():
    code = "import sys; from labelwise.cli import app; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
