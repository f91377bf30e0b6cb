"""Typed, validated params: `load_params` reads params.yaml; each module holds one concern.

- fields: the value readers that name the key and what is allowed
- search: `SearchConfig` and its parts (the only config a search reads, so its checkpoint depends on it alone)
- train: the retraining and ImageNet-transfer configs and params sections
- paper: the paper's search settings, which a 'paper' run must match
- params: the whole params.yaml (`Params`, `load_params`)
"""

from isdarts.config.paper import PAPER_SEARCH, paper_mismatches
from isdarts.config.params import DartsParams, DataConfig, Params, SpaceRuns, SweepParams, load_params, params_from_dict
from isdarts.config.search import (
    ArchConfig,
    IimConfig,
    SearchConfig,
    ShrinkConfig,
)
from isdarts.config.train import ImagenetConfig, ImagenetParams, RetrainConfig, RetrainParams
from isdarts.errors import ConfigError
from isdarts.registry import METHODS

__all__ = [
    "PAPER_SEARCH", "METHODS", "ArchConfig", "ConfigError", "DartsParams", "DataConfig",
    "IimConfig", "ImagenetConfig", "ImagenetParams", "Params", "RetrainConfig", "RetrainParams", "SearchConfig",
    "ShrinkConfig", "SpaceRuns", "SweepParams", "load_params", "paper_mismatches", "params_from_dict",
]
