"""The tables of search spaces and search methods: the one place a space or a method is named.

A space row names its folder's `Space` object, its cell kinds and what config must know of it; a method
row names the method, its label in tables, its params.yaml options (with types and defaults), whether it
trains α on a bi-level split, the class that runs it on every space it supports, and the paper's search
settings per space. Config, records, the report and the CLI read names and labels from here. Classes and
space objects are given as "module:name" and imported on first use, so this leaf module imports neither
torch nor any other part of isdarts: config reads it to validate params.yaml.

A new method is one module under isdarts/search plus one row in METHODS; a new space is one folder under
isdarts/spaces plus one row in SPACES.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from isdarts.errors import ConfigError


def load(target: str) -> Any:
    """The object a "module:name" string names."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


# ---------------------------------------------------------------- spaces
@dataclass(frozen=True)
class SpaceSpec:
    """One search space: its name, label, torch-side definition and what config checks against."""

    name: str
    label: str
    space: str  # "module:name" of its `isdarts.spaces.space.Space` object
    kinds: tuple[str, ...]  # cell kinds, each with its own op weights and mask
    # The most shrink steps a search can take (None: no limit beyond the schedule fitting the epochs).
    max_shrink_steps: int | None = None

    def load(self) -> Any:
        """The space's `Space` object (imports torch and the space's modules)."""
        return load(self.space)


SPACES: Mapping[str, SpaceSpec] = MappingProxyType({
    spec.name: spec
    for spec in (
        # Each edge keeps 1 of its 5 ops, one op per edge per step: at most 4 steps.
        SpaceSpec("nb201", "NAS-Bench-201", "isdarts.spaces.nb201.space:SPACE", ("cell",), max_shrink_steps=4),
        SpaceSpec("darts", "DARTS space", "isdarts.spaces.darts.space:SPACE", ("normal", "reduce")),
    )
})


def space_spec(name: str) -> SpaceSpec:
    """The table row of space `name`."""
    if name not in SPACES:
        raise ConfigError(f"unknown search space {name!r}; expected one of {', '.join(SPACES)}")
    return SPACES[name]


# ---------------------------------------------------------------- options
REQUIRED = object()  # an option params.yaml must give


@dataclass(frozen=True)
class Option:
    """One params.yaml option of a method.

    `kind` says how config reads it: the option groups `shrink`, `iim`, `arch` and `train_portion` (read into
    SearchConfig's typed fields, which the loop and several methods share), or a scalar read into
    `SearchConfig.options`: "float" (>= 0), "positive" (> 0), "int" (>= 0), "bool", "choice" (one of `choices`).
    `default` is used when params.yaml leaves the option out: one value, or {space: value}.
    """

    name: str
    kind: str
    default: Any = REQUIRED
    choices: tuple[str, ...] = ()
    help: str = ""

    def default_on(self, space: str) -> Any:
        if isinstance(self.default, Mapping):
            return self.default.get(space, REQUIRED)
        return self.default


SHRINK = Option("shrink", "shrink", help="{steps, interval, anchor}: the progressive shrinking schedule")
IIM = Option("iim", "iim", help="{source, n_samples, batch_size, every_epoch}: the IIM's data")
ARCH = Option("arch", "arch", help="{lr, betas, weight_decay}: Adam on α")
TRAIN_PORTION = Option("train_portion", "train_portion", help="share of the training set that trains the weights")
BILEVEL = (ARCH, TRAIN_PORTION)


# ---------------------------------------------------------------- the paper's settings
_PAPER_COMMON = {
    "batch_size": 64, "lr": 0.025, "lr_min": 0.001, "momentum": 0.9, "nesterov": True, "grad_clip": 5.0,
    "image_size": 32, "train_images": None, "test_images": None,
}
_PAPER_NB201 = {**_PAPER_COMMON, "C": 16, "N": 5, "epochs": 30, "weight_decay": (3e-4, 5e-4)}
_PAPER_ARCH = {"arch.lr": 3e-4, "arch.betas": (0.5, 0.999), "arch.weight_decay": 1e-3, "train_portion": 0.5}
_PAPER_SHRINK = {"shrink.steps": 4, "shrink.interval": 2, "shrink.anchor": "start"}
# NB201's DARTS setting (AutoDL): 50 epochs, wd 5e-4, shuffled loader.
_PAPER_NB201_DARTS = {**_PAPER_NB201, **_PAPER_ARCH, "epochs": 50, "weight_decay": 5e-4, "shuffle": True}


LAMBDA_DARTS_OPTIONS = (
    *BILEVEL,
    Option("regulariser", "choice", choices=("corr", "signcorr"), help="the layer-alignment measure"),
    Option("lam", "float", help="λ at the last epoch (a linear ramp from 0)"),
    Option("epsilon", "positive", help="ε0: how far the probabilities move in the finite difference"),
    # Λ-DARTS's official scripts: weight step first on NB201, α step first on the DARTS space.
    Option("step_order", "choice", {"nb201": "weight_first", "darts": "alpha_first"},
           ("weight_first", "alpha_first"), help="which step of a bi-level pair comes first"),
)


# ---------------------------------------------------------------- methods
@dataclass(frozen=True)
class MethodSpec:
    """One search method: its name, report label, own options, data use, class and the paper's settings.

    `constants` are fixed settings of this row that are not params (DARTS 1st and 2nd order share a class);
    `paper` gives, per space, the settings a run must match to count as the paper's (a tuple: any of these;
    "arch.betas" is one pair). A method runs on the spaces `paper` names plus `spaces`.
    """

    name: str
    label: str
    cls: str  # "module:Class", built as cls(model, space, cfg, generator)
    bilevel: bool  # trains α on a valid part of the training set (AutoDL's 25k/25k split)
    options: tuple[Option, ...]  # each method's own keys; any `<space>.search` key may also be overridden
    constants: Mapping[str, Any] = field(default_factory=dict)
    paper: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    spaces: tuple[str, ...] = tuple(SPACES)

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.options)

    @property
    def module(self) -> str:
        """The module that implements it (part of its searches' code fingerprint)."""
        return self.cls.partition(":")[0]

    def method_class(self, space: str) -> type:
        """The class that runs this method on `space`."""
        if space not in self.spaces:
            raise ConfigError(f"method {self.name!r} is not available on the {space!r} space")
        return load(self.cls)


# A plain dict: a method defined outside this package may add its row (tests register a toy method).
METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("isdarts", "IS-DARTS", "isdarts.search.isdarts:IsDarts", False, (SHRINK, IIM), paper={
            "nb201": {**_PAPER_NB201, **_PAPER_SHRINK},
            "darts": {**_PAPER_COMMON, "C": 16, "N": 2, "epochs": 50, "weight_decay": (3e-4, 5e-4),
                      "shrink.steps": 7, "shrink.interval": 3, "shrink.anchor": "start"},
        }),
        MethodSpec("idarts", "I-DARTS", "isdarts.search.isdarts:IDarts", False, (
            IIM,
            # NB201: select after the last epoch (spec §3.5); DARTS space: Table A.2's "rate 1" (S=1, I=1).
            Option("final_epochs", "int", {"nb201": 0, "darts": 1},
                   help="epochs trained on the selected cell after the one selection step"),
        ), paper={
            "nb201": dict(_PAPER_NB201),
        }),
        MethodSpec("sdarts", "S-DARTS", "isdarts.search.sdarts:SDarts", True, (SHRINK, *BILEVEL), paper={
            "nb201": {**_PAPER_NB201, **_PAPER_ARCH, **_PAPER_SHRINK},
        }),
        MethodSpec("darts1", "DARTS (1st)", "isdarts.search.darts:Darts", True, BILEVEL, {"order": 1}, paper={
            "nb201": _PAPER_NB201_DARTS,
        }),
        MethodSpec("darts2", "DARTS (2nd)", "isdarts.search.darts:Darts", True, BILEVEL, {"order": 2}, paper={
            "nb201": _PAPER_NB201_DARTS,
        }),
        MethodSpec("lambda_darts", "Λ-DARTS", "isdarts.search.lambda_darts:LambdaDarts", True, (
            *LAMBDA_DARTS_OPTIONS,
            Option("regulariser_gradient", "choice", "finite_difference", ("finite_difference", "exact"),
                   help="the alignment term's weight gradient: the official central difference, or autograd's "
                        "double backward"),
        ), {"order": 1}, paper={
            # Λ-DARTS's NB201 script: wd 3e-4, no nesterov, α lr 1e-4, corr, λ 0.25, ε0 1e-4; 50 epochs (spec §5).
            "nb201": {**_PAPER_NB201_DARTS, "weight_decay": 3e-4, "nesterov": False, "arch.lr": 1e-4,
                      "regulariser": "corr", "lam": 0.25, "epsilon": 1e-4,
                      "regulariser_gradient": "finite_difference"},
        }),
        # The same method with the regulariser's exact weight gradient (issue: does the official finite
        # difference, broken by ReLU kinks, decide where Λ-DARTS ends?): a row of its own, as DARTS 1st and 2nd
        # order are, so its runs sit beside the official variant's in every table and study.
        MethodSpec("lambda_darts_exact", "Λ-DARTS (exact ∇R)", "isdarts.search.lambda_darts:LambdaDarts", True,
                   LAMBDA_DARTS_OPTIONS, {"order": 1, "regulariser_gradient": "exact"}),
        MethodSpec("gdas", "GDAS", "isdarts.search.gdas:Gdas", True, (
            *BILEVEL,
            Option("tau_max", "positive", 10.0, help="Gumbel-softmax temperature in the first epoch"),
            Option("tau_min", "positive", 0.1, help="... and in the last (linear in the epoch)"),
            # AutoDL's NB201 cell adds the unselected entries as zero-valued scalars; its NASNet cell does not.
            Option("unselected_grad", "choice", {"nb201": "scalar_sum", "darts": "none"}, ("scalar_sum", "none"),
                   help="how unselected ops get α gradient"),
        ), paper={
            # AutoDL's GDAS.sh / GDAS.config on NB201: 250 epochs, wd 5e-4 (FAMILY.md). Its DARTS-space network
            # has 6 cells [N, N, R, N, R, N], a layout our supernet has no setting for, so no DARTS-space row.
            "nb201": {**_PAPER_NB201_DARTS, "epochs": 250, "tau_max": 10.0, "tau_min": 0.1,
                      "unselected_grad": "scalar_sum"},
        }),
        MethodSpec("pcdarts", "PC-DARTS", "isdarts.search.pcdarts:PcDarts", True, (
            *BILEVEL,
            # Both spaces: [PC]'s DARTS-space values; on NB201 they are FAMILY.md's assumptions ([DR]: K 1 or 4,
            # no edge normalisation, no warm-up).
            Option("k", "int", 4, help="partial channels: edge ops run on 1/k of the channels (k >= 1 divides C)"),
            Option("edge_norm", "bool", True, help="edge normalisation: a node's edges weighted by softmax(β)"),
            Option("arch_warmup_epochs", "int", 15, help="first epochs that train the weights only (α, β frozen)"),
            Option("shuffle_mode", "choice", "shuffle", ("shuffle", "shift"),
                   help="how the op and bypass channels recombine: channel shuffle, or [PC]'s rotation by C/k"),
            Option("step_order", "choice", "alpha_first", ("alpha_first", "weight_first"),
                   help="which step of a bi-level pair comes first ([PC]: α first)"),
            Option("lr_epoch_offset", "int", 0,
                   help="1: epoch e trains at the cosine's lr of e+1, as [PC]'s scheduler.step() at the epoch start"),
        ), paper={
            # FAMILY.md's assumption for NB201: the DARTS recipe of §4 (AutoDL) with PC-DARTS's own settings.
            "nb201": {**_PAPER_NB201_DARTS, "k": 4, "edge_norm": True, "arch_warmup_epochs": 15},
            # [PC] train_search.py on CIFAR-10: batch 256, lr 0.1 without nesterov, α/β Adam lr 6e-4, K 4, 15
            # frozen epochs. lr_min: the py2 train_search.py anneals to 0, its V100_python1.0 copy to 0.001
            # [C≠C]; the py2 script is the one the paper's numbers come from, so 0.
            "darts": {**_PAPER_COMMON, **_PAPER_ARCH, "C": 16, "N": 2, "epochs": 50, "batch_size": 256, "lr": 0.1,
                      "lr_min": 0.0, "nesterov": False, "weight_decay": 3e-4, "arch.lr": 6e-4, "shuffle": True,
                      "k": 4, "edge_norm": True, "arch_warmup_epochs": 15, "step_order": "alpha_first"},
        }),
        # (rows of the DARTS family: FAMILY.md)
    )
}

# The method whose shrinking schedule the DARTS-space shrink-rate sweep (the paper's Table A.2) varies.
SWEEP_METHOD = "isdarts"


def method_spec(name: str) -> MethodSpec:
    """The table row of method `name`."""
    if name not in METHODS:
        raise ConfigError(f"unknown search method {name!r}; expected one of {', '.join(METHODS)}")
    return METHODS[name]


def label(name: str) -> str:
    """A method's label in tables and figures."""
    return method_spec(name).label
