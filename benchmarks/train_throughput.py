"""Training throughput: iterations/s and samples/s of the full training step.

The step is the loop's own :func:`segrefiner.training.loop.training_step` (per-crop ``t`` and
noise, ``q_sample``, forward, BCE + texture loss, backward, AdamW) on synthetic crops, so the
figures are the network's cost without data loading. ``--data ROOT`` also times the LR data
pipeline (one worker-free sample at a time: read, online degradation, crop, resize, flip).

    python benchmarks/train_throughput.py                        # CPU: tiny at 64/128 px
    python benchmarks/train_throughput.py --data data/demo       # + LR samples/s of the data
    python benchmarks/train_throughput.py --device cuda          # official, fp32 vs bf16,
                                                                 # batch 8/16/32, peak memory
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from segrefiner.diffusion import DiscreteDiffusion
from segrefiner.model import build_unet
from segrefiner.training.config import TrainConfig, load_train_config
from segrefiner.training.loop import training_step
from segrefiner.training.optim import build_optimizer
from segrefiner.training.sampling import crop_generator


def _batch(batch: int, size: int, device: torch.device):
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(batch, 3, size, size, generator=gen).to(device)
    fine = (torch.rand(batch, 1, size, size, generator=gen) > 0.5).float().to(device)
    coarse = (torch.rand(batch, 1, size, size, generator=gen) > 0.5).float().to(device)
    return image, fine, coarse


def time_steps(
    preset: str,
    batch: int,
    size: int,
    device: torch.device,
    bf16: bool,
    steps: int,
    warmup: int,
) -> dict[str, float]:
    """Median seconds per training step and peak CUDA memory (GiB) of ``steps`` steps."""
    config: TrainConfig = load_train_config(None, [f"model.preset={preset}"])
    model = build_unet(preset).to(device).train()
    optimizer = build_optimizer(model, config.optim)
    diffusion = DiscreteDiffusion()
    image, fine, coarse = _batch(batch, size, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(warmup + steps):
        gens = [crop_generator(0, i * batch + k, 0) for k in range(batch)]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        training_step(model, optimizer, diffusion, image, fine, coarse, gens, config, bf16=bf16)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    return {
        "s_per_it": seconds,
        "it_per_s": 1 / seconds,
        "samples_per_s": batch / seconds,
        "peak_gib": peak,
    }


def time_data(root: str, size: int, samples: int) -> float:
    """LR training samples per second of one process (no workers)."""
    from segrefiner.training.data_lr import LRTrainingSet

    config = load_train_config(None, [f"data.root={root}", f"data.crop_size={size}"])
    dataset = LRTrainingSet.from_config(config.data, seed=0)
    dataset[0]
    start = time.perf_counter()
    for p in range(1, samples + 1):
        dataset[p]
    return samples / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--presets", nargs="+", default=None)
    parser.add_argument("--batches", nargs="+", type=int, default=None)
    parser.add_argument("--sizes", nargs="+", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per setting")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--data", default=None, help="demo/LVIS data root: also time the LR data")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    presets = args.presets or (["official"] if cuda else ["tiny"])
    batches = args.batches or ([8, 16, 32] if cuda else [4, 8])
    sizes = args.sizes or ([256] if cuda else [64, 128])
    steps = args.steps or (10 if cuda else 3)
    dtypes = [False, True] if cuda else [False]
    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}")
    print(
        f"{'preset':>8} {'size':>5} {'batch':>5} {'dtype':>8} {'s/it':>8} {'it/s':>7} {'samples/s':>10} {'peak GiB':>9}"
    )
    for preset in presets:
        for size in sizes:
            for batch in batches:
                for bf16 in dtypes:
                    try:
                        r = time_steps(
                            preset, batch, size, device, bf16, steps, warmup=2 if cuda else 1
                        )
                    except torch.OutOfMemoryError:
                        print(
                            f"{preset:>8} {size:>5} {batch:>5} {'bf16' if bf16 else 'fp32':>8}   out of memory"
                        )
                        torch.cuda.empty_cache()
                        continue
                    print(
                        f"{preset:>8} {size:>5} {batch:>5} {'bf16' if bf16 else 'fp32':>8} "
                        f"{r['s_per_it']:8.3f} {r['it_per_s']:7.2f} {r['samples_per_s']:10.1f} "
                        f"{r['peak_gib']:9.2f}"
                    )
    if args.data:
        for size in sizes:
            rate = time_data(args.data, size, samples=20)
            print(f"LR data pipeline at {size} px: {rate:.1f} samples/s per process")


if __name__ == "__main__":
    main()
