"""Which search method and supernet a `SearchConfig` names, and how each space records its state.

The search loop is written once; what differs between NB201 and the DARTS space (mask layout, edge and
op names, genotype format) is gathered here, so the loop never branches on the space itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from isdarts.config import ConfigError, SearchConfig, ShrinkConfig
from isdarts.search.shrink import shrink_epochs


@dataclass(frozen=True)
class SpaceInfo:
    """Names and record formats of one search space."""

    name: str
    edges: tuple[str, ...]
    ops: tuple[str, ...]
    kinds: tuple[str, ...] | None  # cell kinds with their own mask (DARTS: normal, reduce); None for NB201
    alive: Callable[[torch.nn.Module], Any]  # JSON-ready mask(s)
    genotype_json: Callable[[Any], dict[str, Any]]
    genotype_str: Callable[[Any], str]


def _nb201_info() -> SpaceInfo:
    from isdarts.spaces.nb201_genotype import NB201_EDGES, NB201_OPS

    return SpaceInfo(
        "nb201", tuple(NB201_EDGES), tuple(NB201_OPS), None,
        alive=lambda model: model.mask.int().tolist(),
        genotype_json=lambda g: g.to_json(),
        genotype_str=lambda g: g.to_arch_str(),
    )


def _darts_info() -> SpaceInfo:
    from isdarts.spaces.darts_ops import DARTS_SEARCH_OPS
    from isdarts.spaces.darts_supernet import CELL_KINDS, DARTS_EDGES

    return SpaceInfo(
        "darts", tuple(DARTS_EDGES), tuple(DARTS_SEARCH_OPS), tuple(CELL_KINDS),
        alive=lambda model: {kind: model.get_mask(kind).int().tolist() for kind in CELL_KINDS},
        genotype_json=lambda g: g.to_json(),
        genotype_str=str,
    )


def space_info(space: str) -> SpaceInfo:
    if space == "nb201":
        return _nb201_info()
    if space == "darts":
        return _darts_info()
    raise ConfigError(f"unknown search space {space!r}; expected nb201 or darts")


def _darts_kwargs(cfg: SearchConfig, generator: torch.Generator | None) -> dict[str, Any]:
    """The bi-level methods' shared settings: weight SGD plus the Adam optimiser of α."""
    arch = cfg.arch
    return {
        "epochs": cfg.epochs, "lr": cfg.lr, "lr_min": cfg.lr_min, "momentum": cfg.momentum,
        "nesterov": cfg.nesterov, "weight_decay": cfg.weight_decay, "grad_clip": cfg.grad_clip,
        "arch_lr": arch.lr, "arch_betas": arch.betas, "arch_weight_decay": arch.weight_decay,
        "generator": generator,
    }


def _build_nb201(cfg: SearchConfig, num_classes: int, device: torch.device, generator: torch.Generator | None):
    from isdarts.search.ablations import IDartsNb201, SDartsNb201
    from isdarts.search.darts_method import DartsNb201
    from isdarts.search.isdarts_method import IsDartsNb201
    from isdarts.search.lambda_darts import LambdaDartsNb201
    from isdarts.spaces.nb201_supernet import Nb201Supernet

    model = Nb201Supernet(cfg.C, cfg.N, num_classes, affine=False, track=False).to(device)
    if cfg.method == "isdarts":
        return IsDartsNb201(model, cfg)
    if cfg.method == "idarts":
        # IS-DARTS training with one selection after the last epoch (the class sets that schedule itself).
        return IDartsNb201(model, dataclasses.replace(cfg, shrink=ShrinkConfig(steps=1, interval=1)))
    kwargs = _darts_kwargs(cfg, generator)
    if cfg.method in ("darts1", "darts2"):
        return DartsNb201(model, order=cfg.order, **kwargs)
    if cfg.method == "lambda_darts":
        return LambdaDartsNb201(model, regulariser=cfg.regulariser, lam=cfg.lam, eps0=cfg.epsilon, **kwargs)
    if cfg.method == "sdarts":
        method = SDartsNb201(model, shrink_steps=cfg.shrink.steps, shrink_interval=cfg.shrink.interval, **kwargs)
        method.schedule = shrink_epochs(cfg.epochs, cfg.shrink.steps, cfg.shrink.interval, cfg.shrink.anchor)
        return method
    raise ConfigError(f"method {cfg.method!r} is not available on the NB201 space")


def _build_darts(cfg: SearchConfig, num_classes: int, device: torch.device, generator: torch.Generator | None):
    from isdarts.search.isdarts_darts_space import IsDartsDartsSpace
    from isdarts.spaces.darts_supernet import DartsSupernet

    model = DartsSupernet(cfg.C, cfg.N, num_classes, affine=False, track=False).to(device)
    common = {
        "epochs": cfg.epochs, "lr": cfg.lr, "lr_min": cfg.lr_min, "momentum": cfg.momentum,
        "nesterov": cfg.nesterov, "weight_decay": cfg.weight_decay, "grad_clip": cfg.grad_clip,
    }
    if cfg.method == "isdarts":
        return IsDartsDartsSpace(
            model, **common, shrink_steps=cfg.shrink.steps, shrink_interval=cfg.shrink.interval,
            shrink_anchor=cfg.shrink.anchor, iim_every_epoch=cfg.iim.every_epoch,
        )
    if cfg.method == "idarts":
        # One selection after the last epoch keeping two per node: the Table A.2 "rate 1" row (spec §3.5).
        return IsDartsDartsSpace(
            model, **common, shrink_steps=1, shrink_interval=1, iim_every_epoch=cfg.iim.every_epoch
        )
    from isdarts.search import darts_space_baselines as baselines

    kwargs = _darts_kwargs(cfg, generator)
    if cfg.method in ("darts1", "darts2"):
        return baselines.DartsDartsSpace(model, order=cfg.order, **kwargs)
    if cfg.method == "lambda_darts":
        return baselines.LambdaDartsDartsSpace(
            model, regulariser=cfg.regulariser, lam=cfg.lam, epsilon=cfg.epsilon, **kwargs
        )
    if cfg.method == "sdarts":
        method = baselines.SDartsDartsSpace(
            model, shrink_steps=cfg.shrink.steps, shrink_interval=cfg.shrink.interval, **kwargs
        )
        method.schedule = shrink_epochs(cfg.epochs, cfg.shrink.steps, cfg.shrink.interval, cfg.shrink.anchor)
        return method
    raise ConfigError(f"method {cfg.method!r} is not available on the DARTS space")


def build_method(
    cfg: SearchConfig, num_classes: int, device: torch.device, generator: torch.Generator | None = None
) -> Any:
    """The search method `cfg` names, with its supernet on `device`; `generator` seeds α's initialisation."""
    if cfg.space == "nb201":
        return _build_nb201(cfg, num_classes, device, generator)
    if cfg.space == "darts":
        return _build_darts(cfg, num_classes, device, generator)
    raise ConfigError(f"unknown search space {cfg.space!r}; expected nb201 or darts")
