"""RobustDARTS's spaces S1-S5 (isdarts/spaces/s1 ... s5): their op tables, the per-edge-op supernet (S1), its fused
cells against the unfused reference, the `noise` op (S4), genotypes and IIM records by each edge's own op names, and
tiny searches of the DARTS-space methods on them (or their stated refusal)."""

import dataclasses

import pytest
import torch
from test_every_method_searches import tiny_cfg
from test_fused_ops import mask_sequence
from test_search_loop import arrays, search  # noqa: F401 (fixture)

from isdarts.registry import METHODS, space_spec
from isdarts.search.iim import measure_iim
from isdarts.search.loop import build_method
from isdarts.spaces.darts.genotype import DartsGenotype
from isdarts.spaces.darts.network import NetworkCIFAR
from isdarts.spaces.darts.ops import DARTS_SEARCH_OPS, SEARCH_TO_EVAL, DilConv, FactorizedReduce, NoiseOp, SepConv
from isdarts.spaces.darts.supernet import DARTS_EDGES, check_edge_ops
from isdarts.spaces.mixing import SampledPath
from isdarts.spaces.partial import PartialChannels
from isdarts.train.export import export_inference

ROBUST = ("s1", "s2", "s3", "s4", "s5")
TOL = {"rtol": 1e-4, "atol": 2e-5}
pytestmark = pytest.mark.usefixtures("one_thread")


def space(name):
    return space_spec(name).load()


def edge_table(name, kind):
    """Per edge of `kind`, its ops in evaluation names."""
    return [tuple(SEARCH_TO_EVAL[op] for op in row) for row in space(name).op_table(kind)]


# ---------------------------------------------------------------- the tables
def test_the_spaces_hold_the_official_op_tables():
    s1 = space("s1")
    assert s1.ops == ("column_0", "column_1") and s1.num_ops == 2
    normal, reduce = edge_table("s1", "normal"), edge_table("s1", "reduce")
    assert normal[0] == ("skip_connect", "dil_conv_3x3") and normal[1] == ("skip_connect", "dil_conv_5x5")
    assert normal[5] == ("max_pool_3x3", "skip_connect") and normal[13] == ("dil_conv_3x3", "dil_conv_5x5")
    assert reduce[0] == ("max_pool_3x3", "avg_pool_3x3") and reduce[6] == ("max_pool_3x3", "sep_conv_3x3")
    assert reduce[4] == ("skip_connect", "dil_conv_5x5") and reduce[13] == ("skip_connect", "dil_conv_5x5")
    assert space("s2").ops == ("skip_connect", "dua_sepc_3x3")
    assert space("s3").ops == ("none", "skip_connect", "dua_sepc_3x3")
    assert space("s4").ops == ("noise", "dua_sepc_3x3")
    assert set(space("s5").ops) == set(DARTS_SEARCH_OPS) - {"none"} and space("s5").num_ops == 7
    for name in ROBUST:
        s = space(name)
        assert s.edges == DARTS_EDGES and s.kinds == ("normal", "reduce") and s.keep == 2
        assert [len(group) for group in s.subsets] == [k * s.num_ops for k in (2, 3, 4, 5)]
        assert (s.edge_ops is None) == (name != "s1")  # only S1's edges differ
        assert s.op_name("reduce", 6, 1) == s.op_table("reduce")[6][1]


@pytest.mark.parametrize(("table", "message"), [
    ([("skip_connect", "sep_conv_3x3")] * 13, "for 14 edges"),
    ([("skip_connect", "sep_conv_3x3")] * 13 + [("skip_connect",)], "same number"),
    ([("skip_connect", "conv_7x7")] * 14, "among"),
    ([("skip_connect", "skip_connect")] * 14, "distinct"),
    ([("none", "skip_connect")] * 13 + [("skip_connect", "none")], "same column"),
])
def test_a_bad_op_table_is_refused_naming_the_problem(table, message):
    with pytest.raises(ValueError, match=message):
        check_edge_ops("normal", table)


# ---------------------------------------------------------------- the supernet
def expected_module(name, stride):
    return {
        "skip_connect": FactorizedReduce if stride == 2 else torch.nn.Identity, "sep_conv_3x3": SepConv,
        "dil_conv_3x3": DilConv, "dil_conv_5x5": DilConv, "max_pool_3x3": torch.nn.MaxPool2d,
        "avg_pool_3x3": torch.nn.AvgPool2d, "noise": NoiseOp,
    }[name]


def test_s1_cells_hold_each_edge_s_own_ops_and_alpha_sized_masks():
    model = space("s1").build_supernet(4, 1, 10, fused=True)
    assert model.get_mask("normal").shape == (14, 2) == model.get_mask("reduce").shape
    for cell in model.cells:
        table = edge_table("s1", cell.kind)
        for e, ops in enumerate(cell.edges):
            stride = cell.strides[e]
            for o, op in enumerate(ops):
                assert isinstance(op, expected_module(table[e][o], stride)), (cell.kind, e, o)
                if isinstance(op, DilConv):  # dil_conv: one dilated unit, its kernel as named
                    k = int(table[e][o][-1])
                    assert op[1].dilation == (2, 2) and op[1].kernel_size == (k, k)


def twins(name, **kwargs):
    torch.manual_seed(0)
    fused = space(name).build_supernet(4, 1, 10, fused=True, **kwargs)
    reference = space(name).build_supernet(4, 1, 10, fused=False, **kwargs)
    reference.load_state_dict(fused.state_dict())
    return fused, reference


def forward_and_grads(model, x, y, weights, seed):
    """Logits and every gradient (weights' included) of one forward/backward; `seed` fixes the noise ops' draws."""
    model.zero_grad()
    for w in (weights or {}).values():
        if isinstance(w, torch.Tensor):
            w.grad = None
    torch.manual_seed(seed)
    logits = model(x, weights)[1]
    torch.nn.functional.cross_entropy(logits, y).backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    grads.update({f"w.{k}": w.grad.clone() for k, w in (weights or {}).items()
                  if isinstance(w, torch.Tensor) and w.grad is not None})
    return logits.detach(), grads


def assert_same(ours, ref, what):
    (logits, grads), (ref_logits, ref_grads) = ours, ref
    torch.testing.assert_close(logits, ref_logits, **TOL, msg=lambda m: f"logits, {what}: {m}")
    assert grads.keys() == ref_grads.keys(), what
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], **TOL, msg=lambda m, n=name: f"{n}, {what}: {m}")


@pytest.mark.parametrize("name", ["s1", "s3", "s4", "s5"])
def test_fused_cells_match_the_reference_for_every_mask(name):
    s = space(name)
    fused, reference = twins(name)
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(4, 3, 8, 8, generator=gen), torch.randint(0, 10, (4,), generator=gen)
    for step, mask in enumerate(mask_sequence(name, steps=3)):
        for model in (fused, reference):
            for kind in s.kinds:
                model.set_mask(kind, mask)
        table = {k: torch.randn(14, s.num_ops, generator=gen).softmax(-1) for k in s.kinds}
        for label, weights in (("1/|O|", None), ("softmax", table)):
            runs = [forward_and_grads(m, x, y, None if weights is None else
                                      {k: w.clone().requires_grad_() for k, w in weights.items()}, seed=step)
                    for m in (fused, reference)]
            assert_same(*runs, f"{name} mask {step} {label}")
        torch.manual_seed(step)
        ours = measure_iim(fused, [(x, y)])
        torch.manual_seed(step)
        ref = measure_iim(reference, [(x, y)])
        for kind in s.kinds:
            assert ours[kind].shape == (14, s.num_ops)
            torch.testing.assert_close(ours[kind], ref[kind], rtol=1e-4, atol=0, equal_nan=True)


@pytest.mark.parametrize("name", ["s1", "s4"])
def test_fused_sampled_and_partial_channel_mixing_match_the_reference(name):
    s = space(name)
    gen = torch.Generator().manual_seed(4)
    x, y = torch.randn(4, 3, 8, 8, generator=gen), torch.randint(0, 10, (4,), generator=gen)
    # One op per edge (GDAS's path): a straight-through one-hot.
    fused, reference = twins(name)
    index = torch.randint(0, s.num_ops, (14,), generator=gen).tolist()
    hard = torch.nn.functional.one_hot(torch.tensor(index), s.num_ops).float()
    runs = [forward_and_grads(m, x, y, {k: SampledPath(hard, tuple(index)) for k in s.kinds}, seed=0)
            for m in (fused, reference)]
    assert_same(*runs, f"{name} sampled path")
    # Partial channels (PC-DARTS): ops on half the channels.
    fused, reference = twins(name, partial_channels=2)
    weights = {k: torch.randn(14, s.num_ops, generator=gen).softmax(-1) for k in s.kinds}
    runs = [forward_and_grads(m, x, y, {k: PartialChannels(w, 2) for k, w in weights.items()}, seed=0)
            for m in (fused, reference)]
    assert_same(*runs, f"{name} partial channels")


# ---------------------------------------------------------------- S4's noise
def test_noise_is_standard_gaussian_of_the_output_shape_whatever_the_input():
    op = NoiseOp(stride=2)
    x = torch.randn(8, 16, 32, 32, requires_grad=True)
    torch.manual_seed(0)
    out = op(x)
    assert out.shape == (8, 16, 16, 16) and not out.requires_grad
    assert abs(out.mean().item()) < 0.02 and abs(out.std().item() - 1) < 0.02
    torch.manual_seed(0)
    assert torch.equal(op(torch.zeros_like(x) + 5), out)  # the input's values do not matter


def test_a_cell_of_noise_only_passes_no_gradient_to_its_inputs_but_its_weights_learn():
    s = space("s4")
    model = s.build_supernet(4, 1, 10, fused=True)
    noise_only = torch.zeros(14, 2)
    noise_only[:, 0] = 1
    for kind in s.kinds:
        model.set_mask(kind, noise_only)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    weights = {k: torch.full((14, 2), 0.5, requires_grad=True) for k in s.kinds}
    model(x, weights)[1].sum().backward()
    assert x.grad is None or not x.grad.any()
    # The last cell (normal) mixes noise into the logits; nothing upstream of it reaches them.
    assert weights["normal"].grad[:, 0].abs().sum() > 0 and not weights["normal"].grad[:, 1].any()
    assert weights["reduce"].grad is None


def test_a_retrained_cell_may_keep_noise_and_exports(tmp_path):
    genotype = DartsGenotype.from_json({
        "space": "darts", "normal": [[["noise", 0], ["sep_conv_3x3", 1]]] * 4, "normal_concat": [2, 3, 4, 5],
        "reduce": [[["sep_conv_3x3", 0], ["noise", 1]]] * 4, "reduce_concat": [2, 3, 4, 5],
    })
    net = NetworkCIFAR(genotype, C=4, num_classes=10, layers=3, auxiliary=False)
    net.drop_path_prob = 0.0
    assert net(torch.randn(2, 3, 8, 8))[0].shape == (2, 10)
    assert genotype.param_free_per_node("normal") == [1, 1, 1, 1]
    # The export's check compares two forwards of a network that draws noise: both from the same seed.
    exported = export_inference(net, tmp_path / "model.pt2", image_size=8, mean=(0.5,) * 3, std=(0.25,) * 3,
                                classes=[str(c) for c in range(10)])
    assert (tmp_path / "model.pt2").is_file() and exported.card["classes"][-1] == "9"


# ---------------------------------------------------------------- genotypes
def test_s1_genotypes_name_each_edge_s_own_ops():
    s = space("s1")
    # Column 1 wins on every edge, later edges more: each node keeps its two last inputs, by their column-1 op.
    weights = {k: torch.stack([torch.tensor([0.1, 0.5 + e / 100]) for e in range(14)]) for k in s.kinds}
    genotype = s.genotype_from_weights(weights)
    for kind in s.kinds:
        table = edge_table("s1", kind)
        for node, pairs in enumerate(genotype.cell(kind)[0]):
            edges = [DARTS_EDGES.index(f"{node}<-{j}") for _, j in pairs]
            assert [j for _, j in pairs] == [node + 1, node]
            assert [op for op, _ in pairs] == [table[e][1] for e in edges]
    # From masks: per node, column 0 of its first two inputs.
    masks = {}
    for kind in s.kinds:
        mask = torch.zeros(14, 2)
        for node in range(4):
            for j in (0, 1):
                mask[DARTS_EDGES.index(f"{node}<-{j}"), 0] = 1
        masks[kind] = mask
    genotype = s.genotype_from_masks(masks)
    for kind in s.kinds:
        table = edge_table("s1", kind)
        for node, pairs in enumerate(genotype.cell(kind)[0]):
            expected = [(table[DARTS_EDGES.index(f"{node}<-{j}")][0], j) for j in (0, 1)]
            assert sorted(pairs, key=lambda p: p[1]) == expected


def test_s3_derivation_never_picks_none():
    s = space("s3")
    weights = {k: torch.tensor([[0.9, 0.04, 0.06]] * 14) for k in s.kinds}
    genotype = s.genotype_from_weights(weights)
    assert {op for kind in s.kinds for node in genotype.cell(kind)[0] for op, _ in node} == {"sep_conv_3x3"}


# ---------------------------------------------------------------- searches
def assert_cell_in_space(genotype_json, name):
    genotype = DartsGenotype.from_json(genotype_json)
    for kind in ("normal", "reduce"):
        table = edge_table(name, kind)
        for node, pairs in enumerate(genotype.cell(kind)[0]):
            for op, j in pairs:
                assert op in table[DARTS_EDGES.index(f"{node}<-{j}")], (name, kind, node, op, j)


def test_an_is_darts_search_on_s1_measures_prunes_and_records_by_each_edge_s_ops(arrays, tmp_path):  # noqa: F811
    cfg = dataclasses.replace(tiny_cfg("isdarts", "darts"), space="s1")
    out = search(cfg, arrays, tmp_path)
    history = out["history"]
    assert history["ops"] == ["column_0", "column_1"]
    assert history["edge_ops"]["normal"][5] == ["max_pool_3x3", "skip_connect"]
    pruned = [p for r in history["epochs"] for kind, entries in (r.get("pruned") or {}).items()
              for p in [(kind, *entry) for entry in entries]]
    assert pruned, "the shrink step pruned nothing"
    for kind, edge, op in pruned:
        assert op in history["edge_ops"][kind][DARTS_EDGES.index(edge)]
    for record in history["epochs"]:
        for kind in ("normal", "reduce"):
            assert len(record["iim"][kind]) == 14 and all(len(row) == 2 for row in record["iim"][kind])
    assert_cell_in_space(out["genotype"], "s1")


# P-DARTS keeps 5 then 3 ops per edge, DrNAS 4 of them, SGAS ranks edges by their `none` weight: where a space
# cannot hold that, the method says so.
REFUSED = {("pdarts", s) for s in ("s1", "s2", "s3", "s4")} | {("drnas", s) for s in ("s1", "s2", "s3", "s4")} | {
    ("sgas", s) for s in ("s1", "s2", "s4", "s5")}
# Every method on S1 (per-edge ops); on S4 (noise) those that mix it differently (all ops, one sampled path,
# partial channels, the alignment term); IS-DARTS on the rest; and every refusal (it costs no search).
CASES = sorted({(m, "s1") for m, spec in METHODS.items() if "s1" in spec.spaces} | {
    (m, "s4") for m in ("isdarts", "darts1", "gdas", "pcdarts", "lambda_darts")} | {
    ("isdarts", s) for s in ("s2", "s3", "s5")} | REFUSED | {("sgas", "s3"), ("drnas", "s5"), ("pdarts", "s5")})


@pytest.mark.parametrize(("method", "name"), CASES, ids=[f"{m}-{s}" for m, s in CASES])
def test_darts_space_methods_search_the_robust_spaces_or_say_why_not(arrays, tmp_path, method, name):  # noqa: F811
    cfg = dataclasses.replace(tiny_cfg(method, "darts"), space=name)
    if (method, name) in REFUSED:
        with pytest.raises(ValueError, match=r"ops|none"):
            build_method(cfg, 10, torch.device("cpu"), torch.Generator().manual_seed(0))
        return
    out = search(cfg, arrays, tmp_path)
    assert out["finished"] and out["metrics"]["space"] == name
    assert_cell_in_space(out["genotype"], name)
