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
    # A variant of another space (RobustDARTS's S1-S5 of the DARTS space): methods take that space's per-space
    # option defaults here, and run here wherever they run there.
    base: str | None = None

    def load(self) -> Any:
        """The space's `Space` object (imports torch and the space's modules)."""
        return load(self.space)


SPACES: Mapping[str, SpaceSpec] = MappingProxyType({
    spec.name: spec
    for spec in (
        # Each edge keeps 1 of its 5 ops, one op per edge per step: at most 4 steps.
        SpaceSpec("nb201", "NAS-Bench-201", "isdarts.spaces.nb201.space:SPACE", ("cell",), max_shrink_steps=4),
        SpaceSpec("darts", "DARTS space", "isdarts.spaces.darts.space:SPACE", ("normal", "reduce")),
        # RobustDARTS's spaces (Zela et al. 2020) and the DARTS space without `none` (Λ-DARTS's S5).
        *(SpaceSpec(f"s{i}", f"RobustDARTS S{i}" if i < 5 else "S5 (DARTS without none)",
                    f"isdarts.spaces.s{i}.space:SPACE", ("normal", "reduce"), base="darts") for i in range(1, 6)),
    )
})


def spaces_like(*names: str) -> tuple[str, ...]:
    """The spaces `names` and every variant of them (a method row's `spaces`)."""
    return tuple(s for s, spec in SPACES.items() if s in names or spec.base in names)


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
            base = SPACES[space].base if space in SPACES else None
            return self.default.get(space, self.default.get(base, REQUIRED))
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
# DARTS's own CIFAR-10 search (its train_search.py), which the family's DARTS-space scripts keep: 8 cells of C=16,
# 50 epochs, plain momentum SGD, random batches.
_PAPER_DARTS_DARTS = {**_PAPER_COMMON, **_PAPER_ARCH, "C": 16, "N": 2, "epochs": 50, "nesterov": False,
                      "weight_decay": 3e-4, "shuffle": True}


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
            "nb201": _PAPER_NB201_DARTS, "darts": _PAPER_DARTS_DARTS,
        }),
        MethodSpec("darts2", "DARTS (2nd)", "isdarts.search.darts:Darts", True, BILEVEL, {"order": 2}, paper={
            "nb201": _PAPER_NB201_DARTS, "darts": _PAPER_DARTS_DARTS,
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
        MethodSpec("sdarts_rs", "SDARTS-RS", "isdarts.search.smooth_darts:SmoothDartsRs", True, (
            *BILEVEL,
            Option("eps_min", "float", 0.03, help="perturbation radius ε in the first epoch (linear in t/E)"),
            Option("eps_max", "float", 0.3, help="... and its limit at t = E ([SD] divides by E, not E-1)"),
            # [SD]'s s5 DARTS space has no `none`; its NB201 space keeps all 5 ops.
            Option("include_none", "bool", {"nb201": True, "darts": False},
                   help="false: `none` is masked out of the supernet for the whole search"),
            # [SD]'s NB201 clip runs over model.parameters(), α (then holding A) included; its DARTS code does not.
            Option("clip_includes_alpha", "bool", {"nb201": True, "darts": False},
                   help="the weight step's gradient clip also counts ∂L/∂A"),
            Option("step_order", "choice", "alpha_first", ("alpha_first", "weight_first"),
                   help="which step of a bi-level pair comes first ([SD]: α first)"),
            Option("lr_epoch_offset", "int", 0,
                   help="1: epoch e trains at the cosine's lr of e+1, as [SD]'s scheduler.step() at the epoch start"),
        ), {"order": 1}, paper={
            # [SD] nasbench201/train_search.py: 100 epochs by default; 50 matches §4 (FAMILY.md's assumption).
            "nb201": {**_PAPER_COMMON, **_PAPER_ARCH, "C": 16, "N": 5, "epochs": (100, 50), "nesterov": False,
                      "weight_decay": 3e-4, "shuffle": True, "eps_min": 0.03, "eps_max": 0.3, "include_none": True,
                      "clip_includes_alpha": True, "step_order": "alpha_first"},
            # [SD] sota/cnn/train_search.py --search_space s5 --perturb_alpha random.
            "darts": {**_PAPER_DARTS_DARTS, "eps_min": 0.03, "eps_max": 0.3, "include_none": False,
                      "clip_includes_alpha": False, "step_order": "alpha_first"},
        }),
        MethodSpec("sdarts_adv", "SDARTS-ADV", "isdarts.search.smooth_darts:SmoothDartsAdv", True, (
            *BILEVEL,
            Option("eps_min", "float", 0.03, help="perturbation radius ε in the first epoch (linear in t/E)"),
            Option("eps_max", "float", 0.3, help="... and its limit at t = E ([SD] divides by E, not E-1)"),
            Option("include_none", "bool", {"nb201": True, "darts": False},
                   help="false: `none` is masked out of the supernet for the whole search"),
            Option("clip_includes_alpha", "bool", {"nb201": True, "darts": False},
                   help="the weight step's gradient clip also counts ∂L/∂A"),
            Option("step_order", "choice", "alpha_first", ("alpha_first", "weight_first"),
                   help="which step of a bi-level pair comes first ([SD]: α first)"),
            Option("lr_epoch_offset", "int", 0,
                   help="1: epoch e trains at the cosine's lr of e+1, as [SD]'s scheduler.step() at the epoch start"),
            Option("pgd_steps", "int", 7, help="PGD ascent steps of the attack on A (>= 1)"),
            Option("pgd_step_factor", "positive", 2.0, help="PGD step size = pgd_step_factor·ε/pgd_steps"),
            Option("random_start", "bool", True, help="start the attack from clip(S + U(-ε, ε))"),
            Option("attack_bn_mode", "choice", "eval", ("eval", "train"),
                   help="BN mode during the attack ([SD]: eval; our cells' BNs keep no running statistics)"),
            Option("revert_if_no_gain", "bool", True, help="use S when the attack ends with a lower CE than S"),
        ), {"order": 1}, paper={
            # The SDARTS-RS settings with [SD]'s --perturb_alpha pgd_linf.
            "nb201": {**_PAPER_COMMON, **_PAPER_ARCH, "C": 16, "N": 5, "epochs": (100, 50), "nesterov": False,
                      "weight_decay": 3e-4, "shuffle": True, "eps_min": 0.03, "eps_max": 0.3, "include_none": True,
                      "clip_includes_alpha": True, "step_order": "alpha_first", "pgd_steps": 7,
                      "pgd_step_factor": 2.0, "random_start": True, "attack_bn_mode": "eval",
                      "revert_if_no_gain": True},
            "darts": {**_PAPER_DARTS_DARTS, "eps_min": 0.03, "eps_max": 0.3, "include_none": False,
                      "clip_includes_alpha": False, "step_order": "alpha_first", "pgd_steps": 7,
                      "pgd_step_factor": 2.0, "random_start": True, "attack_bn_mode": "eval",
                      "revert_if_no_gain": True},
        }),
        MethodSpec("setn", "SETN", "isdarts.search.setn:Setn", True, (
            *BILEVEL,
            Option("select_num", "int", 100, help="the final choice measures α's K most probable cells (K >= 1)"),
            Option("select_batch_size", "int", 512, help="valid images each candidate cell is measured on"),
            Option("select_every_epoch", "bool", True,
                   help="select after every epoch (AutoDL's logged genotype); false: after the last only"),
        ), {"order": 1}, spaces=("nb201",), paper={
            # AutoDL's SETN.sh / SETN.config (FAMILY.md): 250 epochs, batch 64, wd 5e-4, no clip, K 100 on 512 images.
            "nb201": {**_PAPER_NB201_DARTS, "epochs": 250, "grad_clip": 0.0, "select_num": 100,
                      "select_batch_size": 512},
        }),
        MethodSpec("enas", "ENAS", "isdarts.search.enas:Enas", True, (
            *BILEVEL,  # `arch`: the controller's Adam (lr, betas, weight decay)
            Option("controller_eps", "positive", 1e-3, help="the controller Adam's eps"),
            Option("controller_hidden", "int", 32, help="the controller LSTM's hidden (and embedding) size"),
            Option("controller_layers", "int", 2, help="stacked LSTM layers"),
            Option("temperature", "positive", 5.0, help="logits = tanh_constant * tanh(W o / temperature)"),
            Option("tanh_constant", "positive", 2.5, help="bounds the logits to ±tanh_constant"),
            Option("entropy_weight", "float", 1e-4, help="reward = valid top-1 fraction + entropy_weight * entropy"),
            Option("baseline_decay", "float", 0.99, help="b <- b - (1 - decay)(b - reward), decay in [0, 1]"),
            Option("baseline_mode", "choice", "autodl", ("autodl", "running_ema"),
                   help="autodl: baseline frozen per epoch, entropy reward with gradient; running_ema: the TF "
                        "original's per-sample baseline, entropy reward detached"),
            Option("controller_steps", "int", 50, help="controller Adam steps per epoch"),
            Option("controller_aggregate", "int", 20, help="samples (one valid batch each) per controller step"),
            Option("controller_grad_clip", "float", 5.0, help="the controller's gradient-norm clip (0: none)"),
            Option("monitor_samples", "int", 10, help="controller samples the per-epoch selection compares"),
            Option("final_samples", "int", 100, help="controller samples the final selection compares"),
            Option("lr_period", "int", 10,
                   help="T_max of the weights' cosine in epochs, no restarts (a wave); 0: the whole search"),
        ), spaces=("nb201",), paper={
            # AutoDL's ENAS.sh / ENAS.config (FAMILY.md): 250 epochs, batch 128, SGD 0.05 -> 0.0005 in a cosine wave
            # of T_max 10, wd 2.5e-4, clip 5; controller Adam 1e-3, betas (0, 0.999), eps 1e-3.
            "nb201": {**_PAPER_COMMON, "C": 16, "N": 5, "epochs": 250, "batch_size": 128, "lr": 0.05,
                      "lr_min": 0.0005, "weight_decay": 2.5e-4, "shuffle": True, "arch.lr": 1e-3,
                      "arch.betas": (0.0, 0.999), "arch.weight_decay": 0.0, "train_portion": 0.5,
                      "controller_eps": 1e-3, "controller_hidden": 32, "controller_layers": 2, "temperature": 5.0,
                      "tanh_constant": 2.5, "entropy_weight": 1e-4, "baseline_decay": 0.99,
                      "baseline_mode": "autodl", "controller_steps": 50, "controller_aggregate": 20,
                      "controller_grad_clip": 5.0, "final_samples": 100, "lr_period": 10},
        }),
        MethodSpec("darts_minus", "DARTS-", "isdarts.search.darts_minus:DartsMinus", True, (
            *BILEVEL,
            # [DM] scripts/run_darts_minus.sh: β0 1, linear decay over all epochs (T_max = T_stop = 50 epochs).
            Option("beta0", "float", 1.0, help="β at the start: the aux path's weight"),
            Option("decay", "choice", "linear", ("linear", "cosine", "slow_cosine", "none"),
                   help="how β falls over the epochs ([DM] DecayScheduler)"),
            Option("t_start", "int", 0, help="β stays β0 before this 0-based epoch"),
            Option("t_stop", "int", 0, help="β holds its value after this epoch; 0: the search's epochs"),
            Option("t_max", "int", 0, help="the epoch the decay formulas reach 0 at; 0: the search's epochs"),
            Option("aux_op", "choice", "skip", ("skip", "conv1"),
                   help="the aux module on stride-1 edges: identity, or an identity-initialised 1x1 conv"),
            # [DM]'s DARTS-space code: α step first; the NB201 port follows §4 (AutoDL): weight step first.
            Option("step_order", "choice", {"nb201": "weight_first", "darts": "alpha_first"},
                   ("weight_first", "alpha_first"), help="which step of a bi-level pair comes first"),
        ), {"order": 1}, paper={
            # [DM] src/search/args.py defaults with run_darts_minus.sh: 8 cells at C 16, 50 epochs, batch 64, SGD
            # 0.025 -> 0.001 without nesterov, wd 3e-4, α Adam 3e-4, first order, random-order train loader.
            "darts": {**_PAPER_DARTS_DARTS, "beta0": 1.0, "decay": "linear", "t_start": 0,
                      "t_stop": (0, 50), "t_max": (0, 50), "aux_op": "skip", "step_order": "alpha_first"},
        }),
        MethodSpec("fairdarts", "FairDARTS", "isdarts.search.fairdarts:FairDarts", True, (
            *BILEVEL,
            Option("w01", "float", 10.0, help="weight of the zero-one loss in both steps ([FD] --aux_loss_weight)"),
            Option("sep_loss", "choice", "l2", ("l2", "l1"), help="zero-one loss: -mean (σ-0.5)² or -mean |σ-0.5|"),
            Option("threshold", "positive", 0.85, help="τ in (0, 1): an op is kept if its σ reaches it"),
            Option("parse", "choice", "threshold_sparse", ("threshold_sparse", "threshold_edge", "darts"),
                   help="DARTS-space derivation ([FD] utils.py:parse)"),
            Option("nb201_derive", "choice", "argmax_nonnone", ("argmax_nonnone", "argmax_all", "threshold_none"),
                   help="NB201's primary derivation (all three are logged each epoch)"),
            # [FD]'s DARTS-space ops have no `none`; on NB201 `none` stays, inert (FAMILY.md's port).
            Option("include_none", "bool", {"nb201": True, "darts": False}, help="keep `none` in the supernet"),
            Option("single_level", "bool", False, help="one backward on the train batch feeds both optimisers"),
            Option("empty_cell", "choice", "darts", ("darts", "error"),
                   help="a cell the threshold parse leaves empty: take the darts parse's, or raise"),
            Option("step_order", "choice", "alpha_first", ("alpha_first", "weight_first"),
                   help="which step of a bi-level pair comes first ([FD]: α first)"),
            Option("lr_epoch_offset", "int", 0,
                   help="1: epoch e trains at the cosine's lr of e+1, as [FD]'s scheduler.step() at the epoch start"),
        ), paper={
            # [FD] train_search.py defaults (= its README command): batch 128, lr 0.005 -> 0.001 without nesterov,
            # α Adam 3e-3 with betas (0.9, 0.999), w01 10, τ 0.85, threshold_sparse, 7 ops.
            "darts": {**_PAPER_COMMON, **_PAPER_ARCH, "C": 16, "N": 2, "epochs": 50, "batch_size": 128, "lr": 0.005,
                      "lr_min": 0.001, "nesterov": False, "weight_decay": 3e-4, "arch.lr": 3e-3,
                      "arch.betas": (0.9, 0.999), "shuffle": True, "w01": 10.0, "sep_loss": "l2", "threshold": 0.85,
                      "parse": "threshold_sparse", "include_none": False, "single_level": False,
                      "step_order": "alpha_first"},
        }),
        MethodSpec("drnas", "DrNAS", "isdarts.search.drnas:DrNas", True, (
            *BILEVEL,  # arch.weight_decay unused: Adam's decay is reg_scale (l2) or 0 (kl), as [D]'s Architect
            Option("reg_type", "choice", "l2", ("l2", "kl"),
                   help="the anchor of β to 1: Adam weight decay on α (l2), or a KL(Dir(β) ‖ Dir(1)) term (kl)"),
            Option("reg_scale", "float", 1e-3, help="l2: Adam's weight decay on α; kl: the KL term's factor"),
            # [D]'s DARTS space has no `none`; its NB201 space keeps all 5 ops.
            Option("include_none", "bool", {"nb201": True, "darts": False},
                   help="false: `none` is masked out of the supernet for the whole search"),
            Option("k", "int", {"nb201": 1, "darts": 6},
                   help="partial channels (the first stage's with progressive): ops on 1/k of the channels"),
            Option("arch_warmup_epochs", "int", {"nb201": 0, "darts": 10},
                   help="first epochs of each stage that train the weights only (α frozen)"),
            Option("progressive", "bool", {"nb201": False, "darts": True},
                   help="two stages: after stage_epochs prune to keep_final ops per edge, widen the ops to k_final"),
            # [D]: 50 of 100 epochs (NB201), 25 of 50 (DARTS space): half the search's either way.
            Option("stage_epochs", "int", 0, help="progressive: the first stage's epochs; 0: half the search's"),
            Option("k_final", "int", {"nb201": 2, "darts": 4}, help="progressive: the second stage's k (<= k)"),
            Option("keep_final", "int", {"nb201": 3, "darts": 4}, help="progressive: ops kept per edge after stage 1"),
            Option("step_order", "choice", "alpha_first", ("alpha_first", "weight_first"),
                   help="which step of a bi-level pair comes first ([D]: α first)"),
        ), {"order": 1}, paper={
            # [D] 201-space/train_search.py (the README's numbers, DrNAS issue #8): 100 epochs, SGD 0.025 -> 0.001
            # without nesterov, wd 3e-4, α Adam 3e-4 with l2 1e-3, K 1, no progressive stages, no warm-up.
            "nb201": {**_PAPER_NB201_DARTS, "epochs": 100, "nesterov": False, "weight_decay": 3e-4,
                      "reg_type": "l2", "reg_scale": 1e-3, "include_none": True, "k": 1, "arch_warmup_epochs": 0,
                      "progressive": False, "step_order": "alpha_first"},
            # [D] DARTS-space/train_search.py: C 36 with 20 cells, 50 epochs in stages of 25 (K 6 -> 4, 7 -> 4
            # ops), α frozen for 10 epochs of each stage, SGD 0.1 -> 0 without nesterov, α Adam 6e-4 (l2 1e-3).
            "darts": {**_PAPER_COMMON, **_PAPER_ARCH, "C": 36, "N": 6, "epochs": 50, "lr": 0.1, "lr_min": 0.0,
                      "nesterov": False, "weight_decay": 3e-4, "arch.lr": 6e-4, "shuffle": True, "reg_type": "l2",
                      "reg_scale": 1e-3, "include_none": False, "k": 6, "arch_warmup_epochs": 10,
                      "progressive": True, "stage_epochs": (0, 25), "k_final": 4, "keep_final": 4,
                      "step_order": "alpha_first"},
        }),
        MethodSpec("beta_darts", "β-DARTS", "isdarts.search.beta_darts:BetaDarts", True, (
            *BILEVEL,
            Option("lambda_max", "float", 50.0, help="λ_t = lambda_max·t/ramp_epochs (t: the 0-based epoch)"),
            Option("ramp_epochs", "int", 100, help="the ramp's denominator ([B] hard-codes 100, whatever the epochs)"),
            Option("reduce", "choice", "mean_all_rows", ("mean_all_rows", "sum_of_means"),
                   help="L_β over several cell kinds: the mean over all rows, or the sum of the per-kind means"),
            # FAMILY.md's assumption: the harness's 8-op DARTS space, `none` dropped at the parse ([B]'s s5: 7 ops).
            Option("include_none", "bool", True,
                   help="false: `none` is masked out of the supernet for the whole search"),
            Option("step_order", "choice", "alpha_first", ("alpha_first", "weight_first"),
                   help="which step of a bi-level pair comes first ([B]: α first)"),
        ), {"order": 1}, paper={
            # [B] nasbench201/train_search.py: 100 epochs, SGD 0.025 -> 0.001 without nesterov, wd 3e-4, α Adam 3e-4
            # (wd 1e-3), λ = 50·epoch/100.
            "nb201": {**_PAPER_NB201_DARTS, "epochs": 100, "nesterov": False, "weight_decay": 3e-4,
                      "lambda_max": 50.0, "ramp_epochs": 100, "step_order": "alpha_first"},
            # [B] sota/cnn/train_search.py, repaired (FAMILY.md): 8 cells at C 16, 50 epochs, the same optimisers.
            "darts": {**_PAPER_DARTS_DARTS, "lambda_max": 50.0, "ramp_epochs": 100,
                      "reduce": "mean_all_rows", "step_order": "alpha_first"},
        }),
        MethodSpec("sgas", "SGAS", "isdarts.search.sgas:Sgas", True, (
            *BILEVEL,
            Option("criterion", "int", 2,
                   help="1: score = importance x certainty; 2: x stability over the last epochs too (--use_history)"),
            Option("warmup_epochs", "int", 9, help="0-based epoch of the first decision ([S] --warmup_dec_epoch)"),
            Option("decision_interval", "int", 5, help="epochs between decisions ([S] --decision_freq; README: 7)"),
            Option("history_size", "int", 4, help="epochs of p whose histogram intersection criterion 2 averages"),
            Option("batch_increase", "int", 8, help="the batch grows by this after each epoch with a decision"),
            # NB201 is not official (FAMILY.md "SGAS-NB201 (ours)"): a decided edge never takes `none` unless asked.
            Option("allow_none", "bool", False,
                   help="NB201: decide among all ops, `none` included (a DARTS-space cell never takes `none`)"),
            Option("step_order", "choice", "alpha_first", ("alpha_first", "weight_first"),
                   help="which step of a bi-level pair comes first ([S]: α first)"),
            Option("lr_epoch_offset", "int", 0,
                   help="1: epoch e trains at the cosine's lr of e+1, as [S]'s scheduler.step() at the epoch start"),
        ), {"order": 1}, paper={
            # [S] cnn/train_search.py: 8 cells at C 16, 50 = 9 + 5·7 + 5 + 1 epochs, batch 64 (+8 per decision), SGD
            # 0.025 -> 0.001 without nesterov, wd 3e-4, α Adam 3e-4 first order, random-order loaders; the README
            # runs both criteria (IS-DARTS's rows look like criterion 2's averages, UNVERIFIED).
            "darts": {**_PAPER_DARTS_DARTS, "criterion": (1, 2), "warmup_epochs": 9,
                      "decision_interval": 5, "history_size": 4, "batch_increase": 8, "step_order": "alpha_first"},
        }),
        MethodSpec("darts_pt", "DARTS-PT", "isdarts.search.darts_pt:DartsPt", True, (
            *BILEVEL,
            # The method's epochs = supernet epochs + tune_epochs. [PT]: 25 after 100 on NB201 (5 per projection,
            # the 6th at the last), 81 after 50 on the DARTS space (14 op and 3 node projections, 5 apart).
            Option("tune_epochs", "int", {"nb201": 25, "darts": 81},
                   help="the last epochs: projections and fine-tuning at lr/10"),
            Option("proj_interval", "int", 5, help="tuning epochs between projections ([PT] --proj_intv)"),
            Option("proj_crit", "choice", "acc", ("acc", "loss"),
                   help="keep the op whose removal lowers the valid accuracy most, or raises the loss most"),
            Option("train_alpha", "bool", True, help="false: α is never trained ([PT]'s `blank` variant)"),
            Option("proj_batches", "int", 0, help="valid batches per projection measurement; 0: the whole valid half"),
            Option("proj_augment", "bool", True,
                   help="measure on shuffled, cropped and flipped valid images ([PT]'s valid queue), or in order"),
            # [PT]'s DARTS-space code searches the 7-op s5 space; its NB201 space keeps all 5 ops.
            Option("include_none", "bool", {"nb201": True, "darts": False},
                   help="false: `none` is masked out of the supernet for the whole search"),
            Option("step_order", "choice", "alpha_first", ("alpha_first", "weight_first"),
                   help="which step of a bi-level pair comes first ([PT]: α first)"),
        ), {"order": 1}, paper={
            # [PT] exp_scripts/darts{,-proj}-{201,sota}.sh: DARTS 1st order (batch 64, SGD 0.025 -> 0.001 without
            # nesterov, wd 3e-4, α Adam 3e-4), then projections by accuracy every 5 tuning epochs at lr 0.0025.
            "nb201": {**_PAPER_COMMON, **_PAPER_ARCH, "C": 16, "N": 5, "epochs": 125, "nesterov": False,
                      "weight_decay": 3e-4, "shuffle": True, "tune_epochs": 25, "proj_interval": 5, "proj_crit": "acc",
                      "train_alpha": True, "proj_batches": 0, "proj_augment": True, "include_none": True,
                      "step_order": "alpha_first"},
            "darts": {**_PAPER_COMMON, **_PAPER_ARCH, "C": 16, "N": 2, "epochs": 131, "nesterov": False,
                      "weight_decay": 3e-4, "shuffle": True, "tune_epochs": 81, "proj_interval": 5, "proj_crit": "acc",
                      "train_alpha": True, "proj_batches": 0, "proj_augment": True, "include_none": False,
                      "step_order": "alpha_first"},
        }),
        # DARTS space only: NB201's evaluation net is its search macro (no depth gap) and has no topology to
        # select, so P-DARTS has no faithful analogue there (FAMILY.md).
        MethodSpec("pdarts", "P-DARTS", "isdarts.search.pdarts:PDarts", True, (
            *BILEVEL,
            Option("stage_epochs", "int", 25, help="epochs of each of the 3 stages (the search's epochs must be 3x)"),
            Option("warmup_epochs", "int", 10, help="first epochs of each stage that train the weights only"),
            Option("add_cells", "int", 6, help="cells each stage adds (5/11/17 at N=1; a multiple of 3)"),
            Option("ops_keep_0", "int", 5, help="ops per edge kept after stage 1 (of 8)"),
            Option("ops_keep_1", "int", 3, help="ops per edge kept after stage 2 (the last stage keeps 1)"),
            Option("drop_rate_0", "float", 0.1, help="stage 1's skip dropout base rate (0: no dropout)"),
            Option("drop_rate_1", "float", 0.4, help="stage 2's skip dropout base rate"),
            Option("drop_rate_2", "float", 0.7, help="stage 3's skip dropout base rate"),
            Option("max_skip_normal", "int", 2, help="most skip connections the final normal cell keeps"),
            Option("arch_grad_clip", "float", 5.0, help="norm the α gradient is clipped to (0: no clip)"),
            Option("step_order", "choice", "alpha_first", ("alpha_first", "weight_first"),
                   help="which step of a bi-level pair comes first (official: α first)"),
            Option("lr_epoch_offset", "int", 0,
                   help="1: a stage's epoch e trains at the cosine's lr of e+1, as the official scheduler.step()"),
        ), {"order": 1}, spaces=spaces_like("darts"), paper={
            # [PD] train_search.py + README command (CIFAR-10): 3 x 25 epochs at 5/11/17 cells, batch 96, SGD 0.025
            # -> 0 without nesterov, Adam 6e-4, skip dropout 0.1/0.4/0.7 (README; the paper: 0.0/0.4/0.7).
            "darts": {**_PAPER_COMMON, **_PAPER_ARCH, "C": 16, "N": 1, "epochs": 75, "batch_size": 96, "lr_min": 0.0,
                      "nesterov": False, "weight_decay": 3e-4, "arch.lr": 6e-4, "shuffle": True,
                      "stage_epochs": 25, "warmup_epochs": 10, "add_cells": 6, "ops_keep_0": 5, "ops_keep_1": 3,
                      "drop_rate_0": 0.1, "drop_rate_1": 0.4, "drop_rate_2": 0.7, "max_skip_normal": 2,
                      "arch_grad_clip": 5.0, "step_order": "alpha_first"},
        }),
        # SNAS and DSNAS train w and α on one batch (single level): their α optimiser is their own `arch_*`
        # options, not the bi-level `arch` group. NB201 has no official port of either (FAMILY.md's assumption).
        MethodSpec("snas", "SNAS", "isdarts.search.snas:Snas", False, (
            Option("tau_max", "positive", 1.0, help="Gumbel-softmax temperature τ0 of the linear schedule"),
            Option("tau_min", "positive", 0.03, help="... and its floor"),
            Option("tau_epochs", "int", {"nb201": 0, "darts": 150},
                   help="epochs over which τ falls (the official code hard-codes 150); 0: the search's epochs"),
            Option("drop_path", "float", {"nb201": 0.0, "darts": 0.3},
                   help="drop-path probability on every edge output during training"),
            Option("resource_lambda", "float", {"nb201": 0.0, "darts": 1.5e-3},
                   help="λ of the log resource penalty (size, FLOPs, MAC of the sampled ops); 0: off"),
            Option("data", "choice", "full_train", ("full_train", "train_half"),
                   help="the training images: all of them (official) or the bi-level methods' weight half"),
            Option("derive", "choice", "edge_all", ("edge_all", "top2_no_none"),
                   help="the cell: every edge's argmax incl. none (paper) or the space's DARTS derivation"),
            Option("arch_optim", "choice", "adam", ("adam", "sgd"),
                   help="α's optimiser: Adam (paper, distributed code) or the single-GPU code's plain SGD"),
            Option("arch_lr", "positive", 3e-4, help="α's learning rate"),
            Option("arch_beta1", "float", 0.5, help="Adam β1 of α"),
            Option("arch_beta2", "float", 0.999, help="Adam β2 of α"),
            Option("arch_weight_decay", "float", 1e-3, help="Adam weight decay of α"),
            Option("arch_clip", "float", 10.0, help="α's gradient-norm clip; 0: none"),
            Option("lr_epoch_offset", "int", {"nb201": 0, "darts": 1},
                   help="1: epoch e trains at the cosine's lr of e+1 (the official scheduler steps first)"),
        ), paper={
            # FAMILY.md's NB201 assumption: AutoDL's NB201 DARTS recipe, 50 epochs, single level on all 50k.
            "nb201": {**_PAPER_NB201, "epochs": 50, "weight_decay": 5e-4, "shuffle": True, "tau_max": 1.0,
                      "tau_min": 0.03, "tau_epochs": 0, "drop_path": 0.0, "resource_lambda": 0.0,
                      "data": "full_train", "arch_optim": "adam", "arch_lr": 3e-4, "arch_weight_decay": 1e-3,
                      "arch_clip": 10.0, "lr_epoch_offset": 0},
            # [S] README single-GPU command: 150 epochs, 8 cells C=16, batch 64, SGD without nesterov, wd 3e-4,
            # drop-path 0.3, log resource penalty λ 1.5e-3; α by Adam (paper and distributed code).
            "darts": {**_PAPER_COMMON, "C": 16, "N": 2, "epochs": 150, "nesterov": False, "weight_decay": 3e-4,
                      "shuffle": True, "tau_max": 1.0, "tau_min": 0.03, "tau_epochs": 150, "drop_path": 0.3,
                      "resource_lambda": 1.5e-3, "data": "full_train", "derive": "edge_all", "arch_optim": "adam",
                      "arch_lr": 3e-4, "arch_weight_decay": 1e-3, "arch_clip": 10.0, "lr_epoch_offset": 1},
        }),
        MethodSpec("dsnas", "DSNAS", "isdarts.search.dsnas:Dsnas", False, (
            Option("data", "choice", {"nb201": "train_half", "darts": "full_train"}, ("full_train", "train_half"),
                   help="the training images: all of them or the bi-level methods' weight half"),
            Option("derive", "choice", "edge_all", ("edge_all", "top2_no_none"),
                   help="the cell: every edge's argmax incl. none (official child) or the space's DARTS derivation"),
            Option("early_fix_arch", "bool", False,
                   help="freeze, at each epoch start, edges whose top-1 minus top-2 probability is >= 0.3"),
            Option("arch_optim", "choice", "adam", ("adam", "sgd"),
                   help="α's optimiser: Adam or the SNAS search script's single-GPU plain SGD"),
            Option("arch_lr", "positive", {"nb201": 1e-3, "darts": 3e-4}, help="α's learning rate"),
            Option("arch_beta1", "float", 0.5, help="Adam β1 of α"),
            Option("arch_beta2", "float", 0.999, help="Adam β2 of α"),
            Option("arch_weight_decay", "float", {"nb201": 0.0, "darts": 1e-3}, help="Adam weight decay of α"),
            Option("arch_clip", "float", {"nb201": 0.0, "darts": 10.0}, help="α's gradient-norm clip; 0: none"),
            Option("lr_epoch_offset", "int", {"nb201": 0, "darts": 1},
                   help="1: epoch e trains at the cosine's lr of e+1 (the official scheduler steps first)"),
        ), paper={
            # FAMILY.md's proposed NB201 port: AutoDL weights, α Adam 1e-3 without decay (DSNAS ImageNet config),
            # 50 epochs, single level on the train half.
            "nb201": {**_PAPER_NB201, "epochs": 50, "weight_decay": 5e-4, "shuffle": True, "data": "train_half",
                      "early_fix_arch": False, "arch_optim": "adam", "arch_lr": 1e-3, "arch_weight_decay": 0.0,
                      "arch_clip": 0.0, "lr_epoch_offset": 0},
            # [S] SNAS/train_search.py --dsnas (Analysis/snas/train.sh): 150 epochs, batch 96, 8 cells C=16.
            "darts": {**_PAPER_COMMON, "C": 16, "N": 2, "epochs": 150, "batch_size": 96, "nesterov": False,
                      "weight_decay": 3e-4, "shuffle": True, "data": "full_train", "derive": "edge_all",
                      "early_fix_arch": False, "arch_optim": "adam", "arch_lr": 3e-4, "arch_weight_decay": 1e-3,
                      "arch_clip": 10.0, "lr_epoch_offset": 1},
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
