"""The shipped default LR model: present, small, self-describing, and harmless on a clean case."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from segrefiner.checkpoint import default_checkpoint, load_checkpoint, read_checkpoint
from segrefiner.data.coarse_kinds import coarse_mask
from segrefiner.refiner import Refiner

MAX_BYTES = 25 * 1024 * 1024


def test_the_lr_default_is_shipped_small_and_loads_safely() -> None:
    path = default_checkpoint("lr")
    assert path.stat().st_size <= MAX_BYTES
    obj = read_checkpoint(path)  # weights_only=True
    assert "optimizer" not in obj  # inference weights only
    model, meta = load_checkpoint(path)
    assert meta["preset"] == "tiny" and meta["inference"]["model_size"] == 256
    assert all(p.dtype == torch.float32 for p in model.parameters())  # loads as float32


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
