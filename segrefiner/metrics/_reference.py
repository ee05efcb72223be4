"""The metric definitions written out literally, one whole-image pass per step.

They are slow and exist to check the fast implementations (tests, benchmarks): the fast code
must give the same numbers bit for bit.
"""

from __future__ import annotations

import cv2
import numpy as np

from segrefiner.metrics.mba import mba_radii


def boundary_accuracy_reference(pred: np.ndarray, gt: np.ndarray) -> float | None:
    """CascadePSP's ``compute_boundary_acc`` for one prediction (``None`` for an empty band)."""
    gt_u8 = np.asarray(gt).astype(bool).astype(np.uint8)
    pred_u8 = np.asarray(pred).astype(bool).astype(np.uint8)
    accs = []
    for r in mba_radii(*gt_u8.shape):
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        in_band = cv2.morphologyEx(gt_u8, cv2.MORPH_GRADIENT, kernel) > 0
        gt_in, pred_in = gt_u8[in_band], pred_u8[in_band]
        total = in_band.sum()
        if total == 0:
            return None
        good = (gt_in * pred_in + (1 - gt_in) * (1 - pred_in)).sum()
        accs.append(good / total)
    return float(sum(accs) / len(accs))


def mask_to_boundary_reference(mask: np.ndarray, dilation_ratio: float = 0.02) -> np.ndarray:
    """The Boundary IoU paper's ``mask_to_boundary`` on the whole image: ``H x W`` uint8 {0, 1}."""
    mask = np.asarray(mask).astype(bool).astype(np.uint8)
    h, w = mask.shape
    img_diag = np.sqrt(h**2 + w**2)
    dilation = round(dilation_ratio * img_diag)
    if dilation < 1:
        dilation = 1
    new_mask = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    kernel = np.ones((3, 3), dtype=np.uint8)
    new_mask_erode = cv2.erode(new_mask, kernel, iterations=dilation)
    mask_erode = new_mask_erode[1 : h + 1, 1 : w + 1]
    return mask - mask_erode


def boundary_ious_reference(
    dt_rles: list, gt_rles: list, iscrowd: list[int], dilation_ratio: float = 0.02
) -> np.ndarray | list:
    """Boundary-type IoU matrix the direct way: every band recomputed on the whole image for
    every pair, no caching, then ``min(mask IoU, boundary IoU)`` (crowd: mask IoU)."""
    from pycocotools import mask as mask_utils

    if not dt_rles or not gt_rles:
        return []
    ious = np.asarray(mask_utils.iou(dt_rles, gt_rles, iscrowd)).copy()
    for i, dt in enumerate(dt_rles):
        for j, gt in enumerate(gt_rles):
            if iscrowd[j]:
                continue
            band_dt = mask_to_boundary_reference(mask_utils.decode(dt), dilation_ratio)
            band_gt = mask_to_boundary_reference(mask_utils.decode(gt), dilation_ratio)
            b_iou = mask_utils.iou(
                [mask_utils.encode(np.asfortranarray(band_dt))],
                [mask_utils.encode(np.asfortranarray(band_gt))],
                [0],
            )[0][0]
            ious[i, j] = min(ious[i, j], b_iou)
    return ious


def scored_cell(evaluator, img_id, cat_id) -> tuple[list, list]:
    """What ``COCOeval.computeIoU`` compares for one image and category: the ground truths and
    the detections, best score first (stable sort), cut to the last ``maxDets``."""
    gt, dt = evaluator._gts[img_id, cat_id], evaluator._dts[img_id, cat_id]
    order = np.argsort([-d["score"] for d in dt], kind="mergesort")
    return gt, [dt[i] for i in order][: evaluator.params.maxDets[-1]]


def reference_boundary_cocoeval(coco_gt, coco_dt, dilation_ratio: float = 0.02):
    """A ``COCOeval`` computing boundary-type IoUs with :func:`boundary_ious_reference`."""
    from pycocotools.cocoeval import COCOeval

    class ReferenceBoundaryCOCOeval(COCOeval):
        def computeIoU(self, imgId, catId):  # the parent's name
            gt, dt = scored_cell(self, imgId, catId)
            if not gt and not dt:
                return []
            return boundary_ious_reference(
                [d["segmentation"] for d in dt],
                [g["segmentation"] for g in gt],
                [int(g["iscrowd"]) for g in gt],
                dilation_ratio,
            )

    return ReferenceBoundaryCOCOeval(coco_gt, coco_dt, iouType="segm")
