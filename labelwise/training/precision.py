"""--precision auto: mixed precision where it is measured to pay off, full precision elsewhere.

Measured per training step (bench/speed.py and a per-step micro-benchmark): cnn-small at 28 px
trains 1.4x faster under bfloat16 autocast at batch 64 (1.6x at 256) on a 2-core Xeon with AMX, and
1.7-1.8x faster (channels-last, batch 256) on a 2-core AMD EPYC with AVX-512 BF16 but no AMX, while
EfficientNet-Lite0 trains 0.4-0.9x as fast (its depthwise convolutions gain nothing and pay for the
casts). So on a CPU, auto turns bf16 on only for backbones registered with ``cpu_bf16=True`` and only
when the CPU has bf16 dot-product units (AMX-BF16 or AVX512_BF16) that oneDNN may use (an
ONEDNN_MAX_CPU_ISA below them, e.g. AVX512_CORE or AVX2, means emulated bf16: fp32 then). The rule is
fixed per machine and backbone, so the same seed still gives the same metrics; LABELWISE_CPU_BF16=0
turns the CPU rule off (fp32). On a CUDA GPU auto is bf16-mixed where supported, else 16-mixed.

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


# ONEDNN_MAX_CPU_ISA values that still let oneDNN use native bf16 instructions.
_BF16_ISAS = {"ALL", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
              "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2"}


def cpu_bf16_units(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's bfloat16 dot-product units as oneDNN may use them: "AMX", "AVX-512 BF16", or None (none, capped by
    ONEDNN_MAX_CPU_ISA, or /proc/cpuinfo unreadable)."""
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if isa and isa not in _BF16_ISAS:
        return None
    try:
        with cpuinfo.open() as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split())
                    if "amx_bf16" in flags and (not isa or "AMX" in isa or isa == "ALL"):
                        return "AMX"
                    return "AVX-512 BF16" if "avx512_bf16" in flags else None
    except OSError:
        pass
    return None


def cpu_bf16_allowed() -> bool:
    """False when LABELWISE_CPU_BF16=0 (or false/no/off): --precision auto then trains in fp32 on every CPU.

    For checking that what passes on an AMX machine also passes with another CPU's numerics
    (``make test-portable``), and for users who want fp32 everywhere without editing configs.
    """
    return os.environ.get("LABELWISE_CPU_BF16", "1").strip().lower() not in ("0", "false", "no", "off")


def _on_cuda(accelerator: str) -> bool:
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def choose_precision(requested: str, *, accelerator: str, backbone: str, cpu_bf16: bool,
                     units: str | None = "detect") -> Choice:
    """The Lightning precision to train with, and why (an empty reason when the user chose it). ``units``: the CPU's
    bf16 units (see cpu_bf16_units; "detect" reads them from this machine)."""
    check_choice("--precision", requested, PRECISIONS)
    if requested != "auto":
        return Choice(requested, "")
    if _on_cuda(accelerator):
        if torch.cuda.is_bf16_supported():
            return Choice("bf16-mixed", "--precision auto: bfloat16 mixed precision on the GPU")
        return Choice("16-mixed", "--precision auto: float16 mixed precision (with loss scaling) on the GPU")
    if units == "detect":
        units = cpu_bf16_units()
    if units and cpu_bf16 and cpu_bf16_allowed():
        return Choice("bf16-mixed", f"--precision auto: bfloat16 mixed precision on this CPU's {units} units "
                                    f"(measured 1.4-1.8x the fp32 training speed of {backbone}); validation in fp32")
    return Choice("32", "")
