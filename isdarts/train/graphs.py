"""CUDA-graph replay of a search's per-batch work: the weight step, the IIM pass, the evaluation forward
(the `cuda_graphs` speed setting).

On a GPU a supernet step is thousands of small kernels, and issuing them, not running them, sets the pace:
on an H200 an eager NB201 weight step launched 3,094 kernels, which the host took 77 ms to issue for
13.5 ms of device work. Replayed as one CUDA graph the step took 13.7 ms, and the parameters after five
steps were bit-identical to eager ones (BENCHMARKS.md, GPU check).

A graph replays exactly what it captured: the shapes, the mask's live ops, the learning rate, the address
of every tensor it reads. So one `BatchGraph` serves one pass over the data (an epoch's weight steps, whose
learning rate and mask are fixed until the epoch ends; one IIM or evaluation pass), and:
- the first batch runs eager on a side stream, which also does whatever must not happen for the first time
  inside a capture (the optimiser's momentum buffers, the IIM's index tensors, a compilation, cuDNN's
  benchmarking); the second batch is captured and then replayed, as is every later one;
- each batch is copied into the graph's static inputs; a batch of another shape (an epoch's last, smaller
  one) runs eager;
- what a replay returns lives in the graph's memory and is overwritten by the next replay, so callers must
  use it (add it to a running sum, copy it) before the next call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class BatchGraph:
    """`work(*batch)` for a stream of same-shaped batches, replayed as one CUDA graph when `enabled`."""

    def __init__(self, work: Callable[..., Any], enabled: bool) -> None:
        self.work, self.enabled = work, enabled
        self.warmed = False
        self.graph: torch.cuda.CUDAGraph | None = None
        self.inputs: tuple[torch.Tensor, ...] = ()
        self.outputs: Any = None

    def __call__(self, *batch: torch.Tensor) -> Any:
        if not self.enabled:
            return self.work(*batch)
        if not self.warmed:
            self.warmed = True
            return self._eager_on_side_stream(batch)
        if self.graph is None:
            self._capture(batch)
        elif not self._fits(batch):
            return self.work(*batch)
        for static, value in zip(self.inputs, batch, strict=True):
            static.copy_(value)
        self.graph.replay()
        return self.outputs

    def _fits(self, batch: tuple[torch.Tensor, ...]) -> bool:
        return len(batch) == len(self.inputs) and all(
            s.shape == b.shape and s.dtype == b.dtype for s, b in zip(self.inputs, batch, strict=True)
        )

    def _eager_on_side_stream(self, batch: tuple[torch.Tensor, ...]) -> Any:
        with torch.cuda.device(batch[0].device):  # streams and graphs belong to the current device: the data's
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                out = self.work(*batch)
            torch.cuda.current_stream().wait_stream(stream)
        return out

    def _capture(self, batch: tuple[torch.Tensor, ...]) -> None:
        self.inputs = tuple(b.clone() for b in batch)  # clone keeps each input's memory format
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.device(batch[0].device), torch.cuda.graph(self.graph):
            self.outputs = self.work(*self.inputs)
