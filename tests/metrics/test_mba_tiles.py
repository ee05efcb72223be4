"""The fast mBA (tile mosaic) against the definition, with boundaries on the tiles' edges.

``segrefiner.metrics.mba`` counts band pixels tile by tile: only tiles near a ground-truth
transition are packed, each with a margin of ``max(r)`` pixels, into a mosaic. Off-by-one errors
there (which tiles are active, which pixels of a tile count, where a tile's margin starts) only
show when a boundary sits right at a tile edge, or exactly ``max(r)`` pixels from one. The cases
below put boundaries at -1, 0, +1 around the edges (and around edge +- margin) of images of
1536 x 2048 and more, and compare per-radius band and error counts, and BA, with the definition
written out here from the spec (SEGREFINER_SPEC.md §6.2, CascadePSP ``eval_post.py``):

    max_r = (W + H) / 300; r_i = 1 + int((max_r - 1) / 5 * i), i = 0..4;
    band_i = morphologyEx(G, MORPH_GRADIENT, getStructuringElement(ELLIPSE, (2r_i+1, 2r_i+1))) > 0;
    accuracy_i = fraction of band_i where the prediction equals G; BA = mean over the 5 radii.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from segrefiner.metrics import band_counts, boundary_accuracy, mean_boundary_accuracy
from segrefiner.metrics import mba as fast

# (height, width, seed): whole tiles, and partial last tiles on the right and at the bottom
CASES = [
    (1536, 2048, 0),
    (1536, 2048, 1),
    (1536, 2048, 2),
    (1541, 2053, 3),
    (1541, 2053, 4),
    (1600, 2111, 5),
    (1600, 2111, 6),
    (2000, 2600, 7),  # a larger margin (radii up to 12)
]


def reference_band_counts(pred: np.ndarray, gt: np.ndarray) -> list[tuple[int, int, int]]:
    """``(r_i, band pixels, wrong band pixels)`` for the five radii, the literal way."""
    height, width = gt.shape
    max_radius = (width + height) / 300
    radii = [1 + int((max_radius - 1) / 5 * i) for i in range(5)]
    gt_u8 = gt.astype(np.uint8)
    out = []
    for r in radii:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        band = cv2.morphologyEx(gt_u8, cv2.MORPH_GRADIENT, kernel) > 0
        total = int(np.count_nonzero(band))
        good = int(np.count_nonzero(pred[band] == gt[band]))
        out.append((r, total, total - good))
    return out


def reference_accuracy(pred: np.ndarray, gt: np.ndarray) -> float:
    accs = [(total - wrong) / total for _, total, wrong in reference_band_counts(pred, gt)]
    return sum(accs) / 5


def _edges(n: int, tile: int) -> np.ndarray:
    return np.arange(tile, n, tile)


def tile_edge_case(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """A sparse ground truth whose boundaries sit at tile edges -1/0/+1 and at edge +- margin
    (+- 1), and a prediction whose errors crowd the same places. Returns (pred, gt, tile)."""
    rng = np.random.default_rng(seed)
    max_radius = (width + height) / 300
    margin = 1 + int((max_radius - 1) / 5 * 4)  # the largest radius
    tile = fast._tile_size(margin)  # where the fast code cuts the image
    ys, xs = _edges(height, tile), _edges(width, tile)
    near = [-1, 0, 1]
    around_margin = [-margin - 1, -margin, -margin + 1, margin - 1, margin, margin + 1]
    gt = np.zeros((height, width), np.uint8)

    def at(edges: np.ndarray, offsets: list[int], limit: int) -> int:
        return int(np.clip(rng.choice(edges) + rng.choice(offsets), 0, limit))

    # rectangles with every side right at a tile edge (corners at tile corners)
    for _ in range(5):
        y0 = at(ys, near, height - 2)
        x0 = at(xs, near, width - 2)
        y1 = min(y0 + int(rng.integers(1, 3)) * tile + int(rng.choice(near)), height)
        x1 = min(x0 + int(rng.integers(1, 3)) * tile + int(rng.choice(near)), width)
        gt[y0:y1, x0:x1] ^= 1
    # long stripes whose sides are max(r) (+-1) from a tile edge: the tile-activation limit.
    # They run 3 tiles long, so that the middle tile row (column) sees only the side: no end
    # of the stripe activates the tile across the edge for it.
    offsets = [int(o) for o in rng.permutation(around_margin + near)]
    for k in range(0, len(offsets) - 1, 2):
        for axis in (0, 1):
            along, across = (ys, xs) if axis == 1 else (xs, ys)
            a0 = int(rng.choice(along[:-3])) + int(rng.choice(near))
            e0 = int(rng.choice(across[:-2]))
            c0 = e0 + offsets[k]
            c1 = e0 + int(rng.integers(1, 3)) * tile + offsets[k + 1]
            if axis == 1:  # vertical stripe: its left and right sides are tested
                gt[a0 : a0 + 3 * tile, c0:c1] ^= 1
            else:
                gt[c0:c1, a0 : a0 + 3 * tile] ^= 1
    # one-pixel lines and single pixels on tile edges
    y, x = at(ys, near, height - 1), at(xs, near, width - 1)
    gt[y, max(0, x - 2 * tile) : x] = 1
    gt[max(0, y - 2 * tile) : y, x] = 1
    for _ in range(4):
        gt[at(ys, near, height - 1), at(xs, near, width - 1)] ^= 1
    # a diagonal through tile corners
    cy, cx = int(rng.choice(ys)), int(rng.choice(xs))
    cv2.line(gt, (cx - tile, cy - tile), (cx + tile, cy + tile), 1, int(rng.integers(1, 4)))
    # objects in the last (partial) tile row and column, touching the image border
    gt[height - int(rng.integers(1, 5)) :, xs[0] - 1 : xs[1] + 1] = 1
    gt[ys[-2] + 1 : ys[-1] + 1, width - int(rng.integers(1, 5)) :] = 1
    gt[height - 3 :, width - 3 :] ^= 1
    gt = gt.astype(bool)

    # errors: dense on the rows and columns around tile edges, sparse elsewhere
    on_edge_rows = np.isin(np.arange(height) % tile, [tile - 2, tile - 1, 0, 1])
    on_edge_cols = np.isin(np.arange(width) % tile, [tile - 2, tile - 1, 0, 1])
    on_edges = on_edge_rows[:, None] | on_edge_cols[None, :]
    flips = rng.random((height, width)) < np.where(on_edges, 0.3, 0.02)
    pred = gt ^ flips
    if seed % 2:  # a prediction that is one pixel off along one axis
        pred = np.roll(gt, int(rng.choice([-1, 1])), axis=int(rng.integers(0, 2))) ^ (
            flips & on_edges
        )
    return pred, gt, tile


@pytest.fixture(scope="module")
def cases() -> list[tuple[np.ndarray, np.ndarray, int]]:
    return [tile_edge_case(h, w, seed) for h, w, seed in CASES]


def test_cases_exercise_the_tile_mosaic(cases) -> None:
    for pred, gt, tile in cases:
        assert tile < 100  # the cases are built around real tile edges
        margin = max(r for r, _, _ in reference_band_counts(pred, gt))
        active = fast._active_tiles(gt.view(np.uint8), margin)
        # the mosaic path (not the whole-image fallback), and many tiles left out of it
        assert active is not None
        rows, cols = -(-gt.shape[0] // tile), -(-gt.shape[1] // tile)
        assert 0 < active[0].size < 0.5 * rows * cols


def test_fast_mba_equals_the_definition_at_tile_edges(cases) -> None:
    fast_values, reference_values = [], []
    for (height, width, seed), (pred, gt, _) in zip(CASES, cases, strict=True):
        expected = reference_band_counts(pred, gt)
        counts = band_counts(gt, [pred])
        assert counts.radii == tuple(r for r, _, _ in expected), (height, width, seed)
        got = [(r, counts.band[r], counts.errors[0][r]) for r in counts.radii]
        assert got == expected, (height, width, seed)
        assert all(wrong > 0 for _, _, wrong in expected)  # the errors are really counted
        value = boundary_accuracy(pred, gt)
        assert value == reference_accuracy(pred, gt), (height, width, seed)
        fast_values.append(value)
        reference_values.append(reference_accuracy(pred, gt))
    summary = mean_boundary_accuracy([p for p, _, _ in cases], [g for _, g, _ in cases])
    assert summary.per_image == tuple(fast_values)
    assert summary.mba == pytest.approx(sum(reference_values) / len(reference_values), abs=1e-12)
