"""What the per-method test files share: a method on a small supernet of either space, and random batches."""

from __future__ import annotations

import torch

from isdarts.config.search import SearchConfig
from isdarts.spaces.darts.space import SPACE as DARTS_SPACE
from isdarts.spaces.darts.supernet import DartsSupernet
from isdarts.spaces.nb201.space import SPACE as NB201
from isdarts.spaces.nb201.supernet import Nb201Supernet

SUPERNETS = {"nb201": (NB201, Nb201Supernet), "darts": (DARTS_SPACE, DartsSupernet)}


def random_batches(n: int, seed: int = 5, batch: int = 4, size: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`n` (images, labels) pairs of CIFAR's shape at `size` x `size`, the same for the same seed."""
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 3, size, size, generator=gen), torch.randint(0, 10, (batch,), generator=gen))
            for _ in range(n)]


def method_on_supernet(cls: type, config: SearchConfig, C: int, seed: int = 0, fused: bool = True):
    """`cls` searching a C-channel, one-cell-per-stage supernet of `config.space` (with the options the method
    asks of it), seeded by `seed`."""
    space, supernet = SUPERNETS[config.space]
    torch.manual_seed(seed)
    model = supernet(C, 1, fused=fused, **cls.supernet_options(config))
    return cls(model, space, config, torch.Generator().manual_seed(seed))
