"""The shared epoch loop on a toy model: a stopped run resumes to the uninterrupted result, hooks see what they
should, and a non-writer rank writes nothing."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from isdarts.errors import Preempted
from isdarts.train.epochs import EpochLoop


def _loop(ckpt: Path, **kwargs) -> tuple[EpochLoop, Callable[..., dict]]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(1)

    def epoch_work(epoch: int, steps) -> dict:
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


def _stepped_loop(ckpt: Path, signal_at: tuple[int, int] | None = None, **kwargs) -> tuple[EpochLoop, Callable]:
    """A toy run of 3 epochs x 5 steps whose batches (order and noise) come from one generator, as a trainer's
    do; `signal_at` = (epoch, step) sends this process a real SIGTERM there."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(1)
    data = torch.randn(20, 3, generator=torch.Generator().manual_seed(2))

    def batches():
        order = torch.randperm(20, generator=gen)
        for i in range(5):
            yield data[order[4 * i: 4 * i + 4]] + 0.01 * torch.randn(4, 3, generator=gen)

    def epoch_work(epoch: int, steps) -> dict:
        (losses,) = steps.state(lambda: (torch.zeros(5),))
        for step, x in enumerate(steps.batches(batches, gen), start=steps.start):
            loss = model(x).pow(2).mean() + 0.001 * torch.rand(())  # the global stream as well
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses[step] = loss.detach()
            if (epoch, step) == signal_at:
                os.kill(os.getpid(), signal.SIGTERM)
            steps.step_done(step, (losses,))
        return {"epoch": epoch + 1, "losses": losses.tolist(), "epoch_seconds": 1.0}

    loop = EpochLoop(name="toy", epochs=3, checkpoint_path=ckpt / "last.pt", key="k",
                     state={"model": model, "optimizer": optimizer}, generators={"data": gen}, **kwargs)
    return loop, epoch_work


def test_sigterm_inside_an_epoch_checkpoints_that_step_and_the_resume_ends_as_an_uninterrupted_run(tmp_path):
    full, work = _stepped_loop(tmp_path / "full")
    assert full.start() and full.run(work)

    cut, work = _stepped_loop(tmp_path / "cut", signal_at=(1, 2))
    assert cut.start()
    with pytest.raises(Preempted, match="stopped by SIGTERM at step 3 of epoch 2") as stopped:
        cut.run(work)
    assert stopped.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the loop's handler is gone again
    saved = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert saved["epochs_done"] == 1 and saved["in_epoch"]["step"] == 3

    resumed, work = _stepped_loop(tmp_path / "cut")
    assert resumed.start() and resumed.run(work)
    assert resumed.history == full.history
    assert torch.equal(resumed.state["model"].weight, full.state["model"].weight)


def test_a_due_timer_writes_checkpoints_inside_epochs(tmp_path):
    """`checkpoint_every_s` = 0 s: a checkpoint after every step, so a kill loses at most one step."""
    writes = []
    loop, work = _stepped_loop(tmp_path, checkpoint_every_s=1e-9)
    original = loop._checkpoint

    def counting(in_epoch=None):
        writes.append(None if in_epoch is None else in_epoch["step"])
        return original(in_epoch)

    loop._checkpoint = counting
    assert loop.start() and loop.run(work)
    assert writes.count(None) == 3 and [w for w in writes if w is not None] == [1, 2, 3, 4, 5] * 3
