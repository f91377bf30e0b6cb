"""NAS-Bench-201 cell genotype: six ops, one per edge, and its API string form.

The genotype is the hand-off between search, benchmark lookup and retraining, so every
way in (API string, op indices, JSON) validates and names exactly what is wrong.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from isdarts.errors import GenotypeError

# Index order matters: mask rows/columns and alpha columns follow it (ALGORITHMS.md §1).
NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NB201_EDGES: tuple[str, ...] = ("1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2")
NB201_NUM_NODES = 4

_PARAM_FREE_OPS = frozenset({"none", "skip_connect", "avg_pool_3x3"})
_ALLOWED = ", ".join(NB201_OPS)


def _node_str(ops: Sequence[str]) -> str:
    """``|op0~0|op1~1|...|``: one node of the API string, inputs in order."""
    return "|" + "|".join(f"{op}~{j}" for j, op in enumerate(ops)) + "|"


# NB201_EDGES is sorted node-major, so node i owns the slice of i consecutive edges with inputs 0..i-1,
# which is also the order the API string lists them in.
_NODE_SLICES: tuple[tuple[int, int], ...] = tuple(
    (n * (n - 1) // 2, n * (n + 1) // 2) for n in range(1, NB201_NUM_NODES)
)
# Every well-formed node string -> its ops (5 + 25 + 125 entries); a dict hit skips the diagnostic parser.
_VALID_NODES: tuple[dict[str, tuple[str, ...]], ...] = tuple(
    {_node_str(combo): combo for combo in itertools.product(NB201_OPS, repeat=n)}
    for n in range(1, NB201_NUM_NODES)
)


def _edge_key(node: int, inp: int) -> str:
    return f"{node}<-{inp}"


@dataclass(frozen=True)
class Nb201Genotype:
    """One NB201 cell: ``ops[k]`` is the op on edge ``NB201_EDGES[k]``."""

    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        ops = self.ops
        # A bare string is a Sequence too; reject it rather than split it into characters.
        if isinstance(ops, str) or not isinstance(ops, Sequence):
            raise GenotypeError(f"ops must be a sequence of {len(NB201_EDGES)} op names, got {ops!r}")
        if len(ops) != len(NB201_EDGES):
            raise GenotypeError(
                f"expected {len(NB201_EDGES)} ops (one per edge {', '.join(NB201_EDGES)}), got {len(ops)}: "
                f"{list(ops)!r}"
            )
        for edge, op in zip(NB201_EDGES, ops, strict=True):
            if op not in NB201_OPS:
                raise GenotypeError(f"edge {edge}: unknown op {op!r}; allowed ops: {_ALLOWED}")
        # Normalise lists to a tuple so equal cells hash equal.
        object.__setattr__(self, "ops", tuple(ops))

    # ----------------------------------------------------------------- API string
    @classmethod
    def from_arch_str(cls, arch_str: str) -> Nb201Genotype:
        """Parse ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` (node i lists inputs 0..i-1 in order)."""
        if not isinstance(arch_str, str):
            raise GenotypeError(f"arch string must be a str, got {type(arch_str).__name__}")
        s = arch_str.strip()
        nodes = s.split("+")
        if len(nodes) != NB201_NUM_NODES - 1:
            raise GenotypeError(
                f"expected {NB201_NUM_NODES - 1} nodes separated by '+', got {len(nodes)} in {arch_str!r}"
            )
        ops: list[str] = []
        for node, node_str in enumerate(nodes, start=1):
            node_ops = _VALID_NODES[node - 1].get(node_str)
            if node_ops is None:  # slow path: find out exactly what is wrong
                node_ops = tuple(op for _, op in _parse_node(node, node_str, arch_str))
            ops.extend(node_ops)
        return cls(tuple(ops))

    def to_arch_str(self) -> str:
        """The NB201 API string, e.g. ``|nor_conv_3x3~0|+|...|``."""
        return "+".join(_node_str(self.ops[lo:hi]) for lo, hi in _NODE_SLICES)

    def __str__(self) -> str:
        return self.to_arch_str()

    # ----------------------------------------------------------------- indices
    @classmethod
    def from_op_indices(cls, indices: Sequence[int]) -> Nb201Genotype:
        """Build from six integers into ``NB201_OPS`` (edge order as ``NB201_EDGES``)."""
        if isinstance(indices, str) or not isinstance(indices, Sequence) or len(indices) != len(NB201_EDGES):
            raise GenotypeError(f"expected {len(NB201_EDGES)} op indices, got {indices!r}")
        ops = []
        for edge, idx in zip(NB201_EDGES, indices, strict=True):
            # bool is an int subclass; True as "skip_connect" would hide a bug upstream.
            if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < len(NB201_OPS):
                raise GenotypeError(
                    f"edge {edge}: op index {idx!r} is not an int in 0..{len(NB201_OPS) - 1} "
                    f"(ops: {_ALLOWED})"
                )
            ops.append(NB201_OPS[idx])
        return cls(tuple(ops))

    def op_indices(self) -> tuple[int, ...]:
        """Indices into ``NB201_OPS``, one per edge."""
        return tuple(NB201_OPS.index(op) for op in self.ops)

    # ----------------------------------------------------------------- JSON
    def edges(self) -> dict[str, str]:
        """``{"1<-0": op, ...}`` in edge order."""
        return dict(zip(NB201_EDGES, self.ops, strict=True))

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict: ``{"space": "nb201", "arch_str": ..., "edges": {...}}``."""
        return {"space": "nb201", "arch_str": self.to_arch_str(), "edges": self.edges()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Nb201Genotype:
        """Inverse of :meth:`to_json`; ``edges`` or ``arch_str`` may be given alone, both must agree.

        Other keys (e.g. ``method``, ``seed`` written beside the cell by a search) are metadata
        and ignored, so a search's genotype.json reads back directly.
        """
        if not isinstance(data, Mapping):
            raise GenotypeError(f"genotype JSON must be an object, got {type(data).__name__}")
        if data.get("space") != "nb201":
            raise GenotypeError(f"key 'space' must be 'nb201', got {data.get('space')!r}")
        if "edges" not in data and "arch_str" not in data:
            raise GenotypeError("genotype JSON needs key 'edges' or 'arch_str'")
        if "edges" not in data:
            return cls.from_arch_str(data["arch_str"])
        edges = data["edges"]
        if not isinstance(edges, Mapping):
            raise GenotypeError(f"key 'edges' must be an object, got {type(edges).__name__}")
        bad = [key for key in edges if key not in NB201_EDGES]
        if bad:
            raise GenotypeError(f"unknown edge key(s) in 'edges': {bad}; allowed: {', '.join(NB201_EDGES)}")
        missing = [key for key in NB201_EDGES if key not in edges]
        if missing:
            raise GenotypeError(f"missing edge key(s) in 'edges': {missing}")
        geno = cls(tuple(edges[key] for key in NB201_EDGES))
        if "arch_str" in data and cls.from_arch_str(data["arch_str"]) != geno:
            raise GenotypeError(
                f"key 'arch_str' {data['arch_str']!r} disagrees with key 'edges' ({geno.to_arch_str()!r})"
            )
        return geno

    # ----------------------------------------------------------------- diagnostics
    def skip_count(self) -> int:
        """Number of skip_connect edges; DARTS collapse drives this towards 6."""
        return sum(op == "skip_connect" for op in self.ops)

    def param_free_count(self) -> int:
        """Number of edges with a parameter-free op (none, skip_connect, avg_pool_3x3)."""
        return sum(op in _PARAM_FREE_OPS for op in self.ops)

    def all_skip(self) -> bool:
        """Every edge is skip_connect: DARTS's collapse cell (54.30 CIFAR-10 test in the benchmark)."""
        return self.skip_count() == len(self.ops)

    def none_cut(self) -> bool:
        """`none` edges cut every path from the cell's input to its output: the cell outputs zeros whatever its
        input, and the network is a constant (10.00 in the benchmark)."""
        reached = {0}
        for node, (start, stop) in enumerate(_NODE_SLICES, start=1):
            if any(op != "none" and inp in reached for inp, op in enumerate(self.ops[start:stop])):
                reached.add(node)
        return NB201_NUM_NODES - 1 not in reached


def _parse_node(node: int, node_str: str, arch_str: str) -> list[tuple[int, str]]:
    """Parse one ``|op~0|op~1|`` node; its inputs must be exactly 0..node-1, in order."""
    where = f"node {node} ({node_str!r} in {arch_str!r})"
    expected = ", ".join(f"~{j}" for j in range(node))
    if len(node_str) < 2 or not (node_str.startswith("|") and node_str.endswith("|")):
        raise GenotypeError(f"{where}: must start and end with '|'")
    entries: list[tuple[int, str]] = []
    for token in node_str[1:-1].split("|"):
        if token.count("~") != 1:
            raise GenotypeError(f"{where}: entry {token!r} is not of the form 'op~input'")
        op, inp_str = token.split("~")
        # ASCII digits without leading zeros: the parsed cell must print back to the same text.
        if not (inp_str.isascii() and inp_str.isdigit() and str(int(inp_str)) == inp_str):
            raise GenotypeError(f"{where}: input {inp_str!r} of entry {token!r} is not a node index")
        inp = int(inp_str)
        if inp >= node:
            raise GenotypeError(
                f"{where}: input ~{inp} (edge {_edge_key(node, inp)}) is not in the cell; "
                f"node {node} reads only nodes 0..{node - 1} ({expected})"
            )
        if any(inp == seen for seen, _ in entries):
            raise GenotypeError(f"{where}: input ~{inp} is listed twice (expected {expected} once each)")
        entries.append((inp, op))
    inputs = [inp for inp, _ in entries]
    missing = [f"~{j}" for j in range(node) if j not in inputs]
    if missing:
        raise GenotypeError(
            f"{where}: has {len(entries)} input(s), expected {node} ({expected}); "
            f"missing {', '.join(missing)}"
        )
    if inputs != sorted(inputs):
        found = ", ".join(f"~{j}" for j in inputs)
        raise GenotypeError(f"{where}: inputs out of order ({found}); expected {expected}")
    for inp, op in entries:
        if op not in NB201_OPS:
            raise GenotypeError(
                f"{where}: unknown op {op!r} on edge {_edge_key(node, inp)} (node {node}, input {inp}); "
                f"allowed ops: {_ALLOWED}"
            )
    return entries


def all_nb201_genotypes() -> Iterator[Nb201Genotype]:
    """All 5**6 = 15,625 NB201 cells, in lexicographic order of their op indices."""
    for indices in itertools.product(range(len(NB201_OPS)), repeat=len(NB201_EDGES)):
        yield Nb201Genotype(tuple(NB201_OPS[i] for i in indices))
