"""CPU network calls: one batch of N items against N calls of one item, per preset.

On the CPU the sampling loop calls the network one item per call
(``segrefiner.diffusion._run_network``): CPU kernels choose their blocking by batch size, so a
batched call can move an item's logits in the last bits with its companions. This prints what
that costs or saves, as the ratio of the one-by-one time to the batched time (below 1: one by
one is faster), best of ``--repeats`` in the same process, and the largest logit difference
between the two.

    python benchmarks/cpu_batching.py --presets tiny small official --batch 4 --threads 2

Measured on 2 AMD EPYC cores, 256 x 256: tiny 0.55-0.57, small 0.56-0.61, official 0.91-1.06.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segrefiner.model import build_unet


def _one_by_one(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.cat([model(x[i : i + 1], t[i : i + 1]) for i in range(len(x))])


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((args.batch, 4, args.size, args.size), generator=generator)
    t = torch.full((args.batch,), 3, dtype=torch.long)
    print(f"batch {args.batch}, {args.size} x {args.size}, {args.threads} threads")
    for preset in args.presets:
        torch.manual_seed(0)
        model = build_unet(preset).eval()
        with torch.no_grad():
            model(x[:1], t[:1])  # warm-up
            batched = functools.partial(model, x, t)
            one_by_one = functools.partial(_one_by_one, model, x, t)
            together, alone = _best(batched, args.repeats), _best(one_by_one, args.repeats)
            diff = (batched() - one_by_one()).abs().max().item()
        print(
            f"{preset:>9}: batched {together:.3f} s, one by one {alone:.3f} s, "
            f"ratio {alone / together:.2f}, max logit difference {diff:.1e}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
