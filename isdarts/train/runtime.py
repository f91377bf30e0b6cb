"""Device choice, seeding and timing shared by every training loop."""

from __future__ import annotations

import os
import time

import torch

from isdarts.config import ConfigError


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
    return f"cpu ({torch.get_num_threads()} threads, {os.cpu_count()} cores)"


def cost_unit(device: torch.device) -> str:
    return "GPU-hours" if device.type == "cuda" else "CPU-hours"


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
