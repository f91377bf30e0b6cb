"""The search settings: one resolved `SearchConfig` per (space, method), the only config a search reads.

This module is part of every search checkpoint's code fingerprint (it decides a search's numbers); the
rest of the params (paths, retraining, ImageNet, the paper table) lives elsewhere so editing it keeps
the search checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from isdarts.config.fields import (
    fail,
    no_unknown,
    read_auto_bool,
    read_bool,
    read_choice,
    read_choice_int,
    read_float,
    read_int,
    read_int_or_all,
    required,
)
from isdarts.errors import ConfigError
from isdarts.registry import METHODS as METHOD_TABLE
from isdarts.registry import REQUIRED, MethodSpec, Option, space_spec

IIM_SOURCES = ("train_full", "holdout_subset")
SHRINK_ANCHORS = ("start", "last")
# What config knows of each method comes from the methods table (read live, so a row a test or a plugin
# adds is seen): its own options, label and data use.


def shrink_epochs(total_epochs: int, steps: int, interval: int, anchor: str = "start") -> list[int]:
    """Completed-epoch counts after which a shrink step runs.

    anchor "start" (the official code today): range(E - S*I, E, I), so the final cell trains I more epochs.
    anchor "last" (the code before commit a898256, which Table A.2's intervals fit): the last step runs
    after epoch E - 1, i.e. range(E - 1 - (S-1)*I, E, I); spec §3.3 uses it for rate 0.5 (S=2, I=18).
    """
    if anchor == "start":
        start = total_epochs - steps * interval
    elif anchor == "last":
        start = total_epochs - 1 - (steps - 1) * interval
    else:
        raise ValueError(f"shrink anchor must be 'start' or 'last', got {anchor!r}")
    if start < 1:
        need = "steps * interval < epochs" if anchor == "start" else "(steps - 1) * interval < epochs - 1"
        raise ValueError(
            f"{steps} shrink steps every {interval} epochs do not fit in {total_epochs} epochs (need {need})"
        )
    return list(range(start, total_epochs, interval))[:steps]


@dataclass(frozen=True)
class IimConfig:
    """How the information-based importance measurement samples its data (spec §3.2)."""

    source: str = "train_full"
    n_samples: int | None = None  # None: all samples of the source
    batch_size: int = 64
    every_epoch: bool = False

    @classmethod
    def from_dict(cls, d: dict, prefix: str) -> IimConfig:
        no_unknown(d, prefix, {"source", "n_samples", "batch_size", "every_epoch"})
        source = read_choice(d, "source", prefix, IIM_SOURCES)
        n_samples = read_int_or_all(d, "n_samples", prefix)
        if source == "holdout_subset" and n_samples is None:
            raise fail(prefix + "n_samples", "all", "a positive integer when source is holdout_subset")
        return cls(source, n_samples, read_int(d, "batch_size", prefix, minimum=1), read_bool(d, "every_epoch", prefix))


@dataclass(frozen=True)
class ShrinkConfig:
    """Progressive shrinking schedule (spec §3.3): `steps` shrink steps, one every `interval` epochs.

    anchor "start" is the official code's range(E - S*I, E, I); "last" ends the last step at epoch E - 1
    (the older schedule that Table A.2's intervals fit).
    """

    steps: int = 4
    interval: int = 2
    anchor: str = "start"

    @classmethod
    def from_dict(cls, d: dict, prefix: str) -> ShrinkConfig:
        no_unknown(d, prefix, {"steps", "interval", "anchor"})
        anchor = read_choice(d, "anchor", prefix, SHRINK_ANCHORS) if "anchor" in d else "start"
        return cls(read_int(d, "steps", prefix, minimum=1), read_int(d, "interval", prefix, minimum=1), anchor)


@dataclass(frozen=True)
class ArchConfig:
    """The Adam optimiser of DARTS-style architecture weights (spec §4)."""

    lr: float = 3e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 1e-3

    @classmethod
    def from_dict(cls, d: dict, prefix: str) -> ArchConfig:
        no_unknown(d, prefix, {"lr", "betas", "weight_decay"})
        betas = required(d, "betas", prefix)
        if (
            not isinstance(betas, list) or len(betas) != 2
            or any(isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 <= b < 1 for b in betas)
        ):
            raise fail(prefix + "betas", betas, "two numbers in [0, 1), e.g. [0.5, 0.999]")
        return cls(read_float(d, "lr", prefix, allow_equal=False), (float(betas[0]), float(betas[1])),
                   read_float(d, "weight_decay", prefix))


# Keys every method of a space shares (the `<space>.search` section); a method section may override them.
SEARCH_KEYS = (
    "C", "N", "epochs", "batch_size", "lr", "lr_min", "momentum", "nesterov", "weight_decay", "grad_clip",
    "shuffle", "log_every", "image_size", "train_images", "test_images", "fused_ops", "channels_last", "amp",
    "compile", "cudnn_benchmark", "cuda_graphs", "compile_iim",
)
IMAGE_SIZES = (8, 16, 32)


@dataclass(frozen=True)
class SearchConfig:
    """One search, resolved: the space's shared settings, the method's overrides and its own options."""

    space: str = "nb201"
    method: str = next(iter(METHOD_TABLE))  # the first row of the methods table
    C: int = 16
    N: int = 5
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    shuffle: bool = False
    log_every: int = 50
    image_size: int = 32
    train_images: int | None = None  # None: all
    test_images: int | None = None
    # Speed settings: they change how the supernet is computed, not what (results agree to float rounding).
    fused_ops: bool = True  # one call per op kind and input state instead of one per op (spaces/fused.py)
    # The GPU fast path, `auto`, true or false each; isdarts.search.speed says what `auto` picks per space and
    # device (on CPU `auto` changes nothing but the memory format).
    channels_last: str | bool = "auto"  # auto: DARTS space on CPU, fused ops on CUDA; off for NB201 on CPU
    amp: str | bool = "auto"  # bf16 autocast of the weight and α steps; auto: on for CUDA
    compile: str | bool = "auto"  # torch.compile of the supernet's training forward; auto: on for CUDA
    cudnn_benchmark: str | bool = "auto"  # cuDNN picks conv kernels by timing them; auto: on for CUDA
    cuda_graphs: str | bool = "auto"  # weight steps, IIM and evaluation replayed as CUDA graphs; auto: on for CUDA
    compile_iim: str | bool = "auto"  # the IIM's reductions compiled; auto: on for CPU at C >= 16 and 32x32
    shrink: ShrinkConfig | None = field(default_factory=ShrinkConfig)
    iim: IimConfig | None = field(default_factory=IimConfig)
    arch: ArchConfig | None = None
    train_portion: float | None = None  # bi-level methods: share of the training set that trains weights
    # The method's own scalar options (its table row's, defaults filled in) and the row's constants.
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A SearchConfig built in code gets what resolve_search fills in too: the row's option defaults on
        # this space and its constants.
        if self.method in METHOD_TABLE:
            spec = METHOD_TABLE[self.method]
            defaults = {
                o.name: o.default_on(self.space) for o in spec.options
                if o.kind in _SCALAR_READERS and o.default_on(self.space) is not REQUIRED
            }
            object.__setattr__(self, "options", {**defaults, **self.options, **spec.constants})

    @property
    def spec(self) -> MethodSpec:
        """The method's row in the methods table."""
        return METHOD_TABLE[self.method]

    @property
    def bilevel(self) -> bool:
        return self.spec.bilevel

    def option(self, name: str) -> Any:
        """One of the method's own options or constants; a KeyError names the method if it has none."""
        if name not in self.options:
            raise KeyError(f"method {self.method!r} has no option {name!r}; it has {', '.join(self.options)}")
        return self.options[name]

    @property
    def order(self) -> int:
        """1: first-order α gradients; 2: DARTS's unrolled second-order gradient (a row constant)."""
        return int(self.options.get("order", 1))


def _search_values(d: dict, p: str, only_present: bool) -> dict[str, Any]:
    """Parse the shared search keys found in `d` (all of them unless only_present)."""
    parsers = {
        "C": lambda k: read_int(d, k, p, minimum=2),
        "N": lambda k: read_int(d, k, p, minimum=1),
        "epochs": lambda k: read_int(d, k, p, minimum=1),
        "batch_size": lambda k: read_int(d, k, p, minimum=1),
        "lr": lambda k: read_float(d, k, p, allow_equal=False),
        "lr_min": lambda k: read_float(d, k, p),
        "momentum": lambda k: read_float(d, k, p),
        "nesterov": lambda k: read_bool(d, k, p),
        "weight_decay": lambda k: read_float(d, k, p),
        "grad_clip": lambda k: read_float(d, k, p),
        "shuffle": lambda k: read_bool(d, k, p),
        "log_every": lambda k: read_int(d, k, p, minimum=1),
        "image_size": lambda k: read_choice_int(d, k, p, IMAGE_SIZES),
        "train_images": lambda k: read_int_or_all(d, k, p),
        "test_images": lambda k: read_int_or_all(d, k, p),
        "fused_ops": lambda k: read_bool(d, k, p),
        "channels_last": lambda k: read_auto_bool(d, k, p),
        "amp": lambda k: read_auto_bool(d, k, p),
        "compile": lambda k: read_auto_bool(d, k, p),
        "cudnn_benchmark": lambda k: read_auto_bool(d, k, p),
        "cuda_graphs": lambda k: read_auto_bool(d, k, p),
        "compile_iim": lambda k: read_auto_bool(d, k, p),
    }
    return {k: parse(k) for k, parse in parsers.items() if not only_present or k in d}



def resolve_search(space: str, method: str, common: dict, options: dict, prefix: str) -> SearchConfig:
    """Merge a space's shared search section with one method's section, and check the result."""
    if method not in METHOD_TABLE:
        raise fail(prefix.rstrip("."), method, "one of " + ", ".join(METHOD_TABLE))
    if not isinstance(options, dict):
        raise ConfigError(f"params.yaml: {prefix.rstrip('.')} must be a mapping, got {options!r}")
    spec = METHOD_TABLE[method]
    if space not in spec.spaces:
        raise ConfigError(
            f"params.yaml: {prefix.rstrip('.')}: method {method!r} does not run on the {space!r} space "
            f"(it runs on {', '.join(spec.spaces)})"
        )
    own = spec.option_names
    unknown = sorted(set(options) - set(own) - set(SEARCH_KEYS))
    if unknown:
        raise ConfigError(
            f"params.yaml: {', '.join(prefix + k for k in unknown)} does not apply to method {method!r}; "
            f"its options are {', '.join(own)} (plus any {space}.search key to override it)"
        )
    missing = [o.name for o in spec.options if o.name not in options and o.default_on(space) is REQUIRED]
    if missing:
        raise ConfigError(f"params.yaml: missing key(s) {', '.join(prefix + k for k in missing)} for method {method!r}")
    values = {**_search_values(common, f"{space}.search.", False), **_search_values(options, prefix, True)}
    if "shrink" in own:
        values["shrink"] = ShrinkConfig.from_dict(options["shrink"], prefix + "shrink.")
    else:
        values["shrink"] = None
    values["iim"] = IimConfig.from_dict(options["iim"], prefix + "iim.") if "iim" in own else None
    if "arch" in own:
        values["arch"] = ArchConfig.from_dict(options["arch"], prefix + "arch.")
        portion = read_float(options, "train_portion", prefix, allow_equal=False)
        if portion >= 1:
            raise fail(prefix + "train_portion", portion, "a number in (0, 1)")
        values["train_portion"] = portion
    values["options"] = {
        **{o.name: _read_option(options, o, space, prefix) for o in spec.options if o.kind in _SCALAR_READERS},
        **spec.constants,
    }
    cfg = SearchConfig(space=space, method=method, **values)
    check_search(cfg, prefix)
    return cfg


_SCALAR_READERS = {
    "float": lambda d, o, p: read_float(d, o.name, p),
    "positive": lambda d, o, p: read_float(d, o.name, p, allow_equal=False),
    "int": lambda d, o, p: read_int(d, o.name, p, minimum=0),
    "bool": lambda d, o, p: read_bool(d, o.name, p),
    "choice": lambda d, o, p: read_choice(d, o.name, p, o.choices),
}


def _read_option(options: dict, option: Option, space: str, prefix: str) -> Any:
    """A method's scalar option from its params.yaml section, or its default on `space`."""
    if option.name not in options:
        return option.default_on(space)
    return _SCALAR_READERS[option.kind](options, option, prefix)


def check_search(cfg: SearchConfig, prefix: str) -> None:
    """Reject settings that cannot run, naming the key."""
    sp = f"{cfg.space}.search."
    if cfg.lr_min > cfg.lr:
        raise fail(sp + "lr_min", cfg.lr_min, f"a number <= lr ({cfg.lr})")
    if cfg.momentum >= 1.0:
        raise fail(sp + "momentum", cfg.momentum, "a number in [0, 1)")
    if cfg.nesterov and cfg.momentum == 0:
        raise fail(sp + "nesterov", True, "false when momentum is 0 (torch SGD requires it)")
    if cfg.shrink is not None:
        most = space_spec(cfg.space).max_shrink_steps
        if most is not None and cfg.shrink.steps > most:
            raise ConfigError(
                f"params.yaml: {prefix}shrink.steps = {cfg.shrink.steps} is more shrink steps than the "
                f"{most + 1} {cfg.space.upper()} ops allow; expected 1..{most} (the paper uses 4)"
            )
        try:
            shrink_epochs(cfg.epochs, cfg.shrink.steps, cfg.shrink.interval, cfg.shrink.anchor)
        except ValueError as exc:
            raise ConfigError(
                f"params.yaml: {prefix}shrink.steps/interval do not fit the search's epochs = {cfg.epochs}: {exc}; "
                "lower steps/interval or raise epochs"
            ) from None
