"""The paper's search settings per (space, method): what a run must match to be labelled 'paper'.

The settings are the registry's (each method row's `paper`, per space); this module compares a config with them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from isdarts.config.search import SearchConfig
from isdarts.registry import METHODS, SPACES

# The paper's search settings per (space, method) (spec §3.1, §4, §5), read from the registry's method rows. A run
# counts as a paper-setting run only if every one of these matches and the full CIFAR-10 training set was used.
PAPER_SEARCH: Mapping[tuple[str, str], Mapping[str, Any]] = MappingProxyType({
    (space, name): spec.paper[space] for space in SPACES for name, spec in METHODS.items() if space in spec.paper
})


def _flat(cfg: SearchConfig) -> dict[str, Any]:
    flat = {k: v for k, v in dataclasses.asdict(cfg).items() if not isinstance(v, dict) and v is not None}
    flat["train_images"], flat["test_images"] = cfg.train_images, cfg.test_images
    flat.update(cfg.options)  # the method's own scalar options (regulariser, lam, ...), by their params.yaml names
    for name in ("shrink", "iim", "arch"):
        sub = getattr(cfg, name)
        if sub is not None:
            flat.update({f"{name}.{k}": v for k, v in dataclasses.asdict(sub).items()})
    if "arch.betas" in flat:
        flat["arch.betas"] = tuple(flat["arch.betas"])
    return flat


def paper_mismatches(cfg: SearchConfig) -> list[str]:
    """Where `cfg` departs from the paper's setting for its space and method (empty if none)."""
    spec = METHODS.get(cfg.method)
    paper = None if spec is None else spec.paper.get(cfg.space)
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
