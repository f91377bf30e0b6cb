"""The IS-DARTS ablations (spec §3.5): I-DARTS selects once at the end, S-DARTS shrinks by α."""

import io
import math

import pytest
import torch

from isdarts.config import ArchConfig, IimConfig, SearchConfig, ShrinkConfig
from isdarts.search.isdarts import IDarts
from isdarts.search.sdarts import SDarts
from isdarts.spaces.nb201.genotype import NB201_OPS
from isdarts.spaces.nb201.space import SPACE as NB201
from isdarts.spaces.nb201.supernet import Nb201Supernet

pytestmark = pytest.mark.usefixtures("one_thread")


def batches(n: int = 2, size: int = 8, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 3, size, size, generator=gen), torch.randint(0, 10, (8,), generator=gen)) for _ in range(n)]


def make_idarts(every_epoch: bool = False) -> IDarts:
    torch.manual_seed(0)
    cfg = SearchConfig(method="idarts", C=4, N=1, epochs=3, shrink=None, iim=IimConfig(every_epoch=every_epoch))
    return IDarts(Nb201Supernet(channels=4, cells_per_stage=1), NB201, cfg)


def iim_table(record) -> torch.Tensor:
    return torch.tensor([[math.nan if v is None else v for v in row] for row in record["iim"]], dtype=torch.float64)


def test_idarts_keeps_the_mask_until_the_end_then_selects_the_smallest_hooked_iim_per_edge():
    method = make_idarts()
    data = batches()
    for epoch in range(3):
        method.set_epoch(epoch)
        method.train_step(*data[0])
        record = method.end_epoch(epoch + 1, lambda: data)
        if epoch < 2:
            assert record["iim"] is None and record["shrink_step"] is None
            assert bool((method.model.mask == 1).all())
    assert record["shrink_step"] == 0 and len(record["pruned"]) == 6 * 4
    iim = iim_table(record)
    assert bool(torch.isinf(iim[:, 0]).all())  # `none`
    survivors = iim.argmin(dim=1)
    assert (method.model.mask.sum(dim=1) == 1).all()
    assert method.model.mask.argmax(dim=1).tolist() == survivors.tolist()
    assert method.genotype().ops == tuple(NB201_OPS[o] for o in survivors.tolist())
    assert "none" not in method.genotype().ops


def test_idarts_previews_the_selection_when_measuring_every_epoch_and_saves_it():
    method = make_idarts(every_epoch=True)
    data = batches()
    record = method.end_epoch(1, lambda: data)
    assert record["iim"] is not None and record["shrink_step"] is None
    assert bool((method.model.mask == 1).all())  # measured, but nothing selected yet
    preview = method.genotype()
    assert preview.op_indices() == tuple(iim_table(record).argmin(dim=1).tolist())
    buffer = io.BytesIO()
    torch.save(method.state_dict(), buffer)
    buffer.seek(0)
    restored = make_idarts(every_epoch=True)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.genotype() == preview


def make_sdarts() -> SDarts:
    torch.manual_seed(0)
    model = Nb201Supernet(channels=4, cells_per_stage=1)
    shrink = ShrinkConfig(steps=4, interval=1)
    cfg = SearchConfig(method="sdarts", epochs=5, weight_decay=5e-4, shrink=shrink, arch=ArchConfig())
    return SDarts(model, NB201, cfg)  # shrinks after epochs 1, 2, 3, 4


def test_sdarts_masks_the_smallest_alpha_among_alive_ops_each_step():
    method = make_sdarts()
    assert method.schedule == [1, 2, 3, 4]
    gen = torch.Generator().manual_seed(1)
    for step in range(4):
        with torch.no_grad():
            method.alphas[0].copy_(torch.randn(6, 5, generator=gen))
        before = method.model.mask.clone()
        alpha = method.alphas[0].detach().masked_fill(before == 0, math.inf)  # masked ops cannot be picked again
        record = method.end_epoch(step + 1, lambda: [])
        assert record["shrink_step"] == step
        removed = (before - method.model.mask).nonzero().tolist()
        assert removed == [[e, int(alpha[e].argmin())] for e in range(6)]
    assert (method.model.mask.sum(dim=1) == 1).all()
    assert method.genotype().op_indices() == tuple(method.model.mask.argmax(dim=1).tolist())
    assert method.end_epoch(5, lambda: [])["shrink_step"] is None


def test_sdarts_masked_logits_get_zero_probability_and_no_gradient():
    method = make_sdarts()
    mask = torch.ones(6, 5)
    mask[:, 3] = 0  # drop every 3x3 conv, the one op with the largest α below
    mask[2, 1] = 0
    method.model.set_mask("cell", mask)
    with torch.no_grad():
        method.alphas[0].copy_(torch.randn(6, 5))
        method.alphas[0][:, 3] = 10.0
    weights = method.arch_weights()["cell"]
    assert bool((weights[mask == 0] == 0).all())
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(6))
    assert 3 not in method.genotype().op_indices()  # argmax of the masked softmax, not of α
    (x, y), (xv, yv) = batches()
    grad = method.arch_grads(x, y, xv, yv)[0]
    assert bool((grad[mask == 0] == 0).all()) and bool((grad[mask == 1] != 0).any())
    method.set_epoch(0)
    loss, _ = method.train_step(x, y, xv, yv)
    assert torch.isfinite(loss)
    assert bool((method.arch_weights()["cell"][mask == 0] == 0).all())
