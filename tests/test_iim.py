"""IIM against an independent float64 transcription of the official formula (spec §3.2)."""

import math

import pytest
import torch

from isdarts.search.iim import IimAccumulator, aggregate_cells, iim_per_sample, measure_iim
from isdarts.spaces.nb201.supernet import Nb201Supernet


def reference_iim(x: torch.Tensor) -> torch.Tensor:
    """The code's hook, literally: F = 3 (X - mu)^2 / sigma^6, NaN -> inf, mean over (C, H, W)."""
    x = x.double()
    mu = x.mean(dim=1, keepdim=True)
    sigma = x.std(dim=1, keepdim=True, unbiased=True)
    f = 3 * (x - mu) ** 2 / sigma**6
    f = torch.where(torch.isnan(f), torch.full_like(f, math.inf), f)
    return f.mean(dim=(1, 2, 3))


@pytest.mark.parametrize("shape", [(2, 16, 8, 8), (5, 3, 4, 7), (1, 64, 2, 2), (3, 32, 1, 1)])
@pytest.mark.parametrize("scale", [0.1, 1.0, 7.0])
def test_matches_float64_reference_on_random_inputs(shape, scale):
    gen = torch.Generator().manual_seed(hash((shape, scale)) % 2**31)
    x = torch.randn(shape, generator=gen) * scale + 0.3
    ours = iim_per_sample(x)
    assert ours.dtype == torch.float32 and ours.shape == (shape[0],)
    torch.testing.assert_close(ours.double(), reference_iim(x), rtol=2e-4, atol=0)


def test_constant_maps_and_zero_outputs_are_infinite():
    const = torch.full((2, 8, 4, 4), 0.5)
    zeros = torch.zeros(3, 8, 4, 4)
    assert torch.isinf(iim_per_sample(const)).all() and torch.isinf(reference_iim(const)).all()
    assert torch.isinf(iim_per_sample(zeros)).all() and torch.isinf(reference_iim(zeros)).all()


def test_one_constant_pixel_makes_the_sample_infinite_like_the_reference():
    x = torch.randn(2, 8, 3, 3)
    x[0, :, 1, 1] = 2.0  # all channels agree at one pixel of sample 0
    ours, ref = iim_per_sample(x), reference_iim(x)
    assert math.isinf(ours[0]) and math.isinf(ref[0])
    torch.testing.assert_close(ours[1].double(), ref[1], rtol=2e-4, atol=0)


def test_non_finite_input_counts_as_least_important():
    x = torch.randn(1, 4, 2, 2)
    x[0, 0, 0, 0] = float("nan")
    assert math.isinf(iim_per_sample(x)[0])


def test_accumulator_is_the_sample_weighted_mean_over_batches():
    acc = IimAccumulator(num_cells=2, num_edges=1, num_ops=2, device=torch.device("cpu"))
    batches = [torch.randn(b, 6, 3, 3) for b in (4, 1, 7)]
    for x in batches:
        acc.outputs(1, [(0, 1)], x.unsqueeze(1))
    expected = torch.cat([reference_iim(x) for x in batches]).mean()
    table = acc.per_cell()
    torch.testing.assert_close(table[1, 0, 1], expected, rtol=1e-5, atol=0)
    assert torch.isnan(table[0, 0, 0])  # never measured


def test_stacked_and_shared_outputs_and_zeros_are_scattered_to_their_candidates():
    acc = IimAccumulator(num_cells=1, num_edges=3, num_ops=2, device=torch.device("cpu"))
    stacked = torch.randn(5, 2, 6, 3, 3)
    acc.outputs(0, [(0, 1), (2, 1)], stacked)  # two ops' outputs in one tensor
    acc.outputs(0, [(1, 1), (2, 0)], stacked[:, :1])  # one output shared by two candidates
    acc.zeros(0, [(0, 0)], batch=5)
    table = acc.per_cell()[0]
    torch.testing.assert_close(table[0, 1], reference_iim(stacked[:, 0]).mean(), rtol=1e-5, atol=0)
    torch.testing.assert_close(table[2, 1], reference_iim(stacked[:, 1]).mean(), rtol=1e-5, atol=0)
    torch.testing.assert_close(table[1, 1], table[2, 0])
    torch.testing.assert_close(table[1, 1], reference_iim(stacked[:, 0]).mean(), rtol=1e-5, atol=0)
    assert math.isinf(table[0, 0]) and torch.isnan(table[1, 0])
    assert torch.equal(acc.counts[0], torch.tensor([[5.0, 5.0], [0.0, 5.0], [5.0, 5.0]], dtype=torch.float64))


def test_stacked_iim_is_the_iim_of_each_output():
    stacked = torch.randn(3, 4, 8, 2, 2)
    one_by_one = torch.stack([iim_per_sample(stacked[:, i]) for i in range(4)], dim=1)
    torch.testing.assert_close(iim_per_sample(stacked), one_by_one)


def test_aggregation_is_a_plain_mean_over_cells_and_inf_dominates():
    per_cell = torch.tensor([[[1.0, 2.0]], [[3.0, math.inf]]], dtype=torch.float64)
    torch.testing.assert_close(aggregate_cells(per_cell), torch.tensor([[2.0, math.inf]], dtype=torch.float64))


def test_measure_iim_covers_alive_ops_scores_none_inf_and_keeps_running_stats():
    torch.manual_seed(0)
    model = Nb201Supernet(channels=4, cells_per_stage=1)
    mask = torch.ones(6, 5)
    mask[2, 3] = 0
    model.set_mask("cell", mask)
    stem_bn = model.stem[1]
    before = stem_bn.running_mean.clone()
    batches = [(torch.randn(8, 3, 32, 32), torch.zeros(8, dtype=torch.long)) for _ in range(2)]
    tables = measure_iim(model, batches)
    assert set(tables) == {"cell"}
    table = tables["cell"]
    assert table.shape == (6, 5)
    assert torch.isnan(table[2, 3])  # masked: not measured
    assert torch.isinf(table[:, 0]).all()  # `none` always scores +inf
    finite = table[:, 1:].clone()
    finite[2, 2] = 1.0
    assert torch.isfinite(finite).all()
    assert torch.equal(stem_bn.running_mean, before)
    assert model.training  # mode restored
