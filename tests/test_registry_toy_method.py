"""A new method is one module plus one row: a toy bi-level method, written in a temporary module and
registered in the methods table, is validated by config and searches end to end on both spaces."""

import textwrap

import pytest
import torch
import yaml
from test_search_loop import ROOT, arrays, search  # noqa: F401 (fixture)

from isdarts import registry
from isdarts.config import ConfigError, params_from_dict
from isdarts.registry import BILEVEL, MethodSpec, Option

TOY_MODULE = '''
"""A toy method: DARTS with a temperature on the softmax and an L2 penalty on α, through the base's hooks."""

import torch

from isdarts.search.darts import Darts


class ToyDarts(Darts):
    def relax(self, kind, alpha):
        return torch.softmax(alpha / self.cfg.option("temperature"), dim=-1)

    def arch_penalty(self):
        return self.cfg.option("penalty") * sum(a.square().sum() for a in self.alphas)
'''


@pytest.fixture
def toy(tmp_path, monkeypatch):
    (tmp_path / "toy_search_method.py").write_text(textwrap.dedent(TOY_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    row = MethodSpec("toy", "Toy", "toy_search_method:ToyDarts", True, (
        *BILEVEL,
        Option("temperature", "positive", help="softmax temperature"),
        Option("penalty", "float", 1e-3, help="L2 weight on α"),
    ))
    monkeypatch.setitem(registry.METHODS, "toy", row)


def toy_cfg(space: str, **toy_options):
    raw = yaml.safe_load((ROOT / "profiles/quick.yaml").read_text())
    raw["profile"], raw["device"] = "smoke", "cpu"
    raw["nb201"]["search"].update(C=4, N=1, epochs=2, batch_size=16, log_every=1)
    raw["darts"]["search"].update(C=4, N=1, epochs=2, batch_size=16, log_every=1, image_size=8, train_images=32,
                                  test_images=16)
    options = {"arch": {"lr": 0.003, "betas": [0.5, 0.999], "weight_decay": 0.001}, "train_portion": 0.5,
               "temperature": 2.0, **toy_options}
    raw["nb201"]["methods"], raw["nb201"]["options"] = ["toy"], {"toy": options}
    raw["darts"]["methods"] = ["toy"]
    raw["darts"]["options"]["toy"] = options
    # The DARTS space keeps IS-DARTS's section (the Table A.2 sweep needs it), fitted to 2 epochs.
    raw["darts"]["options"]["isdarts"]["shrink"] = {"steps": 1, "interval": 1}
    raw["darts"]["sweep"]["epochs"] = 21
    return getattr(params_from_dict(raw), space).search("toy") if space == "nb201" else \
        params_from_dict(raw).darts.runs.search("toy")


@pytest.mark.usefixtures("one_thread", "toy")
@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_a_registered_toy_method_searches_on_every_space(arrays, tmp_path, space):  # noqa: F811
    cfg = toy_cfg(space)
    assert cfg.options == {"temperature": 2.0, "penalty": 1e-3} and cfg.bilevel
    result = search(cfg, arrays, tmp_path / "run")
    history = result["history"]
    assert result["metrics"]["method"] == "toy" and len(history["epochs"]) == 2
    last = history["epochs"][-1]
    # The toy's relax hook is what the history records: softmax(α / 2) of the final α.
    alpha = last["alpha"] if space == "nb201" else last["alpha"]["normal"]
    weights = last["op_weights"] if space == "nb201" else last["op_weights"]["normal"]
    expected = torch.softmax(torch.tensor(alpha, dtype=torch.float64) / 2.0, dim=-1)
    torch.testing.assert_close(torch.tensor(weights, dtype=torch.float64), expected, rtol=1e-5, atol=1e-6)
    assert last["arch_loss"] is not None and result["genotype"]["method"] == "toy"


@pytest.mark.usefixtures("toy")
def test_the_toy_rows_options_are_validated_like_any_method():
    with pytest.raises(ConfigError, match="temperature"):
        toy_cfg("nb201", temperature=-1.0)
    with pytest.raises(ConfigError, match="does not apply to method 'toy'"):
        toy_cfg("nb201", shrink={"steps": 1, "interval": 1})
    assert toy_cfg("nb201", penalty=0.5).option("penalty") == 0.5
