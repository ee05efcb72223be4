"""Boundary bands and Boundary IoU: hand-counted cases and equality with the reference code."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from segrefiner.errors import InputError
from segrefiner.metrics import band_of_mask, boundary_iou, boundary_width, mask_to_boundary
from segrefiner.metrics._reference import mask_to_boundary_reference
from segrefiner.metrics.boundary import band_iou, band_of_rle, decode_crop
from segrefiner.rle import rle_runs


@pytest.mark.parametrize(
    ("h", "w", "d"), [(480, 640, 16), (1600, 2048, 52), (7, 7, 1), (1, 1, 1), (100, 100, 3)]
)
def test_boundary_width(h, w, d):
    assert boundary_width(h, w) == d


def test_band_of_a_square_hand_counted():
    mask = np.zeros((7, 7), bool)
    mask[1:6, 1:6] = True  # 5 x 5 square away from the border; d = 1 for a 7 x 7 image
    band = mask_to_boundary(mask)
    expected = mask.copy()
    expected[2:5, 2:5] = False  # the 16-pixel ring
    assert band.sum() == 16
    assert np.array_equal(band, expected)


def test_image_border_counts_as_boundary():
    mask = np.ones((4, 6), bool)  # the whole image
    band = mask_to_boundary(mask)
    assert band.sum() == 4 * 6 - 2 * 4  # outer ring only
    assert not band[1:3, 1:5].any()


def test_wider_band_with_larger_ratio():
    mask = np.zeros((20, 20), bool)
    mask[2:18, 2:18] = True
    # d = round(0.1 * sqrt(800)) = 3: a ring 3 pixels wide
    band = mask_to_boundary(mask, dilation_ratio=0.1)
    assert boundary_width(20, 20, 0.1) == 3
    assert band.sum() == 16 * 16 - 10 * 10


def test_small_object_is_all_boundary():
    mask = np.zeros((480, 640), bool)
    mask[100:120, 200:225] = True  # 20 x 25, thinner than 2 d = 32
    assert np.array_equal(mask_to_boundary(mask), mask)


def _random_masks(seed: int, count: int):
    rng = np.random.default_rng(seed)
    for k in range(count):
        h, w = int(rng.integers(1, 150)), int(rng.integers(1, 150))
        mask = np.zeros((h, w), np.uint8)
        if k % 3 == 0:
            mask = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        elif k % 3 == 1:
            cv2.circle(
                mask,
                (int(rng.integers(0, w)), int(rng.integers(0, h))),
                int(rng.integers(1, 80)),
                1,
                -1,
            )
        yield mask, float(rng.choice([0.02, 0.05, 0.3]))


def test_equals_reference_mask_to_boundary():
    for mask, ratio in _random_masks(0, 150):
        expected = mask_to_boundary_reference(mask, ratio).astype(bool)
        assert np.array_equal(mask_to_boundary(mask, ratio), expected)
        rle = mask_utils.encode(np.asfortranarray(mask))
        band = band_of_rle(rle, ratio)
        assert np.array_equal(band.to_mask(), expected)
        assert band.area == int(expected.sum())


def test_band_iou_equals_pycocotools_on_full_boundary_masks():
    for mask, ratio in _random_masks(1, 60):
        other = np.roll(mask, 3, axis=1)
        ref_a = mask_to_boundary_reference(mask, ratio)
        ref_b = mask_to_boundary_reference(other, ratio)
        expected = mask_utils.iou(
            [mask_utils.encode(np.asfortranarray(ref_a))],
            [mask_utils.encode(np.asfortranarray(ref_b))],
            [0],
        )[0][0]
        assert band_iou(band_of_mask(mask, ratio), band_of_mask(other, ratio)) == expected


def test_decode_crop_matches_pycocotools_decode():
    for mask, _ in _random_masks(2, 60):
        rle = mask_utils.encode(np.asfortranarray(mask))
        found = decode_crop(rle)
        if not mask.any():
            assert found is None
            continue
        top, left, crop = found
        ys, xs = np.nonzero(mask)
        assert (top, left) == (ys.min(), xs.min())
        assert crop.shape == (ys.max() - top + 1, xs.max() - left + 1)
        assert np.array_equal(
            crop,
            mask_utils.decode(rle)[top : top + crop.shape[0], left : left + crop.shape[1]].astype(
                bool
            ),
        )


def test_rle_runs_of_a_known_string():
    mask = np.zeros((3, 4), np.uint8)
    mask[1, 1:3] = 1  # column-major: runs 4 zeros, 1 one, 2 zeros, 1 one, 4 zeros
    rle = mask_utils.encode(np.asfortranarray(mask))
    assert rle_runs(rle["counts"]).tolist() == [4, 1, 2, 1, 4]


@pytest.mark.parametrize("counts", [b"1 ", b"a\x7f", b"0o"])
def test_malformed_counts_rejected(counts):
    with pytest.raises(InputError, match="malformed RLE"):
        decode_crop({"size": [3, 4], "counts": counts})


def test_boundary_iou_cases():
    a = np.zeros((50, 50), bool)
    a[10:40, 10:40] = True
    assert boundary_iou(a, a) == 1.0
    b = np.zeros((50, 50), bool)
    b[0:5, 45:50] = True
    assert boundary_iou(a, b) == 0.0
    empty = np.zeros((50, 50), bool)
    assert boundary_iou(empty, empty) is None
    # d = 1 (50 x 50): a's band is a 30-px square's ring (116 px); c is a shifted by one column.
    c = np.roll(a, 1, axis=1)
    inter = np.count_nonzero(mask_to_boundary(a) & mask_to_boundary(c))
    union = np.count_nonzero(mask_to_boundary(a) | mask_to_boundary(c))
    assert mask_to_boundary(a).sum() == 116
    assert boundary_iou(a, c) == pytest.approx(inter / union)
    assert boundary_iou(a, c) < 0.5 < np.count_nonzero(a & c) / np.count_nonzero(a | c)
