"""A pruned op costs nothing: the multiply-adds a supernet's forward really runs (counted at the aten level by
torch.utils.flop_counter, so the fused path's functional convolutions count too) fall by exactly the pruned
op's own arithmetic, in the fused supernets as in the unfused reference, on both spaces. Timing is
scripts/benchmark_shrink.py's job; this pins the arithmetic, which timings are too noisy to.

It also covers scripts/benchmark_shrink.py at a tiny size, so the script cannot rot.
"""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from isdarts.spaces.darts.ops import DARTS_SEARCH_OPS
from isdarts.spaces.darts.supernet import DartsSupernet
from isdarts.spaces.nb201.genotype import NB201_OPS
from isdarts.spaces.nb201.supernet import Nb201Supernet

ROOT = Path(__file__).resolve().parents[1]
SIZE = 16  # image side: op outputs of 16, 8 and 4 pixels


def forward_macs(model: torch.nn.Module, batch: int = 2) -> int:
    x = torch.randn(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() // 2


def nb201_conv_macs(op: str, channels: int, cells_per_stage: int, batch: int = 2) -> int:
    """What one edge's ReLU-conv-BN op multiplies in all the supernet's cells: k*k*C*C per output pixel."""
    k = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}[op]
    return sum(batch * (SIZE >> s) ** 2 * (channels << s) ** 2 * k * k * cells_per_stage for s in range(3))


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("op", ["nor_conv_1x1", "nor_conv_3x3"])
def test_pruning_an_nb201_conv_removes_exactly_its_multiply_adds(fused, op):
    model = Nb201Supernet(channels=4, cells_per_stage=2, fused=fused)
    full = forward_macs(model)
    for edge in range(6):
        mask = torch.ones(6, 5)
        mask[edge, NB201_OPS.index(op)] = 0
        model.set_mask("cell", mask)
        assert full - forward_macs(model) == nb201_conv_macs(op, 4, 2), (op, edge)
    # Every edge down to `none` leaves the stem, residual blocks and classifier; each edge's surviving conv
    # adds exactly its own arithmetic to that, and a skip beside it adds none.
    mask = torch.zeros(6, 5)
    mask[:, NB201_OPS.index("none")] = 1
    model.set_mask("cell", mask)
    outside_cells = forward_macs(model)
    mask = torch.zeros(6, 5)
    mask[:, NB201_OPS.index(op)] = 1
    model.set_mask("cell", mask)
    assert forward_macs(model) - outside_cells == 6 * nb201_conv_macs(op, 4, 2)
    mask[:, NB201_OPS.index("skip_connect")] = 1
    model.set_mask("cell", mask)
    assert forward_macs(model) - outside_cells == 6 * nb201_conv_macs(op, 4, 2)


def test_nb201_parameter_free_ops_cost_no_multiply_adds_except_the_shared_pool():
    """`none` and skips never multiply; the fused path's one avg-pool per source node (a depthwise sum) is
    paid while any pool edge leaving that node is alive, and dropped with the last one."""
    fused, unfused = Nb201Supernet(4, 1, fused=True), Nb201Supernet(4, 1, fused=False)
    mask = torch.ones(6, 5)
    mask[:, NB201_OPS.index("avg_pool_3x3")] = 0
    fused.set_mask("cell", mask)
    unfused.set_mask("cell", mask)
    no_pools = forward_macs(fused)
    assert no_pools == forward_macs(unfused)  # with no pool alive the two paths multiply exactly alike
    for op in ("none", "skip_connect"):
        pruned = mask.clone()
        pruned[:, NB201_OPS.index(op)] = 0
        fused.set_mask("cell", pruned)
        assert forward_macs(fused) == no_pools, op
    # Edges 0, 1, 3 leave node 0 (1<-0, 2<-0, 3<-0): one pool each, or all three, cost one shared pool.
    pool_per_node = sum(2 * (SIZE >> s) ** 2 * (4 << s) * 9 for s in range(3))
    for alive_pool_edges in ([0], [0, 1, 3]):
        with_pools = mask.clone()
        with_pools[alive_pool_edges, NB201_OPS.index("avg_pool_3x3")] = 1
        fused.set_mask("cell", with_pools)
        assert forward_macs(fused) - no_pools == pool_per_node, alive_pool_edges


def random_darts_mask(gen: torch.Generator) -> torch.Tensor:
    """About half the (edge, op) pairs alive, every node keeping one, no avg pool (the fused path's avg pool is a
    depthwise sum, which the reference's pooling does not count as multiply-adds)."""
    while True:
        mask = (torch.rand(14, len(DARTS_SEARCH_OPS), generator=gen) < 0.5).float()
        mask[:, DARTS_SEARCH_OPS.index("avg_pool_3x3")] = 0
        first_edges = [0, 2, 5, 9, 14]  # node n's candidate edges are first_edges[n]:first_edges[n + 1]
        if all(mask[lo:hi].any() for lo, hi in zip(first_edges[:-1], first_edges[1:], strict=True)):
            return mask


def test_darts_space_fused_cells_multiply_exactly_what_the_unfused_reference_does_at_any_mask():
    """The reference runs one module per alive op, so its arithmetic is that of the alive ops; the fused cells'
    equals it at every mask, so they never multiply for a pruned op (separable and dilated convolutions, and the
    factorized-reduce skips of a reduction cell's input edges)."""
    fused, unfused = DartsSupernet(4, 1, fused=True), DartsSupernet(4, 1, fused=False)
    gen = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(6):
        for kind in ("normal", "reduce"):
            mask = random_darts_mask(gen)
            fused.set_mask(kind, mask)
            unfused.set_mask(kind, mask)
        macs = forward_macs(fused, batch=1)
        assert macs == forward_macs(unfused, batch=1)
        seen.add(macs)
    assert len(seen) == 6  # each mask pays for its own ops


def test_benchmark_shrink_times_every_mask_of_a_search_history(tmp_path):
    """The script's tiny run: one row per distinct mask of the history, the alive count falling, the cost
    probes' prediction present, MACs never rising along the path."""
    script = runpy.run_path(str(ROOT / "scripts" / "benchmark_shrink.py"))
    history = tmp_path / "history.json"
    masks = [torch.ones(6, 5), torch.ones(6, 5), torch.ones(6, 5), torch.zeros(6, 5)]
    masks[1][:, 0] = 0
    masks[2][:, [0, 4]] = 0
    masks[3][:, 3] = 1
    history.write_text(json.dumps({"epochs": [{"epoch": i + 1, "alive": m.int().tolist()}
                                              for i, m in enumerate([masks[0], *masks])]}))
    out = tmp_path / "shrink.json"
    result = script["main"](["--space", "nb201", "--C", "2", "--N", "1", "--batch", "2", "--image-size", "8",
                             "--steps", "1", "--warmup", "0", "--threads", "1", "--history", str(history),
                             "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    rows = result["rows"]
    assert [r["mask"] for r in rows] == ["epoch 1", "epoch 3", "epoch 4", "epoch 5"]  # epoch 2 repeats epoch 1
    assert [r["alive"] for r in rows] == [30, 24, 18, 6]
    macs = [r["macs_per_image"] for r in rows]
    assert macs == sorted(macs, reverse=True) and macs[-1] < macs[0]
    # The cost model: the all-`none` base and one probe per op that runs in training.
    assert [p["mask"] for p in result["cost_probes"]] == [f"only {op}" for op in NB201_OPS]
    assert all(r["step_s"] > 0 and r["iim_s"] > 0 and r["predicted_step_s"] is not None for r in rows)


def test_benchmark_shrink_refuses_a_history_of_the_other_space(tmp_path):
    script = runpy.run_path(str(ROOT / "scripts" / "benchmark_shrink.py"))
    history = tmp_path / "history.json"
    history.write_text(json.dumps({"epochs": [{"epoch": 1, "alive": torch.ones(6, 5).int().tolist()}]}))
    with pytest.raises(SystemExit, match="are not those of the darts space.*pass --space to match the history"):
        script["main"](["--space", "darts", "--C", "2", "--N", "1", "--history", str(history)])
