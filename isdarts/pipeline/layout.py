"""Where the pipeline's inputs and outputs live, relative to the project root (as dvc.yaml names them)."""

from __future__ import annotations

from pathlib import Path

PREPARED_DIR = Path("data/prepared")
IMAGENET_TINY_DIR = Path("data/imagenet-tiny")
IMAGENET_MANIFEST = Path("data/imagenet_manifest.json")
RUNS_DIR = Path("runs")
NB201_RUNS_DIR = RUNS_DIR / "nb201"
CHECKPOINTS_DIR = Path("checkpoints")
MODELS_DIR = Path("models")
RESULTS_DIR = Path("results")
REPORTS_DIR = Path("reports")


def run_dir(space: str, method: str, seed: int, *, rate: str | None = None, step: str = "search") -> Path:
    """Where one run's outputs go: runs/nb201/<method>/seed_N, runs/darts/<step>/<method>/seed_N, or
    runs/darts/sweep/<rate>/<step> for the shrink-rate sweep."""
    if rate is not None:
        return RUNS_DIR / "darts" / "sweep" / rate / step
    if space == "nb201":
        return NB201_RUNS_DIR / method / f"seed_{seed}"
    return RUNS_DIR / "darts" / step / method / f"seed_{seed}"


def checkpoint_dir_for(run: Path) -> Path:
    """Checkpoints mirror the run folder under checkpoints/ (kept by DVC between runs: `persist`)."""
    return CHECKPOINTS_DIR / run.relative_to(RUNS_DIR)


def model_path_for(run: Path) -> Path:
    """A run's trained network (model.pt2) mirrors its folder under models/: DVC caches it, and runs/ (a
    report dependency) keeps only the small files git holds."""
    return MODELS_DIR / run.relative_to(RUNS_DIR) / "model.pt2"
