"""--precision auto: mixed precision where it is measured to pay off, full precision elsewhere.

Measured on a 2-core Xeon with AMX (bench/speed.py and a per-step micro-benchmark), one training step:
cnn-small at 28 px trains 1.4x faster under bfloat16 autocast at batch 64 (1.6x at 256), while
EfficientNet-Lite0 trains 0.4-0.9x as fast (its depthwise convolutions gain nothing from AMX and pay
for the casts). So on a CPU, auto turns bf16 on only for backbones registered with ``cpu_bf16=True``
and only when the CPU has AMX-BF16 units; the rule is fixed per machine and backbone, so the same
seed still gives the same metrics; LABELWISE_CPU_BF16=0 turns the CPU rule off (fp32). On a CUDA GPU
auto is bf16-mixed where supported, else 16-mixed.

Validation and every prediction run in full precision (see LitClassifier.validation_step): the
metrics of a run are the metrics of the fp32 weights it saves, whichever precision trained them.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from labelwise.config import TrainConfig, field_choices
from labelwise.errors import check_choice
from labelwise.training.auto import Choice

PRECISIONS = field_choices(TrainConfig, "precision")


def cpu_has_amx_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the CPU advertises AMX bfloat16 tiles (Linux); False where that cannot be read."""
    try:
        with cpuinfo.open() as f:
            for line in f:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split()
    except OSError:
        pass
    return False


def cpu_bf16_allowed() -> bool:
    """False when LABELWISE_CPU_BF16=0 (or false/no/off): --precision auto then trains in fp32 on every CPU.

    For checking that what passes on an AMX machine also passes with another CPU's numerics
    (``make test-portable``), and for users who want fp32 everywhere without editing configs.
    """
    return os.environ.get("LABELWISE_CPU_BF16", "1").strip().lower() not in ("0", "false", "no", "off")


def _on_cuda(accelerator: str) -> bool:
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def choose_precision(requested: str, *, accelerator: str, backbone: str, cpu_bf16: bool,
                     amx: bool | None = None) -> Choice:
    """The Lightning precision to train with, and why (an empty reason when the user chose it)."""
    check_choice("--precision", requested, PRECISIONS)
    if requested != "auto":
        return Choice(requested, "")
    if _on_cuda(accelerator):
        if torch.cuda.is_bf16_supported():
            return Choice("bf16-mixed", "--precision auto: bfloat16 mixed precision on the GPU")
        return Choice("16-mixed", "--precision auto: float16 mixed precision (with loss scaling) on the GPU")
    if amx is None:
        amx = cpu_has_amx_bf16()
    if amx and cpu_bf16 and cpu_bf16_allowed():
        return Choice("bf16-mixed", f"--precision auto: bfloat16 mixed precision on this CPU's AMX units "
                                    f"(measured ~1.4x the fp32 training speed of {backbone}); validation in fp32")
    return Choice("32", "")
