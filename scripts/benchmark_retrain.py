"""Training throughput of the DARTS-space evaluation networks: CIFAR-10 retraining and ImageNet transfer.

Prints one line per measurement: images/s of full training steps (forward with the auxiliary head, drop
path, backward, SGD step) for a named genotype, median over timed steps after warm-up, the device
synchronised around each step. Defaults are the paper's settings (CIFAR: C=36, 20 layers, batch 96;
ImageNet mobile: C=48, 14 layers, batch 128 at 224x224).

    python scripts/benchmark_retrain.py --device auto --genotype ISDARTS --steps 5
    python scripts/benchmark_retrain.py --device cuda --imagenet --channels-last
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from isdarts.spaces.darts.genotype import load_named_genotype
from isdarts.spaces.darts.network import NetworkCIFAR, NetworkImageNet, count_parameters_m
from isdarts.train.retrain import training_loss
from isdarts.train.runtime import describe_device, resolve_device, synchronize


def time_steps(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, warmup: int,
               autocast: bool) -> float:
    """Median seconds per training step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    model.train()
    times = []
    for i in range(warmup + steps):
        synchronize(x.device)
        start = time.perf_counter()
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            logits, logits_aux = model(x)
            loss = training_loss(logits.float(), None if logits_aux is None else logits_aux.float(), y, 0.4)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        synchronize(x.device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--genotype", default="ISDARTS")
    p.add_argument("--imagenet", action="store_true", help="the ImageNet mobile network instead of CIFAR")
    p.add_argument("--C", type=int, default=None)
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--size", type=int, default=None, help="input resolution")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    args = p.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    genotype = load_named_genotype(args.genotype)
    if args.imagenet:
        C, layers, batch, size = args.C or 48, args.layers or 14, args.batch or 128, args.size or 224
        model = NetworkImageNet(genotype, C=C, num_classes=1000, layers=layers, auxiliary=True)
        classes = 1000
    else:
        C, layers, batch, size = args.C or 36, args.layers or 20, args.batch or 96, args.size or 32
        model = NetworkCIFAR(genotype, C=C, num_classes=10, layers=layers, auxiliary=True)
        model.drop_path_prob = 0.2
        classes = 10
    model = model.to(device)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    seconds = time_steps(model, x, y, args.steps, args.warmup, args.bf16)
    what = "ImageNet mobile" if args.imagenet else "CIFAR-10"
    print(f"device: {describe_device(device)}")
    print(f"{what} {args.genotype} C={C} layers={layers} batch={batch} {size}x{size} "
          f"({count_parameters_m(model):.2f}M params){' channels_last' if args.channels_last else ''}"
          f"{' bf16' if args.bf16 else ''}: {batch / seconds:.1f} images/s ({1000 * seconds:.0f} ms/step)")


if __name__ == "__main__":
    main()
