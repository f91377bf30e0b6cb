"""NB201 genotype: parsing, serialising and the messages for bad input."""

from __future__ import annotations

import csv
import json

import pytest

from isdarts.benchmark.nb201 import default_table_path
from isdarts.spaces.nb201.genotype import (
    NB201_EDGES,
    NB201_NUM_NODES,
    NB201_OPS,
    GenotypeError,
    Nb201Genotype,
    all_nb201_genotypes,
)

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"


def test_constants_follow_the_nb201_order() -> None:
    assert NB201_OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    assert NB201_EDGES == ("1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2")
    assert list(NB201_EDGES) == sorted(NB201_EDGES)
    assert NB201_NUM_NODES == 4


def test_parse_best_cell() -> None:
    geno = Nb201Genotype.from_arch_str(BEST)
    assert geno.ops == ("nor_conv_3x3",) * 3 + ("skip_connect", "nor_conv_3x3", "nor_conv_3x3")
    assert geno.op_indices() == (3, 3, 3, 1, 3, 3)
    assert geno.edges()["3<-0"] == "skip_connect"
    assert geno.to_arch_str() == BEST
    assert str(geno) == BEST
    assert geno.skip_count() == 1
    assert geno.param_free_count() == 1


def test_all_skip_diagnostics() -> None:
    geno = Nb201Genotype.from_arch_str(ALL_SKIP)
    assert geno.skip_count() == 6
    assert geno.param_free_count() == 6
    mixed = Nb201Genotype(("none", "skip_connect", "avg_pool_3x3", "nor_conv_1x1", "nor_conv_3x3", "none"))
    assert mixed.skip_count() == 1
    assert mixed.param_free_count() == 4


def test_round_trip_every_cell() -> None:
    cells = list(all_nb201_genotypes())
    assert len(cells) == 5**6 == 15_625
    assert len(set(cells)) == 15_625
    strings = set()
    for geno in cells:
        s = geno.to_arch_str()
        strings.add(s)
        assert Nb201Genotype.from_arch_str(s) == geno
        assert Nb201Genotype.from_op_indices(geno.op_indices()) == geno
        assert Nb201Genotype.from_json(json.loads(json.dumps(geno.to_json()))) == geno
    assert len(strings) == 15_625


def test_every_shipped_arch_str_parses_and_reserialises_identically() -> None:
    with default_table_path().open(newline="", encoding="utf-8") as fh:
        arch_strs = [row["arch_str"] for row in csv.DictReader(fh)]
    assert len(arch_strs) == 15_625
    for s in arch_strs:
        assert Nb201Genotype.from_arch_str(s).to_arch_str() == s
    assert {Nb201Genotype.from_arch_str(s) for s in arch_strs} == set(all_nb201_genotypes())


def test_ops_list_is_normalised_to_tuple() -> None:
    geno = Nb201Genotype(["none"] * 6)  # type: ignore[arg-type]
    assert geno.ops == ("none",) * 6
    assert hash(geno) == hash(Nb201Genotype(("none",) * 6))


@pytest.mark.parametrize(
    ("ops", "needles"),
    [
        (("none",) * 5, ["expected 6 ops", "got 5"]),
        ("none", ["sequence"]),
        (("none", "none", "conv_5x5", "none", "none", "none"), ["edge 2<-1", "'conv_5x5'", "avg_pool_3x3"]),
    ],
)
def test_constructor_rejects_bad_ops(ops: object, needles: list[str]) -> None:
    with pytest.raises(GenotypeError) as err:
        Nb201Genotype(ops)  # type: ignore[arg-type]
    for needle in needles:
        assert needle in str(err.value)


BAD_STRINGS = [
    # unknown op: names op, node, input, edge, allowed ops
    (
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|sep_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        ["unknown op 'sep_conv_3x3'", "edge 2<-1", "node 2", "input 1", "none, skip_connect, nor_conv_1x1"],
    ),
    # input index that node 2 cannot read
    (
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~3|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        ["node 2", "input ~3", "edge 2<-3", "0..1"],
    ),
    # out of order
    (
        "|nor_conv_3x3~0|+|nor_conv_3x3~1|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        ["node 2", "out of order", "~1, ~0"],
    ),
    # duplicated
    (
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~0|nor_conv_3x3~2|",
        ["node 3", "~0 is listed twice"],
    ),
    # missing input
    (
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~2|",
        ["node 3", "has 2 input(s), expected 3", "missing ~1"],
    ),
    # wrong number of nodes
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|", ["expected 3 nodes", "got 2"]),
    (BEST + "+|none~0|none~1|none~2|none~3|", ["expected 3 nodes", "got 4"]),
    # malformed entries
    (
        "|nor_conv_3x3|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        ["node 1", "'nor_conv_3x3'", "op~input"],
    ),
    (
        "|nor_conv_3x3~a|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        ["node 1", "'a'", "not a node index"],
    ),
    (
        "|nor_conv_3x3~00|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        ["node 1", "'00'", "not a node index"],
    ),
    (
        "nor_conv_3x3~0+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        ["node 1", "start and end with '|'"],
    ),
    ("", ["expected 3 nodes", "got 1"]),
]


@pytest.mark.parametrize(("arch_str", "needles"), BAD_STRINGS)
def test_bad_arch_strings_name_the_problem(arch_str: str, needles: list[str]) -> None:
    with pytest.raises(GenotypeError) as err:
        Nb201Genotype.from_arch_str(arch_str)
    for needle in needles:
        assert needle in str(err.value), str(err.value)


def test_arch_str_must_be_a_string() -> None:
    with pytest.raises(GenotypeError, match="must be a str"):
        Nb201Genotype.from_arch_str(42)  # type: ignore[arg-type]


def test_genotype_error_is_a_value_error() -> None:
    assert issubclass(GenotypeError, ValueError)


@pytest.mark.parametrize(
    ("indices", "needles"),
    [
        ([0, 1, 2, 3, 4], ["expected 6 op indices"]),
        ([0, 1, 2, 3, 4, 5], ["edge 3<-2", "5", "0..4"]),
        ([0, 1, True, 3, 4, 0], ["edge 2<-1", "True"]),
        ([0, 1, 2.0, 3, 4, 0], ["edge 2<-1"]),
    ],
)
def test_from_op_indices_rejects_bad_indices(indices: list[object], needles: list[str]) -> None:
    with pytest.raises(GenotypeError) as err:
        Nb201Genotype.from_op_indices(indices)  # type: ignore[arg-type]
    for needle in needles:
        assert needle in str(err.value)


def test_to_json_layout() -> None:
    data = Nb201Genotype.from_arch_str(BEST).to_json()
    assert data == {
        "space": "nb201",
        "arch_str": BEST,
        "edges": {
            "1<-0": "nor_conv_3x3",
            "2<-0": "nor_conv_3x3",
            "2<-1": "nor_conv_3x3",
            "3<-0": "skip_connect",
            "3<-1": "nor_conv_3x3",
            "3<-2": "nor_conv_3x3",
        },
    }
    assert list(data["edges"]) == list(NB201_EDGES)


def test_from_json_accepts_edges_or_arch_str_alone() -> None:
    geno = Nb201Genotype.from_arch_str(BEST)
    full = geno.to_json()
    assert Nb201Genotype.from_json({"space": "nb201", "arch_str": BEST}) == geno
    assert Nb201Genotype.from_json({"space": "nb201", "edges": full["edges"]}) == geno


def test_from_json_ignores_metadata_keys() -> None:
    data = {**Nb201Genotype.from_arch_str(BEST).to_json(), "method": "isdarts", "seed": 2}
    assert Nb201Genotype.from_json(data) == Nb201Genotype.from_arch_str(BEST)


def _json_with(**changes: object) -> dict[str, object]:
    data = Nb201Genotype.from_arch_str(BEST).to_json()
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("data", "needles"),
    [
        (_json_with(space="darts"), ["'space'", "'darts'"]),
        ({"space": "nb201"}, ["'edges' or 'arch_str'"]),
        (
            {"space": "nb201", "edges": {**_json_with()["edges"], "3<-3": "none"}},  # type: ignore[dict-item]
            ["unknown edge key", "'3<-3'"],
        ),
        (
            {"space": "nb201", "edges": {k: "none" for k in NB201_EDGES if k != "2<-1"}},
            ["missing edge key", "'2<-1'"],
        ),
        (
            {"space": "nb201", "edges": {**{k: "none" for k in NB201_EDGES}, "3<-1": "conv"}},
            ["edge 3<-1", "'conv'"],
        ),
        (_json_with(arch_str=ALL_SKIP), ["'arch_str'", "disagrees", "'edges'"]),
        (_json_with(edges=["none"] * 6), ["'edges' must be an object"]),
        (["not", "a", "dict"], ["must be an object"]),
    ],
)
def test_from_json_names_the_bad_key(data: object, needles: list[str]) -> None:
    with pytest.raises(GenotypeError) as err:
        Nb201Genotype.from_json(data)  # type: ignore[arg-type]
    for needle in needles:
        assert needle in str(err.value), str(err.value)
