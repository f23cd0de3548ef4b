"""--precision: what auto picks and why, explicit choices, and that mixed-precision training still logs the
metrics of the fp32 weights it saves."""
import csv
import subprocess
import sys

import numpy as np
import pytest
import yaml

from labelwise.data.demo import build_multiclass, fashion_available
from labelwise.errors import ConfigError
from labelwise.evaluation.metrics import compute_metrics
from labelwise.models.backbones import get_spec
from labelwise.training.precision import choose_precision, cpu_bf16_units
from labelwise.infer.predict import Predictor


def test_cpu_flags_are_read_from_cpuinfo(tmp_path, monkeypatch):
    amx = tmp_path / "amx"
    amx.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n")
    plain = tmp_path / "plain"
    plain.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 amx_bf16x\n")  # a look-alike flag is not the flag
    avx = tmp_path / "avx512bf16"
    avx.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert cpu_bf16_units(amx) == "AMX"
    assert cpu_bf16_units(avx) == "AVX-512 BF16"
    assert cpu_bf16_units(plain) is None
    assert cpu_bf16_units(tmp_path / "missing") is None
    # oneDNN held below its bf16 instructions emulates bf16: not fast units
    for isa, amx_units, avx_units in (("AVX512_CORE", None, None), ("AVX2", None, None),
                                      ("AVX512_CORE_BF16", "AVX-512 BF16", "AVX-512 BF16"),
                                      ("AVX512_CORE_AMX", "AMX", "AVX-512 BF16"), ("ALL", "AMX", "AVX-512 BF16")):
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
        assert (cpu_bf16_units(amx), cpu_bf16_units(avx)) == (amx_units, avx_units), isa


def test_auto_uses_bf16_on_bf16_cpus_only_for_backbones_measured_to_gain(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.delenv("LABELWISE_CPU_BF16", raising=False)
    small = choose_precision("auto", accelerator="auto", backbone="cnn-small", cpu_bf16=True, units="AMX")
    assert small.value == "bf16-mixed" and "AMX" in small.reason and "cnn-small" in small.reason
    avx = choose_precision("auto", accelerator="auto", backbone="cnn-small", cpu_bf16=True, units="AVX-512 BF16")
    assert avx.value == "bf16-mixed" and "AVX-512 BF16" in avx.reason
    assert choose_precision("auto", accelerator="cpu", backbone="cnn-small", cpu_bf16=True, units=None).value == "32"
    lite = choose_precision("auto", accelerator="auto", backbone="efficientnet_lite0", cpu_bf16=False, units="AMX")
    assert lite.value == "32" and lite.reason == ""
    assert get_spec("cnn-small").cpu_bf16 and not get_spec("efficientnet_lite0").cpu_bf16
    assert not get_spec("resnet18").cpu_bf16  # any timm name: full precision unless asked


def test_cpu_bf16_can_be_switched_off_from_the_environment(monkeypatch):
    # make test-portable: another CPU's numerics (no bf16) on an AMX machine
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    for off in ("0", "false", "OFF"):
        monkeypatch.setenv("LABELWISE_CPU_BF16", off)
        assert choose_precision("auto", accelerator="cpu", backbone="cnn-small", cpu_bf16=True, units="AMX").value == "32"
    monkeypatch.setenv("LABELWISE_CPU_BF16", "1")
    assert choose_precision("auto", accelerator="cpu", backbone="cnn-small", cpu_bf16=True, units="AMX").value == \
        "bf16-mixed"
    monkeypatch.setenv("LABELWISE_CPU_BF16", "0")  # an explicit choice is still honoured
    assert choose_precision("bf16-mixed", accelerator="cpu", backbone="cnn-small", cpu_bf16=True,
                            units="AMX").value == "bf16-mixed"


def test_auto_on_a_gpu_is_mixed_precision(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.is_bf16_supported", lambda: True)
    assert choose_precision("auto", accelerator="auto", backbone="x", cpu_bf16=False).value == "bf16-mixed"
    monkeypatch.setattr("torch.cuda.is_bf16_supported", lambda: False)
    assert choose_precision("auto", accelerator="gpu", backbone="x", cpu_bf16=False).value == "16-mixed"
    # --accelerator cpu on a GPU machine follows the CPU rule
    assert choose_precision("auto", accelerator="cpu", backbone="x", cpu_bf16=False, units="AMX").value == "32"


def test_explicit_and_misspelled_choices():
    assert choose_precision("32", accelerator="auto", backbone="cnn-small", cpu_bf16=True, units="AMX").value == "32"
    assert choose_precision("bf16-mixed", accelerator="cpu", backbone="x", cpu_bf16=False).reason == ""
    with pytest.raises(ConfigError, match="did you mean 'bf16-mixed'"):
        choose_precision("bf16-mix", accelerator="cpu", backbone="x", cpu_bf16=False)


def test_cli_rejects_an_unknown_precision_without_a_traceback(tmp_path):
    data = tmp_path / "data"
    for label in ("a", "b"):
        (data / label).mkdir(parents=True)
    r = subprocess.run([sys.executable, "-m", "labelwise", "train", str(data), "--out", str(tmp_path / "run"),
                        "--precision", "fp8"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "--precision 'fp8' is not known" in r.stderr + r.stdout and "Traceback" not in r.stderr


@pytest.mark.slow
@pytest.mark.skipif(not fashion_available(), reason="Debian's dataset-fashion-mnist is not installed")
def test_bf16_training_logs_the_metrics_of_the_saved_fp32_weights(tmp_path):
    data = build_multiclass(tmp_path / "data", n_per_class=40, seed=5, source="fashion")
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "labelwise", "train", str(data), "--out", str(run), "--epochs", "2",
                        "--model", "cnn-small", "--quiet", "--no-report", "--precision", "bf16-mixed",
                        "--accelerator", "cpu"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["precision"] == "bf16-mixed"
    with (run / "history.csv").open() as f:
        best = max(csv.DictReader(f), key=lambda row: float(row["accuracy"]))
    with (run / "val_predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    predictor = Predictor.load(run)
    names = predictor.labels.names
    targets = np.array([[int(row["true_labels"] == n) for n in names] for row in rows], dtype=np.uint8)
    probs = np.concatenate([p for _, p, _ in predictor.iter_probs([row["image"] for row in rows])])
    single = compute_metrics(probs, targets, predictor.labels)
    # the epoch the run kept was scored in fp32 during training, exactly as the bundle predicts
    assert abs(float(best["accuracy"]) - single["accuracy"]) < 1e-6
    assert abs(float(best["f1_macro"]) - single["f1_macro"]) < 1e-5
