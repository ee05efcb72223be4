"""mBA: radii, hand-counted bands, empty bands, and equality with the literal definition."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from segrefiner.metrics import (
    band_counts,
    boundary_accuracy,
    mba_radii,
    mean_boundary_accuracy,
)
from segrefiner.metrics import mba as ba_module
from segrefiner.metrics._reference import boundary_accuracy_reference


@pytest.mark.parametrize(
    ("height", "width", "radii"),
    [
        (480, 640, (1, 1, 2, 2, 3)),
        (1536, 2048, (1, 3, 5, 7, 9)),
        (1600, 2048, (1, 3, 5, 7, 9)),
        (4000, 3000, (1, 5, 9, 14, 18)),
        (3000, 4000, (1, 5, 9, 14, 18)),
        (3600, 5000, (1, 6, 12, 17, 23)),
        (10, 10, (1, 1, 1, 1, 1)),
    ],
)
def test_radii_table(height, width, radii):
    assert mba_radii(height, width) == radii


def _half_plane() -> tuple[np.ndarray, np.ndarray]:
    gt = np.zeros((5, 6), bool)
    gt[:, :3] = True  # columns 0-2 foreground
    pred = gt.copy()
    pred[0, 2] = False  # in the band
    pred[4, 3] = True  # in the band
    pred[2, 0] = False  # outside the band (radius 1 everywhere for a 5 x 6 image)
    return pred, gt


def test_hand_counted_band():
    pred, gt = _half_plane()
    counts = band_counts(gt, [pred])
    # Radius 1 (cross kernel): the band is columns 2 and 3 -> 10 pixels, 2 of them wrong.
    assert counts.radii == (1, 1, 1, 1, 1)
    assert counts.band == {1: 10}
    assert counts.errors == ({1: 2},)
    assert boundary_accuracy(pred, gt) == pytest.approx(0.8)
    assert boundary_accuracy(pred, gt) == boundary_accuracy_reference(pred, gt)


def test_cross_kernel_diagonal_neighbour_is_not_in_band():
    gt = np.zeros((5, 5), bool)
    gt[2, 2] = True
    counts = band_counts(gt, [gt])
    # The pixel and its 4 neighbours (a cross); diagonal pixels are not within the kernel.
    assert counts.band == {1: 5}


def test_all_agree_and_all_disagree():
    rng = np.random.default_rng(0)
    gt = cv2.resize(
        (rng.random((8, 8)) < 0.5).astype(np.uint8), (200, 150), interpolation=cv2.INTER_NEAREST
    )
    assert boundary_accuracy(gt, gt) == 1.0
    assert boundary_accuracy(1 - gt, gt) == 0.0


def test_empty_band_is_none_and_excluded_from_mba():
    full = np.ones((30, 40), bool)
    empty = np.zeros((30, 40), bool)
    assert boundary_accuracy(empty, full) is None
    assert boundary_accuracy(full, empty) is None
    pred, gt = _half_plane()
    summary = mean_boundary_accuracy([empty, pred, full], [full, gt, empty])
    assert summary.per_image[0] is None and summary.per_image[2] is None
    assert summary.empty_band == (0, 2)
    assert summary.num_evaluated == 1
    assert summary.mba == pytest.approx(0.8)
    assert mean_boundary_accuracy([empty], [empty]).mba is None


def test_mba_is_mean_over_images():
    pred, gt = _half_plane()
    summary = mean_boundary_accuracy([pred, gt], [gt, gt])
    assert summary.mba == pytest.approx((0.8 + 1.0) / 2)


def _random_case(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    kind = rng.integers(0, 4)
    if kind == 0:  # speckle: every tile active, whole-image path
        gt = rng.random((h, w)) < 0.5
    elif kind == 1:  # blocky regions
        small = (rng.random((max(1, h // 40), max(1, w // 40))) < 0.5).astype(np.uint8)
        gt = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    elif kind == 2:  # one disc, possibly cut by the image border: tile mosaic path
        gt = np.zeros((h, w), np.uint8)
        cv2.circle(
            gt,
            (int(rng.integers(0, w)), int(rng.integers(0, h))),
            int(rng.integers(1, max(h, w) + 2)),
            1,
            -1,
        )
        gt = gt.astype(bool)
    else:  # a corner rectangle touching two borders
        gt = np.zeros((h, w), bool)
        gt[int(rng.integers(0, h)) :, : int(rng.integers(1, w + 1))] = True
    pred = gt ^ (rng.random((h, w)) < 0.03)
    shifted = np.roll(gt, int(rng.integers(-6, 7)), axis=int(rng.integers(0, 2)))
    return (pred if rng.random() < 0.5 else shifted), gt


def test_equals_literal_definition_on_random_masks():
    rng = np.random.default_rng(1)
    sizes = [(int(rng.integers(1, 90)), int(rng.integers(1, 90))) for _ in range(40)]
    sizes += [
        (1, 106),
        (106, 1),
        (2, 50),
        (1, 1),
        (480, 640),
        (700, 1100),
        (1100, 700),
        (1013, 1537),
    ]
    paths = set()
    for h, w in sizes:
        pred, gt = _random_case(rng, h, w)
        fast = boundary_accuracy(pred, gt)
        assert fast == boundary_accuracy_reference(pred, gt), (h, w)
        gt_u8 = gt.astype(np.uint8)
        paths.add(ba_module._active_tiles(gt_u8, max(mba_radii(h, w))) is None)
    assert paths == {True, False}  # both the whole-image and the tile paths were exercised


def test_several_predictions_share_the_bands():
    rng = np.random.default_rng(2)
    pred_a, gt = _random_case(rng, 300, 400)
    pred_b = gt ^ (rng.random(gt.shape) < 0.1)
    both = band_counts(gt, [pred_a, pred_b])
    assert both.accuracy(0) == boundary_accuracy(pred_a, gt)
    assert both.accuracy(1) == boundary_accuracy(pred_b, gt)


def test_opencv_ellipse_kernels_have_the_shape_the_fast_path_relies_on():
    # _half_widths raises if a kernel is not symmetric and convex along rows and columns.
    for r in range(1, 61):
        halves = ba_module._half_widths(r)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        rebuilt = np.zeros_like(kernel)
        for dy, half in enumerate(halves):
            rebuilt[r + dy, r - half : r + half + 1] = 1
            rebuilt[r - dy, r - half : r + half + 1] = 1
        assert np.array_equal(rebuilt, kernel), r
