"""The library's defaults are the official ones.

Every number below is copied from the spec (``reference/SEGREFINER_SPEC.md``: §3.1 schedule,
§3.3 reverse step, §5.1 LR test_cfg, §5.2 HR test_cfg, §7 config values), written out
literally: nothing is imported from the module under test to compute an expected value.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from segrefiner.diffusion import DiscreteDiffusion
from segrefiner.inference.config import IMAGE_MEAN, IMAGE_STD, InferenceConfig
from segrefiner.inference.instance import prepare_instances

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_are_the_official_test_cfg_and_schedule() -> None:
    cfg = InferenceConfig()
    # §5.1 / §7 segrefiner_coco.py test_cfg {pad_width 20, model_size 256, batch_max 32,
    # area_thr 512}
    assert cfg.pad_width == 20
    assert cfg.model_size == 256
    assert cfg.batch_size == 32
    assert cfg.area_thr == 512
    # §5.2 / §7 segrefiner_big.py test_cfg {model_size 256, fine_prob_thr 0.9, iou_thr 0.3,
    # batch_max 32}; 256 x 256 native patches; early exit at <= 128 foreground pixels
    assert cfg.fine_prob_thr == 0.9
    assert cfg.iou_thr == 0.3
    assert cfg.patch_size == 256
    assert cfg.min_foreground == 128
    assert cfg.guard is None  # not official: off by default
    assert cfg.local_mask == "global"  # official: patches refine the global pass's mask
    assert cfg.paste == "crop"  # official: the refined crop is resampled onto its box
    # §7 img_norm_cfg (RGB order, 0-255 scale)
    assert tuple(IMAGE_MEAN) == (123.675, 116.28, 103.53)
    assert tuple(IMAGE_STD) == (58.395, 57.12, 57.375)

    # §3.1: fine_prob = linspace(0.8, 0.0, 6), exact float64 values of the official table
    diffusion = DiscreteDiffusion()
    assert (diffusion.num_steps, diffusion.start, diffusion.stop) == (6, 0.8, 0.0)
    assert diffusion.fine_prob.tolist() == [
        0.8,
        0.64,
        0.48000000000000004,
        0.32000000000000006,
        0.16000000000000003,
        0.0,
    ]
    assert diffusion.fine_prob_prev.tolist() == [
        1.0,
        0.8,
        0.64,
        0.48000000000000004,
        0.32000000000000006,
        0.16000000000000003,
    ]
    # §3.3 / §5.1: inference walks t = 5, 4, 3, 2, 1, 0
    assert diffusion.inference_steps == [5, 4, 3, 2, 1, 0]
    # §3.3: with confidence 1 the per-step transition probabilities for t = 5..0
    one = torch.ones(1, dtype=torch.float64)
    probs = [float(diffusion.transition_prob(one, t)) for t in (5, 4, 3, 2, 1, 0)]
    assert probs == pytest.approx([0.16, 0.190476, 0.235294, 0.307692, 0.444444, 1.0], abs=1e-6)

    # The YAML files that spell the official runs out agree (§7).
    from segrefiner.training import load_train_config

    lr = load_train_config(CONFIGS / "segrefiner_lr.yaml").inference
    assert (lr.model_size, lr.pad_width, lr.area_thr, lr.batch_size) == (256, 20, 512, 32)
    hr = load_train_config(CONFIGS / "segrefiner_hr.yaml").inference
    assert (hr.model_size, hr.patch_size, hr.fine_prob_thr, hr.iou_thr, hr.batch_size) == (
        256,
        256,
        0.9,
        0.3,
        32,
    )
    assert hr.min_foreground == 128 and hr.local_mask == "global"


def _mask_with_area(area: int, height: int = 64, width: int = 96) -> np.ndarray:
    """A 16-row block filled row by row: exactly ``area`` pixels (H, W) bool."""
    flat = np.zeros(16 * 40, bool)
    flat[:area] = True
    mask = np.zeros((height, width), bool)
    mask[10:26, 20:60] = flat.reshape(16, 40)
    return mask


def test_an_instance_of_exactly_area_thr_pixels_is_refined() -> None:
    # §5.1 step 1: instances with area < 512 are passed through; 512 and more are refined.
    areas = [511, 512, 513, 0, 600, 128]
    masks = np.stack([_mask_with_area(a) for a in areas])
    assert masks.reshape(len(areas), -1).sum(axis=1).tolist() == areas
    image = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    prepared = prepare_instances(image, masks)  # the default config
    assert prepared.todo.tolist() == [1, 2, 4]
    assert prepared.num_crops == 3
    assert tuple(prepared.crops.shape) == (3, 3, 256, 256)  # model_size 256


def test_a_coarse_mask_of_128_pixels_gives_an_empty_mask_and_129_does_not() -> None:
    # §5.2 step 1: "if the coarse mask has <= 128 foreground pixels, output an all-zero mask".
    from segrefiner.inference.semantic import refine_semantic

    def confident(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x[:, 3:4] * 16.0 - 8.0  # "the mask input is right", with confidence

    image = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    cfg = InferenceConfig(model_size=32, patch_size=32)  # min_foreground keeps its default

    def run(area: int) -> tuple[np.ndarray, list[str]]:
        coarse = np.zeros((48, 64), bool)
        coarse.reshape(-1)[1000 : 1000 + area] = True
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = refine_semantic(confident, DiscreteDiffusion(), image, coarse, None, cfg).mask
        return out, [str(w.message) for w in caught]

    out, messages = run(128)
    assert not out.any() and any("empty mask" in m for m in messages)
    out, messages = run(129)
    assert out.any() and not any("empty mask" in m for m in messages)
