"""torchrun / DDP helpers: one code path for a single process and for N ranks.

Without torchrun's environment variables everything degrades to a world of one, so the same training
function runs under plain `python` and under `torchrun --nproc_per_node=N`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler, Subset


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def default_backend(device: torch.device) -> str:
    """NCCL for GPUs, gloo otherwise (NCCL has no CPU support)."""
    return "nccl" if device.type == "cuda" else "gloo"


def init_from_env(backend: str | None = None) -> DistInfo:
    """Join the process group described by RANK / WORLD_SIZE / LOCAL_RANK; a world of one when they are absent."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistInfo(rank=0, world_size=1, local_rank=0)
    info = DistInfo(
        rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )
    if info.world_size > 1 and not dist.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def current_info() -> DistInfo:
    """The rank and world size of the joined group (a world of one when none was joined)."""
    if not dist.is_initialized():
        return DistInfo(rank=0, world_size=1, local_rank=0)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def launch_world_size() -> int:
    """The world size of the joined group, else the one torchrun announced (1 outside torchrun): known before
    joining, so a batch that the world size does not divide is refused before any process waits on another."""
    if dist.is_initialized():
        return dist.get_world_size()
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 1
    return int(os.environ["WORLD_SIZE"])


def is_main() -> bool:
    """True on rank 0 (and in a single process): the only rank that writes files."""
    return not dist.is_initialized() or dist.get_rank() == 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def per_rank_batch(global_batch: int, world_size: int) -> int:
    """Each rank's share of the global batch; uneven shares would change the optimisation, so they are refused."""
    if world_size < 1:
        raise ValueError(f"world size must be >= 1, got {world_size}")
    if global_batch % world_size:
        raise ValueError(
            f"world size {world_size} does not divide the batch {global_batch}; "
            f"pick a global batch that is a multiple of the number of processes"
        )
    return global_batch // world_size


def train_sampler(dataset: Dataset, info: DistInfo, *, seed: int, shuffle: bool = True) -> DistributedSampler:
    """Splits the data across ranks; the permutation depends on seed and epoch only, not on the world size.

    So rank r's k-th local batch of size b is perm[r::W][k*b:(k+1)*b], and the union over ranks is exactly the
    single-process global batch perm[k*W*b:(k+1)*W*b]: N ranks see the same global batches as one process.
    """
    return DistributedSampler(
        dataset, num_replicas=info.world_size, rank=info.rank, shuffle=shuffle, seed=seed, drop_last=False
    )


def eval_shard(dataset: Dataset, info: DistInfo) -> Subset:
    """This rank's strided share of an evaluation set, without the padding DistributedSampler adds."""
    return Subset(dataset, range(info.rank, len(dataset), info.world_size))  # type: ignore[arg-type]


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks in place (no-op in a single process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def max_over_ranks(value: int, device: torch.device) -> int:
    """The largest of the ranks' `value`s, on every rank (one tiny all-reduce; just `value` without DDP)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([value], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (safe to call when none was joined)."""
    if dist.is_initialized():
        dist.destroy_process_group()
