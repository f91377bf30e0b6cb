"""Typed records of the JSON files the stages write and the report reads, checked once on reading.

Each record is a frozen dataclass whose fields are the file's keys; ``from_json`` checks every key's
presence and type from the annotations (and a record's own cross-key rules) and raises ReportError
naming the file and the offending key, so readers never re-check. ``to_json`` gives back the file's
dict exactly: numbers keep their JSON type, and keys no field names are kept verbatim in ``extra``,
so a writer may add a key before this module learns of it. ``DartsRun.collect`` reads every finished
run of a stage folder (``<method>/seed_<s>/metrics.json``) and checks each record against the folder
it lies in. A leaf module: stdlib, errors and the registry (a run's method must be one of its rows) only.
"""

from __future__ import annotations

import json
import logging
import math
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from isdarts.errors import ReportError
from isdarts.registry import METHODS as METHOD_ROWS
from isdarts.registry import SPACES as SPACE_ROWS

__all__ = [
    "METHODS", "Accuracies", "ArgmaxCell", "DartsGenotype", "DartsRun", "ImagenetData", "ImagenetEpoch",
    "ImagenetHistory", "ImagenetManifest", "ImagenetMetrics", "Nb201Genotype", "Nb201Result", "Nb201Run",
    "Nb201Summary", "Record",
    "RetrainEpoch", "RetrainHistory", "RetrainMetrics", "SearchEpoch", "SearchHistory", "SearchMetrics",
    "ShrinkSchedule", "SweepRetrainMetrics", "At", "finished", "parse_value", "read_json", "seed_dirs", "subdirs",
]

log = logging.getLogger(__name__)
R = TypeVar("R", bound="Record")
D = TypeVar("D", bound="DartsRun")

# A method's name: a row of isdarts.registry.METHODS, in its order. Typed str; checked as the Literal of those
# names (Annotated metadata), so a wrong name is reported beside the names expected.
METHODS: tuple[str, ...] = tuple(METHOD_ROWS)
Method = Annotated[str, Literal[METHODS]]
# A search space's name (isdarts.registry.SPACES); the DARTS space and its variants (RobustDARTS's S1-S5), whose
# cells retrain in the DARTS evaluation network.
SPACE_NAMES: tuple[str, ...] = tuple(SPACE_ROWS)
SpaceName = Annotated[str, Literal[SPACE_NAMES]]
DARTS_LIKE: tuple[str, ...] = tuple(name for name, spec in SPACE_ROWS.items() if "darts" in (name, spec.base))
DartsLikeSpace = Annotated[str, Literal[DARTS_LIKE]]

_NONFINITE = "may be ±inf or NaN"  # Annotated marker: IIM hooked values are +inf for `none`
Hooked = Annotated[float, _NONFINITE]
Matrix = tuple[tuple[Hooked | None, ...], ...]  # edges × ops; null marks a pruned candidate
Cells = Matrix | Mapping[str, Matrix]  # NB201: one matrix; DARTS space: one per cell kind
Pruned = tuple[tuple[str, str], ...] | Mapping[str, tuple[tuple[str, str], ...]]  # (edge, op) pairs


def optional(key: str | None = None) -> Any:
    """A field whose key some writers leave out: None when absent, and then left out again by to_json."""
    return field(default=None, metadata={"optional": True, "key": key})


def read_json(path: Path) -> Any:
    """A JSON file's value; an unreadable or malformed file is a ReportError naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: results file not found") from None
    except OSError as exc:
        raise ReportError(f"{path}: cannot read results file ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: malformed JSON ({exc})") from None


@dataclass(frozen=True)
class At:
    """Where a value lies: its file and the path inside it (``runs[1].accuracies``), for error messages."""

    file: str
    path: str = ""

    def child(self, key: str | int) -> At:
        if isinstance(key, int):
            return At(self.file, f"{self.path}[{key}]")
        return At(self.file, f"{self.path}.{key}" if self.path else key)

    def error(self, message: str) -> ReportError:
        return ReportError(f"{self.file}: {self.path}: {message}" if self.path else f"{self.file}: {message}")


@dataclass(frozen=True, kw_only=True)
class Record:
    """Base of every record: parsing and dumping driven by the field annotations."""

    extra: Mapping[str, Any] = field(default_factory=dict)  # keys no field names, verbatim

    @classmethod
    def read(cls: type[R], path: Path) -> R:
        """The record in a JSON file, checked; ReportError names the file and key on any problem."""
        return cls.from_json(read_json(path), str(path))

    @classmethod
    def from_json(cls: type[R], data: Any, where: str = "<json>") -> R:
        """Check ``data`` (a parsed JSON object) against this record; ``where`` names it in errors."""
        return _record(cls, data, At(str(where)))

    def to_json(self) -> dict[str, Any]:
        """The JSON object this record was read from (or that a writer should write), keys sorted."""
        out = dict(self.extra)
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "extra" and not (f.metadata.get("optional") and value is None):
                out[f.metadata.get("key") or f.name] = _dump(value)
        return dict(sorted(out.items()))

    def check(self, at: At) -> None:
        """Rules between keys, beyond each key's type; raise ``at.error(...)``."""


# ---------------------------------------------------------------- parsing by annotation


def _record(cls: type[R], data: Any, at: At) -> R:
    if not isinstance(data, dict):
        raise at.error(f"expected a JSON object, got {type(data).__name__}")
    hints = get_type_hints(cls, include_extras=True)
    values, known, nulls = {}, set(), {}
    for f in fields(cls):
        if f.name == "extra":
            continue
        key = f.metadata.get("key") or f.name
        known.add(key)
        if key in data and data[key] is None and f.metadata.get("optional"):
            nulls[key] = None  # written as null, not left out: kept in `extra` so to_json writes it back
        elif key in data:
            values[f.name] = parse_value(data[key], hints[f.name], at, key)
        elif not f.metadata.get("optional"):
            raise at.error(f"missing key {key!r}")
    record = cls(**values, extra={**nulls, **{k: v for k, v in data.items() if k not in known}})
    record.check(at)
    return record


def parse_value(value: Any, hint: Any, at: At, key: str | int, finite: bool = True) -> Any:
    """``value`` (at ``key`` of the object at ``at``) checked against the type ``hint`` and made immutable; the
    report also checks the paper's numbers with it."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Annotated:
        return parse_value(value, _checked_as(hint), at, key, finite=_NONFINITE not in args[1:])
    if origin in (Union, types.UnionType):
        arm = next((a for a in args if _fits(value, a)), None)
        if arm is None:
            raise _type_error(value, hint, at, key)
        return parse_value(value, arm, at, key, finite)
    if origin is Literal:
        if value not in args:
            raise _key_error(at, key, f"is {value!r}; expected {' or '.join(map(repr, args))}")
        return value
    if not _fits(value, hint):
        raise _type_error(value, hint, at, key)
    inner = at.child(key)
    if origin is tuple and args[-1:] == (Ellipsis,):
        return tuple(parse_value(v, args[0], inner, i, finite) for i, v in enumerate(value))
    if origin is tuple:
        if len(value) != len(args):
            raise inner.error(f"expected {len(args)} items, got {len(value)}")
        return tuple(parse_value(v, a, inner, i, finite) for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin is Mapping:
        return types.MappingProxyType({k: parse_value(v, args[1], inner, k, finite) for k, v in value.items()})
    if isinstance(hint, type) and issubclass(hint, Record):
        return _record(hint, value, inner)
    if hint is float and finite and not math.isfinite(value):
        raise _key_error(at, key, f"is not a finite number ({value})")
    return value


def _checked_as(hint: Any) -> Any:
    """The type an Annotated hint is checked as: its Literal metadata where it has one (Method), else its type."""
    base, *metadata = get_args(hint)
    return next((m for m in metadata if get_origin(m) is Literal), base)


def _key_error(at: At, key: str | int, message: str) -> ReportError:
    # "runs[0]: key 'seed' must be ..." for an object's key; "epochs[2].iim[3]: must be ..." for a list item.
    return at.child(key).error(message) if isinstance(key, int) else at.error(f"key {key!r} {message}")


def _fits(value: Any, hint: Any) -> bool:
    """Whether value has the JSON kind hint asks for (contents are checked by parse_value)."""
    origin = get_origin(hint) or hint
    if origin is Annotated:
        return _fits(value, _checked_as(hint))
    if origin in (Union, types.UnionType):
        return any(_fits(value, a) for a in get_args(hint))
    if origin is Literal:
        return any(type(value) is type(a) for a in get_args(hint))
    if isinstance(value, bool):  # an int subclass, but true/false is never a number here
        return origin is bool or origin is Any
    kinds = {Any: object, float: (int, float), tuple: list, Mapping: dict, type(None): type(None)}
    if isinstance(origin, type) and issubclass(origin, Record):
        return isinstance(value, dict)
    return isinstance(value, kinds.get(origin, origin))


def _name(hint: Any) -> str:
    origin = get_origin(hint) or hint
    if origin is Annotated:
        return _name(_checked_as(hint))
    if origin in (Union, types.UnionType):
        return " or ".join(_name(a) for a in get_args(hint))
    if origin is Literal:
        return " or ".join(map(repr, get_args(hint)))
    if isinstance(origin, type) and issubclass(origin, Record):
        return "dict"
    names = {float: "int or float", tuple: "list", Mapping: "dict", type(None): "NoneType"}
    return names.get(origin) or getattr(origin, "__name__", str(origin))


def _type_error(value: Any, hint: Any, at: At, key: str | int) -> ReportError:
    got = repr(value) if isinstance(value, bool) else type(value).__name__
    return _key_error(at, key, f"must be {_name(hint)}, got {got}")


def _dump(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, tuple):
        return [_dump(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _dump(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------- NB201: lookup results (results/nb201_<method>.json)


@dataclass(frozen=True, kw_only=True)
class Accuracies(Record):
    """The NB201 benchmark's 200-epoch accuracies (%) of one cell."""

    cifar10_valid: float
    cifar10_test: float
    cifar100_valid: float
    cifar100_test: float
    imagenet16_valid: float
    imagenet16_test: float


@dataclass(frozen=True, kw_only=True)
class Nb201Run(Record):
    """One seed's searched cell, looked up in the benchmark, with its search cost."""

    seed: int
    arch_str: str
    accuracies: Accuracies
    search_hours: float
    cost_unit: str
    device_name: str | None = optional()
    benchmark_index: int | None = optional()
    final_test_acc_supernet: float | None = optional()
    paper_settings: bool | None = optional()
    paper_mismatches: tuple[str, ...] | None = optional()
    param_free_count: int | None = optional()
    skip_count: int | None = optional()


@dataclass(frozen=True, kw_only=True)
class Nb201Summary(Record):
    """Mean and sample std over seeds per accuracy key (std null for one seed), as DVC metrics."""

    n_runs: int
    mean: Mapping[str, float]
    std: Mapping[str, float | None]
    search_hours_mean: float


@dataclass(frozen=True, kw_only=True)
class Nb201Result(Record):
    """results/nb201_<method>.json: every seed of one method, looked up in the benchmark."""

    space: Literal["nb201"]
    method: Method
    profile: str
    paper_settings: bool
    profile_note: str
    runs: tuple[Nb201Run, ...]
    method_label: str | None = optional()
    summary: Nb201Summary | None = optional()

    @property
    def cost_unit(self) -> str:
        return self.runs[0].cost_unit

    def check(self, at: At) -> None:
        if not self.runs:
            raise at.error("key 'runs' is empty")
        seeds = [run.seed for run in self.runs]
        if len(set(seeds)) != len(seeds):
            raise at.error(f"key 'seed' repeats across runs ({sorted(seeds)})")
        units = sorted({run.cost_unit for run in self.runs})
        if len(units) != 1:  # averaging GPU-hours with CPU-hours gives a number in no unit at all
            raise at.error(f"key 'cost_unit' differs across runs ({', '.join(units)})")


# ---------------------------------------------------------------- searches (runs/nb201/..., runs/darts/search/...)


@dataclass(frozen=True, kw_only=True)
class ShrinkSchedule(Record):
    """When the progressive shrinking ran: its steps, interval, anchor and the epochs it ran after."""

    steps: int
    interval: int | None
    anchor: str
    epochs: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class SearchMetrics(Record):
    """A search's metrics.json: its final genotype, supernet accuracies and cost."""

    space: SpaceName
    method: Method
    seed: int
    profile: str
    paper_settings: bool
    paper_mismatches: tuple[str, ...]
    genotype: str
    data_kind: str
    epochs: int
    final_test_acc: float
    final_train_acc: float
    final_train_loss: float
    images_per_s_mean: float
    search_hours: float
    search_seconds: float
    cost_unit: str
    device_name: str
    arch_str: str | None = optional()  # NB201 only
    shrink: ShrinkSchedule | None = optional()  # methods that shrink
    rate: float | None = optional()  # the shrink-rate sweep only
    rate_label: str | None = optional()
    rate_name: str | None = optional()


@dataclass(frozen=True, kw_only=True)
class Nb201Genotype(Record):
    """An NB201 search's genotype.json: the arch string and the op chosen on each edge."""

    space: Literal["nb201"]
    method: Method
    seed: int
    arch_str: str
    edges: Mapping[str, str]


@dataclass(frozen=True, kw_only=True)
class DartsGenotype(Record):
    """A DARTS-space search's genotype.json: per node of each cell kind, its two (op, input) pairs."""

    space: Literal["darts"]
    method: Method
    seed: int
    normal: tuple[tuple[tuple[str, int], ...], ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[tuple[tuple[str, int], ...], ...]
    reduce_concat: tuple[int, ...]
    sparse: bool | None = optional()  # true: FairDARTS's / SNAS's cells, any number of pairs per node


@dataclass(frozen=True, kw_only=True)
class ArgmaxCell(Record):
    """The cell a search would return if it stopped after that epoch, and what it is made of."""

    param_free: int  # NB201: parameter-free edges of the cell; DARTS space: parameter-free inputs of the normal cell
    skip: int  # likewise, skip connections
    benchmark: Accuracies | None = optional()  # NB201: the cell's 200-epoch benchmark accuracies
    param_free_per_node: Mapping[str, tuple[int, ...]] | None = optional()  # DARTS space, per cell kind
    skip_per_node: Mapping[str, tuple[int, ...]] | None = optional()


@dataclass(frozen=True, kw_only=True)
class SearchEpoch(Record):
    """One search epoch: training numbers and, per candidate (edge, op), alive flags, IIM and α."""

    epoch: int
    lr: float
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    images_per_s: float
    epoch_seconds: float
    genotype: str | None
    alive: Cells | None
    iim: Cells | None
    shrink_step: int | None
    pruned: Pruned
    alpha: Cells | None = optional()  # α-based methods
    op_weights: Cells | None = optional()  # DARTS-family: softmax(α), what the forward mixes with
    weight_steps: int | None = optional()  # weight steps after this epoch (histories before the collapse study
    alpha_steps: int | None = optional()  # lack these three)
    cell: ArgmaxCell | None = optional()  # the argmax cell, once defined
    arch_loss: float | None = optional()
    alignment: float | None = optional()  # Λ-DARTS
    lambda_: float | None = optional("lambda")


@dataclass(frozen=True, kw_only=True)
class SearchHistory(Record):
    """A search's history.json: the edge and op names every matrix is indexed by, and one record per epoch."""

    space: SpaceName
    method: Method
    seed: int
    edges: tuple[str, ...]
    ops: tuple[str, ...]  # the op of each column, or column labels where edges differ (edge_ops)
    epochs: tuple[SearchEpoch, ...]
    kinds: tuple[str, ...] | None = optional()  # DARTS space: the cell kinds its matrices are keyed by
    edge_ops: Mapping[str, tuple[tuple[str, ...], ...]] | None = optional()  # per kind, per edge, its ops (S1)

    def check(self, at: At) -> None:
        # Figures index every matrix by edge and op; a shape that does not match would mislabel lines.
        for i, record in enumerate(self.epochs):
            for key in ("alive", "iim", "alpha"):
                cells = getattr(record, key)
                if cells is not None:
                    self._check_cells(cells, at.child("epochs").child(i).child(key))

    def _check_cells(self, cells: Cells, at: At) -> None:
        if self.kinds is not None:
            if not isinstance(cells, Mapping):
                raise at.error("expected an object keyed by cell kind")
            for kind in self.kinds or ():
                if kind not in cells:
                    raise at.error(f"missing key {kind!r}")
            matrices = [(m, at.child(kind)) for kind, m in cells.items()]
        else:
            matrices = [(cells, at)]
        for matrix, where in matrices:
            if isinstance(matrix, Mapping) or len(matrix) != len(self.edges) or any(
                    len(row) != len(self.ops) for row in matrix):
                raise where.error(f"expected a {len(self.edges)}x{len(self.ops)} list of lists")


# ---------------------------------------------------------------- DARTS space: retrain and ImageNet (runs/darts/...)


@dataclass(frozen=True, kw_only=True)
class DartsRun(Record):
    """The keys every DARTS-space retrain and ImageNet metrics.json shares: who, which profile, search cost."""

    space: DartsLikeSpace
    method: Method
    seed: int
    profile: str
    paper_settings: bool
    paper_mismatches: tuple[str, ...]
    genotype: str
    genotype_file: str
    search_hours: float | None  # null: the genotype's search did not record its cost
    search_cost_unit: str | None
    epochs: int
    params_m: float
    config: Mapping[str, Any]
    train_seconds: float
    cost_hours: float
    cost_unit: str
    device_name: str | None

    def check(self, at: At) -> None:
        if self.search_hours is not None and self.search_cost_unit is None:
            raise at.error(f"key 'search_cost_unit' is null but 'search_hours' is {self.search_hours}")

    @classmethod
    def collect(cls: type[D], root: Path) -> list[D]:
        """Every ``<method>/seed_<s>/metrics.json`` under root, in (method, seed) order; unfinished runs skipped.

        A record whose method or seed disagrees with its folder is a ReportError: it would be averaged
        into the wrong row.
        """
        runs = []
        for method_dir in subdirs(root):
            for seed, seed_dir in seed_dirs(method_dir):
                path = seed_dir / "metrics.json"
                if not finished(path):
                    continue
                run = cls.read(path)
                if run.method != method_dir.name:
                    raise ReportError(f"{path}: key 'method' is {run.method!r} but the file lies under "
                                      f"{method_dir.name!r}")
                if run.seed != seed:
                    raise ReportError(f"{path}: key 'seed' is {run.seed} but the file lies under seed_{seed}")
                runs.append(run)
        return runs


@dataclass(frozen=True, kw_only=True)
class RetrainMetrics(DartsRun):
    """runs/darts/retrain/<method>/seed_<s>/metrics.json: a searched cell retrained on CIFAR-10."""

    final_test_acc: float
    final_test_error: float
    final_train_loss: float
    best_test_acc: float
    best_test_error: float
    best_epoch: int
    images_per_s_mean: float
    image_size: int
    train_images: int
    test_images: int


@dataclass(frozen=True, kw_only=True)
class SweepRetrainMetrics(RetrainMetrics):
    """runs/darts/sweep/<rate_name>/retrain/metrics.json: a retrain plus the shrink schedule of its search."""

    rate: float
    rate_label: str
    rate_name: str
    steps: int
    interval: int | None  # None: no shrinking (rate 1)
    anchor: str


@dataclass(frozen=True, kw_only=True)
class ImagenetData(Record):
    """The ImageFolder an ImageNet run trained on; ``tiny`` marks the CIFAR-made pipeline check."""

    root: str
    classes: int
    tiny: bool
    split_totals: Mapping[str, int]


@dataclass(frozen=True, kw_only=True)
class ImagenetMetrics(DartsRun):
    """runs/darts/imagenet/<method>/seed_<s>/metrics.json: a searched cell trained on ImageNet (mobile setting)."""

    top1_error: float
    top5_error: float
    madds_m: float
    madds_input: int  # MAdds are counted at this input size, whatever the training resolution
    world_size: int
    bn: str
    data: ImagenetData


@dataclass(frozen=True, kw_only=True)
class ImagenetManifest(Record):
    """data/imagenet_manifest.json: what the prepared ImageFolder holds, per split and class."""

    root: str
    tiny: bool
    classes: tuple[str, ...]
    counts: Mapping[str, Mapping[str, int]]
    split_totals: Mapping[str, int]
    total: int


@dataclass(frozen=True, kw_only=True)
class RetrainEpoch(Record):
    """One retrain epoch of history.json."""

    epoch: int
    lr: float
    drop_path: float
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    images_per_s: float
    epoch_seconds: float


@dataclass(frozen=True, kw_only=True)
class ImagenetEpoch(Record):
    """One ImageNet epoch of history.json; per-step losses only when the config records them."""

    epoch: int
    lr: float
    train_loss: float
    val_loss: float
    top1_error: float
    top5_error: float
    images_per_s: float
    epoch_seconds: float
    step_losses: tuple[float, ...] | None = optional()


@dataclass(frozen=True, kw_only=True)
class RetrainHistory(Record):
    """A retrain's history.json."""

    epochs: tuple[RetrainEpoch, ...]


@dataclass(frozen=True, kw_only=True)
class ImagenetHistory(Record):
    """An ImageNet run's history.json."""

    epochs: tuple[ImagenetEpoch, ...]


# ---------------------------------------------------------------- where records lie


def seed_dirs(parent: Path) -> list[tuple[int, Path]]:
    """(seed, folder) for each ``seed_<int>`` folder under parent, by seed; other names are not runs."""
    parent = Path(parent)
    children = parent.iterdir() if parent.is_dir() else ()
    return sorted((int(c.name[5:]), c) for c in children
                  if c.is_dir() and c.name.startswith("seed_") and c.name[5:].isdigit())


def subdirs(parent: Path) -> list[Path]:
    """The folders under parent, by name (none when parent is absent)."""
    return sorted(p for p in Path(parent).iterdir() if p.is_dir()) if Path(parent).is_dir() else []


def finished(metrics: Path) -> bool:
    """Whether a run folder holds its metrics; an unfinished run is left out with a warning, not an error."""
    if not metrics.is_file():
        log.warning("%s: no %s (run not finished?); left out of the report", metrics.parent, metrics.name)
    return metrics.is_file()
