"""The NB201 supernet: structure, masking (masked ops never run), mask persistence."""

from collections import Counter

import pytest
import torch
from fakes import RecordingProbe

from isdarts.spaces.nb201.genotype import NB201_OPS
from isdarts.spaces.nb201.supernet import Nb201SearchCell, Nb201Supernet


def count_op_calls(model: Nb201Supernet) -> Counter:
    calls: Counter = Counter()
    for c, cell in enumerate(m for m in model.layers if isinstance(m, Nb201SearchCell)):
        for e, ops in enumerate(cell.edges):
            for o, op in enumerate(ops):
                op.register_forward_hook(lambda *_args, key=(c, e, o): calls.update([key]))
    return calls


def test_macro_structure_and_output_shapes():
    model = Nb201Supernet(channels=16, cells_per_stage=5)
    assert model.num_search_cells == 15 and len(model.layers) == 17
    assert model.KINDS == ("cell",) and model.num_cells("cell") == 15
    features, logits = model(torch.randn(2, 3, 32, 32))
    assert features.shape == (2, 64) and logits.shape == (2, 10)
    cell = model.layers[0]
    conv = cell.edges[0][NB201_OPS.index("nor_conv_3x3")][1]
    bn = cell.edges[0][NB201_OPS.index("nor_conv_3x3")][2]
    assert conv.bias is not None and not bn.affine and not bn.track_running_stats  # AutoDL search cell


@pytest.mark.parametrize("fused", [True, False])
def test_masked_ops_are_never_computed_and_none_never_run(fused):
    model = Nb201Supernet(channels=4, cells_per_stage=1, fused=fused)
    calls = count_op_calls(model)
    mask = torch.ones(6, 5)
    mask[:, 3] = 0  # drop every 3x3 conv
    mask[1, 2] = 0
    model.set_mask("cell", mask)
    model(torch.randn(2, 3, 32, 32))
    if not fused:  # the reference runs each op module: one call per alive non-none op per edge per cell
        assert not any(o == 3 for (_, _, o) in calls)
        assert not any((e, o) == (1, 2) for (_, e, o) in calls)
        assert not any(o == 0 for (_, _, o) in calls)  # `none` adds zeros: never run
        assert sum(calls.values()) == 3 * (6 * 3 - 1)
    probe = RecordingProbe()
    model(torch.randn(2, 3, 32, 32), probe=probe)
    # NB201 cells are named ("cell", index), as the DARTS space names its cells (kind, index).
    alive = {(("cell", c), e, o) for c in range(3) for e in range(6) for o in range(5) if mask[e, o]}
    # The probe is shown exactly the alive ops, each once, and `none` only as zeros (the IIM scores it +inf).
    assert set(probe.outputs_seen) == {k for k in alive if k[2] != 0} and set(probe.outputs_seen.values()) == {1}
    assert set(probe.zeros_seen) == {k for k in alive if k[2] == 0}


def test_uniform_mixing_equals_explicit_weights_of_one_over_five():
    torch.manual_seed(0)
    model = Nb201Supernet(channels=4, cells_per_stage=1).eval()
    x = torch.randn(2, 3, 32, 32)
    _, implicit = model(x)
    _, explicit = model(x, weights={"cell": torch.full((6, 5), 0.2)})
    torch.testing.assert_close(implicit, explicit)
    _, per_cell = model(x, weights={"cell": [torch.full((6, 5), 0.2)] * model.num_search_cells})
    torch.testing.assert_close(implicit, per_cell)


def test_mask_is_saved_and_restored_with_the_state_dict():
    a = Nb201Supernet(channels=4, cells_per_stage=1)
    mask = torch.ones(6, 5)
    mask[:, :4] = 0
    a.set_mask("cell", mask)
    b = Nb201Supernet(channels=4, cells_per_stage=1)
    b.load_state_dict(a.state_dict())
    assert b.alive == {"cell": ((4,),) * 6}
    torch.testing.assert_close(b.get_mask("cell"), mask)


def test_invalid_masks_are_rejected():
    model = Nb201Supernet(channels=4, cells_per_stage=1)
    with pytest.raises(ValueError, match="no op"):
        model.set_mask("cell", torch.zeros(6, 5))
    with pytest.raises(ValueError, match="0/1"):
        model.set_mask("cell", torch.full((6, 5), 0.5))
    with pytest.raises(ValueError, match="one cell kind"):
        model.set_mask("normal", torch.ones(6, 5))
