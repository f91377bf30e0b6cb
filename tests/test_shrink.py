"""Shrink schedule and mask updates (spec §3.3)."""

import math

import pytest
import torch

from isdarts.errors import GenotypeError
from isdarts.search.shrink import removals, shrink_epochs, shrink_step, step_at
from isdarts.spaces.nb201.genotype import NB201_OPS
from isdarts.spaces.nb201.space import SPACE as NB201
from isdarts.spaces.nb201.supernet import nb201_genotype_from_mask, per_edge_subsets


def test_paper_nb201_schedule_shrinks_after_epochs_22_24_26_28():
    schedule = shrink_epochs(30, 4, 2)
    assert schedule == [22, 24, 26, 28]
    assert [step_at(e, schedule) for e in (21, 22, 23, 24, 28, 29, 30)] == [None, 0, None, 1, 3, None, None]


def test_darts_space_schedule_and_impossible_schedules():
    assert shrink_epochs(50, 7, 3) == [29, 32, 35, 38, 41, 44, 47]
    with pytest.raises(ValueError, match="do not fit"):
        shrink_epochs(8, 4, 2)


def test_per_node_removal_counts_of_the_darts_space_table():
    # ALGORITHMS.md §3.3: candidates per node 16/24/32/40, keep 2, S = 7.
    expected = {16: [2] * 7, 24: [4, 3, 3, 3, 3, 3, 3], 32: [5, 5, 4, 4, 4, 4, 4], 40: [6, 6, 6, 5, 5, 5, 5]}
    for n, counts in expected.items():
        alive, got = n, []
        for s in range(7):
            p = removals(alive, 2, 7, s)
            got.append(p)
            alive -= p
        assert got == counts and alive == 2


def test_nb201_steps_remove_one_op_per_edge_the_largest_iim_and_end_single_path():
    torch.manual_seed(0)
    mask = torch.ones(6, 5)
    subsets = per_edge_subsets()
    assert NB201.subsets == tuple(tuple(s) for s in subsets) and NB201.keep == 1
    with pytest.raises(GenotypeError, match="keeps 5 ops"):
        nb201_genotype_from_mask(mask)
    for step in range(4):
        assert not NB201.shrinking_done({"cell": mask})
        iim = torch.rand(6, 5, dtype=torch.float64)
        iim[:, 0] = math.inf  # `none`
        iim[mask == 0] = math.nan
        result = shrink_step(mask, iim, subsets, keep=1, steps=4, step=step)
        assert len(result.pruned) == 6 and sorted(e for e, _ in result.pruned) == list(range(6))
        for e, o in result.pruned:
            alive = [op for op in range(5) if mask[e, op] == 1]
            assert o == max(alive, key=lambda op: iim[e, op].item())
            if step == 0:
                assert o == 0  # `none` (+inf) goes first
        mask = result.mask
        assert (mask.sum(1) == 4 - step).all()
    assert (mask.sum(1) == 1).all()
    assert NB201.shrinking_done({"cell": mask})
    # The final cell is each edge's one survivor.
    survivors = tuple(NB201_OPS[int(row.argmax())] for row in mask)
    assert nb201_genotype_from_mask(mask).ops == survivors == NB201.genotype_from_masks({"cell": mask}).ops


def test_ties_are_broken_in_candidate_order():
    mask = torch.ones(1, 5)
    iim = torch.tensor([[math.inf, 1.0, math.inf, 0.5, 0.5]], dtype=torch.float64)
    result = shrink_step(mask, iim, [[(0, o) for o in range(5)]], keep=2, steps=1, step=0)
    assert result.pruned == [(0, 0), (0, 2), (0, 1)]


def test_alive_candidate_without_iim_is_an_error():
    iim = torch.full((1, 3), math.nan, dtype=torch.float64)
    with pytest.raises(ValueError, match="no IIM"):
        shrink_step(torch.ones(1, 3), iim, [[(0, 0), (0, 1), (0, 2)]], keep=1, steps=2, step=0)
