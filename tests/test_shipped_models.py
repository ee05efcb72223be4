"""The shipped default models (LR and HR): present, small, self-describing, and harmless on a
clean case."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from segrefiner.checkpoint import (
    default_checkpoint,
    default_checkpoint_path,
    load_checkpoint,
    read_checkpoint,
)
from segrefiner.data.coarse_kinds import coarse_mask
from segrefiner.refiner import Refiner

MAX_BYTES = 25 * 1024 * 1024
# No HR model ships yet (checkpoints/README.md says why); its checks run once one is installed.
HR_SHIPPED = pytest.mark.skipif(
    not default_checkpoint_path("hr").is_file(), reason="no shipped HR model installed"
)


@pytest.mark.parametrize("path_kind", ["lr", pytest.param("hr", marks=HR_SHIPPED)])
def test_the_defaults_are_shipped_small_and_load_safely(path_kind: str) -> None:
    path = default_checkpoint(path_kind)  # type: ignore[arg-type]
    assert path.stat().st_size <= MAX_BYTES
    obj = read_checkpoint(path)  # weights_only=True
    assert "optimizer" not in obj  # inference weights only
    model, meta = load_checkpoint(path)
    assert meta["preset"] == "tiny" and meta["inference"]["model_size"] == 256
    assert all(p.dtype == torch.float32 for p in model.parameters())  # loads as float32
    if path_kind == "hr":  # patches refine the native-resolution coarse mask (not official)
        assert meta["inference"]["local_mask"] == "coarse"
        assert Refiner.from_checkpoint(path).config.local_mask == "coarse"


def _scene() -> tuple[np.ndarray, np.ndarray]:
    from skimage import data

    image = cv2.resize(data.chelsea(), (320, 240), interpolation=cv2.INTER_AREA)
    gt = np.zeros((240, 320), np.uint8)
    cv2.ellipse(gt, (170, 120), (70, 50), 15, 0, 360, 1, -1)
    gt = gt.astype(bool)
    image[gt] = (0.35 * image[gt] + 0.65 * np.array([200, 60, 40])).astype(np.uint8)
    return image, gt


@pytest.mark.parametrize("kind", ["maskrcnn", "lowres", "official"])
def test_the_lr_default_does_not_harm_a_clean_object(kind: str) -> None:
    image, gt = _scene()
    coarse = coarse_mask(kind, gt, np.random.default_rng(0))
    refiner = Refiner.from_checkpoint(default_checkpoint("lr"), seed=0)
    refined = refiner.refine_instances(image, coarse[None])[0]

    def iou(a: np.ndarray) -> float:
        return np.count_nonzero(a & gt) / np.count_nonzero(a | gt)

    assert iou(refined) >= iou(coarse) - 0.02, (kind, iou(coarse), iou(refined))


@HR_SHIPPED
@pytest.mark.parametrize("kind", ["maskrcnn", "lowres", "official"])
def test_the_hr_default_does_not_harm_a_clean_object(kind: str) -> None:
    image, gt = _scene()
    image, gt = cv2.resize(image, (640, 480)), cv2.resize(gt.astype(np.uint8), (640, 480)) > 0
    coarse = coarse_mask(kind, gt, np.random.default_rng(0))
    refined = Refiner.from_checkpoint(default_checkpoint("hr"), seed=0).refine(image, coarse)

    def iou(a: np.ndarray) -> float:
        return np.count_nonzero(a & gt) / np.count_nonzero(a | gt)

    assert iou(refined) >= iou(coarse) - 0.02, (kind, iou(coarse), iou(refined))
