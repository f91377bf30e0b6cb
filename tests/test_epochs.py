"""The shared epoch loop on a toy model: a stopped run resumes to the uninterrupted result, hooks see what they
should, and a non-writer rank writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from isdarts.train.epochs import EpochLoop


def _loop(ckpt: Path, **kwargs) -> tuple[EpochLoop, Callable[[int], dict]]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(1)

    def epoch_work(epoch: int) -> dict:
        x = torch.randn(8, 3, generator=gen)
        loss = model(x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        # The global stream too: the loop restores it on resume.
        return {"epoch": epoch + 1, "loss": loss.item(), "noise": torch.rand(()).item(), "epoch_seconds": 1.0}

    loop = EpochLoop(name="toy", epochs=4, checkpoint_path=ckpt / "last.pt", key="k",
                     state={"model": model, "optimizer": optimizer}, generators={"data": gen}, **kwargs)
    return loop, epoch_work


def test_stopped_run_resumes_to_the_uninterrupted_result_and_keeps_the_hook_state(tmp_path: Path) -> None:
    full, work = _loop(tmp_path / "full")
    assert full.start() and full.run(work)
    assert [r["epoch"] for r in full.history] == [1, 2, 3, 4] and full.elapsed_s == 4.0

    starts, epochs = [], []

    def on_start(extra: dict) -> dict:
        starts.append(dict(extra))
        return {**extra, "calls": extra.get("calls", 0) + 1}

    hooks = {"on_start": on_start, "on_epoch": lambda r: epochs.append(r["epoch"])}
    first, work = _loop(tmp_path / "cut", stop_after_epochs=2, **hooks)
    assert first.start() and not first.run(work) and first.epochs_done == 2
    again, _ = _loop(tmp_path / "cut", stop_after_epochs=2, **hooks)
    assert not again.start() and again.epochs_done == 2  # already stopped there: hooks are not opened again
    resumed, work = _loop(tmp_path / "cut", **hooks)
    assert resumed.start() and resumed.run(work)
    assert resumed.history == full.history and resumed.elapsed_s == full.elapsed_s
    assert starts == [{}, {"calls": 1}] and resumed.extra == {"calls": 2} and epochs == [1, 2, 3, 4]


def test_only_the_writer_calls_hooks_and_writes_checkpoints(tmp_path: Path) -> None:
    calls, barriers = [], []
    loop, work = _loop(tmp_path, writer=False, on_start=lambda e: calls.append(e) or e,
                       on_epoch=calls.append, barrier=lambda: barriers.append(1))
    assert loop.start() and loop.run(work)
    assert calls == [] and len(barriers) == 4 and not (tmp_path / "last.pt").exists()
