"""Boundary accuracy (BA) and mean boundary accuracy (mBA), as CascadePSP defines them.

For an ``H x W`` image: ``max_r = (W + H) / 300``; five radii ``r_i = 1 + int((max_r - 1) / 5 * i)``
for i = 0..4; for each, the band is the morphological gradient of the ground truth with
``cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2r + 1, 2r + 1))`` (dilation minus erosion of
the {0, 1} mask, taken where > 0); the accuracy at that radius is the fraction of band pixels
where the prediction equals the ground truth. BA is the mean over the five radii, and mBA the
mean of BA over images.

The band is empty exactly when the ground truth is constant (all background or all
foreground). The reference code then divides by zero; here BA is ``None`` for such an image,
which is left out of mBA and counted in :class:`BoundaryAccuracySummary.empty_band`.

Speed: the numbers are those of the definition above, bit for bit (the tests compare them
with the literal code), but computed differently. Only tiles of the image within ``max(r)`` of
a ground-truth transition can hold band pixels; they are packed, each with a margin of
``max(r)`` pixels of real neighbourhood, into one mosaic image (or the whole image is used when
most tiles qualify). On it, the band at every radius comes from two run-length distance maps and
the row half-widths of OpenCV's own elliptical kernels (see "counting engine" below), with cheap
elementwise operations instead of one large-kernel morphology per radius.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache

import cv2
import numpy as np

from segrefiner.metrics.masks import _paired, as_binary, check_pair

NUM_RADII = 5


def mba_radii(height: int, width: int) -> tuple[int, ...]:
    """The five band radii (pixels) for an ``height x width`` image, as CascadePSP computes them.

    >>> mba_radii(480, 640), mba_radii(1536, 2048), mba_radii(4000, 3000)
    ((1, 1, 2, 2, 3), (1, 3, 5, 7, 9), (1, 5, 9, 14, 18))
    """
    max_radius = (width + height) / 300
    return tuple(1 + int((max_radius - 1) / NUM_RADII * i) for i in range(NUM_RADII))


@cache
def _ellipse(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


@dataclass(frozen=True)
class BandCounts:
    """Per-radius pixel counts of the ground-truth band and of prediction errors inside it.

    ``band[r]`` is the number of band pixels at radius ``r``; ``errors[k][r]`` the number of
    those where prediction ``k`` differs from the ground truth.
    """

    radii: tuple[int, ...]
    band: dict[int, int]
    errors: tuple[dict[int, int], ...]

    def accuracy(self, k: int = 0) -> float | None:
        """BA of prediction ``k`` in [0, 1]; ``None`` when the band is empty."""
        if any(self.band[r] == 0 for r in self.radii):
            return None
        # Same arithmetic as the reference: per-radius good/total, summed in order, / 5.
        per_radius = [(self.band[r] - self.errors[k][r]) / self.band[r] for r in self.radii]
        return sum(per_radius) / len(self.radii)


def band_counts(gt: np.ndarray, preds: Sequence[np.ndarray], item: str = "mask") -> BandCounts:
    """Count band pixels and prediction errors for one ground truth and several predictions.

    ``gt`` and every ``preds[k]`` are ``H x W`` masks of the same size. Computing the bands once
    serves all predictions (e.g. the coarse and the refined mask of one image).
    """
    gt_b = as_binary(gt, f"{item} (ground truth)")
    preds_b = [
        check_pair(p, gt_b, item if len(preds) == 1 else f"{item}[{k}]")[0]
        for k, p in enumerate(preds)
    ]
    height, width = gt_b.shape
    radii = mba_radii(height, width)
    distinct = sorted(set(radii))
    gt_u8 = gt_b.view(np.uint8)
    tiles = _active_tiles(gt_u8, max(distinct))
    if tiles is None:
        band, errors = _count_whole(gt_u8, preds_b, distinct)
    elif tiles[0].size == 0:
        band = dict.fromkeys(distinct, 0)
        errors = [dict.fromkeys(distinct, 0) for _ in preds_b]
    else:
        band, errors = _count_tiles(gt_u8, preds_b, distinct, tiles)
    return BandCounts(radii=radii, band=band, errors=tuple(errors))


def boundary_accuracy(pred: np.ndarray, gt: np.ndarray) -> float | None:
    """BA of one ``H x W`` prediction against its ground truth, in [0, 1].

    ``None`` when the ground truth is constant (empty band; see the module docstring).
    """
    return band_counts(gt, [pred]).accuracy(0)


@dataclass(frozen=True)
class BoundaryAccuracySummary:
    """mBA over a set of images.

    ``mba`` is the mean BA over images with a non-empty band (``None`` if there are none);
    ``per_image`` holds each image's BA in input order (``None`` for an empty band);
    ``empty_band`` lists the indices of the images left out.
    """

    mba: float | None
    per_image: tuple[float | None, ...]
    empty_band: tuple[int, ...] = field(default=())

    @property
    def num_images(self) -> int:
        return len(self.per_image)

    @property
    def num_evaluated(self) -> int:
        return len(self.per_image) - len(self.empty_band)


def summarize_accuracies(values: Iterable[float | None]) -> BoundaryAccuracySummary:
    """Build the mBA summary from per-image BA values (``None`` = empty band)."""
    per_image = tuple(values)
    kept = [v for v in per_image if v is not None]
    total = 0.0
    for v in kept:  # sequential sum, as the reference accumulates it
        total += v
    return BoundaryAccuracySummary(
        mba=total / len(kept) if kept else None,
        per_image=per_image,
        empty_band=tuple(i for i, v in enumerate(per_image) if v is None),
    )


def mean_boundary_accuracy(
    preds: Iterable[np.ndarray], gts: Iterable[np.ndarray]
) -> BoundaryAccuracySummary:
    """mBA of predictions against ground truths paired in order (iterables; same length)."""
    return summarize_accuracies(
        band_counts(gt, [pred], f"mask pair {i}").accuracy(0)
        for i, (pred, gt) in enumerate(_paired(preds, gts))
    )


# --- counting engine -----------------------------------------------------------------------
#
# Every OpenCV ellipse kernel is symmetric and convex along rows and columns: row dy of K_r
# spans |dx| <= a_r(dy). The gradient at p is nonzero iff some pixel of the other value lies in
# p + K_r. Let s = p + (dy, 0). Either s itself has the other value (some |dy| <= r, i.e. the
# vertical distance from p to the other value is <= r), or s has p's value and the nearest
# pixel of the other value in s's row is at most a_r(dy) columns away. So one horizontal and one
# vertical run-distance map, compared against the kernel's row half-widths and OR-ed over row
# shifts, give the band at every radius with cheap elementwise operations.


@cache
def _half_widths(radius: int) -> tuple[int, ...]:
    """``a_r(dy)`` for dy = 0..r, read from OpenCV's kernel (checked row- and column-convex)."""
    kernel = _ellipse(radius)
    halves = []
    for dy in range(radius + 1):
        row = kernel[radius + dy]
        half = int(np.count_nonzero(row)) // 2
        expected = np.zeros_like(row)
        expected[radius - half : radius + half + 1] = 1
        if not (np.array_equal(row, expected) and np.array_equal(kernel[radius - dy], row)):
            raise RuntimeError(f"unexpected OpenCV ellipse kernel at radius {radius}")
        halves.append(half)
    if any(b > a for a, b in itertools.pairwise(halves)):
        raise RuntimeError(f"OpenCV ellipse kernel at radius {radius} is not convex")
    return tuple(halves)


def _run_distance(ones: np.ndarray, zeros: np.ndarray, step: int, cap: int) -> np.ndarray:
    """Distance from each pixel to the nearest pixel of the other value along one axis.

    ``ones``/``zeros`` are flat uint8 indicator arrays (both 1 on neutral padding); ``step`` is
    1 along rows or the row length along columns. Result: 1..cap (cap = "farther than cap-1").
    It is 1 + the number of k < cap for which the window of half-size k around the pixel holds
    only its own value, grown one pixel per round by 3-wide minimum filters.
    """
    dist = np.ones(ones.size, dtype=np.uint8)
    n = ones.size
    pair = np.empty(max(n - step, 0), dtype=np.uint8)
    for run in (ones.copy(), zeros.copy()):
        if n <= step:  # a single row or column: windows never reach another pixel
            np.add(dist, run * np.uint8(cap - 1), out=dist)
            continue
        for _ in range(cap - 1):
            # min over {x - step, x, x + step} (neighbours outside the array ignored), in place:
            # pair[i] = min(run[i], run[i + step]); run[x] = min(pair[x - step], pair[x]).
            np.minimum(run[:-step], run[step:], out=pair)
            run[: min(step, n - step)] = pair[: min(step, n - step)]
            np.minimum(pair[:-step], pair[step:], out=run[step : n - step])
            run[max(n - step, step) :] = pair[max(n - 2 * step, 0) :]
            np.add(dist, run, out=dist)
    return dist


def _band_masks(image: np.ndarray, radii: list[int]):
    """Yield ``(r, band)`` per radius for a {0,1} ``uint8`` image; ``band`` is bool ``H x (W+m)``.

    Pixels outside the image are ignored, as with OpenCV's default morphology border. The ``m``
    (largest radius) extra columns are neutral padding that keeps rows apart in the flattened
    arrays (no window reaches across them); they are always False in ``band``.
    """
    height, width = image.shape
    margin = max(radii)
    stride = width + margin
    ones = np.ones((height, stride), dtype=np.uint8)
    zeros = np.ones((height, stride), dtype=np.uint8)
    ones[:, :width] = image
    np.subtract(1, image, out=zeros[:, :width])
    across = _run_distance(ones.ravel(), zeros.ravel(), 1, margin + 1)
    down = _run_distance(ones.ravel(), zeros.ravel(), stride, margin + 1)
    near = np.empty(across.size, dtype=bool)
    for r in radii:
        band = down <= r  # a pixel of the other value straight above or below, within r
        for dy, half in enumerate(_half_widths(r)):
            if half == 0:
                continue  # only the centre column: covered by ``down``
            np.less_equal(across, half, out=near)
            if dy == 0:
                np.bitwise_or(band, near, out=band)
            else:
                shift = dy * stride
                np.bitwise_or(band[:-shift], near[shift:], out=band[:-shift])
                np.bitwise_or(band[shift:], near[:-shift], out=band[shift:])
        band = band.reshape(height, stride)
        band[:, width:] = False
        yield r, band


# Above this share of the image, one whole-image pass is cheaper than the tile mosaic.
_MOSAIC_MAX_SHARE = 0.6


def _tile_size(margin: int) -> int:
    # Larger tiles waste fewer pixels on margins, smaller ones follow the boundary more tightly;
    # 64 measured best for radii up to ~20. Tiles must be wider than the margin.
    return max(64, 2 * margin + 2)


def _active_tiles(gt: np.ndarray, margin: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Tiles whose window (tile grown by ``margin``) holds both values; ``None`` = use the whole image.

    A window holds both values iff it contains two 4-adjacent pixels that differ (it is a
    connected rectangle), so marking the upper/left pixel of every such pair and growing the
    marks by the margin (plus one for the partner pixel) finds every tile with a band pixel.
    """
    height, width = gt.shape
    tile = _tile_size(margin)
    rows, cols = -(-height // tile), -(-width // tile)
    edges = np.zeros((rows * tile, cols * tile), dtype=bool)
    np.not_equal(gt[:, 1:], gt[:, :-1], out=edges[:height, : width - 1])
    edges[: height - 1, :width] |= gt[1:] != gt[:-1]
    by_rows = edges.reshape(rows, tile, cols * tile)
    near_rows = by_rows.any(axis=1)
    near_rows[1:] |= by_rows[:-1, tile - margin - 1 :].any(axis=1)
    near_rows[:-1] |= by_rows[1:, :margin].any(axis=1)
    by_cols = near_rows.reshape(rows, cols, tile)
    active = by_cols.any(axis=2)
    active[:, 1:] |= by_cols[:, :-1, tile - margin - 1 :].any(axis=2)
    active[:, :-1] |= by_cols[:, 1:, :margin].any(axis=2)
    ti, tj = np.nonzero(active)
    block = tile + 2 * margin
    if ti.size * block * block > _MOSAIC_MAX_SHARE * height * width:
        return None
    return ti, tj


def _count_whole(
    gt: np.ndarray, preds: list[np.ndarray], radii: list[int]
) -> tuple[dict[int, int], list[dict[int, int]]]:
    height, width = gt.shape
    wrongs = []
    for pred in preds:
        wrong = np.zeros((height, width + max(radii)), dtype=bool)
        np.not_equal(pred.view(np.uint8), gt, out=wrong[:, :width])
        wrongs.append(wrong)
    band: dict[int, int] = {}
    errors: list[dict[int, int]] = [{} for _ in preds]
    for r, in_band in _band_masks(gt, radii):
        band[r] = int(np.count_nonzero(in_band))
        for k, wrong in enumerate(wrongs):
            errors[k][r] = int(np.count_nonzero(in_band & wrong))
    return band, errors


def _count_tiles(
    gt: np.ndarray,
    preds: list[np.ndarray],
    radii: list[int],
    tiles: tuple[np.ndarray, np.ndarray],
) -> tuple[dict[int, int], list[dict[int, int]]]:
    height, width = gt.shape
    margin = max(radii)
    tile = _tile_size(margin)
    block = tile + 2 * margin
    ti, tj = tiles
    n = ti.size
    rows, cols = -(-height // tile), -(-width // tile)
    # Replicating the border is exact here: kernels are symmetric and convex along rows and
    # columns, so a replicated pixel inside a window stands for an image pixel inside the same
    # window, which is what OpenCV's default border (outside pixels ignored) sees.
    padded = cv2.copyMakeBorder(
        gt,
        margin,
        margin + rows * tile - height,
        margin,
        margin + cols * tile - width,
        cv2.BORDER_REPLICATE,
    )
    s0, s1 = padded.strides
    windows = np.lib.stride_tricks.as_strided(
        padded, shape=(rows, cols, block, block), strides=(tile * s0, tile * s1, s0, s1)
    )
    grid_cols = int(np.ceil(np.sqrt(n)))
    grid_rows = -(-n // grid_cols)
    stack = np.zeros((grid_rows * grid_cols, block, block), dtype=np.uint8)
    stack[:n] = windows[ti, tj]
    # A near-square mosaic of the tiles with their margins: no tile sees another's pixels,
    # because the kernels reach at most ``margin`` pixels.
    mosaic = np.ascontiguousarray(
        stack.reshape(grid_rows, grid_cols, block, block)
        .transpose(0, 2, 1, 3)
        .reshape(grid_rows * block, grid_cols * block)
    )
    # Pixels that count: tile interiors inside the image; margins belong to other tiles.
    counted = np.zeros((mosaic.shape[0], mosaic.shape[1] + margin), dtype=bool)
    wrongs = [np.zeros_like(counted) for _ in preds]
    for k, (i, j) in enumerate(zip(ti.tolist(), tj.tolist())):
        y0, x0 = i * tile, j * tile
        th, tw = min(tile, height - y0), min(tile, width - x0)
        my, mx = (k // grid_cols) * block + margin, (k % grid_cols) * block + margin
        counted[my : my + th, mx : mx + tw] = True
        gt_tile = gt[y0 : y0 + th, x0 : x0 + tw]
        for wrong, pred in zip(wrongs, preds):
            np.not_equal(
                pred[y0 : y0 + th, x0 : x0 + tw].view(np.uint8),
                gt_tile,
                out=wrong[my : my + th, mx : mx + tw],
            )
    band: dict[int, int] = {}
    errors: list[dict[int, int]] = [{} for _ in preds]
    for r, in_band in _band_masks(mosaic, radii):
        np.bitwise_and(in_band, counted, out=in_band)
        band[r] = int(np.count_nonzero(in_band))
        for k, wrong in enumerate(wrongs):
            errors[k][r] = int(np.count_nonzero(in_band & wrong))
    return band, errors
