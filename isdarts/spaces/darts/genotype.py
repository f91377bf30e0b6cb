"""DARTS-space genotype: a normal and a reduction cell, each 4 nodes of two (op, input) pairs.

Node k of a cell is state k+2; input j=0 is s0 (the output of cell k-2), j=1 is s1 (cell k-1), and
j>=2 is node j-2. Two ops of one node may read the same input (IS-DARTS's reduction cell does), so no
"distinct inputs" rule is enforced. The genotype is the hand-off between search and retraining; the
literature's genotypes ship as JSON data under ``isdarts/spaces/genotypes``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from isdarts.errors import GenotypeError
from isdarts.spaces.darts.ops import DARTS_EVAL_OPS, SEARCH_TO_EVAL

__all__ = [
    "DARTS_DEFAULT_CONCAT",
    "DARTS_NUM_NODES",
    "INPUTS_PER_NODE",
    "PARAM_FREE_OPS",
    "Cell",
    "DartsGenotype",
    "load_named_genotype",
    "named_genotypes",
]

DARTS_NUM_NODES = 4
INPUTS_PER_NODE = 2
DARTS_DEFAULT_CONCAT: tuple[int, ...] = tuple(range(2, 2 + DARTS_NUM_NODES))
_CELL_KINDS = ("normal", "reduce")
PARAM_FREE_OPS = frozenset({"none", "skip_connect", "avg_pool_3x3", "max_pool_3x3"})
_GENOTYPE_PACKAGE = "isdarts.spaces"
_GENOTYPE_DIR = "genotypes"

Pair = tuple[str, int]
Node = tuple[Pair, ...]
Cell = tuple[Node, ...]


def _is_int(value: Any) -> bool:
    # bool is an int subclass; True as "input 1" would hide a bug upstream.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_seq(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)


def _check_cell(kind: str, cell: Any) -> Cell:
    """Validate one cell's node list and return it as nested tuples with evaluation op names."""
    if not _is_seq(cell) or len(cell) != DARTS_NUM_NODES:
        got = f"{len(cell)} node(s)" if _is_seq(cell) else repr(cell)
        raise GenotypeError(
            f"{kind}: expected {DARTS_NUM_NODES} nodes of {INPUTS_PER_NODE} (op, input) pairs, got {got}"
        )
    nodes: list[Node] = []
    for k, node in enumerate(cell):
        where = f"{kind} node {k}"
        if not _is_seq(node) or len(node) != INPUTS_PER_NODE:
            got = f"{len(node)}: {node!r}" if _is_seq(node) else repr(node)
            raise GenotypeError(f"{where}: expected {INPUTS_PER_NODE} (op, input) pairs, got {got}")
        pairs: list[Pair] = []
        for e, entry in enumerate(node):
            at = f"{where} entry {e} {entry!r}"
            if not _is_seq(entry) or len(entry) != 2 or not isinstance(entry[0], str):
                raise GenotypeError(f"{at}: not an (op name, input index) pair")
            op, j = entry
            op = SEARCH_TO_EVAL.get(op, op)  # accept AutoDL search names, store DARTS names
            if op not in DARTS_EVAL_OPS:
                raise GenotypeError(
                    f"{at}: unknown op {entry[0]!r}; allowed ops: {', '.join(DARTS_EVAL_OPS)} "
                    f"(or their search names {', '.join(k for k, v in SEARCH_TO_EVAL.items() if k != v)})"
                )
            if not _is_int(j) or not 0 <= j < 2 + k:
                raise GenotypeError(
                    f"{at}: input {j!r} out of range; node {k} reads inputs 0..{1 + k} "
                    "(0 = s0, 1 = s1, j >= 2 = node j-2)"
                )
            pairs.append((op, j))
        nodes.append(tuple(pairs))
    return tuple(nodes)


def _check_concat(key: str, concat: Any) -> tuple[int, ...]:
    allowed = f"{DARTS_DEFAULT_CONCAT[0]}..{DARTS_DEFAULT_CONCAT[-1]}"
    if not _is_seq(concat) or len(concat) == 0:
        raise GenotypeError(f"{key}: expected a non-empty list of node states in {allowed}, got {concat!r}")
    for s in concat:
        if not _is_int(s) or s not in DARTS_DEFAULT_CONCAT:
            raise GenotypeError(f"{key}: entry {s!r} is not a node state in {allowed} (got {list(concat)!r})")
    if len(set(concat)) != len(concat):
        raise GenotypeError(f"{key}: repeated state in {list(concat)!r}")
    return tuple(concat)


@dataclass(frozen=True)
class DartsGenotype:
    """Normal and reduction cells (evaluation op names) and the node states each cell concatenates."""

    normal: Cell
    normal_concat: tuple[int, ...]
    reduce: Cell
    reduce_concat: tuple[int, ...]

    def __post_init__(self) -> None:
        # Normalise lists to tuples (and search names to evaluation names) so equal cells compare equal.
        object.__setattr__(self, "normal", _check_cell("normal", self.normal))
        object.__setattr__(self, "normal_concat", _check_concat("normal_concat", self.normal_concat))
        object.__setattr__(self, "reduce", _check_cell("reduce", self.reduce))
        object.__setattr__(self, "reduce_concat", _check_concat("reduce_concat", self.reduce_concat))

    def cell(self, kind: str) -> tuple[Cell, tuple[int, ...]]:
        """(nodes, concat) of the ``"normal"`` or ``"reduce"`` cell."""
        if kind == "normal":
            return self.normal, self.normal_concat
        if kind == "reduce":
            return self.reduce, self.reduce_concat
        raise ValueError(f"cell kind must be 'normal' or 'reduce', got {kind!r}")

    def skips_per_node(self, kind: str) -> list[int]:
        """Per node of the cell, how many of its two inputs are skip connections (DARTS collapse drives
        the normal cell's towards 2)."""
        return [sum(op == "skip_connect" for op, _ in node) for node in self.cell(kind)[0]]

    def param_free_per_node(self, kind: str) -> list[int]:
        """Per node of the cell, how many of its two inputs are parameter-free (skip, pools, none)."""
        return [sum(op in PARAM_FREE_OPS for op, _ in node) for node in self.cell(kind)[0]]

    # ----------------------------------------------------------------- JSON
    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict: ``{"space": "darts", "normal": [[[op, j], [op, j]], ...], "normal_concat": ...}``."""
        out: dict[str, Any] = {"space": "darts"}
        for kind in _CELL_KINDS:
            nodes, concat = self.cell(kind)
            out[kind] = [[[op, j] for op, j in node] for node in nodes]
            out[f"{kind}_concat"] = list(concat)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DartsGenotype:
        """Inverse of :meth:`to_json`. Other keys (name, source, seed...) are metadata and ignored."""
        if not isinstance(data, Mapping):
            raise GenotypeError(f"genotype JSON must be an object, got {type(data).__name__}")
        if data.get("space") != "darts":
            raise GenotypeError(f"key 'space' must be 'darts', got {data.get('space')!r}")
        keys = ("normal", "normal_concat", "reduce", "reduce_concat")
        missing = [k for k in keys if k not in data]
        if missing:
            raise GenotypeError(f"genotype JSON is missing key(s) {missing}")
        return cls(**{k: data[k] for k in keys})

    def __str__(self) -> str:
        def cell_str(nodes: Cell) -> str:
            return " + ".join("|" + "|".join(f"{op}~{j}" for op, j in node) + "|" for node in nodes)

        return (
            f"normal: {cell_str(self.normal)} concat {list(self.normal_concat)}; "
            f"reduce: {cell_str(self.reduce)} concat {list(self.reduce_concat)}"
        )


def named_genotypes() -> tuple[str, ...]:
    """Names of the genotypes shipped with the package (e.g. ``DARTS_V2``, ``ISDARTS``)."""
    folder = resources.files(_GENOTYPE_PACKAGE).joinpath(_GENOTYPE_DIR)
    return tuple(sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json")))


def load_named_genotype(name: str) -> DartsGenotype:
    """A literature genotype by name (case-insensitive), read from the package data."""
    names = named_genotypes()
    match = [n for n in names if n.upper() == name.upper()]
    if not match:
        raise GenotypeError(f"no shipped genotype named {name!r}; available: {', '.join(names)}")
    text = resources.files(_GENOTYPE_PACKAGE).joinpath(_GENOTYPE_DIR).joinpath(f"{match[0]}.json").read_text("utf-8")
    return DartsGenotype.from_json(json.loads(text))
