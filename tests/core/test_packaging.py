"""The package pip builds: a wheel with lower-bound dependencies, extras, py.typed and every data file,
installed into a fresh virtual environment where `labelwise --version` runs (no training)."""
from __future__ import annotations

import email
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import labelwise
from labelwise.cli.extras import EXTRAS, missing_extra_message

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # --no-build-isolation: use this environment's setuptools, no download
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, text=True)
    (found,) = out.glob("labelwise-*.whl")
    return found


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_string(z.read(name).decode())


def test_wheel_declares_bounds_extras_and_one_version(wheel):
    meta = _metadata(wheel)
    assert meta["Version"] == labelwise.__version__
    requires = meta.get_all("Requires-Dist")
    core = [r for r in requires if "extra ==" not in r]
    assert any(r.startswith("torch>=") for r in core) and any(r.startswith("timm>=") for r in core)
    assert not [r for r in core if "==" in r], "exact pins belong in requirements.txt, not the package"
    assert not [r for r in core if r.split(">")[0].split("<")[0].strip() in ("fastapi", "uvicorn", "onnx", "onnxruntime")]
    extras = set(meta.get_all("Provides-Extra"))
    assert {"serve", "export", "loggers", "hub", "all", "test"} <= extras
    size_kb = wheel.stat().st_size / 1024
    print(f"wheel {wheel.name}: {size_kb:.0f} KiB; extras: {', '.join(sorted(extras))}")


def test_wheel_carries_py_typed_and_every_data_file(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    data = [p.relative_to(ROOT).as_posix() for p in (ROOT / "labelwise").rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert "labelwise/py.typed" in data
    missing = [d for d in data if d not in names]
    assert not missing, f"files the package reads at run time but the wheel lacks: {missing}"


def test_wheel_installs_into_a_fresh_venv_and_runs(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True, text=True)
    # Dependencies come from this environment (appended after the venv's own site-packages, whose
    # labelwise is the wheel's): reinstalling torch would take minutes and prove nothing more.
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([str(venv / "bin" / "labelwise"), "--version"], capture_output=True, text=True,
                         cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"labelwise {labelwise.__version__}"
    where = subprocess.run([str(py), "-c", "import labelwise, pathlib; print(pathlib.Path(labelwise.__file__).parent)"],
                           capture_output=True, text=True, cwd=tmp_path, env=env).stdout.strip()
    assert where.startswith(str(venv)), where  # the wheel's copy, not this checkout


def test_missing_optional_parts_name_their_extra():
    err = ModuleNotFoundError("No module named 'fastapi'", name="fastapi")
    assert missing_extra_message(err).endswith("pip install labelwise[serve]")
    assert missing_extra_message(ModuleNotFoundError("x", name="mlflow.tracking")).endswith("labelwise[loggers]")
    assert missing_extra_message(ModuleNotFoundError("x", name="numpy")) is None
    pyproject = (ROOT / "pyproject.toml").read_text()
    for _, extra in EXTRAS.values():  # every extra named in a message exists in pyproject
        assert re.search(rf"^{extra} = \[", pyproject, re.M), extra


def test_a_command_without_its_extra_says_which_to_install(tmp_path):
    """`labelwise serve` where FastAPI cannot be imported: one line, exit 2, the extra named."""
    blocker = tmp_path / "fastapi"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'fastapi'\", name='fastapi')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "labelwise", "serve", str(tmp_path / "run")], capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 2 and "pip install labelwise[serve]" in proc.stderr and "Traceback" not in proc.stderr
