"""Speed of the metrics against their direct formulations, on generated data.

    .venv/bin/python benchmarks/metrics.py [--images 200] [--pairs 20] [--workers 2]

Prints seconds, speed-ups and the largest difference between the numbers (which should be 0):

- mBA over N high-resolution (2048 x 1536) mask pairs: ``mean_boundary_accuracy`` against
  CascadePSP's ``compute_boundary_acc`` written out (one whole-image gradient per radius).
- Boundary AP on a COCO-like set (640 x 480 images, ~7 objects and 100 detections each):
  ``instance_ap(..., "boundary")`` against (a) the direct formulation, every pair's two bands
  recomputed on the whole image, and (b) the Boundary IoU API's way, every annotation's band
  computed once on the whole image and compared as RLE. Plain pycocotools mask AP on the same
  set is printed as the floor (matching and accumulation cost, no bands).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import time
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from segrefiner.metrics import instance_ap, mean_boundary_accuracy
from segrefiner.metrics._reference import (
    boundary_accuracy_reference,
    mask_to_boundary_reference,
    reference_boundary_cocoeval,
    scored_cell,
)
from segrefiner.metrics.instances import check_results, load_annotations

NUM_CATEGORIES = 20


def _blob(rng: np.random.Generator, h: int, w: int, radius: float, center=None) -> np.ndarray:
    """An irregular star-shaped object, ``H x W`` uint8 {0, 1}."""
    cx, cy = center if center is not None else (rng.uniform(0, w), rng.uniform(0, h))
    angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    wobble = (
        1
        + 0.25 * np.sin(3 * angles + rng.uniform(0, 6))
        + 0.1 * np.sin(9 * angles + rng.uniform(0, 6))
    )
    wobble += np.convolve(rng.normal(0, 0.08, 64), np.ones(3) / 3, mode="same")
    r = radius * wobble
    pts = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], 1).round().astype(np.int32)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [pts], 1)
    return mask


def high_res_pairs(n: int, seed: int = 0, size=(1536, 2048)) -> list[tuple[np.ndarray, np.ndarray]]:
    """BIG-like pairs: 1-3 large objects; the prediction is a blurred, noisy version."""
    rng = np.random.default_rng(seed)
    h, w = size
    pairs = []
    for _ in range(n):
        gt = np.zeros(size, np.uint8)
        for _ in range(int(rng.integers(1, 4))):
            gt |= _blob(
                rng,
                h,
                w,
                rng.uniform(0.12, 0.3) * min(h, w),
                (rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h),
            )
        noise = cv2.GaussianBlur(rng.random(size).astype(np.float32), (0, 0), 8)
        soft = cv2.GaussianBlur(gt.astype(np.float32), (0, 0), 6)
        pred = (soft + (noise - 0.5) * 3 > 0.5).astype(np.uint8)
        pairs.append((pred.astype(bool), gt.astype(bool)))
    return pairs


def _rle(mask: np.ndarray) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {
        "size": [int(rle["size"][0]), int(rle["size"][1])],
        "counts": rle["counts"].decode("ascii"),
    }


def coco_like_set(
    num_images: int, seed: int = 0, objects: int = 7, detections: int = 100, size=(480, 640)
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """COCO-style annotations (RLE) and results: per object 4 perturbed detections, the rest
    random shapes of random categories with lower scores."""
    rng = np.random.default_rng(seed)
    h, w = size
    images, anns, results = [], [], []
    kernel = np.ones((3, 3), np.uint8)
    for img_id in range(1, num_images + 1):
        images.append({"id": img_id, "height": h, "width": w, "file_name": f"{img_id:06d}.jpg"})
        for _ in range(objects):
            cat = int(rng.integers(1, NUM_CATEGORIES + 1))
            gt = _blob(rng, h, w, float(np.exp(rng.uniform(np.log(6), np.log(140)))))
            if not gt.any():
                continue
            x, y, bw, bh = cv2.boundingRect(gt)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img_id,
                    "category_id": cat,
                    "segmentation": _rle(gt),
                    "area": float(gt.sum()),
                    "bbox": [float(x), float(y), float(bw), float(bh)],
                    "iscrowd": 0,
                }
            )
            for _ in range(4):
                det = np.roll(gt, (int(rng.integers(-4, 5)), int(rng.integers(-4, 5))), (0, 1))
                grow = int(rng.integers(-2, 3))
                if grow > 0:
                    det = cv2.dilate(det, kernel, iterations=grow)
                elif grow < 0:
                    det = cv2.erode(det, kernel, iterations=-grow)
                results.append(
                    {
                        "image_id": img_id,
                        "category_id": cat,
                        "segmentation": _rle(det),
                        "score": float(rng.uniform(0.3, 1.0)),
                    }
                )
        while sum(1 for r in results if r["image_id"] == img_id) < detections:
            det = _blob(rng, h, w, float(np.exp(rng.uniform(np.log(5), np.log(100)))))
            if det.any():
                results.append(
                    {
                        "image_id": img_id,
                        "category_id": int(rng.integers(1, NUM_CATEGORIES + 1)),
                        "segmentation": _rle(det),
                        "score": float(rng.uniform(0.0, 0.6)),
                    }
                )
    categories = [{"id": c, "name": f"c{c}"} for c in range(1, NUM_CATEGORIES + 1)]
    return {"images": images, "annotations": anns, "categories": categories}, results


def _run_cocoeval(gt: dict, results: list, make) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        ev = make(coco_gt, coco_dt)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def official_style_cocoeval(coco_gt, coco_dt):
    """The Boundary IoU API's way: each annotation's band once, on the whole image, as RLE."""

    class PerAnnotationBoundaryCOCOeval(COCOeval):
        def _prepare(self):
            super()._prepare()
            for anns in (*self._gts.values(), *self._dts.values()):
                for ann in anns:
                    band = mask_to_boundary_reference(mask_utils.decode(ann["segmentation"]))
                    ann["boundary"] = mask_utils.encode(np.asfortranarray(band))

        def computeIoU(self, imgId, catId):  # the parent's name
            gt, dt = scored_cell(self, imgId, catId)
            if not gt and not dt:
                return []
            crowd = [int(g["iscrowd"]) for g in gt]
            mask_ious = mask_utils.iou(
                [d["segmentation"] for d in dt], [g["segmentation"] for g in gt], crowd
            )
            band_ious = mask_utils.iou(
                [d["boundary"] for d in dt], [g["boundary"] for g in gt], crowd
            )
            if len(mask_ious) == 0:
                return mask_ious
            ious = np.array(mask_ious)
            keep = np.asarray(crowd) == 0
            ious[:, keep] = np.minimum(ious[:, keep], np.asarray(band_ious)[:, keep])
            return ious

    return PerAnnotationBoundaryCOCOeval(coco_gt, coco_dt, iouType="segm")


def _timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def bench_mba(num_pairs: int, repeat: int) -> None:
    pairs = high_res_pairs(num_pairs)
    # Per image, the two implementations alternate and the best of ``repeat`` runs counts, so
    # that load from other processes on the machine does not favour either.
    t_ref = t_ours = 0.0
    ref = []
    for pred, gt in pairs:
        best_ref = best_ours = float("inf")
        for _ in range(repeat):
            value, t = _timed(boundary_accuracy_reference, pred, gt)
            best_ref = min(best_ref, t)
            _, t = _timed(mean_boundary_accuracy, [pred], [gt])
            best_ours = min(best_ours, t)
        ref.append(value)
        t_ref += best_ref
        t_ours += best_ours
    ours = mean_boundary_accuracy([p for p, _ in pairs], [g for _, g in pairs])
    delta = max(abs(a - b) for a, b in zip(ref, ours.per_image))
    ref_mba = sum(ref) / len(ref)
    print(f"mBA, {num_pairs} pairs of 2048x1536 (best of {repeat} per image):")
    print(f"  reference (per-radius whole-image gradients): {t_ref:7.2f} s")
    print(
        f"  segrefiner.metrics (one process):             {t_ours:7.2f} s   speed-up {t_ref / t_ours:5.1f}x"
    )
    print(
        f"  mBA {ours.mba:.12f} vs reference {ref_mba:.12f}; max |delta| per image {delta:.1e}, mBA {abs(ours.mba - ref_mba):.1e}"
    )


def bench_boundary_ap(num_images: int, workers: int, skip_naive: bool) -> None:
    gt, results = coco_like_set(num_images)
    print(
        f"boundary AP, {num_images} images 640x480, {len(gt['annotations'])} objects, "
        f"{len(results)} detections, {NUM_CATEGORIES} categories:"
    )
    _, t_segm = _timed(lambda: _run_cocoeval(gt, results, lambda g, d: COCOeval(g, d, "segm")))
    print(f"  plain pycocotools mask AP (floor, no bands):  {t_segm:7.2f} s")
    official, t_official = _timed(lambda: _run_cocoeval(gt, results, official_style_cocoeval))
    print(f"  per-annotation whole-image bands (API way):   {t_official:7.2f} s")
    if not skip_naive:
        naive, t_naive = _timed(lambda: _run_cocoeval(gt, results, reference_boundary_cocoeval))
        print(f"  per-pair recomputation (direct):              {t_naive:7.2f} s")
    _, t_checks = _timed(lambda: check_results(results, load_annotations(gt)))
    ours, t_ours = _timed(lambda: instance_ap(gt, results, "boundary"))
    ours_par, t_par = _timed(lambda: instance_ap(gt, results, "boundary", workers=workers))
    line = f"  segrefiner.metrics (one process):             {t_ours:7.2f} s   vs API way {t_official / t_ours:5.1f}x"
    if not skip_naive:
        line += f", vs direct {t_naive / t_ours:5.1f}x"
    print(line)
    line = f"  segrefiner.metrics ({workers} processes):            {t_par:7.2f} s   vs API way {t_official / t_par:5.1f}x"
    if not skip_naive:
        line += f", vs direct {t_naive / t_par:5.1f}x"
    print(line)
    print(
        f"  (input checks inside segrefiner.metrics, one process: {t_checks:.2f} s; "
        f"without them {t_official / (t_ours - t_checks):.1f}x vs API way)"
    )
    band_api = t_official - t_segm
    band_ours = t_ours - t_checks - t_segm
    print(
        f"  (boundary work beyond the mask-AP floor: API way {band_api:.2f} s, ours "
        f"{band_ours:.2f} s, {band_api / band_ours:.1f}x)"
    )
    values = np.array([-1.0 if v is None else v for v in ours.values()])
    par = np.array([-1.0 if v is None else v for v in ours_par.values()])
    delta = max(np.abs(values - official[:6]).max(), np.abs(par - official[:6]).max())
    if not skip_naive:
        delta = max(delta, np.abs(naive[:6] - official[:6]).max())
    print(
        f"  AP {100 * values[0]:.2f} (AP50 {100 * values[1]:.2f}, AP75 {100 * values[2]:.2f}); max |delta| of AP, AP50, AP75, APs, APm, APl: {delta:.1e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=200, help="COCO-like images (default 200)")
    parser.add_argument(
        "--pairs", type=int, default=20, help="high-resolution mBA pairs (default 20)"
    )
    parser.add_argument("--workers", type=int, default=2, help="processes for the parallel run")
    parser.add_argument("--repeat", type=int, default=3, help="mBA: best of this many runs")
    parser.add_argument("--skip-naive", action="store_true", help="skip the slow per-pair baseline")
    args = parser.parse_args()
    cv2.setNumThreads(1)  # compare algorithms, not OpenCV's thread pool
    print(f"OpenCV threads: {cv2.getNumThreads()}")
    bench_mba(args.pairs, args.repeat)
    bench_boundary_ap(args.images, args.workers, args.skip_naive)


if __name__ == "__main__":
    main()
