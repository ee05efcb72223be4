"""What the HR (semantic) path's local step would give with another decision rule, measured
from one refinement per mask.

Each mask is refined once with the checkpoint's own settings. The final foreground
probability (the mean patch probability where patches cover, the base mask elsewhere) is
kept, and the result is re-decided these ways:

* ``t<tau>``: the probability thresholded at ``tau`` instead of 0.5 (``t0.5`` is the refiner's
  own output);
* ``band<r>``: the refined mask where the pixel lies within ``r`` px of the coarse mask's
  boundary, the coarse mask farther away (does the model flip whole regions?);
* ``add`` / ``remove``: only the pixels the network turns on (coarse | refined) or only those
  it turns off (coarse & refined).

Scores per set, pooled IoU / mBA / mean IoU (x100), against the coarse masks:

* ``--data real``: the real-photo *training* split (``segrefiner data real``), each
  instance's whole-image mask of each coarse kind (seeded as ``segrefiner eval real``);
* ``--data demo``: the demo DIS-VD, DIS-TE1 (isnet masks) and BIG sets.

Choose a rule on these, never on the evaluation split; confirm it there with
``segrefiner eval real --mode semantic``.

    python benchmarks/hr_local_sweep.py --checkpoint runs/real_hr/model.pt --data real
    python benchmarks/hr_local_sweep.py --checkpoint runs/real_hr/model.pt --data demo
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator

import numpy as np

TAUS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55)
BANDS = (4, 16, 64)


class ProbabilityTap:
    """Keeps the final probability of the last semantic refinement.

    The library returns the thresholded mask only; this wraps
    :meth:`segrefiner.inference.semantic.PatchAccumulator.result` for the length of the
    benchmark (restored by :meth:`close`)."""

    def __init__(self) -> None:
        from segrefiner.inference import semantic

        self._cls = semantic.PatchAccumulator
        self._orig = self._cls.result
        self.last: np.ndarray | None = None
        tap = self

        def result(acc):
            tap.last = acc.probability(acc.global_mask.float()).cpu().numpy()
            return tap._orig(acc)

        self._cls.result = result

    def take(self) -> np.ndarray | None:
        prob, self.last = self.last, None
        return prob

    def close(self) -> None:
        self._cls.result = self._orig


def _distance_to_boundary(coarse: np.ndarray) -> np.ndarray:
    import cv2

    c8 = coarse.astype(np.uint8)
    inside = cv2.distanceTransform(c8, cv2.DIST_L2, 5)
    outside = cv2.distanceTransform(1 - c8, cv2.DIST_L2, 5)
    return np.where(coarse, inside, outside)


def variants(coarse: np.ndarray, refined: np.ndarray, prob: np.ndarray | None) -> dict:
    """The re-decided masks of one refinement (all equal to ``refined`` when no refinement
    ran, e.g. a coarse mask below ``min_foreground``)."""
    if prob is None:
        out = {f"t{t:g}": refined for t in TAUS}
    else:
        if not np.array_equal(prob >= 0.5, refined):  # the tap saw another mask
            raise RuntimeError("probability and refined mask disagree")
        out = {f"t{t:g}": prob >= t for t in TAUS}
    dist = _distance_to_boundary(coarse)
    out.update({f"band{r}": np.where(dist <= r, refined, coarse) for r in BANDS})
    out["add"] = coarse | refined  # only the pixels the network turns on
    out["remove"] = coarse & refined  # only the pixels it turns off
    return out


def _real_items(
    root: str, seed: int
) -> Iterator[tuple[str, object, np.ndarray, np.ndarray, object]]:
    from segrefiner.data.coarse_kinds import COARSE_KINDS, coarse_mask
    from segrefiner.data.coco import load_coco_instances
    from segrefiner.evaluation import REAL_TRAIN, coarse_rng

    instances = load_coco_instances(f"{root}/{REAL_TRAIN}", f"{root}/images")
    for image_id, info in instances.images.items():
        anns = [a for a in instances.annotations_of(image_id) if not a.iscrowd]
        if not anns:
            continue
        image = instances.read_image(image_id)
        for ann in anns:
            gt = instances.annotation_mask(ann)
            for kind in COARSE_KINDS:
                coarse = coarse_mask(kind, gt, coarse_rng(seed, kind, info.file_name, ann.id))
                yield kind, image, gt, coarse, (kind, ann.id)


def _demo_items(root: str) -> Iterator[tuple[str, object, np.ndarray, np.ndarray, object]]:
    from segrefiner.data.folders import load_sample
    from segrefiner.training.demo import hr_demo_records

    for name, record in hr_demo_records(root):
        sample = load_sample(record)
        gt, coarse = sample.gt.astype(bool), sample.coarse.astype(bool)
        yield name, sample.image, gt, coarse, record.sample_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", choices=["real", "demo"], default="real")
    parser.add_argument("--root", help="data root (default data/real or data/demo)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write the table to this file")
    args = parser.parse_args(argv)

    import torch

    from segrefiner.metrics import iou, mean_boundary_accuracy, pooled_iou
    from segrefiner.refiner import Refiner

    torch.set_num_threads(args.threads)
    root = args.root or f"data/{args.data}"
    refiner = Refiner.from_checkpoint(args.checkpoint, seed=args.seed)
    items = _real_items(root, args.seed) if args.data == "real" else _demo_items(root)
    groups: dict[str, list] = {}
    tap = ProbabilityTap()
    started = time.perf_counter()
    try:
        for group, image, gt, coarse, key in items:
            refined = refiner.refine(image, coarse, key=key)
            groups.setdefault(group, []).append((gt, coarse, variants(coarse, refined, tap.take())))
    finally:
        tap.close()

    def score(masks: list[np.ndarray], gts: list[np.ndarray]) -> list[float]:
        return [pooled_iou(masks, gts), mean_boundary_accuracy(masks, gts).mba,
                float(np.mean([iou(m, g) for m, g in zip(masks, gts, strict=True)]))]  # fmt: skip

    report: dict[str, dict[str, list[float]]] = {}
    for group, rows in groups.items():
        gts = [r[0] for r in rows]
        report[group] = {"coarse": score([r[1] for r in rows], gts)}
        for name in rows[0][2]:
            report[group][name] = score([r[2][name] for r in rows], gts)
    print(f"{args.checkpoint} on {root} ({time.perf_counter() - started:.0f} s); "
          "pooled IoU / mBA / mean IoU, x100")  # fmt: skip
    names = list(next(iter(report.values())))
    print(f"{'rule':8} " + " ".join(f"{g:>20}" for g in report))
    for name in names:
        cells = ["{:.2f}/{:.2f}/{:.2f}".format(*(100 * v for v in report[g][name])) for g in report]
        print(f"{name:8} " + " ".join(f"{c:>20}" for c in cells))
    if args.json:
        from segrefiner.io import write_json

        write_json(args.json, report, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
