"""Throughput of refine-coco (instances/s) and refine-big (images/s) on the demo data.

Compares, in the same run and on the same data:
  (a) baseline: float32, one image's instances per network batch (as the official code does),
      through the public ``Refiner`` API;
  (b) optimised: the refine-coco stage with instances of many images packed into full batches,
      plus bfloat16 autocast / channels_last / torch.compile when asked (meant for CUDA).
Prints the speed-up, and on CUDA the model FLOP utilisation (6 x forward FLOPs per instance).
Also checks the optimised masks against float32 (mean mask IoU; the target with bf16 is >= 0.999).

    python benchmarks/refine_throughput.py --preset tiny --model-size 128          # CPU
    python benchmarks/refine_throughput.py --checkpoint official --device cuda --bf16 --channels-last --compile
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from pipelines.config import RefineConfig
from pipelines.refine_coco import refine_coco
from pipelines.refine_hr import list_samples, refine_hr
from pipelines.settings import add_options, from_args
from segrefiner import rle
from segrefiner.checkpoint import load_checkpoint
from segrefiner.data.coco import load_coco_instances, load_segmentor_results
from segrefiner.data.demo import generate_demo
from segrefiner.io import read_mask
from segrefiner.model import PRESETS, build_unet
from segrefiner.refiner import Refiner

H100_BF16_PEAK = 800e12  # dense bf16 FLOP/s used by the project's targets


def forward_flops(checkpoint: str, size: int) -> float:
    """FLOPs of one forward pass at ``size`` x ``size`` of a preset's or checkpoint's network."""
    if checkpoint in PRESETS:
        model = build_unet(checkpoint)
    else:
        model, _ = load_checkpoint(checkpoint)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 4, size, size), torch.zeros(1, dtype=torch.long))
    return float(counter.get_total_flops())


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def baseline_coco(
    demo: Path, checkpoint: str, device: str, model_size: int
) -> tuple[float, int, list]:
    """Official-style: per image, all its instances in one batch, float32."""
    ann = load_coco_instances(
        demo / "coco/annotations/instances_val2017.json", demo / "coco/val2017"
    )
    res = load_segmentor_results(demo / "results/segmentor_val.segm.json", ann)
    refiner = Refiner.from_checkpoint(checkpoint, device=device, seed=0)
    refiner.config = refiner.config.replace(model_size=model_size)
    if checkpoint in PRESETS:  # the stage seeds preset weights with 0; use the same network
        torch.manual_seed(0)
        refiner.model.load_state_dict(build_unet(checkpoint).state_dict())
    refined, count = [], 0
    sync(device)
    start = time.perf_counter()
    for group in res:
        image = res.read_image(group.image.id)
        masks = np.stack([d.mask() for d in group.detections])
        keys = [("coco", group.image.id, d.index) for d in group.detections]
        out = refiner.refine_instances(image, masks, keys=keys)
        count += int((masks.reshape(len(masks), -1).sum(1) >= refiner.config.area_thr).sum())
        refined += list(out)
    sync(device)
    return time.perf_counter() - start, count, refined


def bench_coco(args: argparse.Namespace, opt: RefineConfig) -> None:
    """refine-coco: (a) the official-style baseline against (b) the packed stage."""
    base_s, n_inst, base_masks = baseline_coco(
        args.demo, args.checkpoint, args.device, args.model_size
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "refined.json"
        if args.compile:  # compile outside the timed region
            refine_coco(
                args.demo / "results/segmentor_val.segm.json",
                args.demo / "coco/annotations/instances_val2017.json",
                args.demo / "coco/val2017",
                Path(tmp) / "warm.json",
                opt,
            )
        sync(args.device)
        start = time.perf_counter()
        summary = refine_coco(
            args.demo / "results/segmentor_val.segm.json",
            args.demo / "coco/annotations/instances_val2017.json",
            args.demo / "coco/val2017",
            out,
            opt,
        )
        sync(args.device)
        opt_s = time.perf_counter() - start
        entries = json.loads(out.read_text())
    opt_masks = [rle.decode(e["segmentation"], *e["segmentation"]["size"]) for e in entries]
    ious = [
        (a & b).sum() / max((a | b).sum(), 1) for a, b in zip(base_masks, opt_masks, strict=True)
    ]
    assert summary["refined"] == n_inst
    print(f"\nrefine-coco (instances refined: {n_inst})")
    print(
        f"  (a) baseline  float32, per-image batches : {n_inst / base_s:8.2f} inst/s ({base_s:.1f} s)"
    )
    label = label_of(args)
    print(f"  (b) optimised packed, {label:18s}: {n_inst / opt_s:8.2f} inst/s ({opt_s:.1f} s)")
    print(f"  speed-up (b)/(a): {base_s / opt_s:.2f}x")
    print(f"  mask IoU (b) vs (a): mean {np.mean(ious):.5f}, min {np.min(ious):.5f}")
    if args.device.startswith("cuda"):
        flops = 6 * forward_flops(args.checkpoint, args.model_size)
        print(
            f"  MFU (b) vs 800 TFLOP/s bf16 peak: {100 * flops * n_inst / opt_s / H100_BF16_PEAK:.1f}%"
        )


def label_of(args: argparse.Namespace) -> str:
    return (
        "+".join(k for k in ("bf16", "channels_last", "compile") if getattr(args, k)) or "float32"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--demo", type=Path, default=Path("data/demo"))
    parser.add_argument("--scale", default="default", help="demo scale to generate if missing")
    parser.add_argument(
        "--checkpoint",
        "--preset",
        default="tiny",
        dest="checkpoint",
        help="checkpoint file or preset name (default: tiny)",
    )
    # The stage's settings as the CLI has them, but seed and guard: the baselines run with
    # seed 0 and no guard, and the IoU check compares like with like.
    add_options(parser, RefineConfig, exclude={"checkpoint", "seed", "guard"})
    # The baselines need the sizes as numbers; the store is off: the masks are compared as the
    # PNG/JSON outputs, and only the refinement is timed.
    parser.set_defaults(model_size=256, batch_size=32, write_store=False)
    parser.add_argument("--skip-coco", action="store_true")
    parser.add_argument("--skip-big", action="store_true")
    args = parser.parse_args()

    generate_demo(args.demo, seed=0, scale=args.scale)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"device: {device_name}; torch {torch.__version__}; threads {torch.get_num_threads()}")
    print(f"checkpoint: {args.checkpoint}; model_size {args.model_size}; batch {args.batch_size}")

    opt = from_args(RefineConfig, args)
    if not args.skip_coco:
        bench_coco(args, opt)

    if not args.skip_big:
        records = list_samples("big", args.demo, folder="big/test")
        baseline = RefineConfig(
            args.checkpoint,
            device=args.device,
            model_size=args.model_size,
            batch_size=args.batch_size,
            pack_images=1,
            write_store=False,
        )
        masks, rates = {}, {}
        with tempfile.TemporaryDirectory() as tmp:  # warm-up: model load, first kernels
            refine_hr(records[:1], Path(tmp) / "warm", baseline)
        for label, cfg in (("baseline", baseline), ("optimised", opt)):
            with tempfile.TemporaryDirectory() as tmp:
                sync(args.device)
                start = time.perf_counter()
                refine_hr(records, Path(tmp) / "big", cfg)
                sync(args.device)
                seconds = time.perf_counter() - start
                masks[label] = [
                    read_mask(Path(tmp) / "big" / f"{r.name}_refine.png") for r in records
                ]
            rates[label] = len(records) / seconds
        ious = [
            (a & b).sum() / max((a | b).sum(), 1)
            for a, b in zip(masks["baseline"], masks["optimised"], strict=True)
        ]
        print(f"\nrefine-big ({len(records)} images)")
        print(f"  (a) baseline  float32, one image at a time: {rates['baseline']:.3f} images/s")
        print(
            f"  (b) optimised {opt.pack_images} images packed, {label_of(args):13s}: "
            f"{rates['optimised']:.3f} images/s"
        )
        print(f"  speed-up (b)/(a): {rates['optimised'] / rates['baseline']:.2f}x")
        print(f"  mask IoU (b) vs (a): mean {np.mean(ious):.5f}, min {np.min(ious):.5f}")


if __name__ == "__main__":
    main()
