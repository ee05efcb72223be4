"""Per-image IoU and pooled IoU against hand-counted cases."""

from __future__ import annotations

import numpy as np
import pytest

from segrefiner.errors import InputError
from segrefiner.metrics import iou, overlap_counts, pooled_iou


def test_iou_hand_counted():
    gt = np.zeros((4, 5), bool)
    gt[0:2, 0:3] = True  # 6 px
    pred = np.zeros((4, 5), bool)
    pred[1:3, 1:4] = True  # 6 px, overlap rows 1, cols 1-2 = 2 px
    counts = overlap_counts(pred, gt)
    assert (counts.intersection, counts.union) == (2, 10)
    assert iou(pred, gt) == pytest.approx(0.2)


def test_iou_extremes_and_empty_union():
    gt = np.zeros((3, 3), bool)
    gt[1, 1] = True
    assert iou(gt, gt) == 1.0
    assert iou(~gt, gt) == 0.0
    empty = np.zeros((3, 3), bool)
    assert iou(empty, empty) is None  # undefined, not 0 or 1


def test_pooled_iou_is_not_the_mean_of_per_image_ious():
    # Image A: big object, IoU 90/100; image B: tiny object, IoU 0/2.
    gt_a = np.zeros((10, 10), bool)
    gt_a[:, :] = True
    pred_a = gt_a.copy()
    pred_a[0, :] = False  # 90 of 100
    gt_b = np.zeros((10, 10), bool)
    gt_b[0, 0] = True
    pred_b = np.zeros((10, 10), bool)
    pred_b[9, 9] = True  # disjoint
    pooled = pooled_iou([pred_a, pred_b], [gt_a, gt_b])
    mean = (iou(pred_a, gt_a) + iou(pred_b, gt_b)) / 2
    assert pooled == pytest.approx(90 / 102)
    assert mean == pytest.approx(0.45)
    assert abs(pooled - mean) > 0.4


def test_pooled_iou_ignores_images_with_empty_union_and_accepts_generators():
    gt = np.eye(4, dtype=bool)
    empty = np.zeros((4, 4), bool)
    value = pooled_iou((m for m in [gt, empty]), iter([gt, empty]))
    assert value == 1.0
    assert pooled_iou([empty], [empty]) is None


def test_dtypes_integer_and_binary_float_accepted():
    gt = np.array([[0, 255], [255, 0]], np.uint8)
    pred = np.array([[0.0, 1.0], [0.0, 0.0]])
    assert iou(pred, gt) == 0.5


@pytest.mark.parametrize(
    ("pred", "gt", "message"),
    [
        (np.zeros((3, 4)), np.zeros((4, 3)), "differs from the ground truth size"),
        (np.full((2, 2), 0.5), np.zeros((2, 2)), "threshold it first"),
        (np.zeros((2, 2, 3)), np.zeros((2, 2)), "must be 2-D"),
    ],
)
def test_bad_masks_are_named_errors(pred, gt, message):
    with pytest.raises(InputError, match=message):
        iou(pred, gt)


def test_pooled_iou_length_mismatch():
    m = np.ones((2, 2), bool)
    with pytest.raises(InputError, match="differ in number"):
        pooled_iou([m, m], [m])
    with pytest.raises(InputError, match="mask pair 1"):
        pooled_iou([m, np.ones((3, 3), bool)], [m, m])
