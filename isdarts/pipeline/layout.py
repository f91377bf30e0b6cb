"""Where the pipeline's inputs and outputs live, relative to the project root (as dvc.yaml names them).

CIFAR-10 keeps the paths it always had. Another dataset's prepared copy is data/prepared-<dataset>, and its runs
live under runs/<space>-<dataset>/ (beside runs/<space>/), so their checkpoints, models and results, which
mirror the run folder, never meet CIFAR-10's.
"""

from __future__ import annotations

from pathlib import Path

from isdarts.data.datasets import DEFAULT_DATASET, dataset_info

PREPARED_DIR = Path("data/prepared")
IMAGENET_TINY_DIR = Path("data/imagenet-tiny")
IMAGENET_MANIFEST = Path("data/imagenet_manifest.json")
RUNS_DIR = Path("runs")
NB201_RUNS_DIR = RUNS_DIR / "nb201"
CHECKPOINTS_DIR = Path("checkpoints")
MODELS_DIR = Path("models")
RESULTS_DIR = Path("results")
REPORTS_DIR = Path("reports")


def prepared_dir(dataset: str = DEFAULT_DATASET) -> Path:
    """The prepared copy of `dataset`: data/prepared (CIFAR-10), data/prepared-cifar100, data/prepared-svhn."""
    return PREPARED_DIR if dataset == DEFAULT_DATASET else Path(f"{PREPARED_DIR}-{dataset_info(dataset).name}")


def space_dir(space: str, dataset: str = DEFAULT_DATASET) -> str:
    """The top folder of a space's runs: the space's name, suffixed with the dataset unless it is CIFAR-10."""
    return space if dataset == DEFAULT_DATASET else f"{space}-{dataset_info(dataset).name}"


def run_dir(
    space: str, method: str, seed: int, *, rate: str | None = None, step: str = "search",
    dataset: str = DEFAULT_DATASET,
) -> Path:
    """Where one run's outputs go: runs/nb201/<method>/seed_N, runs/darts/<step>/<method>/seed_N, or
    runs/darts/sweep/<rate>/<step> for the shrink-rate sweep; on another dataset than CIFAR-10 the top folder
    is <space>-<dataset> (runs/nb201-cifar100/<method>/seed_N, runs/darts-svhn/<step>/<method>/seed_N)."""
    top = RUNS_DIR / space_dir("darts" if rate is not None else space, dataset)
    if rate is not None:
        return top / "sweep" / rate / step
    if space == "nb201":
        return top / method / f"seed_{seed}"
    return top / step / method / f"seed_{seed}"


def nb201_results_path(method: str, dataset: str = DEFAULT_DATASET) -> Path:
    """The looked-up NB201 results of one method: results/nb201_<method>.json, or nb201-<dataset>_<method>.json."""
    return RESULTS_DIR / f"{space_dir('nb201', dataset)}_{method}.json"


def checkpoint_dir_for(run: Path) -> Path:
    """Checkpoints mirror the run folder under checkpoints/ (kept by DVC between runs: `persist`)."""
    return CHECKPOINTS_DIR / run.relative_to(RUNS_DIR)


def model_path_for(run: Path) -> Path:
    """A run's trained network (model.pt2) mirrors its folder under models/: DVC caches it, and runs/ (a
    report dependency) keeps only the small files git holds."""
    return MODELS_DIR / run.relative_to(RUNS_DIR) / "model.pt2"
