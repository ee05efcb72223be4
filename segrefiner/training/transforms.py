"""Crop boxes, resizing, flipping and normalisation of training crops (spec §4.3-4.4).

Boxes are ``(x0, y0, x1, y1)`` in pixels with exclusive ``x1``, ``y1`` (XYXY, half-open).
Images are ``H x W x 3`` ``uint8`` RGB; masks ``H x W`` ``bool``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from segrefiner.inference.config import IMAGE_MEAN, IMAGE_STD

Box = tuple[int, int, int, int]

_MEAN = np.asarray(IMAGE_MEAN, dtype=np.float32).reshape(3, 1, 1)
_STD = np.asarray(IMAGE_STD, dtype=np.float32).reshape(3, 1, 1)


def mask_box(mask: np.ndarray) -> Box | None:
    """Tight box of a mask's foreground, or ``None`` for an empty mask."""
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size == 0:
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _lr_axis(lo: int, hi: int, size: int, pad: int, rng: np.random.Generator) -> tuple[int, int]:
    # One axis of the official LoadObjectData: crop side S = object + pad, capped at the image,
    # placed uniformly among the positions that keep [lo, hi) inside the crop and the crop
    # inside the image. The official code draws an integer centre and truncates centre -/+ S/2,
    # which for odd S can end the crop one pixel before the object does; drawing the start
    # directly keeps the intent (the whole object, S pixels) without that off-by-one.
    side = min(hi - lo + pad, size)
    start = int(rng.integers(max(0, hi - side), min(lo, size - side) + 1))
    return start, start + side


def lr_object_box(box: Box, height: int, width: int, pad: int, rng: np.random.Generator) -> Box:
    """LR training crop around an object box: ``pad`` pixels of margin per axis in total,
    split at random between the two sides, shifted to stay inside the image (spec §4.3 step 4).

    The crop is ``min(box side + pad, image side)`` pixels per axis and always contains
    ``box``. Draws the x start, then the y start.
    """
    x0, x1 = _lr_axis(box[0], box[2], width, pad, rng)
    y0, y1 = _lr_axis(box[1], box[3], height, pad, rng)
    return x0, y0, x1, y1


def _hr_axis(lo: int, hi: int, size: int, rng: np.random.Generator) -> tuple[int, int]:
    # The official LoadPatchData object crop: left edge uniform in [0, lo - 1] (0 when the object
    # touches the border), right edge uniform in [hi, size - 1] (size when it touches).
    start = int(rng.integers(0, lo)) if lo > 0 else 0
    stop = int(rng.integers(hi, size)) if hi < size else size
    return start, stop


def hr_object_box(box: Box, height: int, width: int, rng: np.random.Generator) -> Box:
    """HR object crop: the object box with independent random margins on all four sides
    (spec §4.4). Always contains ``box``. Draws left, right, top, bottom."""
    x0, x1 = _hr_axis(box[0], box[2], width, rng)
    y0, y1 = _hr_axis(box[1], box[3], height, rng)
    return x0, y0, x1, y1


def patch_side(height: int, width: int, patch_size: int) -> int:
    """The official patch side: ``patch_size``, or ``int(min(H, W) / 2)`` for a smaller image."""
    if height < patch_size or width < patch_size:
        return max(1, int(min(height, width) / 2))
    return patch_size


@dataclass(frozen=True)
class PatchChoice:
    """A square patch ``box``; ``mixed`` is False when the image has no patch of that side with
    both foreground and background (the box is then a uniform random one)."""

    box: Box
    mixed: bool
    draws: int  # random draws spent before the exact search (or the fallback)


def mixed_patch(
    gt: np.ndarray, side: int, rng: np.random.Generator, tries: int = 100
) -> PatchChoice:
    """A ``side x side`` patch of ``gt`` holding both foreground and background, uniform over
    all such positions (what the official redraw-until-mixed loop samples).

    Up to ``tries`` random positions are tried first (cheap, usually enough); then the mixed
    positions are found exactly with an integral image and one is drawn. Where none exists
    (e.g. an all-foreground image) a uniformly drawn patch is returned with ``mixed=False``
    instead of looping forever (the official loop never ends there, spec §8.13).
    """
    height, width = gt.shape
    rows, cols = height - side + 1, width - side + 1
    full = side * side
    for draw in range(1, tries + 1):
        y, x = int(rng.integers(rows)), int(rng.integers(cols))
        count = int(np.count_nonzero(gt[y : y + side, x : x + side]))
        if 0 < count < full:
            return PatchChoice((x, y, x + side, y + side), True, draw)
    integral = cv2.integral(gt.astype(np.uint8), sdepth=cv2.CV_64F)
    counts = (
        integral[side:, side:]
        - integral[:-side, side:]
        - integral[side:, :-side]
        + integral[:-side, :-side]
    )
    candidates = np.flatnonzero((counts > 0) & (counts < full))
    if candidates.size:
        y, x = divmod(int(candidates[rng.integers(candidates.size)]), cols)
        return PatchChoice((x, y, x + side, y + side), True, tries)
    y, x = int(rng.integers(rows)), int(rng.integers(cols))
    return PatchChoice((x, y, x + side, y + side), False, tries)


def crop(array: np.ndarray, box: Box) -> np.ndarray:
    x0, y0, x1, y1 = box
    return array[y0:y1, x0:x1]


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """``h x w x 3`` uint8 -> ``size x size x 3`` uint8, bilinear (aspect ratio not kept)."""
    if image.shape[:2] == (size, size):
        return image
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """``h x w`` bool -> ``size x size`` bool, nearest neighbour."""
    if mask.shape == (size, size):
        return mask
    resized = cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
    return resized > 0


def normalize(image: np.ndarray) -> np.ndarray:
    """``S x S x 3`` uint8 RGB -> float32 (3, S, S): ImageNet mean/std on the 0-255 scale."""
    chw = image.transpose(2, 0, 1).astype(np.float32)
    return (chw - _MEAN) / _STD


def make_crop(
    image: np.ndarray,
    gt: np.ndarray,
    coarse: np.ndarray,
    box: Box,
    size: int,
    flip: bool,
) -> dict[str, np.ndarray]:
    """Crop ``box`` of image and masks, resize to ``size``, optionally flip horizontally,
    normalise. Returns ``image`` float32 (3, S, S) and ``gt``/``coarse`` float32 (1, S, S) in
    {0, 1}."""
    img = resize_image(crop(image, box), size)
    fine = resize_mask(crop(gt, box), size)
    rough = resize_mask(crop(coarse, box), size)
    return finish_crop(img, fine, rough, flip)


def finish_crop(
    img: np.ndarray, fine: np.ndarray, rough: np.ndarray, flip: bool
) -> dict[str, np.ndarray]:
    """Resized ``S x S`` image and masks -> the network's crop: optional horizontal flip,
    normalised float32 image (3, S, S), float32 masks (1, S, S) in {0, 1}."""
    if flip:
        img, fine, rough = img[:, ::-1], fine[:, ::-1], rough[:, ::-1]
    return {
        "image": np.ascontiguousarray(normalize(img)),
        "gt": np.ascontiguousarray(fine[None], dtype=np.float32),
        "coarse": np.ascontiguousarray(rough[None], dtype=np.float32),
    }
