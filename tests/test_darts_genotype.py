"""DARTS-space genotypes: validation names the bad entry, JSON round trip, shipped literature genotypes."""

import json

import pytest

from isdarts.errors import GenotypeError
from isdarts.spaces.darts.genotype import DartsGenotype, load_named_genotype, named_genotypes

NORMAL = [
    [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]],
    [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]],
    [["sep_conv_3x3", 1], ["skip_connect", 0]],
    [["skip_connect", 0], ["dil_conv_3x3", 2]],
]
REDUCE = [
    [["max_pool_3x3", 0], ["max_pool_3x3", 1]],
    [["skip_connect", 2], ["max_pool_3x3", 1]],
    [["max_pool_3x3", 0], ["skip_connect", 2]],
    [["skip_connect", 2], ["max_pool_3x3", 1]],
]


def make(normal=None, reduce=None, normal_concat=(2, 3, 4, 5), reduce_concat=(2, 3, 4, 5)) -> DartsGenotype:
    return DartsGenotype(normal or NORMAL, normal_concat, reduce or REDUCE, reduce_concat)


def with_entry(cell, node, entry, value):
    cell = json.loads(json.dumps(cell))
    cell[node][entry] = value
    return cell


def test_json_round_trip_and_normalisation_to_tuples():
    geno = make()
    data = geno.to_json()
    assert data["space"] == "darts" and data["normal"][3] == [["skip_connect", 0], ["dil_conv_3x3", 2]]
    again = DartsGenotype.from_json(json.loads(json.dumps(data)))
    assert again == geno and hash(again) == hash(geno)
    assert geno.normal[0] == (("sep_conv_3x3", 0), ("sep_conv_3x3", 1))
    assert DartsGenotype.from_json({**data, "name": "x", "seed": 3}) == geno  # metadata is ignored


def test_search_names_are_mapped_to_evaluation_names():
    normal = with_entry(NORMAL, 0, 0, ["dua_sepc_3x3", 0])
    assert make(normal=normal) == make()


def test_two_ops_from_the_same_input_are_legal():
    reduce = with_entry(REDUCE, 1, 0, ["sep_conv_5x5", 2])
    reduce = with_entry(reduce, 1, 1, ["dil_conv_5x5", 2])
    assert make(reduce=reduce).reduce[1] == (("sep_conv_5x5", 2), ("dil_conv_5x5", 2))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"normal": with_entry(NORMAL, 2, 1, ["conv_7x7", 0])}, r"normal node 2 entry 1 .*unknown op 'conv_7x7'"),
        ({"reduce": with_entry(REDUCE, 0, 1, ["max_pool_3x3", 2])}, r"reduce node 0 entry 1 .*input 2 out of range"),
        ({"normal": with_entry(NORMAL, 3, 0, ["skip_connect", -1])}, r"normal node 3 entry 0 .*input -1 out of range"),
        ({"normal": with_entry(NORMAL, 1, 0, ["skip_connect", True])}, r"normal node 1 entry 0 .*input True"),
        ({"normal": with_entry(NORMAL, 1, 0, "skip_connect")}, r"normal node 1 entry 0 .*not an \(op name"),
        ({"reduce": [*REDUCE[:3], [["skip_connect", 2]]]}, r"reduce node 3: expected 2 .*got 1"),
        ({"reduce": [*REDUCE[:3], [*REDUCE[3], ["skip_connect", 1]]]}, r"reduce node 3: expected 2 .*got 3"),
        ({"normal": NORMAL[:3]}, r"normal: expected 4 nodes .*got 3 node"),
        ({"normal_concat": (2, 3, 6)}, r"normal_concat: entry 6 is not a node state in 2..5"),
        ({"reduce_concat": (2, 2, 3)}, r"reduce_concat: repeated state"),
        ({"reduce_concat": ()}, r"reduce_concat: expected a non-empty list"),
    ],
)
def test_validation_errors_name_the_offending_entry(kwargs, message):
    with pytest.raises(GenotypeError, match=message):
        make(**kwargs)


def test_from_json_rejects_other_spaces_and_missing_keys():
    data = make().to_json()
    with pytest.raises(GenotypeError, match="'space' must be 'darts'"):
        DartsGenotype.from_json({**data, "space": "nb201"})
    del data["reduce_concat"]
    with pytest.raises(GenotypeError, match="missing key.*reduce_concat"):
        DartsGenotype.from_json(data)


def test_named_genotypes_load():
    assert {"DARTS_V1", "DARTS_V2", "ISDARTS"} <= set(named_genotypes())
    assert load_named_genotype("darts_v2") == make()
    isdarts = load_named_genotype("ISDARTS")
    # The official IS-DARTS reduction cell reads input 2 twice in node 1 (spec §2).
    assert isdarts.reduce[1] == (("dil_conv_5x5", 2), ("sep_conv_5x5", 2))
    assert isdarts.normal[0] == (("sep_conv_5x5", 0), ("sep_conv_3x3", 1))
    v1 = load_named_genotype("DARTS_V1")
    assert v1.reduce[3] == (("skip_connect", 2), ("avg_pool_3x3", 0))
    with pytest.raises(GenotypeError, match="available: DARTS_V1"):
        load_named_genotype("NASNet")
