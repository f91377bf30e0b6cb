"""Search throughput of the NB201 supernet before and after shrinking, and the IIM pass's cost.

Prints one line per measurement. Timing follows the airbench habit: warm-up steps first, device
synchronised around the timed region, median over repeats. Uses the real CIFAR-10 subset when present
(batches of real images), else synthetic images of the same shape.

    python scripts/benchmark_search.py --device auto --C 16 --N 5 --batch 64 --steps 10
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from isdarts.config import SearchConfig
from isdarts.data.cifar import load_cifar10, locate_cifar10
from isdarts.data.device_loader import DeviceImages
from isdarts.search.iim import measure_iim
from isdarts.search.isdarts import IsDartsNb201
from isdarts.spaces.nb201.genotype import Nb201Genotype
from isdarts.spaces.nb201.supernet import Nb201Supernet
from isdarts.train.runtime import describe_device, resolve_device, synchronize

SUBSET = Path(__file__).resolve().parents[1].parent / "shared/data/cifar10-subset"
# The single path left after shrinking: the NB201 optimum cell (any single path costs about the same).
FINAL_CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def images(device: torch.device, n: int) -> DeviceImages:
    if (SUBSET / "cifar-10-batches-py").is_dir():
        arrays = load_cifar10(locate_cifar10(None, download=False, subset_fallback=SUBSET))
        return DeviceImages(arrays.train_x[:n], arrays.train_y[:n], device)
    gen = torch.Generator().manual_seed(0)
    return DeviceImages(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen),
                        torch.randint(0, 10, (n,), generator=gen), device)


def time_train(method: IsDartsNb201, data: DeviceImages, batch: int, steps: int, warmup: int) -> float:
    """Median seconds per training step."""
    gen = torch.Generator(device=data.y.device).manual_seed(0)
    batches = list(data.batches(batch, augment=True, shuffle=False, generator=gen, drop_last=True))
    times = []
    for i in range(warmup + steps):
        x, y = batches[i % len(batches)]
        synchronize(x.device)
        start = time.perf_counter()
        method.train_step(x, y)
        synchronize(x.device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_iim(model: Nb201Supernet, data: DeviceImages, batch: int, n_batches: int) -> float:
    """Seconds per image of the IIM measurement pass (forward with the probe, no grad)."""
    gen = torch.Generator(device=data.y.device).manual_seed(1)
    batches = list(data.batches(batch, augment=True, shuffle=False, generator=gen, drop_last=True))[:n_batches]
    measure_iim(model, batches[:1])  # warm-up
    synchronize(batches[0][0].device)
    start = time.perf_counter()
    measure_iim(model, batches)
    synchronize(batches[0][0].device)
    return (time.perf_counter() - start) / (len(batches) * batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--C", type=int, default=16)
    parser.add_argument("--N", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    device = resolve_device(args.device)
    torch.manual_seed(0)
    data = images(device, args.batch * max(4, args.steps // 2))
    cfg = SearchConfig(C=args.C, N=args.N, batch_size=args.batch)
    model = Nb201Supernet(args.C, args.N).to(device)
    method = IsDartsNb201(model, cfg)
    print(f"device: {describe_device(device)}; torch {torch.__version__}; NB201 supernet C={args.C} N={args.N}, "
          f"batch {args.batch}, {args.steps} timed steps after {args.warmup} warm-up")

    full_step = time_train(method, data, args.batch, args.steps, args.warmup)
    print(f"all 5 ops alive      : {args.batch / full_step:8.1f} images/s ({full_step * 1000:.0f} ms/step)")
    iim_per_image = time_iim(model, data, args.batch, n_batches=max(2, args.steps // 2))
    train_per_image = full_step / args.batch
    print(f"IIM pass             : {1 / iim_per_image:8.1f} images/s")
    print(f"IIM share of an epoch: {iim_per_image / (iim_per_image + train_per_image):8.1%} "
          "(code setting: IIM over all training images once after a shrink epoch)")
    for n_samples in (200, 1024):
        share = n_samples * iim_per_image / (n_samples * iim_per_image + 50_000 * train_per_image)
        print(f"IIM share, {n_samples:>4} samples : {share:8.2%} of a 50k-image epoch")

    mask = torch.zeros(6, 5)
    for e, op in enumerate(Nb201Genotype.from_arch_str(FINAL_CELL).op_indices()):
        mask[e, op] = 1
    model.set_mask(mask)
    single = time_train(method, data, args.batch, args.steps, args.warmup)
    print(f"after shrinking (1/edge): {args.batch / single:6.1f} images/s ({single * 1000:.0f} ms/step), "
          f"{full_step / single:.2f}x faster")


if __name__ == "__main__":
    main()
