"""The `compile_iim` speed setting: the IIM reductions compiled by inductor give the eager values to float32
rounding, on single and stacked op outputs, NCHW and channels-last, and in whole IIM passes of both spaces;
a compiler failure falls back to the eager reduction with one warning."""

import math

import pytest
import torch

from isdarts.search.iim import CompiledIim, iim_batch_sums, iim_per_sample, iim_reduction, measure_iim
from isdarts.spaces.darts.supernet import DartsSupernet
from isdarts.spaces.nb201.supernet import Nb201Supernet

pytestmark = pytest.mark.usefixtures("one_thread")


def assert_same_iim(compiled: torch.Tensor, eager: torch.Tensor) -> None:
    assert compiled.dtype == eager.dtype and compiled.shape == eager.shape
    assert torch.equal(compiled.isinf(), eager.isinf())
    finite = eager.isfinite()
    torch.testing.assert_close(compiled[finite], eager[finite], rtol=2e-5, atol=0)


@pytest.fixture(scope="module")
def compiled() -> CompiledIim:
    return CompiledIim()  # one compiler for the module: each test's shapes reuse its dynamic-shape kernels


def test_compiled_reduction_matches_eager_on_op_outputs(compiled):
    gen = torch.Generator().manual_seed(0)
    cases = [
        torch.randn(5, 16, 8, 8, generator=gen) * 3 + 0.3,  # one op output
        torch.randn(4, 3, 16, 8, 8, generator=gen),  # three stacked outputs (B, k, C, H, W)
        torch.randn(4, 1, 32, 4, 4, generator=gen),  # a stack of one
        torch.randn(6, 8, 5, 7, generator=gen).to(memory_format=torch.channels_last),  # the DARTS space on CPU
    ]
    constant = torch.randn(2, 2, 8, 3, 3, generator=gen)
    constant[0, 1, :, 1, 1] = 2.0  # all channels agree at one pixel: that output of sample 0 is +inf
    nan = torch.randn(2, 8, 3, 3, generator=gen)
    nan[1, 0, 0, 0] = float("nan")  # a non-finite input: +inf, as eager
    for x in [*cases, constant, nan]:
        assert_same_iim(compiled(x), iim_batch_sums(x))
        torch.testing.assert_close(iim_batch_sums(x), iim_per_sample(x).double().sum(dim=0))
    assert compiled(cases[1]).dtype == torch.float64 and compiled(cases[1]).shape == (3,)
    assert math.isinf(compiled(constant)[1]) and math.isfinite(compiled(constant)[0]) and math.isinf(compiled(nan))
    with pytest.raises(ValueError, match=r"IIM expects \(B, C, H, W\) or stacked"):
        compiled(torch.randn(2, 3))


def test_compiled_iim_passes_give_the_eager_tables_on_both_spaces():
    torch.manual_seed(0)
    nb201 = Nb201Supernet(4, 1)
    batches = [(torch.randn(8, 3, 8, 8), None), (torch.randn(5, 3, 8, 8), None)]  # a smaller last batch too
    eager = measure_iim(nb201, batches)["cell"]
    compiled = measure_iim(nb201, batches, compiled=True)["cell"]
    measured = ~eager.isnan()
    assert torch.equal(measured, ~compiled.isnan())
    assert_same_iim(compiled[measured], eager[measured])

    darts = DartsSupernet(4, 1).to(memory_format=torch.channels_last)
    x = torch.randn(6, 3, 16, 16).to(memory_format=torch.channels_last)
    eager_tables = measure_iim(darts, [(x, None)])
    compiled_tables = measure_iim(darts, [(x, None)], compiled=True)
    assert set(eager_tables) == set(compiled_tables) == {"normal", "reduce"}
    for kind, table in compiled_tables.items():
        measured = ~eager_tables[kind].isnan()
        assert torch.equal(measured, ~table.isnan())
        assert_same_iim(table[measured], eager_tables[kind][measured])


def test_the_compiled_reduction_is_built_once_per_process():
    assert iim_reduction(False) is iim_batch_sums
    first = iim_reduction(True)
    assert isinstance(first, CompiledIim) and iim_reduction(True) is first


def test_a_compiler_failure_warns_once_and_measures_eagerly(caplog):
    calls = []

    def broken_backend(graph, example_inputs):
        calls.append(1)
        raise RuntimeError("no C++ compiler found")

    torch._dynamo.reset()
    reduction = CompiledIim(backend=broken_backend)
    x = torch.randn(3, 8, 4, 4)
    with caplog.at_level("WARNING", logger="isdarts.search.iim"):
        first, second = reduction(x), reduction(x * 2)
    assert torch.equal(first, iim_batch_sums(x)) and torch.equal(second, iim_batch_sums(x * 2))
    assert len(calls) == 1  # not retried
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and messages[0].startswith("compile_iim: compiling the IIM reduction failed (")
    assert "no C++ compiler found" in messages[0] and "Set compile_iim to false" in messages[0]
