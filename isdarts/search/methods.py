"""The table of search methods: one row per method, read by config, the search loop and the report.

A row names the method, its label in tables, the params.yaml options it owns, whether it trains α on a
bi-level split, and its class on each space. Classes are given as "module:Class" and imported on first
use, so this leaf module stays cheap to import (config reads it without loading torch or the methods).
Adding a method is one module under isdarts/search plus one row here.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from isdarts.errors import ConfigError

if TYPE_CHECKING:
    from isdarts.search.base import SearchMethod

SPACES: tuple[str, ...] = ("nb201", "darts")
# The supernet class of each space; every method of a space searches on it.
SUPERNETS: Mapping[str, str] = {
    "nb201": "isdarts.spaces.nb201.supernet:Nb201Supernet",
    "darts": "isdarts.spaces.darts.supernet:DartsSupernet",
}


@dataclass(frozen=True)
class MethodSpec:
    """One search method: its name, report label, own params.yaml options, data use and class per space."""

    name: str
    label: str
    options: tuple[str, ...]  # each method's own keys; any `<space>.search` key may also be overridden per method
    bilevel: bool  # trains α on a valid half of the training set (AutoDL's 25k/25k split)
    classes: Mapping[str, str]  # space -> "module:Class"

    def method_class(self, space: str) -> type[SearchMethod]:
        """The class that runs this method on `space`, built as `cls(model, cfg, generator)`."""
        if space not in self.classes:
            raise ConfigError(f"method {self.name!r} is not available on the {space!r} space")
        return load(self.classes[space])


def load(target: str) -> type:
    """The object a "module:Class" string names."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


_BILEVEL_OPTIONS = ("arch", "train_portion")

METHODS: Mapping[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("isdarts", "IS-DARTS", ("shrink", "iim"), False, {
            "nb201": "isdarts.search.isdarts:IsDartsNb201", "darts": "isdarts.search.isdarts:IsDartsDartsSpace",
        }),
        MethodSpec("idarts", "I-DARTS", ("iim",), False, {
            "nb201": "isdarts.search.isdarts:IDartsNb201", "darts": "isdarts.search.isdarts:IDartsDartsSpace",
        }),
        MethodSpec("sdarts", "S-DARTS", ("shrink", *_BILEVEL_OPTIONS), True, {
            "nb201": "isdarts.search.sdarts:SDartsNb201", "darts": "isdarts.search.sdarts:SDartsDartsSpace",
        }),
        MethodSpec("darts1", "DARTS (1st)", _BILEVEL_OPTIONS, True, {
            "nb201": "isdarts.search.darts:DartsNb201", "darts": "isdarts.search.darts:DartsDartsSpace",
        }),
        MethodSpec("darts2", "DARTS (2nd)", _BILEVEL_OPTIONS, True, {
            "nb201": "isdarts.search.darts:DartsNb201", "darts": "isdarts.search.darts:DartsDartsSpace",
        }),
        MethodSpec("lambda_darts", "Λ-DARTS", (*_BILEVEL_OPTIONS, "regulariser", "lam", "epsilon"), True, {
            "nb201": "isdarts.search.lambda_darts:LambdaDartsNb201",
            "darts": "isdarts.search.lambda_darts:LambdaDartsDartsSpace",
        }),
    )
}


def method_spec(name: str) -> MethodSpec:
    """The table row of method `name`."""
    if name not in METHODS:
        raise ConfigError(f"unknown search method {name!r}; expected one of {', '.join(METHODS)}")
    return METHODS[name]
