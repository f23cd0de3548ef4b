"""The CLI: user mistakes are one clear line and exit code 2, never a traceback."""
import subprocess
import sys

import pytest

from labelwise.config import parse_duration
from labelwise.errors import LabelwiseError


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "labelwise", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_missing_data_is_a_clear_error_without_traceback(tmp_path):
    r = _run("train", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"))
    assert r.returncode == 2
    assert "nowhere" in r.stderr and "Traceback" not in r.stderr + r.stdout


def test_bad_bundle_is_a_clear_error(tmp_path):
    r = _run("predict", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "p.csv"))
    assert r.returncode == 2
    assert "model.json" in r.stderr and "Traceback" not in r.stderr


def test_misspelled_option_suggests_the_right_one(tmp_path):
    r = _run("train", str(tmp_path), "--epoch", "3")
    assert r.returncode == 2 and "--epochs" in r.stderr


def test_parse_duration():
    assert parse_duration("90") == 90 and parse_duration("10m") == 600 and parse_duration("1.5h") == 5400
    with pytest.raises(LabelwiseError, match="--time-limit"):
        parse_duration("soon")
