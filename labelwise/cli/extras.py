"""Optional parts of labelwise and the pip extra that brings each (see pyproject.toml).

A command that meets a missing optional module says which extra to install, in one line, instead of
a traceback: `labelwise serve` without FastAPI -> "pip install labelwise[serve]".
"""
from __future__ import annotations

# top-level module -> (what needs it, extra)
EXTRAS: dict[str, tuple[str, str]] = {
    "fastapi": ("serving", "serve"), "uvicorn": ("serving", "serve"), "starlette": ("serving", "serve"),
    "multipart": ("serving", "serve"), "python_multipart": ("serving", "serve"),
    "onnx": ("ONNX export", "export"), "onnxruntime": ("the onnx engine", "export"),
    "onnxscript": ("ONNX export", "export"),
    "tensorboard": ("--logger tensorboard", "loggers"), "mlflow": ("--logger mlflow", "loggers"),
    "huggingface_hub": ("the Hugging Face Hub", "hub"),
}


def missing_extra_message(error: ModuleNotFoundError) -> str | None:
    """The one-line advice for a missing optional module, or None when it is not an optional part."""
    root = (error.name or "").split(".")[0]
    if root not in EXTRAS:
        return None
    what, extra = EXTRAS[root]
    return f"{what} needs the Python module '{root}', which is not installed: pip install labelwise[{extra}]"
