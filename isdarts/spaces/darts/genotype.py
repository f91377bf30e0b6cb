"""DARTS-space genotype: a normal and a reduction cell, each 4 nodes of two (op, input) pairs.

Node k of a cell is state k+2; input j=0 is s0 (the output of cell k-2), j=1 is s1 (cell k-1), and
j>=2 is node j-2. Two ops of one node may read the same input (IS-DARTS's reduction cell does), so no
"distinct inputs" rule is enforced. The genotype is the hand-off between search and retraining; the
literature's genotypes ship as JSON data under ``isdarts/spaces/genotypes``.

A *sparse* genotype (`sparse=True`, JSON ``"sparse": true``) holds FairDARTS's cells (FAMILY.md "FairDARTS",
its `DCOCell`): a node sums any number of (op, input) entries, none included. A node with no entry that
reads a present state does not exist (entries reading it are dead), and the cell concatenates its present
nodes only, so its concat is fixed by its nodes. A sparse cell with no present node has no output and is
rejected (GenotypeError). Genotypes without the flag keep exactly two pairs per node.
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
    "present_states",
]

DARTS_NUM_NODES = 4
INPUTS_PER_NODE = 2
DARTS_DEFAULT_CONCAT: tuple[int, ...] = tuple(range(2, 2 + DARTS_NUM_NODES))
_CELL_KINDS = ("normal", "reduce")
PARAM_FREE_OPS = frozenset({"none", "skip_connect", "avg_pool_3x3", "max_pool_3x3", "noise"})
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


def _check_cell(kind: str, cell: Any, sparse: bool = False) -> Cell:
    """Validate one cell's node list and return it as nested tuples with evaluation op names (a sparse cell's
    nodes may hold any number of pairs)."""
    if not _is_seq(cell) or len(cell) != DARTS_NUM_NODES:
        got = f"{len(cell)} node(s)" if _is_seq(cell) else repr(cell)
        pairs = "(op, input) pairs each" if sparse else f"{INPUTS_PER_NODE} (op, input) pairs"
        raise GenotypeError(f"{kind}: expected {DARTS_NUM_NODES} nodes of {pairs}, got {got}")
    nodes: list[Node] = []
    for k, node in enumerate(cell):
        where = f"{kind} node {k}"
        if not _is_seq(node) or (not sparse and len(node) != INPUTS_PER_NODE):
            got = f"{len(node)}: {node!r}" if _is_seq(node) else repr(node)
            wanted = "a list of (op, input) pairs" if sparse else f"{INPUTS_PER_NODE} (op, input) pairs"
            raise GenotypeError(f"{where}: expected {wanted}, got {got}")
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


def present_states(cell: Cell) -> tuple[int, ...]:
    """The node states of a sparse cell that exist: nodes with an entry reading s0, s1 or a present node."""
    present = {0, 1}
    for k, node in enumerate(cell):
        if any(j in present for _, j in node):
            present.add(k + 2)
    return tuple(sorted(present - {0, 1}))


def _check_sparse_concat(kind: str, cell: Cell, concat: Any) -> tuple[int, ...]:
    """A sparse cell's concat: exactly its present nodes; a cell without one is refused."""
    present = present_states(cell)
    if not present:
        raise GenotypeError(
            f"{kind}: no node of this sparse cell exists (every node is empty or reads only empty nodes), so the "
            "cell has no output; a FairDARTS threshold parse left it empty (lower its threshold or search longer)"
        )
    if not _is_seq(concat) or tuple(concat) != present:
        raise GenotypeError(
            f"{kind}_concat: a sparse cell concatenates exactly its present nodes {list(present)}, got {concat!r}"
        )
    return present


@dataclass(frozen=True)
class DartsGenotype:
    """Normal and reduction cells (evaluation op names) and the node states each cell concatenates;
    `sparse`: FairDARTS's cells (see the module docstring)."""

    normal: Cell
    normal_concat: tuple[int, ...]
    reduce: Cell
    reduce_concat: tuple[int, ...]
    sparse: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.sparse, bool):
            raise GenotypeError(f"sparse must be true or false, got {self.sparse!r}")
        # Normalise lists to tuples (and search names to evaluation names) so equal cells compare equal.
        for kind in _CELL_KINDS:
            cell = _check_cell(kind, getattr(self, kind), self.sparse)
            concat = getattr(self, f"{kind}_concat")
            if self.sparse:
                concat = _check_sparse_concat(kind, cell, concat)
            object.__setattr__(self, kind, cell)
            object.__setattr__(self, f"{kind}_concat", _check_concat(f"{kind}_concat", concat))

    @classmethod
    def sparse_cells(cls, normal: Any, reduce: Any) -> DartsGenotype:
        """A sparse genotype of two cells, each concatenating its present nodes (a GenotypeError if a cell has
        none)."""
        concats = []
        for kind, cell in (("normal", normal), ("reduce", reduce)):
            checked = _check_cell(kind, cell, sparse=True)
            concats.append(_check_sparse_concat(kind, checked, present_states(checked)))
        return cls(normal, concats[0], reduce, concats[1], sparse=True)

    def live_nodes(self, kind: str) -> Cell:
        """Per node of the cell, the entries the network runs: those reading a present state (all of them in a
        non-sparse cell); an absent node has none."""
        nodes, concat = self.cell(kind)
        if not self.sparse:
            return nodes
        present = {0, 1, *concat}
        return tuple(tuple((op, j) for op, j in node if j in present) if k + 2 in present else ()
                     for k, node in enumerate(nodes))

    def cell(self, kind: str) -> tuple[Cell, tuple[int, ...]]:
        """(nodes, concat) of the ``"normal"`` or ``"reduce"`` cell."""
        if kind == "normal":
            return self.normal, self.normal_concat
        if kind == "reduce":
            return self.reduce, self.reduce_concat
        raise ValueError(f"cell kind must be 'normal' or 'reduce', got {kind!r}")

    def skips_per_node(self, kind: str) -> list[int]:
        """Per node of the cell, how many of its inputs (two, unless sparse) are skip connections (DARTS
        collapse drives the normal cell's towards 2)."""
        return [sum(op == "skip_connect" for op, _ in node) for node in self.cell(kind)[0]]

    def param_free_per_node(self, kind: str) -> list[int]:
        """Per node of the cell, how many of its inputs are parameter-free (skip, pools, none)."""
        return [sum(op in PARAM_FREE_OPS for op, _ in node) for node in self.cell(kind)[0]]

    # ----------------------------------------------------------------- JSON
    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict: ``{"space": "darts", "normal": [[[op, j], [op, j]], ...], "normal_concat": ...}``,
        with ``"sparse": true`` for a sparse genotype only (so other genotypes' JSON is as before)."""
        out: dict[str, Any] = {"space": "darts"}
        for kind in _CELL_KINDS:
            nodes, concat = self.cell(kind)
            out[kind] = [[[op, j] for op, j in node] for node in nodes]
            out[f"{kind}_concat"] = list(concat)
        if self.sparse:
            out["sparse"] = True
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
        return cls(**{k: data[k] for k in keys}, sparse=data.get("sparse", False))

    def __str__(self) -> str:
        def cell_str(nodes: Cell) -> str:
            return " + ".join("|" + "|".join(f"{op}~{j}" for op, j in node) + "|" for node in nodes)

        return (
            ("sparse " if self.sparse else "")
            + f"normal: {cell_str(self.normal)} concat {list(self.normal_concat)}; "
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
