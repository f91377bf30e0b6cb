"""Shared pytest fixtures. Keep each fixture small and documented; test-only helpers live in fakes.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from fakes import write_fake_cifar10

from isdarts.tracking import disable_telemetry


def _usable_cores() -> int:
    # The cores this process may run on: os.cpu_count() and psutil count the host's, which a container may not have.
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _share_the_cores_between_workers() -> None:
    """Under pytest-xdist (`-n`), give each worker, and the processes its tests start, its share of the cores:
    two workers with a thread per core each spin against each other (2-thread tests ran 3-30x slower so)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        threads = max(1, _usable_cores() // workers)
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


_share_the_cores_between_workers()


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which counts the host's cores
def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto`: a worker per usable core."""
    return _usable_cores()


# Tests run DVC and MLflow for real (also in subprocesses, which inherit this); none may phone home.
disable_telemetry()

# /work/shared beside the repo on dev machines and CI; ISDARTS_SHARED_DIR overrides it elsewhere.
SHARED_DIR = Path(os.environ.get("ISDARTS_SHARED_DIR", Path(__file__).resolve().parents[1].parent / "shared"))


@pytest.fixture
def tiny_cifar_dir(tmp_path: Path) -> Path:
    """A root folder holding a synthetic, learnable cifar-10-batches-py (20 images a batch, 30 test)."""
    root = tmp_path / "cifar"
    write_fake_cifar10(root, n_per_batch=20, n_test=30, seed=0)
    return root


@pytest.fixture
def shared_cifar_subset() -> Path:
    """The real 5,551/1,017-image CIFAR-10 subset from the shared data folder, or skip."""
    path = SHARED_DIR / "data" / "cifar10-subset"
    if not (path / "cifar-10-batches-py").is_dir():
        pytest.skip(f"shared data absent at {path} (only CI and dev machines have it)")
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Tiny nets gain nothing from a second intra-op thread, which only spins against whatever shares the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files holding a `slow` test first, in their own order: under `-n` the minutes-long ones then start at
    once instead of running last on one worker while the others sit idle."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: each file keeps its order
