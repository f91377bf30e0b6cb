"""The DARTS-space supernet: structure, masking (masked ops never run), mask persistence, shrinking."""

from collections import Counter

import pytest
import torch
from fakes import RecordingProbe

from isdarts.errors import GenotypeError
from isdarts.search.shrink import shrink_step
from isdarts.spaces.darts.genotype import DartsGenotype
from isdarts.spaces.darts.ops import DARTS_EVAL_OPS, DARTS_SEARCH_OPS, SEARCH_TO_EVAL
from isdarts.spaces.darts.space import SPACE
from isdarts.spaces.darts.supernet import (
    DARTS_EDGES,
    NONE_OP,
    NUM_EDGES,
    NUM_OPS,
    DartsSupernet,
    darts_genotype_from_masks,
    darts_node_subsets,
)

X = torch.randn(2, 3, 16, 16)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny() -> DartsSupernet:
    return DartsSupernet(channels=4, cells_per_stage=1)


def count_op_calls(model: DartsSupernet) -> Counter:
    """(kind, cell index within kind, edge, op) -> number of forward calls."""
    calls: Counter = Counter()
    seen: Counter = Counter()
    for cell in model.cells:
        index = seen[cell.kind]
        seen[cell.kind] += 1
        for e, ops in enumerate(cell.edges):
            for o, op in enumerate(ops):
                op.register_forward_hook(lambda *_a, key=(cell.kind, index, e, o): calls.update([key]))
    return calls


def test_macro_structure_and_output_shapes():
    with torch.device("meta"):  # structure only: no need to initialise 2M weights
        model = DartsSupernet()  # C=16, N=2: the AutoDL "nasnet-super" search network
    assert [cell.kind for cell in model.cells] == ["normal"] * 2 + ["reduce"] + ["normal"] * 2 + ["reduce"] + [
        "normal"
    ] * 2
    assert model.stem[0].out_channels == 48 and model.classifier.in_features == 4 * 64
    assert DARTS_EDGES[:5] == ("0<-0", "0<-1", "1<-0", "1<-1", "1<-2") and NUM_EDGES == 14
    assert DARTS_SEARCH_OPS.index("none") == 0 and NUM_OPS == 8
    reduce = model.cells[2]
    assert type(reduce.edges[0][1]).__name__ == "FactorizedReduce"  # stride-2 skip on 0<-0
    assert type(reduce.edges[4][1]).__name__ == "Identity"  # 1<-2 reads a node: stride 1
    assert type(model.cells[3].preprocess0).__name__ == "FactorizedReduce"  # after a reduction cell
    features, logits = tiny()(X)
    assert features.shape == (2, 4 * 16) and logits.shape == (2, 10)


@pytest.mark.parametrize("fused", [True, False])
def test_masked_ops_are_never_computed_and_none_never_run(fused):
    model = DartsSupernet(channels=4, cells_per_stage=1, fused=fused)
    calls = count_op_calls(model)
    normal = torch.ones(NUM_EDGES, NUM_OPS)
    normal[:, 2] = 0  # no dua_sepc_3x3 anywhere in normal cells
    normal[5, 7] = 0
    model.set_mask("normal", normal)
    reduce = torch.ones(NUM_EDGES, NUM_OPS)
    reduce[:, 3] = 0
    model.set_mask("reduce", reduce)
    model(X)
    if not fused:  # the reference runs each op module
        assert not any(k == "normal" and o == 2 for k, _, _, o in calls)
        assert not any(k == "normal" and (e, o) == (5, 7) for k, _, e, o in calls)
        assert not any(k == "reduce" and o == 3 for k, _, _, o in calls)
        assert not any(o == NONE_OP for *_, o in calls)
        # 3 normal cells * (14 edges * 6 ops - 1) + 2 reduce cells * 14 edges * 6 ops
        assert sum(calls.values()) == 3 * (14 * 6 - 1) + 2 * 14 * 6
    probe = RecordingProbe()
    model(X, probe=probe)
    alive = {
        ((kind, i), e, o)
        for kind, n, mask in (("normal", 3, normal), ("reduce", 2, reduce))
        for i in range(n) for e in range(NUM_EDGES) for o in range(NUM_OPS) if mask[e, o]
    }
    # The probe is shown exactly the alive ops of every cell, each once, and `none` only as zeros.
    assert set(probe.outputs_seen) == {k for k in alive if k[2] != NONE_OP}
    assert set(probe.outputs_seen.values()) == {1}
    assert set(probe.zeros_seen) == {k for k in alive if k[2] == NONE_OP}


def test_uniform_mixing_is_one_eighth_of_the_alive_ops():
    torch.manual_seed(0)
    model = tiny().eval()
    mask = torch.ones(NUM_EDGES, NUM_OPS)
    mask[:, 4] = 0
    model.set_mask("reduce", mask)
    _, implicit = model(X)
    explicit = {kind: torch.full((NUM_EDGES, NUM_OPS), 1 / 8) for kind in ("normal", "reduce")}
    _, with_weights = model(X, weights=explicit)
    torch.testing.assert_close(implicit, with_weights)
    per_cell = {kind: [explicit[kind]] * model.num_cells(kind) for kind in ("normal", "reduce")}
    _, with_per_cell = model(X, weights=per_cell)
    torch.testing.assert_close(implicit, with_per_cell)


def test_masks_persist_through_the_state_dict():
    a, b = tiny(), tiny()
    mask = torch.ones(NUM_EDGES, NUM_OPS)
    mask[3, 5] = 0
    a.set_mask("reduce", mask)
    state = a.state_dict()
    assert "normal_mask" in state and "reduce_mask" in state
    b.load_state_dict(state)
    torch.testing.assert_close(b.reduce_mask, mask)
    assert 5 not in b.alive["reduce"][3] and 5 in b.alive["normal"][3]
    with pytest.raises(ValueError, match="node 0 with no candidate"):
        b.set_mask("normal", torch.cat([torch.zeros(2, NUM_OPS), torch.ones(12, NUM_OPS)]))
    with pytest.raises(ValueError, match="0/1"):
        b.set_mask("normal", torch.full((NUM_EDGES, NUM_OPS), 0.5))


def test_node_subsets_cover_every_candidate_once():
    subsets = darts_node_subsets()
    assert SPACE.subsets == tuple(tuple(s) for s in subsets) and SPACE.keep == 2
    assert [len(s) for s in subsets] == [16, 24, 32, 40]
    flat = [c for s in subsets for c in s]
    assert sorted(flat) == [(e, o) for e in range(NUM_EDGES) for o in range(NUM_OPS)]
    assert subsets[1][:2] == [(2, 0), (2, 1)]  # node 1 starts at edge "1<-0", ops in index order


def test_seven_shrink_steps_leave_two_per_node_and_no_none_in_the_genotype():
    torch.manual_seed(0)
    model = tiny()
    subsets = darts_node_subsets()
    expected = [
        [14, 12, 10, 8, 6, 4, 2],
        [20, 17, 14, 11, 8, 5, 2],
        [27, 22, 18, 14, 10, 6, 2],
        [34, 28, 22, 17, 12, 7, 2],
    ]  # ALGORITHMS.md §3.3
    for kind in ("normal", "reduce"):
        history = []
        for step in range(7):
            iim = torch.rand(NUM_EDGES, NUM_OPS, dtype=torch.float64)
            iim[:, NONE_OP] = float("inf")  # 0/0 -> inf: `none` goes first
            result = shrink_step(model.get_mask(kind), iim, subsets, keep=2, steps=7, step=step)
            if step == 0:
                assert all((e, NONE_OP) in result.pruned for e in range(NUM_EDGES))
            model.set_mask(kind, result.mask)
            history.append([sum(1 for e, o in s if model.get_mask(kind)[e, o] > 0.5) for s in subsets])
            # Done only once the last step of the second kind leaves two per node in every kind.
            assert SPACE.shrinking_done(SPACE.masks(model)) == (kind == "reduce" and step == 6)
        assert [list(col) for col in zip(*history, strict=True)] == expected
    assert SPACE.shrinking_done(SPACE.masks(model))
    geno = darts_genotype_from_masks(SPACE.masks(model))
    assert SPACE.genotype_from_masks(SPACE.masks(model)) == geno
    assert isinstance(geno, DartsGenotype)
    for nodes in (geno.normal, geno.reduce):
        assert len(nodes) == 4 and all(len(node) == 2 for node in nodes)
        assert all(op in DARTS_EVAL_OPS and op != "none" for node in nodes for op, _ in node)
    # The genotype lists exactly the alive (op, input) pairs of each node, in evaluation names.
    for kind, nodes in (("normal", geno.normal), ("reduce", geno.reduce)):
        mask = model.get_mask(kind)
        for node, subset in zip(nodes, subsets, strict=True):
            survivors = [
                (SEARCH_TO_EVAL[DARTS_SEARCH_OPS[o]], int(DARTS_EDGES[e].split("<-")[1]))
                for e, o in subset
                if mask[e, o] > 0.5
            ]
            assert node == tuple(survivors)
    model.load_state_dict(model.state_dict())
    model(X)  # the final single-path supernet still runs


def test_genotype_needs_exactly_two_survivors_per_node():
    model = tiny()
    with pytest.raises(GenotypeError, match="normal node 0 has 16 surviving"):
        darts_genotype_from_masks(SPACE.masks(model))
    mask = torch.zeros(NUM_EDGES, NUM_OPS)
    for e, o in [(0, 2), (0, 3), (2, 7), (3, 7), (5, 1), (8, 4), (9, 5), (13, 6)]:
        mask[e, o] = 1
    model.set_mask("normal", mask)
    model.set_mask("reduce", mask)
    assert SPACE.shrinking_done(SPACE.masks(model))
    geno = darts_genotype_from_masks(SPACE.masks(model))
    # Node 0 keeps two ops of the same input 0: legal, and both are kept.
    assert geno.normal == (
        (("sep_conv_3x3", 0), ("sep_conv_5x5", 0)),
        (("max_pool_3x3", 0), ("max_pool_3x3", 1)),
        (("skip_connect", 0), ("dil_conv_3x3", 3)),
        (("dil_conv_5x5", 0), ("avg_pool_3x3", 4)),
    )
    assert geno.reduce == geno.normal and geno.normal_concat == (2, 3, 4, 5)
