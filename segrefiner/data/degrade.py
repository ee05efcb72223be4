"""Coarse-mask degradation: the official ``modify_boundary`` / ``perturb_seg`` (from CascadePSP).

The one implementation of the algorithm, used for online training coarse masks and for the
offline HR coarse masks (``coarse`` and ``coarse_expand``). Steps, as in the official code:

1. every contour of the mask (``RETR_LIST`` + ``CHAIN_APPROX_NONE``: outer and hole contours,
   every boundary pixel a vertex) with at least 10 vertices is simplified: a run of
   ``int(regional_sample_rate * N)`` consecutive vertices is removed where it cuts one of the
   shortest chords, then a random sorted subset of ``int(sample_rate * N')`` vertices is kept;
2. all kept polygons are drawn filled in one ``drawContours`` call (even-odd fill, so surviving
   hole contours stay holes); with no polygon left the original mask is used;
3. :func:`perturb_seg` applies random rectangle dilations/erosions until the IoU with the
   polygonised mask drops below ``iou_target``.

Randomness comes only from the ``numpy.random.Generator`` passed in, so a result depends on
nothing but the mask and the generator state. Where the official code draws with python
``random`` / ``np.random`` the same distributions are drawn from the generator (the streams
differ, the statistics do not).
"""

from __future__ import annotations

import math
from typing import TypedDict, Unpack

import cv2
import numpy as np

__all__ = [
    "DegradeOptions",
    "SimplifyOptions",
    "fill_holes",
    "modify_boundary",
    "modify_boundary_expand",
    "perturb_seg",
    "simplify_boundary",
]

MIN_CONTOUR_VERTICES = 10
PERTURB_ROUNDS = 250
OPS_PER_ROUND = 4


def _as_u8(mask: np.ndarray) -> np.ndarray:
    """Any 2-D mask (non-zero = foreground) as a contiguous ``uint8`` 0/255 image."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be 2-D (H x W), got shape {mask.shape}")
    # uint8 scalars keep np.where in uint8 (python ints would make an int64 temporary).
    return np.ascontiguousarray(np.where(mask != 0, np.uint8(255), np.uint8(0)))


def _random_kernel(rng: np.random.Generator) -> np.ndarray:
    """The official ``get_random_structure`` with ``size ~ U{3..9}`` (``randint(3, 10)``)."""
    size = int(rng.integers(3, 10))
    choice = int(rng.integers(1, 5))  # the fixed ``randint(1, 5)``: four shapes
    if choice == 1:
        return cv2.getStructuringElement(cv2.MORPH_RECT, (size, size))
    if choice == 2:
        return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    if choice == 3:  # cv2 sizes are (width, height)
        return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size // 2))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size // 2, size))


def _iou(seg: np.ndarray, ref: np.ndarray, ref_count: int, scratch: np.ndarray) -> float:
    """The official ``compute_iou`` on 0/255 images (count-non-zero based, ``+1e-6``).

    ``ref_count`` is ``countNonZero(ref)``; ``scratch`` (same shape and dtype) receives the
    intersection. The union count is ``|seg| + |ref| - |seg & ref|``, the same integer as the
    official ``count_nonzero(seg + gt)`` without a second full-image pass.
    """
    inter = cv2.countNonZero(cv2.bitwise_and(seg, ref, dst=scratch))
    union = cv2.countNonZero(seg) + ref_count - inter
    return (inter + 1e-6) / (union + 1e-6)


def perturb_seg(mask: np.ndarray, rng: np.random.Generator, iou_target: float = 0.8) -> np.ndarray:
    """Random rectangle dilations/erosions until IoU with ``mask`` drops below ``iou_target``.

    Args:
        mask: ``H x W`` array, values > 127 are foreground (bool 0/1 is accepted as well).
        rng: the only source of randomness.
        iou_target: stop after the first round whose IoU with the input is below this.

    Returns:
        ``H x W`` ``uint8`` image with values 0/255. Inputs with ``H <= 2`` or ``W <= 2`` come
        back unchanged (thresholded), as in the official code.

    Each of at most 250 rounds does 4 operations on a random rectangle spanning the whole image:
    with probability 0.25 the rectangle's centre pixel is set to 0 or 255, then the rectangle is
    dilated (probability 0.5) or eroded once with a random kernel.
    """
    mask = np.asarray(mask)
    if mask.dtype == bool:
        mask = mask.astype(np.uint8) * 255
    # cv2.threshold(seg, 127, 255, THRESH_BINARY) of the official code
    ref = _as_u8(mask > 127)
    seg = ref.copy()
    h, w = seg.shape
    if h <= 2 or w <= 2:
        return seg
    # No full-size temporaries in the loop: Dask workers set MALLOC_TRIM_THRESHOLD_, under which
    # every large allocation is a fresh mmap and its page faults cost 4x the work itself.
    scratch = np.empty_like(seg)
    ref_count = cv2.countNonZero(ref)
    for _ in range(PERTURB_ROUNDS):
        for _ in range(OPS_PER_ROUND):
            lx, ly = int(rng.integers(w)), int(rng.integers(h))
            lw, lh = int(rng.integers(lx + 1, w + 1)), int(rng.integers(ly + 1, h + 1))
            # A lone pixel set here becomes a blob (or a hole) with the dilation/erosion below.
            if rng.random() < 0.25:
                cx, cy = (lx + lw) // 2, (ly + lh) // 2
                seg[cy, cx] = int(rng.integers(2)) * 255
            # The region is processed on its own, as the official slice-then-assign; OpenCV's
            # morphology supports in-place operation, here on the view into ``seg``.
            region = seg[ly:lh, lx:lw]
            op = cv2.dilate if rng.random() < 0.5 else cv2.erode
            op(region, _random_kernel(rng), dst=region, iterations=1)
        if _iou(seg, ref, ref_count, scratch) < iou_target:
            break
    return seg


def _simplify_contour(
    contour: np.ndarray,
    rng: np.random.Generator,
    regional_sample_rate: float,
    sample_rate: float,
    move_rate: float,
) -> np.ndarray:
    """One contour ``(N, 1, 2)`` int32 -> its coarse polygon ``(K, 1, 2)`` int32 (K may be 0)."""
    n = contour.shape[0]
    n_rm = int(n * regional_sample_rate)
    pts = contour.reshape(n, 2).astype(np.int64)  # int64: squared distances overflow int32
    # Squared chord length for every run [i, i + n_rm) that could be cut out.
    starts = n - n_rm
    chord = np.sum((pts[:starts] - pts[n_rm : n_rm + starts]) ** 2, axis=1)
    # A stable sort keeps the candidate order (and so the result) the same on every platform.
    order = np.argsort(chord, kind="stable")
    candidates = order[: math.ceil(starts * 0.1)]
    i = int(candidates[rng.integers(len(candidates))])
    kept = np.concatenate((contour[:i], contour[i + n_rm :]))
    # Keep a random sorted subset of the remaining vertices.
    n_left = kept.shape[0]
    picked = np.sort(rng.choice(n_left, size=int(n_left * sample_rate), replace=False))
    polygon = kept[picked]  # fancy indexing: a fresh contiguous int32 array, as drawContours needs
    if move_rate > 0 and polygon.shape[0] > 0:
        moments = cv2.moments(contour)
        if moments["m00"] != 0:
            centre = np.array(
                [round(moments["m10"] / moments["m00"]), round(moments["m01"] / moments["m00"])]
            )
            change = rng.normal(0.0, move_rate, size=(polygon.shape[0], 1, 1))
            moved = polygon + (polygon - centre) * change
            # Assigning floats into the official int32 contour truncates toward zero.
            polygon = np.ascontiguousarray(np.trunc(moved).astype(np.int32))
    return polygon


def simplify_boundary(
    mask: np.ndarray,
    rng: np.random.Generator,
    *,
    regional_sample_rate: float = 0.1,
    sample_rate: float = 0.1,
    move_rate: float = 0.0,
) -> np.ndarray:
    """Steps 1-2 of :func:`modify_boundary`: the polygonised mask, before any perturbation.

    ``H x W`` mask (non-zero foreground) -> ``H x W`` ``bool``. Equals ``mask`` when no contour
    has at least 10 vertices.

    Args:
        regional_sample_rate: fraction of each contour's vertices removed as one run.
        sample_rate: fraction of the remaining vertices kept.
        move_rate: std of the radial vertex jitter (0 in every official config: no movement).
    """
    image = _as_u8(mask)
    contours, _ = cv2.findContours(image, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    polygons = []
    for contour in contours:
        if contour.shape[0] < MIN_CONTOUR_VERTICES:
            continue
        polygon = _simplify_contour(contour, rng, regional_sample_rate, sample_rate, move_rate)
        # OpenCV rejects an empty point set (a 10-vertex contour keeps int(0.9) = 0 vertices).
        if polygon.shape[0] > 0:
            polygons.append(polygon)
    if not polygons:
        return image > 0
    drawn = np.zeros_like(image)
    # One call for all polygons: OpenCV's even-odd fill keeps surviving hole contours as holes.
    cv2.drawContours(drawn, polygons, -1, 255, thickness=-1)
    return drawn > 0


class SimplifyOptions(TypedDict, total=False):
    """The keyword arguments of :func:`simplify_boundary` (its defaults apply)."""

    regional_sample_rate: float
    sample_rate: float
    move_rate: float


class DegradeOptions(SimplifyOptions, total=False):
    """The keyword arguments of :func:`modify_boundary` (its defaults apply)."""

    iou_target: float


def modify_boundary(
    mask: np.ndarray,
    rng: np.random.Generator,
    *,
    iou_target: float = 0.8,
    **simplify: Unpack[SimplifyOptions],
) -> np.ndarray:
    """Make a coarse mask from a fine one (§4.5 of the specification).

    Args:
        mask: ``H x W`` mask, any dtype; non-zero is foreground.
        rng: the only source of randomness.
        iou_target: :func:`perturb_seg` stops once IoU with the polygonised mask is below this.
        simplify: ``regional_sample_rate``, ``sample_rate``, ``move_rate`` of
            :func:`simplify_boundary` (defaults 0.1, 0.1, 0.0, as every official config).

    Returns:
        ``H x W`` ``bool`` coarse mask. IoU with ``mask`` is usually a little below
        ``iou_target`` (it is measured against the polygonised mask, not ``mask``); on large
        smooth masks the 250 rounds of small kernels may end above it.

    Notes: an empty mask has no contour, so it is perturbed as is; random centre pixels can then
    grow into small blobs, exactly as in the official code. Any non-zero input value is
    foreground, also on the no-polygon fallback (the official offline script passes a GT whose
    255s wrapped to 1 in uint8, which its ``> 127`` threshold would then empty).
    """
    drawn = simplify_boundary(mask, rng, **simplify)
    return perturb_seg(drawn, rng, iou_target) >= 128


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of a mask: its external contours drawn filled.

    ``H x W`` mask (non-zero foreground) -> ``H x W`` ``bool`` (``RETR_EXTERNAL``,
    ``CHAIN_APPROX_SIMPLE``, as the official offline script).
    """
    image = _as_u8(mask)
    contours, _ = cv2.findContours(image, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(image)
    if contours:
        cv2.drawContours(filled, contours, -1, 255, thickness=-1)
    return filled > 0


def modify_boundary_expand(
    mask: np.ndarray, rng: np.random.Generator, **options: Unpack[DegradeOptions]
) -> np.ndarray:
    """The HR "expand" coarse mask: :func:`modify_boundary` of the hole-filled mask.

    ``H x W`` mask (non-zero foreground) -> ``H x W`` ``bool``; ``options`` as
    :func:`modify_boundary`.
    """
    return modify_boundary(fill_holes(mask), rng, **options)
