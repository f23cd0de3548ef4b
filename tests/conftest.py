"""Test-session setup: the decoded-image cache goes to a temporary folder, never the user's home.

Tests live in folders that mirror the package (tests/data, tests/training, ...); helper modules shared by
several of them (hostile.py, report_screenshot.py) sit here at the top, importable from any folder.
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import tempfile

os.environ["LABELWISE_CACHE_DIR"] = tempfile.mkdtemp(prefix="labelwise-test-cache-")
