"""--model auto and --strategy auto: what they pick, that they say why, and the --strategy / --distributed split."""
import subprocess
import sys

import pytest

from labelwise.training.auto import choose_backbone, choose_strategy
from labelwise.training.options import check_strategy
from labelwise.errors import ConfigError


def test_tiny_images_get_the_small_cnn_and_photos_the_pretrained_backbone():
    tiny = choose_backbone("auto", 28, 60_000)
    assert tiny.value == "cnn-small" and "28 px" in tiny.reason
    few = choose_backbone("auto", 28, 600)
    assert few.value == "efficientnet_lite0" and "only 600" in few.reason
    photo = choose_backbone("auto", 3000, 60_000)
    assert photo.value == "efficientnet_lite0" and "3000 px" in photo.reason
    assert choose_backbone("auto", None, 10).value == "efficientnet_lite0"
    asked = choose_backbone("resnet18", 28, 60_000)
    assert asked.value == "resnet18" and asked.reason == ""


def test_strategy_auto_probes_small_sets_and_finetunes_large_ones():
    small = choose_strategy("auto", pretrained=True, n_train=300, time_limit_s=None)
    assert small.value == "linear-probe" and "300 training images" in small.reason
    large = choose_strategy("auto", pretrained=True, n_train=50_000, time_limit_s=None)
    assert large.value == "finetune" and "50000" in large.reason
    scratch = choose_strategy("auto", pretrained=False, n_train=300, time_limit_s=None)
    assert scratch.value == "finetune" and "scratch" in scratch.reason
    assert choose_strategy("linear-probe", pretrained=True, n_train=10**6, time_limit_s=None).reason == ""


def test_strategy_auto_uses_the_time_budget():
    slow = choose_strategy("auto", pretrained=True, n_train=20_000, time_limit_s=600, epoch_estimate_s=lambda: 400.0)
    assert slow.value == "linear-probe" and "400 s" in slow.reason and "1.5 fit" in slow.reason
    fast = choose_strategy("auto", pretrained=True, n_train=20_000, time_limit_s=600, epoch_estimate_s=lambda: 60.0)
    assert fast.value == "finetune" and "about 10 fine-tuning epochs" in fast.reason


def test_a_lightning_strategy_in_strategy_points_to_distributed():
    with pytest.raises(ConfigError, match="--distributed ddp"):
        check_strategy("ddp")
    with pytest.raises(ConfigError, match="did you mean 'linear-probe'"):
        check_strategy("linear_probe")
    assert check_strategy("auto") == "auto"


def test_cli_strategy_ddp_is_one_clear_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "labelwise", "train", str(tmp_path), "--strategy", "ddp"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--distributed ddp" in r.stderr and "Traceback" not in r.stderr


def test_cli_strategy_auto_probes_a_small_set_and_says_so(tmp_path):
    import json

    import yaml

    from labelwise.data.demo import build_multiclass

    data = build_multiclass(tmp_path / "digits", 30, split="train", seed=0, source="digits")
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "labelwise", "train", str(data), "--out", str(run),
                        "--strategy", "auto", "--quiet", "--no-report", "--cache", str(tmp_path / "cache")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    said = " ".join(r.stderr.split())
    assert "chose: --strategy auto: 240 training images" in said and "linear probe" in said
    assert "linear probe on efficientnet_lite0" in said
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["train"]["strategy"] == "linear-probe" and config["data"]["image_size"] == 64
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["run"]["strategy"] == "linear-probe" and metrics["run"]["pretrained"] is True
    assert any("--strategy auto" in c for c in metrics["run"]["choices"])
    assert metrics["model"]["accuracy"] > 0.5  # chance: 0.1
    assert (tmp_path / "cache").is_dir()  # decoded through the cache folder given
