"""Typed, validated view of params.yaml: the one place where parameter values are checked.

Every stage and CLI command goes through here, so a wrong value is rejected before any compute
with a message that names the key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROFILES = ("quick", "paper", "smoke", "custom")
SPACES = ("nb201", "darts")
IIM_SOURCES = ("train_full", "holdout_subset")
SHRINK_ANCHORS = ("start", "last")
REGULARISERS = ("corr", "signcorr")
NB201_NUM_OPS = 5
# Each method's own options; any search key (C, epochs, lr, ...) may also be overridden per method.
METHOD_OPTIONS: dict[str, tuple[str, ...]] = {
    "isdarts": ("shrink", "iim"),
    "idarts": ("iim",),
    "sdarts": ("shrink", "arch", "train_portion"),
    "darts1": ("arch", "train_portion"),
    "darts2": ("arch", "train_portion"),
    "lambda_darts": ("arch", "train_portion", "regulariser", "lam", "epsilon"),
}
METHODS = tuple(METHOD_OPTIONS)
METHOD_LABELS = {
    "isdarts": "IS-DARTS", "idarts": "I-DARTS", "sdarts": "S-DARTS", "darts1": "DARTS (1st)",
    "darts2": "DARTS (2nd)", "lambda_darts": "Λ-DARTS",
}
BILEVEL_METHODS = ("sdarts", "darts1", "darts2", "lambda_darts")


class ConfigError(ValueError):
    """A params value of the wrong type or out of range."""


def _fail(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"params.yaml: {key} = {value!r} is not allowed; expected {allowed}")


def _int(d: dict, key: str, prefix: str, *, minimum: int | None = None) -> int:
    value = _required(d, key, prefix)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(f"{prefix}{key}", value, "an integer")
    if minimum is not None and value < minimum:
        raise _fail(f"{prefix}{key}", value, f"an integer >= {minimum}")
    return value


def _float(d: dict, key: str, prefix: str, *, minimum: float = 0.0, allow_equal: bool = True) -> float:
    value = _required(d, key, prefix)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(f"{prefix}{key}", value, "a finite number")
    if value < minimum or (not allow_equal and value == minimum):
        relation = ">=" if allow_equal else ">"
        raise _fail(f"{prefix}{key}", value, f"a number {relation} {minimum}")
    return float(value)


def _bool(d: dict, key: str, prefix: str) -> bool:
    value = _required(d, key, prefix)
    if not isinstance(value, bool):
        raise _fail(f"{prefix}{key}", value, "true or false")
    return value


def _choice(d: dict, key: str, prefix: str, choices: tuple[str, ...]) -> str:
    value = _required(d, key, prefix)
    if value not in choices:
        raise _fail(f"{prefix}{key}", value, "one of " + ", ".join(choices))
    return value


def _required(d: dict, key: str, prefix: str) -> Any:
    if not isinstance(d, dict):
        raise ConfigError(f"params.yaml: {prefix.rstrip('.')} must be a mapping, got {d!r}")
    if key not in d:
        raise ConfigError(f"params.yaml: missing key {prefix}{key}")
    return d[key]


def _no_unknown(d: dict, prefix: str, known: set[str]) -> None:
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(
            f"params.yaml: unknown key(s) {', '.join(prefix + k for k in unknown)}; "
            f"allowed under {prefix.rstrip('.') or 'the top level'}: {', '.join(sorted(known))}"
        )


@dataclass(frozen=True)
class DataConfig:
    """Where CIFAR-10 comes from: a full copy, a download, or (quick profile only) the shared subset."""

    cifar10_root: Path
    download: bool
    subset_fallback: Path | None

    @classmethod
    def from_dict(cls, d: dict) -> DataConfig:
        p = "data."
        _no_unknown(d, p, {"cifar10_root", "download", "subset_fallback"})
        root = _required(d, "cifar10_root", p)
        if not isinstance(root, str) or not root:
            raise _fail(p + "cifar10_root", root, "a path (string)")
        fallback = _required(d, "subset_fallback", p)
        if fallback is not None and (not isinstance(fallback, str) or not fallback):
            raise _fail(p + "subset_fallback", fallback, "a path (string) or null")
        return cls(Path(root), _bool(d, "download", p), Path(fallback) if fallback else None)



def _int_or_all(d: dict, key: str, prefix: str) -> int | None:
    raw = _required(d, key, prefix)
    if raw == "all":
        return None
    if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
        return raw
    raise _fail(prefix + key, raw, "'all' or a positive integer")


@dataclass(frozen=True)
class IimConfig:
    """How the information-based importance measurement samples its data (spec §3.2)."""

    source: str = "train_full"
    n_samples: int | None = None  # None: all samples of the source
    batch_size: int = 64
    every_epoch: bool = False

    @classmethod
    def from_dict(cls, d: dict, prefix: str) -> IimConfig:
        _no_unknown(d, prefix, {"source", "n_samples", "batch_size", "every_epoch"})
        source = _choice(d, "source", prefix, IIM_SOURCES)
        n_samples = _int_or_all(d, "n_samples", prefix)
        if source == "holdout_subset" and n_samples is None:
            raise _fail(prefix + "n_samples", "all", "a positive integer when source is holdout_subset")
        return cls(source, n_samples, _int(d, "batch_size", prefix, minimum=1), _bool(d, "every_epoch", prefix))


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
        _no_unknown(d, prefix, {"steps", "interval", "anchor"})
        anchor = _choice(d, "anchor", prefix, SHRINK_ANCHORS) if "anchor" in d else "start"
        return cls(_int(d, "steps", prefix, minimum=1), _int(d, "interval", prefix, minimum=1), anchor)


@dataclass(frozen=True)
class ArchConfig:
    """The Adam optimiser of DARTS-style architecture weights (spec §4)."""

    lr: float = 3e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 1e-3

    @classmethod
    def from_dict(cls, d: dict, prefix: str) -> ArchConfig:
        _no_unknown(d, prefix, {"lr", "betas", "weight_decay"})
        betas = _required(d, "betas", prefix)
        if (
            not isinstance(betas, list) or len(betas) != 2
            or any(isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 <= b < 1 for b in betas)
        ):
            raise _fail(prefix + "betas", betas, "two numbers in [0, 1), e.g. [0.5, 0.999]")
        return cls(_float(d, "lr", prefix, allow_equal=False), (float(betas[0]), float(betas[1])),
                   _float(d, "weight_decay", prefix))


# Keys every method of a space shares (the `<space>.search` section); a method section may override them.
SEARCH_KEYS = (
    "C", "N", "epochs", "batch_size", "lr", "lr_min", "momentum", "nesterov", "weight_decay", "grad_clip",
    "shuffle", "log_every", "image_size", "train_images", "test_images",
)
IMAGE_SIZES = (8, 16, 32)


@dataclass(frozen=True)
class SearchConfig:
    """One search, resolved: the space's shared settings, the method's overrides and its own options."""

    space: str = "nb201"
    method: str = "isdarts"
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
    shrink: ShrinkConfig | None = field(default_factory=ShrinkConfig)
    iim: IimConfig | None = field(default_factory=IimConfig)
    arch: ArchConfig | None = None
    train_portion: float | None = None  # bi-level methods: share of the training set that trains weights
    regulariser: str | None = None
    lam: float | None = None
    epsilon: float | None = None

    @property
    def bilevel(self) -> bool:
        return self.method in BILEVEL_METHODS

    @property
    def order(self) -> int:
        return 2 if self.method == "darts2" else 1


# Backwards-compatible name: the NB201 IS-DARTS search is one SearchConfig.
Nb201SearchConfig = SearchConfig


def _search_values(d: dict, p: str, only_present: bool) -> dict[str, Any]:
    """Parse the shared search keys found in `d` (all of them unless only_present)."""
    parsers = {
        "C": lambda k: _int(d, k, p, minimum=2),
        "N": lambda k: _int(d, k, p, minimum=1),
        "epochs": lambda k: _int(d, k, p, minimum=1),
        "batch_size": lambda k: _int(d, k, p, minimum=1),
        "lr": lambda k: _float(d, k, p, allow_equal=False),
        "lr_min": lambda k: _float(d, k, p),
        "momentum": lambda k: _float(d, k, p),
        "nesterov": lambda k: _bool(d, k, p),
        "weight_decay": lambda k: _float(d, k, p),
        "grad_clip": lambda k: _float(d, k, p),
        "shuffle": lambda k: _bool(d, k, p),
        "log_every": lambda k: _int(d, k, p, minimum=1),
        "image_size": lambda k: _choice_int(d, k, p, IMAGE_SIZES),
        "train_images": lambda k: _int_or_all(d, k, p),
        "test_images": lambda k: _int_or_all(d, k, p),
    }
    return {k: parse(k) for k, parse in parsers.items() if not only_present or k in d}


def _choice_int(d: dict, key: str, prefix: str, choices: tuple[int, ...]) -> int:
    value = _required(d, key, prefix)
    if isinstance(value, bool) or value not in choices:
        raise _fail(prefix + key, value, "one of " + ", ".join(map(str, choices)))
    return value


def resolve_search(space: str, method: str, common: dict, options: dict, prefix: str) -> SearchConfig:
    """Merge a space's shared search section with one method's section, and check the result."""
    if method not in METHOD_OPTIONS:
        raise _fail(prefix.rstrip("."), method, "one of " + ", ".join(METHODS))
    if not isinstance(options, dict):
        raise ConfigError(f"params.yaml: {prefix.rstrip('.')} must be a mapping, got {options!r}")
    own = METHOD_OPTIONS[method]
    unknown = sorted(set(options) - set(own) - set(SEARCH_KEYS))
    if unknown:
        raise ConfigError(
            f"params.yaml: {', '.join(prefix + k for k in unknown)} does not apply to method {method!r}; "
            f"its options are {', '.join(own)} (plus any {space}.search key to override it)"
        )
    missing = [k for k in own if k not in options]
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
        portion = _float(options, "train_portion", prefix, allow_equal=False)
        if portion >= 1:
            raise _fail(prefix + "train_portion", portion, "a number in (0, 1)")
        values["train_portion"] = portion
    if method == "lambda_darts":
        values["regulariser"] = _choice(options, "regulariser", prefix, REGULARISERS)
        values["lam"] = _float(options, "lam", prefix)
        values["epsilon"] = _float(options, "epsilon", prefix, allow_equal=False)
    cfg = SearchConfig(space=space, method=method, **values)
    check_search(cfg, prefix)
    return cfg


def check_search(cfg: SearchConfig, prefix: str) -> None:
    """Reject settings that cannot run, naming the key."""
    sp = f"{cfg.space}.search."
    if cfg.lr_min > cfg.lr:
        raise _fail(sp + "lr_min", cfg.lr_min, f"a number <= lr ({cfg.lr})")
    if cfg.momentum >= 1.0:
        raise _fail(sp + "momentum", cfg.momentum, "a number in [0, 1)")
    if cfg.nesterov and cfg.momentum == 0:
        raise _fail(sp + "nesterov", True, "false when momentum is 0 (torch SGD requires it)")
    if cfg.shrink is not None:
        if cfg.space == "nb201" and cfg.shrink.steps > NB201_NUM_OPS - 1:
            raise ConfigError(
                f"params.yaml: {prefix}shrink.steps = {cfg.shrink.steps} is more shrink steps than the "
                f"{NB201_NUM_OPS} NB201 ops allow; expected 1..{NB201_NUM_OPS - 1} (the paper uses 4)"
            )
        from isdarts.search.shrink import shrink_epochs

        try:
            shrink_epochs(cfg.epochs, cfg.shrink.steps, cfg.shrink.interval, cfg.shrink.anchor)
        except ValueError as exc:
            raise ConfigError(
                f"params.yaml: {prefix}shrink.steps/interval do not fit the search's epochs = {cfg.epochs}: {exc}; "
                "lower steps/interval or raise epochs"
            ) from None


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


@dataclass(frozen=True)
class SpaceRuns:
    """Which methods and seeds run on one space, and each method's resolved search settings."""

    space: str
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    searches: dict[str, SearchConfig]  # every method with a section, listed or not

    def search(self, method: str) -> SearchConfig:
        if method not in self.searches:
            raise ConfigError(
                f"params.yaml: method {method!r} has no section {self.space}.options.{method}; "
                f"configured: {', '.join(sorted(self.searches))}"
            )
        return self.searches[method]


def _seeds(value: Any, key: str) -> tuple[int, ...]:
    if (
        not isinstance(value, list)
        or not value
        or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in value)
        or len(set(value)) != len(value)
    ):
        raise _fail(key, value, "a non-empty list of distinct non-negative integers")
    return tuple(value)


def _space_runs(space: str, d: dict, extra_keys: set[str]) -> SpaceRuns:
    p = f"{space}."
    _no_unknown(d, p, {"methods", "seeds", "search", "options"} | extra_keys)
    methods = _required(d, "methods", p)
    if not isinstance(methods, list) or not methods or len(set(methods)) != len(methods):
        raise _fail(p + "methods", methods, "a non-empty list of distinct method names: " + ", ".join(METHODS))
    for m in methods:
        if m not in METHOD_OPTIONS:
            raise _fail(p + "methods", m, "method names from " + ", ".join(METHODS))
    options = _required(d, "options", p)
    if not isinstance(options, dict):
        raise ConfigError(f"params.yaml: {p}options must be a mapping of method -> options")
    missing = [m for m in methods if m not in options]
    if missing:
        raise ConfigError(
            f"params.yaml: {p}methods lists {', '.join(missing)} but {p}options has no section for it; "
            f"add {p}options.{missing[0]} (its options: {', '.join(METHOD_OPTIONS.get(missing[0], ()))})"
        )
    common = _required(d, "search", p)
    if not isinstance(common, dict):
        raise ConfigError(f"params.yaml: {p}search must be a mapping")
    _no_unknown(common, p + "search.", set(SEARCH_KEYS))
    searches = {m: resolve_search(space, m, common, options[m], f"{p}options.{m}.") for m in options}
    return SpaceRuns(space, tuple(methods), _seeds(_required(d, "seeds", p), p + "seeds"), searches)


def _typed_fields(cls: type, d: dict, prefix: str, names: tuple[str, ...]) -> dict[str, Any]:
    """Read `names` from `d` with the types the dataclass `cls` declares for them."""
    types = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for name in names:
        kind = types[name]
        if kind in ("int",):
            out[name] = _int(d, name, prefix, minimum=0)
        elif kind in ("float",):
            out[name] = _float(d, name, prefix)
        elif kind in ("bool",):
            out[name] = _bool(d, name, prefix)
        else:
            value = _required(d, name, prefix)
            if not isinstance(value, str):
                raise _fail(prefix + name, value, "a string")
            out[name] = value
    return out


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    """Construct a config dataclass; its own range checks become ConfigErrors naming the section."""
    try:
        return cls(**values)
    except ValueError as exc:
        raise ConfigError(f"params.yaml: {prefix.rstrip('.')}: {exc}") from None


RETRAIN_KEYS = (
    "C", "layers", "epochs", "warmup_epochs", "batch_size", "lr", "momentum", "nesterov", "weight_decay",
    "grad_clip", "auxiliary_weight", "drop_path_prob", "cutout", "log_every",
)
IMAGENET_KEYS = (
    "C", "layers", "epochs", "warmup_epochs", "batch_size", "lr", "momentum", "nesterov", "weight_decay",
    "label_smoothing", "auxiliary_weight", "drop_path_prob", "image_size", "flops_size", "augment", "bn", "workers",
)


@dataclass(frozen=True)
class RetrainParams:
    """CIFAR-10 evaluation of a searched cell (spec §2): the trainer's settings plus the data it sees."""

    train: Any  # isdarts.train.retrain.RetrainConfig
    image_size: int
    train_images: int | None
    test_images: int | None

    @classmethod
    def from_dict(cls, d: dict, prefix: str) -> RetrainParams:
        from isdarts.train.retrain import RetrainConfig

        _no_unknown(d, prefix, set(RETRAIN_KEYS) | {"image_size", "train_images", "test_images"})
        cfg = _build(RetrainConfig, _typed_fields(RetrainConfig, d, prefix, RETRAIN_KEYS), prefix)
        return cls(cfg, _choice_int(d, "image_size", prefix, IMAGE_SIZES), _int_or_all(d, "train_images", prefix),
                   _int_or_all(d, "test_images", prefix))

    def mismatches(self) -> list[str]:
        from isdarts.train.retrain import RetrainConfig

        paper = RetrainConfig.paper()
        diffs = [f"retrain.{k}={getattr(self.train, k)!r} (paper: {getattr(paper, k)!r})"
                 for k in RETRAIN_KEYS if k != "log_every" and getattr(self.train, k) != getattr(paper, k)]
        if self.image_size != 32:
            diffs.append(f"retrain.image_size={self.image_size} (paper: 32)")
        if self.train_images is not None or self.test_images is not None:
            diffs.append("retrain: a subset of the CIFAR-10 images (paper: all)")
        return diffs


@dataclass(frozen=True)
class ImagenetParams:
    """ImageNet transfer (spec §2 mobile setting); root None trains on a tiny ImageFolder made from CIFAR."""

    root: Path | None
    tiny_train_per_class: int
    tiny_val_per_class: int
    train: Any  # isdarts.train.imagenet_transfer.ImagenetConfig

    @classmethod
    def from_dict(cls, d: dict, prefix: str) -> ImagenetParams:
        from isdarts.train.imagenet_transfer import ImagenetConfig

        _no_unknown(d, prefix, set(IMAGENET_KEYS) | {"root", "tiny_train_per_class", "tiny_val_per_class"})
        root = _required(d, "root", prefix)
        if root is not None and (not isinstance(root, str) or not root):
            raise _fail(prefix + "root", root, "a path (string) to an ImageFolder tree, or null")
        cfg = _build(ImagenetConfig, _typed_fields(ImagenetConfig, d, prefix, IMAGENET_KEYS), prefix)
        return cls(Path(root) if root else None, _int(d, "tiny_train_per_class", prefix, minimum=1),
                   _int(d, "tiny_val_per_class", prefix, minimum=1), cfg)

    def mismatches(self) -> list[str]:
        from isdarts.train.imagenet_transfer import ImagenetConfig

        paper = ImagenetConfig.paper()
        skip = {"workers", "bn"}
        diffs = [f"imagenet.{k}={getattr(self.train, k)!r} (paper: {getattr(paper, k)!r})"
                 for k in IMAGENET_KEYS if k not in skip and getattr(self.train, k) != getattr(paper, k)]
        if self.root is None:
            diffs.append("imagenet: a tiny ImageFolder made from CIFAR-10 (paper: ImageNet-1k)")
        return diffs


@dataclass(frozen=True)
class RateSchedule:
    """One column of Table A.2: shrink rate r, S = 1/r steps, every `interval` epochs."""

    name: str
    rate: float
    label: str
    shrink: ShrinkConfig


@dataclass(frozen=True)
class SweepParams:
    """The shrink-rate sweep of Table A.2 (IS-DARTS on the DARTS space, one search + retrain per rate)."""

    epochs: int
    train_images: int | None
    seed: int
    rates: tuple[str, ...]
    schedules: dict[str, RateSchedule]

    def search(self, base: SearchConfig, rate: str) -> SearchConfig:
        """The IS-DARTS search of one rate: the DARTS-space settings with this epoch count, data and schedule."""
        cfg = dataclasses.replace(
            base, epochs=self.epochs, train_images=self.train_images, shrink=self.schedules[rate].shrink
        )
        check_search(cfg, f"darts.sweep.schedules.{rate}.")
        return cfg


def _sweep(d: dict, prefix: str) -> SweepParams:
    _no_unknown(d, prefix, {"epochs", "train_images", "seed", "rates", "schedules"})
    schedules_raw = _required(d, "schedules", prefix)
    if not isinstance(schedules_raw, dict) or not schedules_raw:
        raise _fail(prefix + "schedules", schedules_raw, "a mapping of rate name -> {rate, label, steps, interval}")
    schedules = {}
    for name, s in schedules_raw.items():
        sp = f"{prefix}schedules.{name}."
        if not isinstance(s, dict):
            raise ConfigError(f"params.yaml: {sp.rstrip('.')} must be a mapping")
        _no_unknown(s, sp, {"rate", "label", "steps", "interval", "anchor"})
        label = _required(s, "label", sp)
        if not isinstance(label, str):
            raise _fail(sp + "label", label, "a string")
        shrink = ShrinkConfig.from_dict({k: s[k] for k in ("steps", "interval", "anchor") if k in s}, sp)
        schedules[str(name)] = RateSchedule(str(name), _float(s, "rate", sp, allow_equal=False), label, shrink)
    rates = _required(d, "rates", prefix)
    bad = not isinstance(rates, list) or not rates or len(set(rates)) != len(rates)
    if bad or any(r not in schedules for r in rates):
        raise _fail(prefix + "rates", rates, "a non-empty list of distinct names from " + ", ".join(schedules))
    return SweepParams(
        _int(d, "epochs", prefix, minimum=2), _int_or_all(d, "train_images", prefix),
        _int(d, "seed", prefix, minimum=0), tuple(rates), schedules,
    )


@dataclass(frozen=True)
class DartsParams:
    """The DARTS-space branch: search, CIFAR-10 retraining, ImageNet transfer and the shrink-rate sweep."""

    runs: SpaceRuns
    retrain: RetrainParams
    imagenet: ImagenetParams
    sweep: SweepParams

    @classmethod
    def from_dict(cls, d: dict) -> DartsParams:
        if not isinstance(d, dict):
            raise ConfigError(f"params.yaml: darts must be a mapping, got {d!r}")
        runs = _space_runs("darts", d, {"retrain", "imagenet", "sweep"})
        sweep = _sweep(_required(d, "sweep", "darts."), "darts.sweep.")
        if "isdarts" not in runs.searches:
            raise ConfigError("params.yaml: darts.sweep needs darts.options.isdarts (the sweep varies its schedule)")
        for rate in sweep.rates:
            sweep.search(runs.searches["isdarts"], rate)
        return cls(
            runs,
            RetrainParams.from_dict(_required(d, "retrain", "darts."), "darts.retrain."),
            ImagenetParams.from_dict(_required(d, "imagenet", "darts."), "darts.imagenet."),
            sweep,
        )


@dataclass(frozen=True)
class Params:
    """The whole params.yaml."""

    profile: str
    device: str
    data: DataConfig
    nb201: SpaceRuns
    darts: DartsParams

    def space(self, space: str) -> SpaceRuns:
        return self.nb201 if space == "nb201" else self.darts.runs

    def check_profile(self) -> None:
        """A run labelled 'paper' must use the paper's settings; anything else is never passed off as it."""
        if self.profile != "paper":
            return
        diffs = []
        for runs in (self.nb201, self.darts.runs):
            for method in runs.methods:
                diffs += [f"{runs.space}.{method}: {d}" for d in paper_mismatches(runs.search(method))]
        diffs += self.darts.retrain.mismatches() + self.darts.imagenet.mismatches()
        if diffs:
            raise ConfigError(
                "params.yaml: profile = 'paper' but these settings differ from the paper: " + "; ".join(diffs)
                + ". Restore the paper values (profiles/paper.yaml) or set profile to 'custom'."
            )
        if self.data.subset_fallback is not None:
            raise ConfigError(
                "params.yaml: profile = 'paper' must run on the full CIFAR-10; set data.subset_fallback: null "
                "so a missing dataset is an error rather than a silent switch to the subset"
            )


def parse_device(value: Any) -> str:
    if not isinstance(value, str) or not (
        value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit())
    ):
        raise _fail("device", value, "auto, cpu, cuda or cuda:N")
    return value


def params_from_dict(raw: dict) -> Params:
    """Validate a params mapping (the parsed params.yaml)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"params.yaml must be a mapping at the top level, got {type(raw).__name__}")
    _no_unknown(raw, "", {"profile", "device", "data", "nb201", "darts"})
    nb201 = _required(raw, "nb201", "")
    if not isinstance(nb201, dict):
        raise ConfigError(f"params.yaml: nb201 must be a mapping, got {nb201!r}")
    params = Params(
        profile=_choice(raw, "profile", "", PROFILES),
        device=parse_device(_required(raw, "device", "")),
        data=DataConfig.from_dict(_required(raw, "data", "")),
        nb201=_space_runs("nb201", nb201, set()),
        darts=DartsParams.from_dict(_required(raw, "darts", "")),
    )
    params.check_profile()
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found (run from the repository root, or pass --params)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return params_from_dict(raw)
