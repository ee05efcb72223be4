"""Coarse masks that look like real segmentors' outputs, one function per kind.

Each kind maps a fine ``H x W`` mask (non-zero = foreground) and a ``numpy.random.Generator``
(the only source of randomness) to an ``H x W`` ``bool`` coarse mask:

- ``maskrcnn``: a Mask R-CNN-like instance prediction. The tight box, each edge moved by
  ``N(0, box_jitter * side)``, is resampled to a 28 x 28 grid (area averaging; fewer cells for
  boxes under 112 px, as a stride-4 feature map has), smoothed, perturbed by low-frequency noise,
  upsampled bilinearly to the box and thresholded at 0.5 inside the box only. ``thicken``
  mixes in a dilated mask so thin parts come out fat and broken rather than gone;
- ``lowres``: a low-resolution semantic segmentor: the mask on a ``1/stride`` grid (8 by
  default), smoothed, plus low-frequency noise, bilinear upsampling, threshold 0.5;
- ``official``: the official training degradation
  (:func:`segrefiner.data.degrade.modify_boundary`).

:data:`COARSE_KINDS` names them; :func:`coarse_mask` dispatches by name. The demo data set's
segmentor and the real-photo evaluation use these same functions; training may mix them
(``data.lr.coarse_kinds``).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from segrefiner.data.degrade import modify_boundary

__all__ = ["COARSE_KINDS", "coarse_mask", "extent", "lowres_like", "maskrcnn_like", "official_like"]


def extent(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of a non-empty mask, ends exclusive (row/column projections are much
    cheaper than ``np.nonzero`` on full images)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def maskrcnn_like(
    gt: np.ndarray, rng: np.random.Generator, *, resolution: int = 28, box_jitter: float = 0.06,
    noise: float = 0.12, thicken: float = 0.5,
) -> np.ndarray:  # fmt: skip
    """A Mask R-CNN-like prediction of an instance: ``H x W`` ``bool`` (``gt`` likewise).

    The box (tight GT box with each edge moved by ``N(0, box_jitter * size)``) is sampled on a
    ``resolution x resolution`` grid (fewer cells for boxes under ``4 * resolution`` pixels) by
    area averaging, smoothed, perturbed with low-frequency noise, resized bilinearly to the box
    and thresholded at 0.5 inside the box only. ``thicken`` (in grid cells) mixes in a dilated
    ground truth, as :func:`lowres_like`, so thin parts come out fat and broken rather than
    gone. An empty ``gt`` gives an empty mask.
    """
    gt = np.asarray(gt) != 0
    H, W = gt.shape
    out = np.zeros_like(gt, dtype=bool)
    if not gt.any():
        return out
    x0, y0, x1, y1 = extent(gt)
    jx, jy = rng.normal(0, box_jitter * (x1 - x0), 2), rng.normal(0, box_jitter * (y1 - y0), 2)
    bx0 = int(np.clip(np.floor(x0 + jx[0]), 0, W - 2))
    bx1 = int(np.clip(np.ceil(x1 + jx[1]), bx0 + 2, W))
    by0 = int(np.clip(np.floor(y0 + jy[0]), 0, H - 2))
    by1 = int(np.clip(np.ceil(y1 + jy[1]), by0 + 2, H))
    crop = gt[by0:by1, bx0:bx1]
    # Features come from a stride-4 map at best, so small boxes get fewer than 28 cells.
    gw = int(np.clip(round((bx1 - bx0) / 4), 4, resolution))
    gh = int(np.clip(round((by1 - by0) / 4), 4, resolution))
    target = crop.astype(np.float32)
    radius = round(thicken * min((bx1 - bx0) / gw, (by1 - by0) / gh))
    if radius > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        target = 0.5 * target + 0.5 * cv2.dilate(crop.astype(np.uint8), kernel).astype(np.float32)
    grid = cv2.resize(target, (gw, gh), interpolation=cv2.INTER_AREA)
    grid = cv2.GaussianBlur(grid, (0, 0), 0.7)
    field_ = rng.normal(0, noise, (5, 5)).astype(np.float32)
    grid = grid + cv2.resize(field_, (gw, gh), interpolation=cv2.INTER_CUBIC)
    prob = cv2.resize(grid, (bx1 - bx0, by1 - by0), interpolation=cv2.INTER_LINEAR)
    out[by0:by1, bx0:bx1] = prob >= 0.5
    return out


def lowres_like(
    gt: np.ndarray, rng: np.random.Generator, *, stride: int = 8, noise: float = 0.15,
    blur: float = 1.0, thicken: int = 0,
) -> np.ndarray:  # fmt: skip
    """A semantic-segmentor-like prediction (``H x W`` ``bool``, ``gt`` likewise) from a
    ``1/stride`` grid: area-averaged, smoothed, plus low-frequency noise, bilinear upsampling,
    threshold 0.5.

    ``thicken`` (pixels) mixes in a dilated ground truth, as a network's wide receptive field
    responds to thin structures with fat, broken blobs rather than not at all.
    """
    gt = np.asarray(gt) != 0
    H, W = gt.shape
    h, w = max(H // stride, 8), max(W // stride, 8)
    target = gt.astype(np.float32)
    if thicken > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * thicken + 1, 2 * thicken + 1))
        target = 0.5 * target + 0.5 * cv2.dilate(gt.astype(np.uint8), kernel).astype(np.float32)
    grid = cv2.resize(target, (w, h), interpolation=cv2.INTER_AREA)
    grid = cv2.GaussianBlur(grid, (0, 0), blur)
    field_ = rng.normal(0, noise, (max(h // 6, 3), max(w // 6, 3))).astype(np.float32)
    grid = grid + cv2.resize(field_, (w, h), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(grid, (W, H), interpolation=cv2.INTER_LINEAR) >= 0.5


def official_like(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The official training degradation (:func:`modify_boundary`, IoU target 0.8)."""
    return modify_boundary(gt, rng)


COARSE_KINDS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "maskrcnn": maskrcnn_like,
    "lowres": lowres_like,
    "official": official_like,
}


def coarse_mask(kind: str, gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The coarse mask of ``kind`` (a key of :data:`COARSE_KINDS`) for ``gt``: ``H x W`` bool."""
    try:
        fn = COARSE_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown coarse kind {kind!r}; known: {sorted(COARSE_KINDS)}") from None
    return fn(gt, rng)
