"""Peak memory of HR refinement against image size and patch batch size.

The local step has no cap on the number of patches (one per uncertain spot on the boundary);
this project runs them ``batch_size`` at a time, so memory should follow the image size (the
image, its coarse mask and two H x W accumulators) and not the patch count. Each row runs in a
fresh process and reports the peak resident memory of the refinement above the process's
memory before it (model and input arrays loaded), next to the same image with every patch in
one batch (the unbounded way).

    python benchmarks/hr_memory.py                       # tiny network, CPU
    python benchmarks/hr_memory.py --sizes 2048 4096 --batches 8 32
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _one(side: int, batch: int | None, model_size: int, preset: str) -> dict:
    """Run in a child process: refine one synthetic side x side image."""
    import numpy as np
    import torch

    import segrefiner.inference.semantic as semantic
    from segrefiner.diffusion import DiscreteDiffusion
    from segrefiner.inference import InferenceConfig, item_generator
    from segrefiner.model import build_unet

    torch.manual_seed(0)
    model = build_unet(preset).eval()
    diffusion = DiscreteDiffusion()
    rng = np.random.default_rng(0)
    height, width = side, side * 3 // 4
    yy, xx = np.mgrid[0:height, 0:width]
    # a wavy blob with a long boundary (many patches) and a textured image
    angle = np.arctan2(yy - height / 2, xx - width / 2)
    radius = np.hypot(yy - height / 2, xx - width / 2)
    coarse = radius < (0.35 * width) * (1 + 0.15 * np.sin(24 * angle))
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    image[coarse] = (image[coarse] // 2 + 100).astype(np.uint8)

    counted = []
    local_step = semantic.local_step

    def counting(model, diffusion, patches, size):
        counted.append(len(patches))
        return local_step(model, diffusion, patches, size)

    semantic.local_step = counting
    # batch None: every patch in one batch (as the official local step)
    config = InferenceConfig(model_size=model_size, patch_size=model_size)
    config = config.replace(batch_size=batch or 10**9)
    base = _rss_mb()
    start = time.perf_counter()
    item = semantic.SemanticItem(image, coarse, item_generator(0, "bench"))
    semantic.refine_semantic_group(model, diffusion, [item], config)
    patches = sum(counted)
    return {
        "side": side,
        "pixels": height * width,
        "patches": patches,
        "batch": batch or "all",
        "peak_mb_above_model": round(_rss_mb() - base, 1),
        "seconds": round(time.perf_counter() - start, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", type=int, default=[1024, 2048, 3072])
    parser.add_argument("--batches", nargs="+", type=int, default=[8, 32])
    parser.add_argument("--model-size", type=int, default=64)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        side, batch = json.loads(args.child)
        print(json.dumps(_one(side, batch, args.model_size, args.preset)))
        return
    print(f"preset {args.preset}, model_size = patch_size = {args.model_size}, CPU")
    print(f"{'image':>11} {'patches':>8} {'batch':>6} {'peak MB':>8} {'seconds':>8}")
    for side in args.sizes:
        for batch in [*args.batches, None]:
            child = [
                sys.executable, __file__, "--child", json.dumps([side, batch]),
                "--model-size", str(args.model_size), "--preset", args.preset,
            ]  # fmt: skip
            row = json.loads(
                subprocess.run(child, check=True, capture_output=True, text=True).stdout
            )
            shape = f"{side}x{side * 3 // 4}"
            print(
                f"{shape:>11} {row['patches']:>8} {row['batch']!s:>6} "
                f"{row['peak_mb_above_model']:>8.1f} {row['seconds']:>8.2f}"
            )


if __name__ == "__main__":
    main()
