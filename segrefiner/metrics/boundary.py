"""Boundary bands and Boundary IoU (Cheng et al., CVPR 2021).

The band of a mask is its inner boundary of width ``d = max(1, round(dilation_ratio * diag))``
pixels, ``diag = sqrt(H² + W²)`` being the image diagonal (not the object's): pad the mask with
one pixel of zeros (so the image border counts as boundary), erode it ``d`` times with a 3x3
square, crop the padding off, and keep ``mask - eroded``. Boundary IoU is the IoU of two bands.

Bands are kept as crops of the mask's bounding box (:class:`Band`): eroding the crop with a one
pixel zero pad gives exactly the pixels the whole-image erosion gives, since everything outside
the box is background anyway, and small objects then cost little. COCO RLE masks are decoded
straight into that crop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from segrefiner.errors import InputError
from segrefiner.metrics.masks import as_binary, check_pair
from segrefiner.rle import rle_runs

DILATION_RATIO = 0.02
_SQUARE = np.ones((3, 3), dtype=np.uint8)


def boundary_width(height: int, width: int, dilation_ratio: float = DILATION_RATIO) -> int:
    """Band width ``d`` in pixels for an ``height x width`` image (at least 1).

    >>> boundary_width(480, 640), boundary_width(1600, 2048)
    (16, 52)
    """
    # Python's round (half to even) on the float diagonal, as the reference computes it.
    return max(1, round(dilation_ratio * math.sqrt(height * height + width * width)))


@dataclass(frozen=True)
class Band:
    """The boundary band of one mask, stored as the crop of the mask's bounding box.

    ``pixels`` is a ``bool`` array of the box (rows ``top:top+h``, columns ``left:left+w`` of
    an ``image_size = (H, W)`` image); ``area`` is its pixel count. An empty mask has an empty
    band with a ``0 x 0`` crop.
    """

    top: int
    left: int
    pixels: np.ndarray
    area: int
    image_size: tuple[int, int]

    def to_mask(self) -> np.ndarray:
        """The band as a full ``H x W`` ``bool`` mask."""
        full = np.zeros(self.image_size, dtype=bool)
        h, w = self.pixels.shape
        full[self.top : self.top + h, self.left : self.left + w] = self.pixels
        return full


def _band_of_crop(
    crop: np.ndarray, top: int, left: int, image_size: tuple[int, int], width_px: int
) -> Band:
    crop_u8 = crop.view(np.uint8) if crop.dtype == bool else crop.astype(np.uint8)
    padded = cv2.copyMakeBorder(crop_u8, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    # Same call as the reference: OpenCV turns iterated 3x3 erosions into one square erosion.
    eroded = cv2.erode(padded, _SQUARE, iterations=width_px)[1:-1, 1:-1]
    pixels = crop_u8 > eroded
    return Band(top, left, pixels, int(np.count_nonzero(pixels)), image_size)


def _empty_band(image_size: tuple[int, int]) -> Band:
    return Band(0, 0, np.zeros((0, 0), dtype=bool), 0, image_size)


def band_of_mask(mask: np.ndarray, dilation_ratio: float = DILATION_RATIO) -> Band:
    """Boundary band of an ``H x W`` mask (see the module docstring)."""
    mask_b = as_binary(mask)
    size = (int(mask_b.shape[0]), int(mask_b.shape[1]))
    rows = np.flatnonzero(mask_b.any(axis=1))
    if rows.size == 0:
        return _empty_band(size)
    cols = np.flatnonzero(mask_b.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return _band_of_crop(
        mask_b[top:bottom, left:right],
        int(top),
        int(left),
        size,
        boundary_width(*size, dilation_ratio),
    )


def band_of_rle(rle: dict[str, Any], dilation_ratio: float = DILATION_RATIO) -> Band:
    """Boundary band of a compressed COCO RLE (``counts`` bytes or str, ``size`` [H, W]).

    The RLE must already be valid (see :func:`segrefiner.rle.to_rle`); only the columns of the
    mask's bounding box are decoded.
    """
    height, width = int(rle["size"][0]), int(rle["size"][1])
    size = (height, width)
    found = decode_crop(rle)
    if found is None:
        return _empty_band(size)
    top, left, crop = found
    return _band_of_crop(crop, top, left, size, boundary_width(height, width, dilation_ratio))


def mask_to_boundary(mask: np.ndarray, dilation_ratio: float = DILATION_RATIO) -> np.ndarray:
    """The boundary band of an ``H x W`` mask as a full ``H x W`` ``bool`` mask."""
    return band_of_mask(mask, dilation_ratio).to_mask()


def band_intersection(a: Band, b: Band) -> int:
    """Number of pixels two bands of the same image share."""
    ah, aw = a.pixels.shape
    bh, bw = b.pixels.shape
    top, left = max(a.top, b.top), max(a.left, b.left)
    bottom, right = min(a.top + ah, b.top + bh), min(a.left + aw, b.left + bw)
    if bottom <= top or right <= left:
        return 0
    pa = a.pixels[top - a.top : bottom - a.top, left - a.left : right - a.left]
    pb = b.pixels[top - b.top : bottom - b.top, left - b.left : right - b.left]
    return int(np.count_nonzero(pa & pb))


def band_iou(a: Band, b: Band) -> float:
    """IoU of two bands, with pycocotools' convention for an empty union (0.0)."""
    inter = band_intersection(a, b)
    union = a.area + b.area - inter
    # pycocotools' rleIou: i / u in double precision, and 0 when nothing intersects.
    return inter / union if inter else 0.0


def boundary_iou(
    a: np.ndarray, b: np.ndarray, dilation_ratio: float = DILATION_RATIO
) -> float | None:
    """Boundary IoU of two same-size ``H x W`` masks, in [0, 1].

    ``None`` when both bands are empty (both masks empty): undefined rather than a number.
    """
    a_b, b_b = check_pair(a, b, "boundary IoU")
    band_a, band_b = band_of_mask(a_b, dilation_ratio), band_of_mask(b_b, dilation_ratio)
    inter = band_intersection(band_a, band_b)
    union = band_a.area + band_b.area - inter
    return inter / union if union else None


# --- decoding compressed RLE into a crop -------------------------------------------------------


def decode_crop(rle: dict[str, Any]) -> tuple[int, int, np.ndarray] | None:
    """Decode a compressed RLE into ``(top, left, crop)`` of its bounding box (``None`` if empty).

    ``crop`` is ``bool``; pixels outside the box are all background. Only the columns the mask
    spans are materialised (COCO RLE runs go down the columns).
    """
    height, width = int(rle["size"][0]), int(rle["size"][1])
    runs = rle_runs(rle["counts"])
    if runs.size < 2:
        return None
    if (runs < 0).any() or int(runs.sum()) != height * width:
        raise InputError(
            f"malformed RLE (runs cover {int(runs.sum())} pixels, expected {height * width})"
        )
    ends = np.cumsum(runs)  # runs alternate 0s, 1s, 0s, ... down the columns
    ones = np.flatnonzero(runs[1::2]) * 2 + 1  # indices of non-empty runs of 1s
    if ones.size == 0:
        return None
    first_col = int((ends[ones[0]] - runs[ones[0]]) // height)
    last_col = int((ends[ones[-1]] - 1) // height)
    base, stop = first_col * height, (last_col + 1) * height
    # Expand only the runs inside the mask's columns, clipped to them.
    i0 = int(np.searchsorted(ends, base, side="right"))  # the run holding pixel ``base``
    i1 = int(np.searchsorted(ends, stop - 1, side="right"))
    lengths = runs[i0 : i1 + 1].copy()
    lengths[0] = ends[i0] - base
    lengths[-1] -= ends[i1] - stop
    values = (np.arange(i0, i1 + 1) % 2).astype(bool)
    columns = np.repeat(values, lengths).reshape(last_col - first_col + 1, height).T
    rows = np.flatnonzero(columns.any(axis=1))
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    return top, first_col, np.ascontiguousarray(columns[top:bottom])
