"""IS-DARTS on the DARTS space: per-kind IIM tables, separate node-wise shrinking of both masks, state round trip."""

from __future__ import annotations

import io
import math

import pytest
import torch

import isdarts.search.isdarts as isdarts_method
from isdarts.config import IimConfig, SearchConfig, ShrinkConfig
from isdarts.errors import GenotypeError
from isdarts.search.iim import measure_iim
from isdarts.search.isdarts import IsDarts
from isdarts.search.shrink import removals
from isdarts.spaces.common import alive_per_node
from isdarts.spaces.darts.space import SPACE as DARTS_SPACE
from isdarts.spaces.darts.supernet import CELL_KINDS, NONE_OP, NUM_EDGES, NUM_OPS, DartsSupernet

# Spec §3.3 table for S = 7: alive candidates per node after each step.
ALIVE_S7 = [
    [14, 12, 10, 8, 6, 4, 2],
    [20, 17, 14, 11, 8, 5, 2],
    [27, 22, 18, 14, 10, 6, 2],
    [34, 28, 22, 17, 12, 7, 2],
]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny convs gain nothing from threads, and the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(seed: int = 0) -> DartsSupernet:
    torch.manual_seed(seed)
    return DartsSupernet(channels=4, cells_per_stage=1)


def batches(seed: int = 0, n: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, 3, 16, 16, generator=g), torch.randint(0, 10, (4,), generator=g)) for _ in range(n)]


def method(model: DartsSupernet, steps: int = 7) -> IsDarts:
    # One shrink step after every epoch: epochs 1..S, then one more epoch on the final subnet.
    cfg = SearchConfig(space="darts", epochs=steps + 1, shrink=ShrinkConfig(steps=steps, interval=1), iim=IimConfig())
    return IsDarts(model, DARTS_SPACE, cfg)


def test_iim_tables_shape_none_inf_masked_nan_and_mode_restored():
    model = tiny()
    mask = model.get_mask("normal").clone()
    mask[3, 5] = 0  # edge 1<-1, dil_sepc_5x5
    model.set_mask("normal", mask)
    bn_mean = model.stem[1].running_mean.clone()
    model.train()
    tables = measure_iim(model, batches())
    assert model.training and model.stem[1].running_mean.equal(bn_mean)  # mode restored, running stats untouched
    assert set(tables) == set(CELL_KINDS)
    for kind, table in tables.items():
        assert table.shape == (NUM_EDGES, NUM_OPS)
        assert torch.isposinf(table[:, NONE_OP]).all()  # `none` outputs zeros: 0/0 -> +inf, pruned first
        alive = model.get_mask(kind) == 1
        others = alive.clone()
        others[:, NONE_OP] = False
        assert torch.isfinite(table[others]).all()
        assert table[~alive].isnan().all()
    assert tables["normal"][3, 5].isnan() and not tables["reduce"][3, 5].isnan()
    assert not torch.equal(tables["normal"][:, 1:], tables["reduce"][:, 1:])
    model.eval()
    measure_iim(model, batches())
    assert not model.training
    with pytest.raises(ValueError, match="no samples"):
        measure_iim(model, [])


def test_real_iim_shrinks_both_masks_per_schedule_to_two_survivors_per_node():
    model = tiny()
    m = method(model)
    assert m.schedule == list(range(1, 8)) and m.set_epoch(0) == pytest.approx(0.025)
    subsets = DARTS_SPACE.subsets
    alive = {kind: alive_per_node(model.get_mask(kind), subsets) for kind in CELL_KINDS}
    x, y = batches(seed=1)[0]
    with pytest.raises(GenotypeError, match="last shrink step"):
        m.genotype()
    for epoch in range(m.cfg.epochs):
        m.set_epoch(epoch)
        loss, _ = m.train_step(x, y)
        assert math.isfinite(loss.item())
        before = {kind: model.get_mask(kind).clone() for kind in CELL_KINDS}
        record = m.end_epoch(epoch + 1, lambda seed=epoch: batches(seed=seed))
        step = record["shrink_step"]
        if epoch + 1 not in m.schedule:
            assert step is None and record["iim"] is None
            continue
        assert step == epoch
        for kind in CELL_KINDS:
            assert not torch.equal(before[kind], model.get_mask(kind))  # each kind shrinks at each step
            previous = alive[kind]
            expected = [n - removals(n, 2, 7, step) for n in previous]
            alive[kind] = alive_per_node(model.get_mask(kind), subsets)
            assert alive[kind] == expected == [row[step] for row in ALIVE_S7]
            assert len(record["pruned"][kind]) == sum(previous) - sum(expected)
            if step == 0:  # `none` scores +inf, so it goes first on every edge
                assert all(not row[NONE_OP] for row in model.get_mask(kind).tolist())
    assert DARTS_SPACE.shrinking_done(DARTS_SPACE.masks(m.model)) and m.shrink_steps_done == 7
    genotype = m.genotype()
    for nodes in (genotype.normal, genotype.reduce):
        assert len(nodes) == 4
        for node in nodes:
            assert len(node) == 2 and all(op != "none" for op, _ in node)
    # Survivors stay in step with the masks the forward uses.
    for kind in CELL_KINDS:
        assert sum(len(ops) for ops in model.alive[kind]) == 8


def test_each_kind_is_ranked_only_by_its_own_table(monkeypatch):
    """Tables that favour a different op per kind give different survivors: the masks are shrunk separately."""

    def favouring(op: int) -> torch.Tensor:
        table = torch.ones(NUM_EDGES, NUM_OPS)
        table[:, op] = 0.0  # smallest hooked value = most important
        table[:, NONE_OP] = float("inf")
        return table

    fake = {"normal": favouring(2), "reduce": favouring(7)}  # sep_conv_3x3 vs max_pool_3x3
    monkeypatch.setattr(isdarts_method, "measure_iim", lambda model, _batches, graphs=False, compiled=False: fake)
    m = method(tiny(), steps=1)  # S = 1: one step prunes n - 2 at once (I-DARTS "rate 1")
    record = m.end_epoch(1, lambda: [])
    assert record["shrink_step"] == 0 and DARTS_SPACE.shrinking_done(DARTS_SPACE.masks(m.model))
    genotype = m.genotype()
    assert {op for node in genotype.normal for op, _ in node} == {"sep_conv_3x3"}
    assert {op for node in genotype.reduce for op, _ in node} == {"max_pool_3x3"}


def test_state_round_trip_restores_masks_alive_lists_and_step_counter():
    model = tiny()
    m = method(model)
    for epochs_done in (1, 2):
        m.end_epoch(epochs_done, lambda: batches())
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    fresh = method(tiny(seed=1))
    fresh.load_state_dict(torch.load(buf, weights_only=False))
    for kind in CELL_KINDS:
        assert torch.equal(fresh.model.get_mask(kind), model.get_mask(kind))
        assert fresh.model.alive[kind] == model.alive[kind]
        assert fresh.model.alive[kind] != tuple(tuple(range(NUM_OPS)) for _ in range(NUM_EDGES))
    assert fresh.shrink_steps_done == 2
