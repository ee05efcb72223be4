"""Segmentor-like coarse masks: shapes, determinism, how coarse each kind is."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from segrefiner.data import demo
from segrefiner.data.coarse_kinds import COARSE_KINDS, coarse_mask, lowres_like, maskrcnn_like


def _disk(size: int = 240, radius: int = 80) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(mask, (size // 2, size // 2), radius, 1, -1)
    cv2.rectangle(mask, (size // 2 - 3, 10), (size // 2 + 3, size // 2), 1, -1)  # a thin part
    return mask.astype(bool)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return np.count_nonzero(a & b) / np.count_nonzero(a | b)


@pytest.mark.parametrize("kind", sorted(COARSE_KINDS))
def test_each_kind_is_a_deterministic_bool_mask_near_the_input(kind: str) -> None:
    gt = _disk()
    a = coarse_mask(kind, gt, np.random.default_rng(3))
    b = coarse_mask(kind, gt.astype(np.uint8) * 255, np.random.default_rng(3))  # any non-zero
    c = coarse_mask(kind, gt, np.random.default_rng(4))
    assert a.dtype == bool and a.shape == gt.shape
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert 0.6 < _iou(a, gt) < 0.995


def test_the_kinds_differ_in_how_coarse_they_are() -> None:
    gt = _disk(400, 140)
    mean = {
        kind: np.mean([_iou(coarse_mask(kind, gt, np.random.default_rng(s)), gt) for s in range(6)])
        for kind in COARSE_KINDS
    }
    # The official degradation stops below IoU 0.8; the segmentor-like kinds keep the shape.
    assert mean["official"] < 0.82 < mean["maskrcnn"]
    assert mean["lowres"] > 0.82


def test_maskrcnn_like_stays_inside_its_jittered_box_and_empty_stays_empty() -> None:
    gt = np.zeros((100, 120), bool)
    gt[30:60, 40:90] = True
    out = maskrcnn_like(gt, np.random.default_rng(0), box_jitter=0.0, noise=0.0)
    rows, cols = np.flatnonzero(out.any(1)), np.flatnonzero(out.any(0))
    assert rows[0] >= 30 and rows[-1] < 60 and cols[0] >= 40 and cols[-1] < 90
    assert not maskrcnn_like(np.zeros((50, 50), bool), np.random.default_rng(0)).any()


def test_lowres_like_loses_detail_below_its_grid() -> None:
    gt = np.zeros((256, 256), bool)
    gt[100:160, 100:160] = True
    gt[20:24, 20:200] = True  # 4 px wide: below the 1/8 grid, mostly lost
    out = lowres_like(gt, np.random.default_rng(0), noise=0.0)
    assert out[110:150, 110:150].all()
    assert np.count_nonzero(out[20:24, 20:200]) < 0.5 * 4 * 180


def test_unknown_kind_is_named() -> None:
    with pytest.raises(ValueError, match="unknown coarse kind 'sam'"):
        coarse_mask("sam", _disk(), np.random.default_rng(0))


def test_the_demo_segmentor_uses_the_same_functions() -> None:
    assert demo.coarse_instance_mask is maskrcnn_like
    assert demo.coarse_semantic_mask is lowres_like
