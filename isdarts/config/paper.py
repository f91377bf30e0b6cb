"""The paper's search settings per (space, method): what a run must match to be labelled 'paper'."""

from __future__ import annotations

import dataclasses
from typing import Any

from isdarts.config.search import SearchConfig

# The paper's search settings per (space, method) (spec §3.1, §4, §5). A run counts as a paper-setting
# run only if every one of these matches and the full CIFAR-10 training set was used.
_PAPER_COMMON = {
    "batch_size": 64, "lr": 0.025, "lr_min": 0.001, "momentum": 0.9, "nesterov": True, "grad_clip": 5.0,
    "image_size": 32, "train_images": None, "test_images": None,
}
_PAPER_NB201 = {**_PAPER_COMMON, "C": 16, "N": 5, "epochs": 30, "weight_decay": (3e-4, 5e-4)}
_PAPER_ARCH = {"arch.lr": 3e-4, "arch.betas": (0.5, 0.999), "arch.weight_decay": 1e-3, "train_portion": 0.5}
PAPER_SEARCH: dict[tuple[str, str], dict[str, Any]] = {
    ("nb201", "isdarts"): {**_PAPER_NB201, "shrink.steps": 4, "shrink.interval": 2, "shrink.anchor": "start"},
    ("nb201", "idarts"): dict(_PAPER_NB201),
    ("nb201", "sdarts"): {**_PAPER_NB201, **_PAPER_ARCH, "shrink.steps": 4, "shrink.interval": 2,
                          "shrink.anchor": "start"},
    # NB201's DARTS setting (AutoDL): 50 epochs, wd 5e-4, shuffled loader.
    ("nb201", "darts1"): {**_PAPER_NB201, **_PAPER_ARCH, "epochs": 50, "weight_decay": 5e-4, "shuffle": True},
    ("nb201", "darts2"): {**_PAPER_NB201, **_PAPER_ARCH, "epochs": 50, "weight_decay": 5e-4, "shuffle": True},
    # Λ-DARTS's NB201 script: wd 3e-4, no nesterov, α lr 1e-4, corr, λ 0.25, ε0 1e-4; 50 epochs (spec §5).
    ("nb201", "lambda_darts"): {
        **_PAPER_NB201, **_PAPER_ARCH, "epochs": 50, "weight_decay": 3e-4, "nesterov": False, "shuffle": True,
        "arch.lr": 1e-4, "regulariser": "corr", "lam": 0.25, "epsilon": 1e-4,
    },
    ("darts", "isdarts"): {
        **_PAPER_COMMON, "C": 16, "N": 2, "epochs": 50, "weight_decay": (3e-4, 5e-4),
        "shrink.steps": 7, "shrink.interval": 3, "shrink.anchor": "start",
    },
}


def _flat(cfg: SearchConfig) -> dict[str, Any]:
    flat = {k: v for k, v in dataclasses.asdict(cfg).items() if not isinstance(v, dict) and v is not None}
    flat["train_images"], flat["test_images"] = cfg.train_images, cfg.test_images
    for name in ("shrink", "iim", "arch"):
        sub = getattr(cfg, name)
        if sub is not None:
            flat.update({f"{name}.{k}": v for k, v in dataclasses.asdict(sub).items()})
    if "arch.betas" in flat:
        flat["arch.betas"] = tuple(flat["arch.betas"])
    return flat


def paper_mismatches(cfg: SearchConfig) -> list[str]:
    """Where `cfg` departs from the paper's setting for its space and method (empty if none)."""
    paper = PAPER_SEARCH.get((cfg.space, cfg.method))
    if paper is None:
        return [f"method {cfg.method} on the {cfg.space} space: the paper reports no setting for it"]
    flat = _flat(cfg)
    diffs = []
    for key, want in paper.items():
        have = flat.get(key)
        ok = have in want if isinstance(want, tuple) and key != "arch.betas" else have == want
        if not ok:
            shown = " or ".join(map(repr, want)) if isinstance(want, tuple) and key != "arch.betas" else repr(want)
            diffs.append(f"{key}={have!r} (paper: {shown})")
    return diffs


PAPER_NB201_SEEDS = 4
PAPER_DARTS_SEEDS = 4
