"""CI's check that the reproduced tables still hold.

The committed pipeline outputs (small JSON in git) must be exactly what `dvc.lock` recorded for the
current code and params.yaml, and the committed reports must be what the report stage rebuilds
from them. A code or params change without a re-run of `dvc repro` fails here.
"""

from pathlib import Path

import pytest
from dvc.repo import Repo

from isdarts.pipeline.report import build_report

ROOT = Path(__file__).resolve().parents[1]
# Not in git: the DVC-cached prepared data and trained networks, and the persisted checkpoints.
UNTRACKED = ("data/prepared", "data/imagenet-tiny", "checkpoints/", "models/")


def test_committed_outputs_match_dvc_lock_for_current_code_and_params():
    repo = Repo(str(ROOT))
    stale = []
    for stage in repo.index.stages:
        if stage.changed_stage():
            stale.append(f"{stage.addressing}: its definition in dvc.yaml changed")
        for item in [*stage.deps, *stage.outs]:
            path = str(item.def_path)
            if path.startswith(UNTRACKED) or getattr(item, "persist", False):
                continue
            status = item.status()
            if status:
                stale.append(f"{stage.addressing}: {dict(status)}")
    assert not stale, "committed results are stale; run `dvc repro` and commit dvc.lock and outputs:\n" + "\n".join(
        stale
    )


def test_reports_rebuild_byte_identically_from_committed_results(tmp_path):
    results = ROOT / "results"
    if not any(results.glob("nb201_*.json")):
        pytest.fail("no committed results/nb201_*.json; run `dvc repro` and commit its outputs")
    for path in build_report(results, ROOT / "runs", tmp_path):
        if path.suffix == ".png":
            continue  # raster output depends on the font stack of the machine; tables are the checked numbers
        committed = ROOT / "reports" / path.relative_to(tmp_path)
        assert committed.read_bytes() == path.read_bytes(), f"reports/{path.name} differs from its rebuild"


@pytest.mark.parametrize(("stage", "space"), [
    ("search_nb201", "nb201"), ("search_darts", "darts"), *(("search_robust", f"s{i}") for i in range(1, 6)),
    *(("search_robust_data", f"s{i}") for i in range(1, 6))])
def test_search_stage_deps_cover_the_modules_that_decide_results(stage, space):
    import yaml

    from isdarts.search.loop import result_modules

    listed_deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["deps"]
    deps = {dep.replace("${item.space}", space) for dep in listed_deps}
    def listed(module: str) -> bool:  # the module's file, or a folder holding it
        path = Path(module.replace(".", "/") + ".py")
        return str(path) in deps or any(str(parent) in deps for parent in path.parents)

    missing = [m for m in result_modules(space) if not listed(m)]
    assert not missing, f"dvc.yaml {stage} must list {missing}, or DVC will not re-run a search they change"
