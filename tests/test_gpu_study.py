"""scripts/gpu_study.py in its CPU tiny mode (the device machine runs it at paper size): both searches run the
real search loop with the argmax cell recorded, finished ones land where the study page reads them, and a
search the budget cuts short keeps the epochs it finished."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from isdarts.report.study import GPU_FIGURE, build_study

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("gpu_study", ROOT / "scripts" / "gpu_study.py")
gpu_study = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(gpu_study)


@pytest.mark.usefixtures("one_thread")
def test_tiny_gpu_study_runs_both_searches_and_feeds_the_study_page(shared_cifar_subset, tmp_path):
    out = tmp_path / "out"
    args = ["--data", str(shared_cifar_subset), "--out", str(out), "--cpu-tiny", "--budget-s", "300"]
    assert gpu_study.main(args) == 0
    results = json.loads((out / "results.json").read_text())
    for method in ("darts1", "isdarts"):
        assert results[method]["finished"] is True
        history = json.loads((out / "nb201" / method / "seed_0" / "history.json").read_text())
        assert history["epochs"][-1]["cell"]["benchmark"]["cifar10_test"] == results[method]["last"]["cifar10_test"]
    # The paper's step count, scaled to the tiny run: DARTS's α steps and IS-DARTS's weight steps both reach it.
    assert results["darts1"]["last"]["alpha_steps"] >= gpu_study.TINY_STEPS
    assert results["isdarts"]["last"]["weight_steps"] >= gpu_study.TINY_STEPS
    assert "subset" in results["data"] and "not the paper's data" in (out / "summary.md").read_text()
    runs = tmp_path / "runs"
    shutil.copytree(out / "nb201", runs / "study_gpu" / "nb201")
    page, figures = build_study(runs / "study", tmp_path / "figures", runs / "study_gpu")
    assert figures == (tmp_path / "figures" / GPU_FIGURE,)
    assert "At the paper's supernet size, on a GPU" in page.markdown and len(page.reproduced) == 2


@pytest.mark.usefixtures("one_thread")
def test_a_search_cut_by_the_budget_keeps_its_finished_epochs(shared_cifar_subset, tmp_path):
    out = tmp_path / "out"
    gpu_study.main(["--data", str(shared_cifar_subset), "--out", str(out), "--cpu-tiny", "--budget-s", "0.001"])
    results = json.loads((out / "results.json").read_text())
    for method in ("darts1", "isdarts"):
        assert results[method]["finished"] is False and results[method]["epochs"] == 1
        partial = json.loads((out / "nb201" / method / "seed_0" / "partial_history.json").read_text())
        assert len(partial["epochs"]) == 1 and partial["planned_epochs"] > 1
        assert not (out / "nb201" / method / "seed_0" / "history.json").exists()
