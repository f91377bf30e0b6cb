"""Device choice, seeding and timing shared by every training loop."""

from __future__ import annotations

import os
import time

import torch

from isdarts.config import ConfigError
from isdarts.errors import NonFiniteLossError


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present; asking for CUDA on a machine without it is an error, not a fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"params.yaml: device = {name!r} but no CUDA device is available here; use auto or cpu"
            )
        index = torch.device(name).index or 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"params.yaml: device = {name!r} but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    return torch.device(name)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads, cores = torch.get_num_threads(), os.cpu_count()
    return f"cpu ({threads} thread{'s' * (threads != 1)}, {cores} core{'s' * (cores != 1)})"


def cost_unit(device: torch.device) -> str:
    return "GPU-hours" if device.type == "cuda" else "CPU-hours"


def run_cost(device: torch.device, seconds: float) -> dict[str, float | str]:
    """What a trainer's metrics report about its cost: wall seconds, hours, their unit and the device."""
    return {
        "train_seconds": seconds, "cost_hours": seconds / 3600.0, "cost_unit": cost_unit(device),
        "device_name": describe_device(device),
    }


def make_deterministic(seed: int) -> None:
    """Seed torch and ask cuDNN for deterministic kernels (the official code does too)."""
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Wall time of device work: synchronises before reading so queued kernels are counted."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.start = self._now()

    def _now(self) -> float:
        synchronize(self.device)
        return time.perf_counter()

    def elapsed(self) -> float:
        return self._now() - self.start



def check_finite(losses: torch.Tensor, epoch: int, what: str, fix: str) -> None:
    """Raise naming the first non-finite step; called every few steps so the hot loop never syncs per step."""
    bad = (~torch.isfinite(losses)).nonzero()
    if bad.numel():
        step = int(bad[0, 0])
        raise NonFiniteLossError(
            f"{what} loss became {losses[step].item()} at epoch {epoch + 1}, step {step + 1}; the run stopped and "
            f"the checkpoint of the last completed epoch is kept. {fix}"
        )


def rng_state(gens: dict[str, torch.Generator]) -> dict[str, torch.Tensor]:
    """Every random stream a run draws from, so a resumed run replays exactly."""
    state = {name: g.get_state() for name, g in gens.items()}
    state["torch_cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        state["torch_cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state: dict[str, torch.Tensor], gens: dict[str, torch.Generator]) -> None:
    for name, g in gens.items():
        g.set_state(state[name])
    torch.set_rng_state(state["torch_cpu"])
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["torch_cuda"])
