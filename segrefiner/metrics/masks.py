"""Per-image IoU and the dataset-level pooled IoU used on BIG, DIS-5K and ThinObject-5K.

Masks are ``H x W`` arrays: ``bool``, integer (nonzero is foreground) or floating point holding
only 0 and 1. Files are read with :func:`segrefiner.io.read_mask` (grayscale ``>= 128``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from segrefiner.errors import InputError


def as_binary(mask: np.ndarray, item: str = "mask") -> np.ndarray:
    """Return ``mask`` as a C-contiguous ``H x W`` ``bool`` array.

    ``bool`` passes through; integer arrays are foreground where nonzero; floating point arrays
    must hold only 0 and 1 (a probability map has to be thresholded by the caller, since the
    right threshold depends on where it came from). ``item`` names the mask in errors.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(f"{item}: a mask must be 2-D (H x W), got shape {mask.shape}")
    if mask.dtype == bool:
        return np.ascontiguousarray(mask)
    if np.issubdtype(mask.dtype, np.integer):
        return np.ascontiguousarray(mask != 0)
    if np.issubdtype(mask.dtype, np.floating):
        binary = mask != 0
        if not np.array_equal(mask, binary):
            raise InputError(
                f"{item}: a floating point mask must hold only 0 and 1; threshold it first"
            )
        return np.ascontiguousarray(binary)
    raise InputError(f"{item}: unsupported mask dtype {mask.dtype}")


def check_pair(
    pred: np.ndarray, gt: np.ndarray, item: str = "mask"
) -> tuple[np.ndarray, np.ndarray]:
    """Binarise a prediction and its ground truth and require the same ``H x W`` size."""
    pred_b = as_binary(pred, f"{item} (prediction)")
    gt_b = as_binary(gt, f"{item} (ground truth)")
    if pred_b.shape != gt_b.shape:
        raise InputError(
            f"{item}: prediction size {pred_b.shape[1]}x{pred_b.shape[0]} (WxH) differs from "
            f"the ground truth size {gt_b.shape[1]}x{gt_b.shape[0]}"
        )
    return pred_b, gt_b


@dataclass(frozen=True)
class OverlapCounts:
    """Pixel counts of one prediction against its ground truth."""

    intersection: int
    union: int

    @property
    def iou(self) -> float | None:
        """``intersection / union``; ``None`` when the union is empty (both masks empty)."""
        return self.intersection / self.union if self.union else None


def overlap_counts(pred: np.ndarray, gt: np.ndarray, item: str = "mask") -> OverlapCounts:
    """``|P ∩ G|`` and ``|P ∪ G|`` of two same-size masks."""
    pred_b, gt_b = check_pair(pred, gt, item)
    return OverlapCounts(
        intersection=int(np.count_nonzero(pred_b & gt_b)),
        union=int(np.count_nonzero(pred_b | gt_b)),
    )


def iou(pred: np.ndarray, gt: np.ndarray) -> float | None:
    """Intersection over union of one prediction and its ground truth, in [0, 1].

    Both ``H x W`` (see the module docstring for accepted dtypes). When both masks are empty
    the union is empty and the IoU is undefined: the result is ``None`` rather than a number
    (reports show it as n/a). In :func:`pooled_iou` such an image adds nothing to either sum.
    """
    return overlap_counts(pred, gt).iou


def pooled_iou(preds: Iterable[np.ndarray], gts: Iterable[np.ndarray]) -> float | None:
    """The BIG / DIS "IoU": ``Σ|P∩G| / Σ|P∪G|`` over the whole set, in [0, 1].

    This is not the mean of per-image IoUs: large objects weigh more. ``preds`` and ``gts`` are
    paired in order (iterables, so masks can be loaded lazily) and must have the same length.
    Returns ``None`` when every union is empty (no foreground anywhere).
    """
    total_i = total_u = 0
    for index, (pred, gt) in enumerate(_paired(preds, gts)):
        counts = overlap_counts(pred, gt, f"mask pair {index}")
        total_i += counts.intersection
        total_u += counts.union
    return total_i / total_u if total_u else None


def _paired(preds: Iterable[np.ndarray], gts: Iterable[np.ndarray]):
    try:
        yield from zip(preds, gts, strict=True)
    except ValueError as exc:
        if "zip()" in str(exc):
            raise InputError(f"predictions and ground truths differ in number ({exc})") from None
        raise
