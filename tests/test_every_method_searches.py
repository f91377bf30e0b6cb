"""Every method of the methods table searches end to end on every space its row names: a tiny search (two
epochs of a C=4, N=1 supernet on 64 real CIFAR-10 images), resumed from a checkpoint after its first epoch to
the same result, with a genotype and a finite history. A method added as one module plus one row is covered
here without a line of this file changing."""

import dataclasses
import math

import pytest
import torch
import yaml
from test_search_loop import ROOT, arrays, search, strip_timing  # noqa: F401 (fixture)

from isdarts import registry
from isdarts.config import params_from_dict
from isdarts.search.loop import build_method

ARCH = {"arch": {"lr": 0.003, "betas": [0.5, 0.999], "weight_decay": 0.001}, "train_portion": 0.5}
# The base spaces; their variants (RobustDARTS's S1-S5) are covered by tests/test_robust_spaces.py.
CASES = [(name, space) for name, spec in registry.METHODS.items() for space in spec.spaces
         if registry.SPACES[space].base is None]


def tiny_cfg(method: str, space: str):
    """Two epochs with the method's epoch-counting options cut to 1; a method whose schedule cannot fit two
    epochs (P-DARTS: three stages) runs its quick-profile section's own schedule instead."""
    cfg = _tiny_cfg(method, space, own_schedule=False)
    try:
        build_method(cfg, 10, torch.device("cpu"), torch.Generator().manual_seed(0))
    except ValueError:
        return _tiny_cfg(method, space, own_schedule=True)
    return cfg


def _tiny_cfg(method: str, space: str, own_schedule: bool):
    raw = yaml.safe_load((ROOT / "profiles/quick.yaml").read_text())
    raw["profile"], raw["device"] = "smoke", "cpu"
    tiny = {"C": 4, "N": 1, "epochs": 2, "batch_size": 16, "log_every": 1}
    raw["nb201"]["search"].update(tiny)
    raw["darts"]["search"].update(tiny, image_size=8, train_images=32, test_images=16)
    for other in (*raw["nb201"]["options"].values(), *raw["darts"]["options"].values()):
        if isinstance(other, dict) and "shrink" in other:  # every section is validated: each must fit 2 epochs
            other["shrink"] = {"steps": 1, "interval": 1}
    section = raw[space].setdefault("options", {})
    # A method with no section on this space borrows the other space's (its required scalars, e.g. Λ-DARTS's).
    other_space = "nb201" if space == "darts" else "darts"
    options = dict((section[method] if method in section else raw[other_space]["options"].get(method)) or {})
    spec = registry.method_spec(method)
    if spec.bilevel:
        options = {**ARCH, **options}
    for name in ("shrink", "iim"):
        if name in spec.option_names:
            base = options.get(name) or section["isdarts"][name]  # IS-DARTS's section: a full mapping
            options[name] = {**base, **(
                {"steps": 1, "interval": 1} if name == "shrink" else {"n_samples": 16, "batch_size": 16})}
    # Method options that count epochs (warm-ups, stages) must fit the 2 epochs; per-epoch work counts (controller
    # steps, candidates evaluated, attack steps) are cut to 2 so the test stays tiny.
    if not own_schedule:
        options.pop("epochs", None)
    for option in spec.options:
        if option.kind != "int":
            continue
        value = options.get(option.name, option.default_on(space))
        if option.name.endswith("epochs") and not own_schedule:
            options[option.name] = min(int(value), 1)
        elif option.name.endswith(("_steps", "_samples", "_num", "_aggregate")) and isinstance(value, int):
            options[option.name] = min(value, 2)
    section[method] = options
    raw[space]["methods"] = [method]
    if space == "darts":
        raw["darts"]["sweep"]["epochs"] = 21
        return params_from_dict(raw).darts.runs.search(method)
    return params_from_dict(raw).nb201.search(method)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(("method", "space"), CASES, ids=[f"{m}-{s}" for m, s in CASES])
def test_every_method_searches_and_resumes_on_each_of_its_spaces(arrays, tmp_path, method, space):  # noqa: F811
    cfg = tiny_cfg(method, space)
    full = search(cfg, arrays, tmp_path / "full")
    epochs = full["history"]["epochs"]
    assert full["metrics"]["method"] == method and len(epochs) == cfg.epochs
    assert all(math.isfinite(r["train_loss"]) for r in epochs)
    assert full["genotype"]["method"] == method

    assert search(cfg, arrays, tmp_path / "cut", stop_after_epochs=1) == {"finished": False, "epochs_done": 1}
    resumed = search(cfg, arrays, tmp_path / "cut")
    assert resumed["genotype"] == full["genotype"]
    assert strip_timing(resumed["history"]) == strip_timing(full["history"])


FIRST_ORDER_ONLY = [(m, s) for m, s in CASES
                    if getattr(registry.METHODS[m].method_class(s), "first_order_only", False)]


def test_a_method_without_a_second_order_variant_refuses_order_2():
    refused = []
    for method, space in FIRST_ORDER_ONLY:
        cfg = tiny_cfg(method, space)
        unrolled = dataclasses.replace(cfg, options={**cfg.options, "order": 2})
        if unrolled.order == 1:  # the row fixes order 1 as a constant: nothing to refuse
            continue
        with pytest.raises(ValueError, match="has no second-order variant; set order: 1"):
            build_method(unrolled, 10, torch.device("cpu"), torch.Generator().manual_seed(0))
        refused.append(method)
    assert {"pcdarts", "fairdarts"} <= set(refused), refused
