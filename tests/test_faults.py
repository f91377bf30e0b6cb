"""The fast part of the fault suite (scripts/fault_check.py) as tests: malformed params, corrupt inputs,
tracking outages and kills before the first checkpoint, each on the smoke profile in a scratch project
through the real command line."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("fault_check", ROOT / "scripts" / "fault_check.py")
fault_check = importlib.util.module_from_spec(_spec)
sys.modules["fault_check"] = fault_check  # dataclasses resolve their module by name
_spec.loader.exec_module(fault_check)


def _assert_perfect(score) -> None:
    assert score.perfect, f"{score.line()}:\n" + "\n".join(score.failures)


def test_every_malformed_param_is_refused_with_a_config_error():
    files = [ROOT / "params.yaml", *sorted((ROOT / "profiles").glob("*.yaml"))]
    score = fault_check.check_bad_params(files)
    assert score.total > 3000  # every leaf of every file, several mistakes each
    _assert_perfect(score)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    if not (fault_check.SHARED_DIR / "data" / "cifar10-subset").is_dir():
        pytest.skip(f"shared data absent at {fault_check.SHARED_DIR} (only CI and dev machines have it)")
    project = fault_check.Scratch(tmp_path_factory.mktemp("faults"))
    assert project.run("prepare-data").returncode == 0
    return project


@pytest.mark.slow
def test_corrupt_inputs_are_detected_and_named(scratch):
    _assert_perfect(fault_check.check_corrupt_inputs(scratch))


@pytest.mark.slow
def test_tracking_outages_lose_no_metrics(scratch):
    _assert_perfect(fault_check.check_outages(scratch))


@pytest.mark.slow
def test_kills_before_the_first_checkpoint_leave_one_run_not_zombies(scratch):
    """Kills at drawn points after the first checkpoint are the full suite's (and test_resume_after_kill's);
    here four SIGKILLs inside the first epoch, then a re-run: one FINISHED MLflow run, none left RUNNING."""
    _assert_perfect(fault_check.check_zombies(scratch))


@pytest.mark.slow
def test_sigterm_stops_at_a_step_and_the_resume_ends_as_an_uninterrupted_search(scratch):
    _assert_perfect(fault_check.check_preemptions(scratch, random.Random(3), n=2, transfers=1))
