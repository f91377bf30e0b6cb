"""SETN (FAMILY.md "Sampling: SETN"): the cell enumeration and its log-probabilities, the top-K, the uniform
single-path weight step, the DARTS α step, the selection on successive valid batches, and exact resumes."""

import io

import pytest
import torch
from torch import nn

from isdarts.config import ArchConfig, SearchConfig
from isdarts.data.device_loader import DeviceImages
from isdarts.search.darts import Darts
from isdarts.search.setn import BatchStream, Setn, best_of, cell_log_probs, enumerate_cells, fixed_path, top_cells
from isdarts.spaces.darts.space import SPACE as DARTS_SPACE
from isdarts.spaces.darts.supernet import DartsSupernet
from isdarts.spaces.nb201.space import SPACE as NB201
from isdarts.spaces.nb201.supernet import Nb201Supernet

pytestmark = pytest.mark.usefixtures("one_thread")


def cfg(**options) -> SearchConfig:
    return SearchConfig(space="nb201", method="setn", arch=ArchConfig(), epochs=3, train_portion=0.5,
                        grad_clip=0.0, options=options)


def method(seed: int = 0, fused: bool = True, model: nn.Module | None = None, **options) -> Setn:
    torch.manual_seed(seed)
    model = Nb201Supernet(channels=4, cells_per_stage=1, fused=fused) if model is None else model
    return Setn(model, NB201, cfg(**options), torch.Generator().manual_seed(seed))


class PathNet(nn.Module):
    """A stand-in supernet whose prediction is the op of the last edge (mod `classes`), recording every batch."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.classes = classes
        self.seen: list[tuple[tuple[int, ...], torch.Tensor, bool]] = []

    def forward(self, x, weights=None, probe=None):
        path = weights["cell"]
        self.seen.append((path.index, x.clone(), self.training))
        logits = torch.zeros(len(x), 10)
        logits[:, path.index[-1] % self.classes] = 1.0
        return None, logits + 0 * self.w


def images(n: int, label: int) -> DeviceImages:
    x = torch.arange(n).view(n, 1, 1, 1).expand(n, 3, 2, 2).to(torch.uint8)  # image i is filled with i
    return DeviceImages(x, torch.full((n,), label), "cpu")


def test_cells_are_enumerated_in_autodl_order_and_their_probabilities_sum_to_one():
    cells = enumerate_cells(6, 5)
    assert cells.shape == (15625, 6) and len({tuple(c) for c in cells.tolist()}) == 15625
    # Structure.gen_all: the first edge (1<-0) is the most significant digit, the last (3<-2) the least.
    assert cells[:6].tolist() == [[0, 0, 0, 0, 0, k] for k in range(5)] + [[0, 0, 0, 0, 1, 0]]
    assert cells[3125].tolist() == [1, 0, 0, 0, 0, 0]
    alpha = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    log_p = cell_log_probs(alpha, cells)
    assert log_p.exp().sum().item() == pytest.approx(1.0, abs=1e-12)
    expected = sum(torch.log_softmax(alpha.double(), -1)[e, k].item() for e, k in enumerate(cells[777].tolist()))
    assert log_p[777].item() == pytest.approx(expected, abs=1e-12)


def test_top_k_is_sorted_distinct_and_keeps_enumeration_order_on_ties():
    cells = enumerate_cells(6, 5)
    alpha = torch.randn(6, 5, generator=torch.Generator().manual_seed(1))
    top = top_cells(alpha, cells, 100)
    scores = cell_log_probs(alpha, top)
    assert len({tuple(c) for c in top.tolist()}) == 100
    assert bool((scores[:-1] >= scores[1:]).all())
    assert top[0].tolist() == alpha.argmax(-1).tolist()
    assert torch.equal(top_cells(torch.zeros(6, 5), cells, 100), cells[:100])


def test_the_weight_step_draws_each_op_uniformly_and_ignores_alpha():
    m = method()
    with torch.no_grad():
        m.alphas[0][:, 3] = 10.0  # α strongly prefers one op: the weight step must not care
    counts = torch.zeros(6, 5)
    for _ in range(3000):
        path = m.uniform_path()
        counts[torch.arange(6), torch.tensor(path.index)] += 1
        assert not path.hard.requires_grad
    torch.testing.assert_close(counts / 3000, torch.full((6, 5), 0.2), atol=0.025, rtol=0)


def test_the_weight_step_runs_only_the_sampled_ops_and_leaves_alpha_unchanged(monkeypatch):
    m = method(fused=False)
    ran = []
    for cell in (layer for layer in m.model.layers if hasattr(layer, "edges")):
        for e, ops in enumerate(cell.edges):
            for o, op in enumerate(ops):
                op.register_forward_hook(lambda *_, e=e, o=o: ran.append((e, o)))
    index = (3, 2, 1, 0, 4, 3)  # edge 3<-0 samples `none`: nothing runs there
    monkeypatch.setattr(m, "uniform_path", lambda: fixed_path(index, 5, "cpu"))
    alpha = m.alphas[0].detach().clone()
    weights = [p.detach().clone() for p in m.weights]
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(4, 3, 8, 8, generator=gen), torch.randint(0, 10, (4,), generator=gen)
    m._weight_step(x, y)
    assert set(ran) == {(e, k) for e, k in enumerate(index) if k != 0}
    assert torch.equal(m.alphas[0].detach(), alpha) and m.alphas[0].grad is None
    assert any(not torch.equal(p, q) for p, q in zip(m.weights, weights, strict=True))


def test_the_arch_step_is_the_darts_mixture_and_leaves_the_weights_unchanged():
    m = method()
    darts_cfg = SearchConfig(space="nb201", method="darts1", arch=ArchConfig(), epochs=3, train_portion=0.5)
    darts = Darts(m.model, NB201, darts_cfg)
    with torch.no_grad():
        m.alphas[0].normal_()
        darts.alphas[0].copy_(m.alphas[0])
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(4, 3, 8, 8, generator=gen), torch.randint(0, 10, (4,), generator=gen)
    m.model.train()
    torch.testing.assert_close(m.loss(x, y)[0], darts.loss(x, y)[0], rtol=0, atol=0)
    weights = [p.detach().clone() for p in m.weights]
    alpha = m.alphas[0].detach().clone()
    m._arch_step(x, y, x, y)
    assert all(torch.equal(p, q) for p, q in zip(m.weights, weights, strict=True))
    assert not torch.equal(m.alphas[0].detach(), alpha)
    assert m.arch_first is False  # AutoDL: the weight step first


def test_selection_measures_the_top_k_each_on_its_own_next_batch_and_picks_the_first_best():
    net = PathNet(classes=2)
    m = method(model=net, select_num=5, select_batch_size=4)
    with torch.no_grad():
        m.alphas[0].zero_()  # the top 5 are the first 5 cells: the last edge takes ops 0..4
    m.attach_data(images(12, label=1), torch.Generator().manual_seed(4))
    net.train()
    cell, acc = m.select()
    assert cell == (0, 0, 0, 0, 0, 1) and acc == 100.0  # ops 1 and 3 both predict class 1: the first wins
    assert [index for index, _, _ in net.seen] == [(0, 0, 0, 0, 0, k) for k in range(5)]
    assert not any(training for _, _, training in net.seen) and net.training  # eval mode, then restored
    shown = [round(v, 5) for _, x, _ in net.seen for v in x[:, 0, 0, 0].tolist()]  # one value per image
    assert len(shown) == 20 and len(set(shown[:12])) == 12  # the first three batches: all 12 images once
    assert len(set(shown[12:])) == 8  # then a new pass


def test_best_of_breaks_ties_to_the_first_and_reports_percent():
    net = PathNet(classes=10)
    stream = BatchStream(images(6, label=2), 3, False, torch.Generator().manual_seed(0))
    paths = [fixed_path((0,) * 5 + (k,), 5, "cpu") for k in (1, 2, 0, 2)]
    assert best_of(net, "cell", paths, stream) == (1, 100.0)


def test_end_epoch_selects_every_epoch_or_only_after_the_last(monkeypatch):
    for every, expected in ((True, [1, 2, 3]), (False, [3])):
        m = method(select_every_epoch=every)
        calls = []

        def select(m=m, calls=calls):
            calls.append(len(calls))
            return (1, 2, 3, 4, 1, 2), 50.0

        monkeypatch.setattr(m, "select", select)
        selected_at = []
        for epochs_done in (1, 2, 3):
            record = m.end_epoch(epochs_done, None)
            if record["selected_valid_acc"] is not None:
                selected_at.append(epochs_done)
        assert selected_at == expected
        assert m.genotype().op_indices() == (1, 2, 3, 4, 1, 2)
        assert m.forward_weights(training=False)["cell"].index == (1, 2, 3, 4, 1, 2)


def test_before_any_selection_the_cell_is_alphas_argmax():
    m = method()
    with torch.no_grad():
        m.alphas[0].normal_()
    assert m.genotype().op_indices() == tuple(m.alphas[0].argmax(-1).tolist())
    with pytest.raises(RuntimeError, match="attach_data"):
        m.select()


def test_state_round_trip_resumes_identically():
    gen = torch.Generator().manual_seed(5)
    batches = [(torch.randn(4, 3, 8, 8, generator=gen), torch.randint(0, 10, (4,), generator=gen)) for _ in range(4)]
    valid = DeviceImages(torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8, generator=gen),
                         torch.randint(0, 10, (8,), generator=gen), "cpu")
    a = method(select_num=3, select_batch_size=4)
    a.attach_data(valid, torch.Generator().manual_seed(6))
    a.set_epoch(0)
    a.train_step(*batches[0], *batches[1])
    a.end_epoch(1, None)
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = method(seed=1, select_num=3, select_batch_size=4)
    b.load_state_dict(torch.load(buffer, weights_only=True))
    b.attach_data(valid, torch.Generator().manual_seed(6))
    assert b.selected == a.selected
    for m in (a, b):
        m.data_generator.manual_seed(7)
        m.set_epoch(1)
        m.train_step(*batches[2], *batches[3])
        m.end_epoch(2, None)
    for pa, pb in zip([*a.alphas, *a.weights], [*b.alphas, *b.weights], strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    assert a.selected == b.selected and torch.equal(a.sampler.get_state(), b.sampler.get_state())


def test_settings_that_cannot_work_are_refused():
    with pytest.raises(ValueError, match="select_num"):
        method(select_num=0)
    darts_cfg = SearchConfig(space="darts", method="setn", arch=ArchConfig(), epochs=3, train_portion=0.5)
    with pytest.raises(ValueError, match="one op per edge"):
        Setn(DartsSupernet(channels=4, cells_per_stage=1), DARTS_SPACE, darts_cfg)
