"""The report stage: the paper's tables and figures, rebuilt from the stage outputs (never from MLflow)."""

from __future__ import annotations

from pathlib import Path

from isdarts.pipeline.layout import REPORTS_DIR, RESULTS_DIR, RUNS_DIR
from isdarts.report.build import build_all


def build_report(
    results_dir: Path = RESULTS_DIR, runs_dir: Path = RUNS_DIR, reports_dir: Path = REPORTS_DIR
) -> tuple[Path, ...]:
    """Rebuild reports/ from results/ and runs/; returns the files written."""
    return build_all(results_dir, runs_dir, reports_dir)
