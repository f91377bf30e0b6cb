"""What the retrain and transfer steps record about the genotype they train and where its numbers come from.

Both read a searched genotype and the search's metrics beside it, and merge a caller's `run_info` (method,
profile, paper mismatches) into their metrics.json; every input is checked before any training.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from isdarts.config import Params
from isdarts.errors import DataError, GenotypeError
from isdarts.spaces.darts.genotype import DartsGenotype

SEARCH_METRICS_NAME = "metrics.json"
RUN_INFO_KEYS = ("method", "profile", "paper_settings", "paper_mismatches")
# Keys the steps compute themselves; run_info may not override them.
OWN_KEYS = (
    "space", "genotype", "genotype_file", "search_hours", "search_cost_unit", "image_size", "train_images",
    "test_images", "seed", "epochs", "config", "params_m", "data", "world_size",
)


def read_genotype(path: Path) -> DartsGenotype:
    """The genotype JSON a search wrote; errors name the file (and, from the genotype module, the entry)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"genotype file {path} not found; run the DARTS search stage that writes it first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GenotypeError(f"{path} is not valid JSON ({exc}); re-run the search that wrote it") from exc
    try:
        return DartsGenotype.from_json(data)
    except GenotypeError as exc:
        raise GenotypeError(f"{path}: {exc}") from exc


def search_metrics(genotype_file: Path) -> Mapping[str, Any]:
    """The search's metrics.json beside the genotype ({} without one: a shipped or hand-written genotype)."""
    path = Path(genotype_file).parent / SEARCH_METRICS_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON ({exc}); re-run the search that wrote it") from exc
    if not isinstance(data, Mapping):
        raise DataError(f"{path} holds a {type(data).__name__}, not the search's metrics object")
    return data


def search_cost(genotype_file: Path) -> dict[str, Any]:
    """search_hours and search_cost_unit of the search that found the genotype (None without its metrics)."""
    metrics = search_metrics(genotype_file)
    return {"search_hours": metrics.get("search_hours"), "search_cost_unit": metrics.get("cost_unit")}


def run_info_for(
    params: Params, method: str, mismatches: list[str], genotype_file: Path, **extra: Any
) -> dict[str, Any]:
    """The run_info of a pipeline run: the search's paper mismatches come first, then this step's."""
    searched = [f"search: {m}" for m in search_metrics(genotype_file).get("paper_mismatches", [])]
    everything = searched + mismatches
    return {"method": method, "profile": params.profile, "paper_settings": not everything,
            "paper_mismatches": everything, **extra}


def check_run_info(info: Mapping[str, Any]) -> None:
    """run_info describes the run for the results files; a missing or clashing key is the caller's bug."""
    missing = [k for k in RUN_INFO_KEYS if k not in info]
    if missing:
        raise ValueError(f"run_info lacks {missing}; it needs at least {list(RUN_INFO_KEYS)}")
    if not isinstance(info["paper_settings"], bool):
        raise ValueError(f"run_info['paper_settings'] must be a bool, got {info['paper_settings']!r}")
    if not isinstance(info["paper_mismatches"], list | tuple):
        raise ValueError(f"run_info['paper_mismatches'] must be a list, got {info['paper_mismatches']!r}")
    _refuse_clash(info, OWN_KEYS)


def merge_run_info(computed: dict[str, Any], info: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics.json of a finished run: what the step computed, then run_info (which may not override it)."""
    _refuse_clash(info, set(computed) - set(RUN_INFO_KEYS))
    return {**computed, **info, "paper_mismatches": list(info["paper_mismatches"])}


def _refuse_clash(info: Mapping[str, Any], own: Any) -> None:
    clash = sorted(set(info) & set(own))
    if clash:
        raise ValueError(f"run_info may not set {clash}: the workflow computes them")


def run_name(kind: str, info: Mapping[str, Any], seed: int) -> str:
    """The MLflow run name: darts-<kind>-<method>-seed<N>, plus the sweep rate for a sweep point."""
    name = f"darts-{kind}-{info['method']}-seed{seed}"
    return f"{name}-rate{info['rate_label']}" if "rate_label" in info else name
