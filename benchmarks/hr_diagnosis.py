"""Where the HR (semantic) path loses accuracy: stage by stage on the demo DIS and BIG sets.

For every image it follows the official HR inference (spec section 5.2) and scores, against
the ground truth, pooled over each set:

* ``coarse``: the coarse mask given to the refiner;
* ``resampled``: the coarse mask through the global pass's resampling alone (nearest down to
  ``model_size``, nearest back up): what a network that changed nothing would return as
  ``global_mask``; the ceiling of the global pass for a near-identity model;
* ``global``: the network's global pass (steps 5..1 at ``model_size``), upsampled;
* ``final``: after the local patches (step 0 on native-resolution patches; they refine
  ``global`` or, where the checkpoint's inference settings say ``local_mask: coarse``, the
  coarse mask itself);
* ``covered``: the share of ground-truth boundary pixels (3-px band) that some patch covers:
  where no patch lands, ``global_mask`` is the answer, staircase and all.

Without ``--checkpoint`` only the checkpoint-free columns are computed (fast).

    python benchmarks/hr_diagnosis.py --sizes 128 256
    python benchmarks/hr_diagnosis.py --checkpoint checkpoints/segrefiner_hr_real.pt
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def _resample(mask: np.ndarray, size: int) -> np.ndarray:
    """Nearest down to size x size and back (torch legacy nearest, as the global pass)."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    small = F.interpolate(t, (size, size), mode="nearest")
    return (F.interpolate(small, mask.shape, mode="nearest")[0, 0] >= 0.5).numpy()


def _band(mask: np.ndarray, width: int = 3) -> np.ndarray:
    from scipy import ndimage

    inner = ndimage.binary_erosion(mask, iterations=width)
    outer = ndimage.binary_dilation(mask, iterations=width)
    return outer & ~inner


def _samples(root: str, sets: list[str]):
    from segrefiner.data.folders import load_sample, read_big, read_dis

    for name in sets:
        if name == "BIG":
            records = read_big(root, "big/test", require_coarse=True)
        else:
            records = read_dis(root, [name], segmentor="isnet", require_coarse=True)
        for record in records:
            yield name, record.sample_id, load_sample(record)


def _staged(refiner, image, coarse, key):
    """The HR path split into its stages; returns (global_mask, final, boxes)."""
    import torch

    from segrefiner.inference.preprocess import normalize_image
    from segrefiner.inference.semantic import (
        PatchAccumulator,
        global_step,
        local_base,
        local_step,
        mixed_boxes,
        propose_patches,
    )

    config = refiner.config
    (generator,) = refiner._generators([key])
    img = normalize_image(image, refiner.device)
    mask = torch.from_numpy(coarse.astype(bool)).to(refiner.device)
    with torch.no_grad():
        ((global_mask, fine_prob, _),) = global_step(
            refiner.model, refiner.diffusion, [img], [mask], [generator], config.model_size
        )
        height, width = global_mask.shape
        base, _ = local_base(config, mask, global_mask, global_mask)
        boxes = propose_patches(fine_prob.cpu().numpy(), height, width, config)
        boxes = boxes[mixed_boxes(base, boxes)]
        acc = PatchAccumulator(base)
        for start in range(0, len(boxes), config.batch_size):
            chunk = boxes[start : start + config.batch_size].tolist()
            probs = local_step(
                refiner.model,
                refiner.diffusion,
                [(img, base, box) for box in chunk],
                config.model_size,
            )
            acc.add(probs, chunk)
    return global_mask.cpu().numpy(), acc.result().cpu().numpy(), boxes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data/demo")
    parser.add_argument("--sets", nargs="+", default=["DIS-VD", "DIS-TE1", "BIG"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 256])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--model-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    from segrefiner.metrics import mean_boundary_accuracy, pooled_iou
    from segrefiner.refiner import Refiner

    torch.set_num_threads(args.threads)
    refiner = None
    if args.checkpoint:
        refiner = Refiner.from_checkpoint(args.checkpoint, seed=0)
        if args.model_size:
            refiner.config = refiner.config.replace(model_size=args.model_size)
    rows: dict[str, dict[str, list]] = {}
    started = time.perf_counter()
    for set_name, sample_id, sample in _samples(args.data, args.sets):
        gt, coarse = sample.gt.astype(bool), sample.coarse.astype(bool)
        cols = rows.setdefault(set_name, {"gt": [], "coarse": [], "covered": [], "patches": []})
        cols["gt"].append(gt)
        cols["coarse"].append(coarse)
        for size in args.sizes:
            cols.setdefault(f"resampled@{size}", []).append(_resample(coarse, size))
        if refiner is not None:
            global_mask, final, boxes = _staged(refiner, sample.image, coarse, sample_id)
            cols.setdefault("global", []).append(global_mask)
            cols.setdefault("final", []).append(final)
            band = _band(gt)
            covered = np.zeros_like(gt)
            for x0, y0, x1, y1 in boxes.tolist():
                covered[y0:y1, x0:x1] = True
            cols["covered"].append(float((covered & band).sum() / max(band.sum(), 1)))
            cols["patches"].append(len(boxes))
    report: dict[str, dict] = {}
    for set_name, cols in rows.items():
        gts = cols.pop("gt")
        covered, patches = cols.pop("covered"), cols.pop("patches")
        sides = [max(g.shape) for g in gts]
        entry: dict = {"images": len(gts), "long_side": [min(sides), max(sides)]}
        for name, masks in cols.items():
            entry[name] = {
                "iou": round(100 * pooled_iou(masks, gts), 2),
                "mba": round(100 * mean_boundary_accuracy(masks, gts).mba, 2),
            }
        if covered:
            entry["boundary_covered_by_patches"] = round(100 * float(np.mean(covered)), 1)
            entry["patches_per_image"] = round(float(np.mean(patches)), 1)
        report[set_name] = entry
    report["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for set_name, entry in report.items():
        if set_name == "seconds":
            continue
        print(f"{set_name}: {entry['images']} images, long side {entry['long_side']}")
        for name, value in entry.items():
            if isinstance(value, dict):
                print(f"  {name:<14} IoU {value['iou']:6.2f}  mBA {value['mba']:6.2f}")
        if "patches_per_image" in entry:
            print(
                f"  patches/image {entry['patches_per_image']}, GT boundary covered "
                f"{entry['boundary_covered_by_patches']}%"
            )
    print(f"{report['seconds']} s")


if __name__ == "__main__":
    main()
