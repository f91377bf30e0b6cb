"""The trained network as a self-contained inference file: images in [0, 1] -> logits, loadable with torch alone.

A retraining or an ImageNet transfer ends with its weights only in the resumable checkpoint, whose layout
belongs to isdarts' trainers. `export_inference` turns the network into a `torch.export` program (``.pt2``)
that folds in the training normalisation and keeps the main head only (eval mode: no drop path, no auxiliary
head), so anyone can run it without isdarts:

    model = torch.export.load("model.pt2").module()
    logits = model(images)  # float32 (N, 3, H, W) RGB in [0, 1]

torch.export rather than TorchScript: `torch.jit.trace` is deprecated in this torch, and MLflow 3 loads a
``pt2`` model without the pickle deserialisation it refuses by default. Only torch is used here; logging the
program to MLflow is the tracking layer's job (`isdarts.tracking.Tracker.log_model`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from isdarts.io import atomic_write_bytes

MODEL_NAME = "model.pt2"
EXAMPLE_BATCH = 2  # >1, so torch.export keeps the batch dimension dynamic (it specialises sizes 0 and 1)
_CHECK_ATOL = 1e-5


class Inference(nn.Module):
    """float32 images (N, 3, H, W) in [0, 1] -> the network's logits, normalised as in training."""

    def __init__(self, network: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.network((images - self.mean) / self.std)
        return out[0] if isinstance(out, tuple) else out  # the DARTS networks return (logits, aux logits)


@dataclass(frozen=True)
class ExportedModel:
    """What `export_inference` wrote: the file, its program, the batch it was checked on, and its card."""

    path: Path
    program: torch.export.ExportedProgram
    example: torch.Tensor  # float32 images in [0, 1], EXAMPLE_BATCH of them
    example_logits: torch.Tensor  # what the program returns for them
    card: dict[str, Any] = field(default_factory=dict)  # genotype, params_m, madds_m, input... (MLflow metadata)


def load_trained(network: nn.Module, checkpoint_path: Path) -> nn.Module:
    """`network` (built as the trainer built it) with the weights of the trainer's checkpoint, on the CPU, in
    eval mode. A finished run's checkpoint holds the weights after its last epoch."""
    state = torch.load(Path(checkpoint_path), map_location="cpu", weights_only=True)
    network.load_state_dict(state["model"])
    return network.cpu().eval()


def export_inference(
    network: nn.Module,
    path: Path,
    *,
    image_size: int | tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    classes: Sequence[str],
    **card: Any,
) -> ExportedModel:
    """Export the eval-mode `network` (with its input normalisation) to `path`, atomically; returns it.

    The program is checked against the network on a batch of another size than it was exported with, so a
    file that would predict differently (or only for one batch size) is never written. Its card holds what
    a user of the file needs (input, normalisation, class names in logit order) and `card` (genotype, size).
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    card = {
        **card, "input": f"float32 RGB images in [0, 1], shape (N, 3, {height}, {width})",
        "output": f"logits, shape (N, {len(classes)})",
        "image_size": height if height == width else f"{height}x{width}",
        "mean": list(mean), "std": list(std), "classes": list(classes),
    }
    model = Inference(network.cpu().eval(), mean, std).eval()
    gen = torch.Generator().manual_seed(0)
    example = torch.rand(EXAMPLE_BATCH, 3, height, width, generator=gen)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    with torch.no_grad():
        check = torch.rand(EXAMPLE_BATCH + 1, 3, height, width, generator=gen)
        # A cell with RobustDARTS's `noise` op draws from the global generator: the same seed for both forwards.
        with torch.random.fork_rng():
            torch.manual_seed(0)
            exported = program.module()(check)
            torch.manual_seed(0)
            eager = model(check)
        if not torch.allclose(exported, eager, atol=_CHECK_ATOL, rtol=1e-4):
            raise RuntimeError(f"the exported network disagrees with the trained one; {path} not written")
        example_logits = program.module()(example)
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return ExportedModel(Path(path), program, example, example_logits, card)


__all__ = ["EXAMPLE_BATCH", "MODEL_NAME", "ExportedModel", "Inference", "export_inference", "load_trained"]
