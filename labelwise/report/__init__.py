"""The error-analysis report: ``build_report(run_dir)`` -> RUN/report.html (opens from disk, offline).

>>> from labelwise.report import build_report
>>> build_report("runs/demo")                     # doctest: +SKIP
PosixPath('runs/demo/report.html')
"""
from __future__ import annotations

from labelwise.report.build import build_report

__all__ = ["build_report"]
