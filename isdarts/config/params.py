"""The whole params.yaml, typed and validated: the one place where parameter values are checked.

Every stage and CLI command goes through `load_params`, so a wrong value is rejected before any compute
with a message that names the key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from isdarts.config.cluster import DEFAULT_CLUSTER, ClusterParams, read_cluster
from isdarts.config.fields import (
    fail,
    no_unknown,
    read_bool,
    read_choice,
    read_float,
    read_int,
    read_int_or_all,
    read_names,
    read_text,
    required,
)
from isdarts.config.paper import paper_mismatches
from isdarts.config.search import (
    SEARCH_KEYS,
    SearchConfig,
    ShrinkConfig,
    check_search,
    resolve_search,
)
from isdarts.config.train import ImagenetParams, RetrainParams
from isdarts.errors import ConfigError
from isdarts.registry import METHODS, SPACES, SWEEP_METHOD

PROFILES = ("quick", "paper", "paper_subset", "smoke", "study", "custom")


@dataclass(frozen=True)
class DataConfig:
    """Where the datasets come from. CIFAR-10: a full copy, a download, or (quick profile only) the shared subset;
    CIFAR-100 and SVHN: a folder of their original files, or a download into it (`download` is shared)."""

    cifar10_root: Path
    download: bool
    subset_fallback: Path | None
    cifar100_root: Path
    svhn_root: Path

    @classmethod
    def from_dict(cls, d: dict) -> DataConfig:
        p = "data."
        no_unknown(d, p, {"cifar10_root", "cifar100_root", "svhn_root", "download", "subset_fallback"})
        roots = {}
        for key in ("cifar10_root", "cifar100_root", "svhn_root"):
            root = required(d, key, p)
            if not isinstance(root, str) or not root:
                raise fail(p + key, root, "a path (string)")
            roots[key] = Path(root)
        fallback = required(d, "subset_fallback", p)
        if fallback is not None and (not isinstance(fallback, str) or not fallback):
            raise fail(p + "subset_fallback", fallback, "a path (string) or null")
        return cls(
            roots["cifar10_root"], read_bool(d, "download", p), Path(fallback) if fallback else None,
            cifar100_root=roots["cifar100_root"], svhn_root=roots["svhn_root"],
        )

    def root(self, dataset: str) -> Path:
        """The raw-files folder of `dataset` (a name of isdarts.data.datasets.DATASETS)."""
        return {"cifar10": self.cifar10_root, "cifar100": self.cifar100_root, "svhn": self.svhn_root}[dataset]


@dataclass(frozen=True)
class SpaceRuns:
    """Which methods and seeds run on one space, and each method's resolved search settings."""

    space: str
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    searches: dict[str, SearchConfig]  # every method with a section, listed or not
    section: str = ""  # the params.yaml section it is read from, when not the space's own (robust)

    def search(self, method: str) -> SearchConfig:
        if method not in self.searches:
            raise ConfigError(
                f"params.yaml: method {method!r} has no section {self.section or self.space}.options.{method}; "
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
        raise fail(key, value, "a non-empty list of distinct non-negative integers")
    return tuple(value)


def _space_runs(space: str, d: dict, extra_keys: set[str], section: str | None = None) -> SpaceRuns:
    p = f"{section or space}."
    no_unknown(d, p, {"methods", "seeds", "search", "options"} | extra_keys)
    methods = read_names(d, "methods", p, tuple(METHODS), "method names")
    options = required(d, "options", p)
    if not isinstance(options, dict):
        raise ConfigError(f"params.yaml: {p}options must be a mapping of method -> options")
    missing = [m for m in methods if m not in options]
    if missing:
        raise ConfigError(
            f"params.yaml: {p}methods lists {', '.join(missing)} but {p}options has no section for it; "
            f"add {p}options.{missing[0]} (its options: {', '.join(METHODS[missing[0]].option_names)})"
        )
    common = required(d, "search", p)
    if not isinstance(common, dict):
        raise ConfigError(f"params.yaml: {p}search must be a mapping")
    no_unknown(common, p + "search.", set(SEARCH_KEYS))
    searches = {m: resolve_search(space, m, common, options[m], f"{p}options.{m}.") for m in options}
    return SpaceRuns(space, tuple(methods), _seeds(required(d, "seeds", p), p + "seeds"), searches, section or "")


# RobustDARTS's spaces (S1-S4) and the DARTS space without `none` (S5): the DARTS space's variants.
ROBUST_SPACES: tuple[str, ...] = tuple(name for name, spec in SPACES.items() if spec.base == "darts")
# The datasets a robust-space search may run on besides CIFAR-10 (each needs `isdarts prepare-data --dataset`): those
# of isdarts.data.datasets, which config (a lower layer) cannot import; tests/test_robust_pipeline.py keeps them equal.
EXTRA_DATASETS: tuple[str, ...] = ("cifar100", "svhn")


def _names_or_none(d: dict, key: str, prefix: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    """`read_names`, where an empty list is allowed too (nothing of that kind runs)."""
    return () if required(d, key, prefix) == [] else read_names(d, key, prefix, allowed, what)


@dataclass(frozen=True)
class RobustParams:
    """Λ-DARTS's benchmark: the robust spaces (one search per space x dataset x method x seed, sharing one set of
    search settings), searched on CIFAR-10 and `extra_datasets`, each found cell retrained on its own dataset."""

    spaces: tuple[str, ...]
    extra_datasets: tuple[str, ...]
    runs: dict[str, SpaceRuns]  # per space
    retrain: RetrainParams | None  # None: no space runs

    @classmethod
    def from_dict(cls, d: Any) -> RobustParams:
        p = "robust."
        if not isinstance(d, dict):
            raise ConfigError(f"params.yaml: robust must be a mapping, got {d!r}")
        no_unknown(d, p, {"spaces", "extra_datasets", "methods", "seeds", "search", "options", "retrain"})
        spaces = _names_or_none(d, "spaces", p, ROBUST_SPACES, "space names")
        extra = _names_or_none(d, "extra_datasets", p, EXTRA_DATASETS, "dataset names")
        # Checked even when no space runs: DVC's robust stages read them, and a wrong value should not wait.
        read_names(d, "methods", p, tuple(METHODS), "method names")
        _seeds(required(d, "seeds", p), p + "seeds")
        core = {k: v for k, v in d.items() if k in ("methods", "seeds", "search", "options")}
        runs = {space: _space_runs(space, core, set(), section="robust") for space in spaces}
        retrain = RetrainParams.from_dict(required(d, "retrain", p), p + "retrain.") if spaces else None
        return cls(spaces, extra, runs, retrain)


NO_ROBUST_RUNS = RobustParams((), (), {}, None)



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
    no_unknown(d, prefix, {"epochs", "train_images", "seed", "rates", "schedules"})
    schedules_raw = required(d, "schedules", prefix)
    if not isinstance(schedules_raw, dict) or not schedules_raw:
        raise fail(prefix + "schedules", schedules_raw, "a mapping of rate name -> {rate, label, steps, interval}")
    schedules = {}
    for name, s in schedules_raw.items():
        sp = f"{prefix}schedules.{name}."
        if not isinstance(s, dict):
            raise ConfigError(f"params.yaml: {sp.rstrip('.')} must be a mapping")
        no_unknown(s, sp, {"rate", "label", "steps", "interval", "anchor"})
        label = read_text(s, "label", sp)
        shrink = ShrinkConfig.from_dict({k: s[k] for k in ("steps", "interval", "anchor") if k in s}, sp)
        rate = read_float(s, "rate", sp, allow_equal=False)
        if rate > 1:
            raise fail(sp + "rate", rate, "a shrink rate in (0, 1] (1 = all operations in one step, I-DARTS)")
        schedules[str(name)] = RateSchedule(str(name), rate, label, shrink)
    rates = read_names(d, "rates", prefix, tuple(schedules), "rate names")
    return SweepParams(
        read_int(d, "epochs", prefix, minimum=2), read_int_or_all(d, "train_images", prefix),
        read_int(d, "seed", prefix, minimum=0), tuple(rates), schedules,
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
        sweep = _sweep(required(d, "sweep", "darts."), "darts.sweep.")
        if SWEEP_METHOD not in runs.searches:
            raise ConfigError(f"params.yaml: darts.sweep needs darts.options.{SWEEP_METHOD} "
                              "(the sweep varies its schedule)")
        for rate in sweep.rates:
            sweep.search(runs.searches[SWEEP_METHOD], rate)
        return cls(
            runs,
            RetrainParams.from_dict(required(d, "retrain", "darts."), "darts.retrain."),
            ImagenetParams.from_dict(required(d, "imagenet", "darts."), "darts.imagenet."),
            sweep,
        )


# Not a result setting: it changes when checkpoints are written, never what is computed, so no DVC stage
# lists it and no checkpoint key includes it.
DEFAULT_CHECKPOINT_EVERY_MINUTES = 30.0


@dataclass(frozen=True)
class Params:
    """The whole params.yaml."""

    profile: str
    device: str
    data: DataConfig
    nb201: SpaceRuns
    darts: DartsParams
    # Checkpoints inside an epoch this often (0: at epoch ends only); a kill loses at most this much work.
    checkpoint_every_minutes: float = DEFAULT_CHECKPOINT_EVERY_MINUTES
    cluster: ClusterParams = DEFAULT_CLUSTER  # SLURM resources for `isdarts cluster submit`
    robust: RobustParams = NO_ROBUST_RUNS  # the robust spaces' runs (absent: none)

    @property
    def checkpoint_every_s(self) -> float | None:
        return self.checkpoint_every_minutes * 60.0 or None

    def space(self, space: str) -> SpaceRuns:
        if space in ROBUST_SPACES:
            if space not in self.robust.runs:
                raise ConfigError(f"params.yaml: the {space} space is not in robust.spaces "
                                  f"({', '.join(self.robust.spaces) or 'empty'}); add it there to run it")
            return self.robust.runs[space]
        return self.nb201 if space == "nb201" else self.darts.runs

    def retrain_params(self, space: str) -> RetrainParams:
        """The retraining settings of cells searched on `space` (the DARTS space's, or the robust spaces')."""
        if space in ROBUST_SPACES:
            self.space(space)  # refuses a space robust.spaces does not list
            assert self.robust.retrain is not None  # read whenever robust.spaces lists a space
            return self.robust.retrain
        return self.darts.retrain

    def check_profile(self) -> None:
        """A run labelled 'paper' must use the paper's settings; anything else is never passed off as it."""
        if self.profile != "paper":
            return
        diffs = []
        for runs in (self.nb201, self.darts.runs):
            for method in runs.methods:
                diffs += [f"{runs.space}.{method}: {d}" for d in paper_mismatches(runs.search(method))]
        diffs += self.darts.retrain.mismatches() + self.darts.imagenet.mismatches()
        if self.robust.spaces:
            diffs.append(f"robust.spaces lists {', '.join(self.robust.spaces)}: the IS-DARTS paper searched none of "
                         "them (set robust.spaces: [])")
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
        raise fail("device", value, "auto, cpu, cuda or cuda:N")
    return value


def params_from_dict(raw: dict) -> Params:
    """Validate a params mapping (the parsed params.yaml)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"params.yaml must be a mapping at the top level, got {type(raw).__name__}")
    no_unknown(raw, "", {"profile", "device", "checkpoint_every_minutes", "data", "nb201", "darts", "cluster",
                         "robust"})
    nb201 = required(raw, "nb201", "")
    if not isinstance(nb201, dict):
        raise ConfigError(f"params.yaml: nb201 must be a mapping, got {nb201!r}")
    params = Params(
        profile=read_choice(raw, "profile", "", PROFILES),
        device=parse_device(required(raw, "device", "")),
        data=DataConfig.from_dict(required(raw, "data", "")),
        nb201=_space_runs("nb201", nb201, set()),
        darts=DartsParams.from_dict(required(raw, "darts", "")),
        checkpoint_every_minutes=read_float(
            {"checkpoint_every_minutes": DEFAULT_CHECKPOINT_EVERY_MINUTES, **raw}, "checkpoint_every_minutes", ""
        ),
        cluster=read_cluster(raw["cluster"]) if "cluster" in raw else DEFAULT_CLUSTER,
        robust=RobustParams.from_dict(raw["robust"]) if "robust" in raw else NO_ROBUST_RUNS,
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
