"""Learning-rate range test: increasing lrs, finite smoothed losses, a suggestion in range, a plot."""
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from labelwise.data.demo import build_mosaics, build_multiclass
from labelwise.errors import ConfigError
from labelwise.training.lr_find import lr_find, suggest
from labelwise.cli.lr_find import lr_find_command
from labelwise.config import make_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Small and fast: 16 px inputs (cnn-small's minimum), small batches, few steps.
FAST = dict(backbone="cnn-small", pretrained=False, image_size=16, batch_size=8)


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny batches gain nothing from intra-op threads, and on a busy machine OpenMP threads spin
    # waiting for each other (measured 8x slower with 2 threads). Restored afterwards.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def fashion(tmp_path_factory) -> Path:
    return build_multiclass(tmp_path_factory.mktemp("lr") / "data", n_per_class=30, source="fashion")


def test_range_test_on_fashion(fashion, tmp_path):
    start, end = 1e-5, 3.0
    r = lr_find(make_config(fashion, tmp_path / "out", **FAST), start_lr=start, end_lr=end, num_steps=30)
    assert 2 <= len(r.lrs) <= 30 and len(r.lrs) == len(r.losses) == len(r.raw_losses)
    assert np.all(np.diff(r.lrs) > 0) and r.lrs[0] == pytest.approx(start)
    assert np.all(np.isfinite(r.losses)) and np.all(np.isfinite(r.raw_losses))
    assert start <= r.suggestion <= end and r.method in ("steepest", "min/10")
    assert r.min_loss_lr == pytest.approx(r.lrs[np.argmin(r.losses)])
    if r.stopped_early:  # the test stops once the smoothed loss passes 4x its best
        assert r.losses[-1] > 4 * r.losses.min()
    else:
        assert r.lrs[-1] == pytest.approx(end)
    assert r.plot_path == tmp_path / "out" / "lr_find.png"
    assert r.plot_path.read_bytes()[:8] == PNG_MAGIC
    assert len(r.csv_path.read_text().splitlines()) == len(r.lrs) + 1


def test_same_seed_same_curve(fashion, tmp_path):
    cfg = make_config(fashion, tmp_path, **FAST)
    a = lr_find(cfg, start_lr=1e-4, end_lr=1e-1, num_steps=5, write=False)
    b = lr_find(cfg, start_lr=1e-4, end_lr=1e-1, num_steps=5, write=False)
    assert np.array_equal(a.raw_losses, b.raw_losses) and a.plot_path is None


def test_multilabel_data_with_mixup(tmp_path):
    data = build_mosaics(tmp_path / "mosaics", 60, source="fashion")
    r = lr_find(make_config(data, tmp_path / "out", mixup=0.4, **FAST), start_lr=1e-4, end_lr=1.0, num_steps=5)
    assert np.all(np.isfinite(r.losses)) and 1e-4 <= r.suggestion <= 1.0


def test_training_optimizer_and_frozen_backbone(fashion, tmp_path):
    cfg = make_config(fashion, tmp_path, optimizer="sgd", freeze_epochs=1, **FAST)
    r = lr_find(cfg, start_lr=1e-4, end_lr=1.0, num_steps=5, write=False)
    assert np.all(np.isfinite(r.raw_losses)) and len(r.lrs) >= 2


def test_suggest_rules():
    lrs = np.logspace(-6, 0, 61)
    x = np.log10(lrs)
    falling = 2.0 - 1.5 / (1 + np.exp(-(x + 3) * 3)) + np.where(x > -1, (x + 1) * 5, 0)  # steepest at 1e-3
    lr, method, min_lr = suggest(lrs, falling)
    assert method == "steepest" and lr == pytest.approx(1e-3, rel=0.3) and min_lr > lr
    rising = 1.0 + lrs  # never falls: lowest loss at the first lr
    lr, method, min_lr = suggest(lrs, rising)
    assert method == "min/10" and lr == lrs[0] and min_lr == lrs[0]


def test_bad_arguments(tmp_path):
    cfg = make_config(tmp_path, tmp_path / "out", **FAST)
    with pytest.raises(ConfigError, match="--start-lr"):
        lr_find(cfg, start_lr=1.0, end_lr=1e-3)
    with pytest.raises(ConfigError, match="--steps"):
        lr_find(cfg, num_steps=2)


def test_cli_command(fashion, tmp_path):
    app = typer.Typer()
    app.command("lr-find")(lr_find_command)
    out = tmp_path / "lr"
    result = CliRunner().invoke(app, [str(fashion), "--out", str(out), "--model", "cnn-small", "--no-pretrained",
                                      "--image-size", "16", "--batch-size", "8", "--steps", "5",
                                      "--start-lr", "1e-4", "--end-lr", "0.1"])
    assert result.exit_code == 0, result.output
    assert "suggested learning rate" in result.output and "--lr" in result.output
    assert (out / "lr_find.png").is_file() and (out / "lr_find.csv").is_file()


def test_frozen_stages_are_frozen_in_the_range_test_as_in_training(fashion, tmp_path, monkeypatch):
    import labelwise.models.freeze as module  # lr_find freezes through freeze_for_epoch, which calls freeze_early

    seen = []

    def spy(backbone, n, eval_mode=True):
        frozen = module_freeze(backbone, n, eval_mode)
        seen.append((n, frozen, backbone))
        return frozen

    module_freeze = module.freeze_early
    monkeypatch.setattr(module, "freeze_early", spy)
    cfg = make_config(fashion, tmp_path, backbone="efficientnet_lite0", image_size=32, batch_size=8)
    r = lr_find(cfg, start_lr=1e-4, end_lr=1.0, num_steps=5, write=False)
    assert np.all(np.isfinite(r.raw_losses))
    (n, frozen, backbone), = seen
    assert n == 3 and frozen > 0  # EfficientNet-Lite0's automatic --frozen-stages
    assert not any(p.requires_grad for p in backbone.conv_stem.parameters())
    assert any(p.requires_grad for p in backbone.blocks[-1].parameters())
