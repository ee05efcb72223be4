from __future__ import annotations

import numpy as np
import pytest
import torch

from segrefiner import Refiner
from segrefiner.diffusion import DiscreteDiffusion
from segrefiner.inference import InferenceConfig
from segrefiner.inference.semantic import (
    mixed_boxes,
    nms_boxes,
    propose_patches,
    refine_semantic,
    stitch_patches,
)
from tests.conftest import blob_mask
from tests.inference.test_instance import FAST, oracle_model


def test_nms_keeps_best_and_drops_overlaps() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [5, 0, 15, 10]])
    scores = np.array([0.5, 0.9, 0.3, 0.9])
    # 1 and 3 tie at 0.9: the lower index wins; 0 overlaps 1 (IoU 0.82) and goes; 3 overlaps
    # 1 with IoU 6/14 = 0.43 > 0.3 and goes; 2 is alone.
    assert nms_boxes(boxes, scores, 0.3).tolist() == [1, 2]
    assert nms_boxes(boxes, scores, 0.5).tolist() == [1, 3, 2]


def test_propose_patches_maps_points_and_shifts_boxes() -> None:
    fine_prob = np.full((8, 8), 0.8)
    fine_prob[0, 0] = 0.1  # corner: box shifted inside
    fine_prob[4, 6] = 0.2  # interior
    cfg = InferenceConfig(model_size=8, patch_size=256)
    boxes = propose_patches(fine_prob, 1000, 2000, cfg)
    # (0,0) -> (0,0): box [0,256); (4,6) -> y = 4*1000//8 = 500, x = 6*2000//8 = 1500
    assert boxes.tolist() == [[0, 0, 256, 256], [1372, 372, 1628, 628]]
    assert propose_patches(np.full((8, 8), 0.8), 1000, 2000, cfg).shape == (0, 4)
    # near the bottom border: y = 875 -> [747, 1003) shifted to end at 1000
    fine_prob = np.full((8, 8), 0.8)
    fine_prob[7, 7] = 0.0
    assert propose_patches(fine_prob, 1000, 2000, cfg).tolist() == [[1622, 744, 1878, 1000]]


def test_mixed_boxes() -> None:
    mask = torch.zeros(10, 10, dtype=torch.bool)
    mask[:, 5:] = True
    boxes = np.array([[0, 0, 5, 5], [5, 0, 10, 10], [3, 3, 8, 8]])
    assert mixed_boxes(mask, boxes).tolist() == [False, False, True]


def test_stitch_averages_overlaps() -> None:
    global_mask = torch.zeros(4, 6, dtype=torch.bool)
    global_mask[0, 0] = True
    probs = torch.stack([torch.full((1, 4, 4), 0.8), torch.full((1, 4, 4), 0.1)])
    boxes = np.array([[1, 0, 5, 4], [2, 0, 6, 4]])
    out = stitch_patches(global_mask, probs, boxes)
    assert out[:, 0].tolist() == [True, False, False, False]  # uncovered: global mask
    assert out[:, 1].all()  # only patch 1: 0.8
    assert not out[:, 2:5].any()  # mean 0.45
    assert not out[:, 5].any()  # only patch 2: 0.1


def test_oracle_model_recovers_a_high_resolution_object() -> None:
    """Global pass at 256 is blocky; local patches at native resolution must fix boundaries."""
    import cv2
    from skimage import data

    photo = cv2.resize(data.coffee(), (1024, 768))
    gt = blob_mask((768, 1024), (500, 380), 260, seed=3)
    photo[..., 0] = np.where(gt, 255, 0)
    coarse = np.roll(gt, (6, -5), axis=(0, 1))
    refiner = Refiner.from_checkpoint("tiny", seed=0)
    refiner.model = oracle_model
    out = refiner.refine(photo, coarse)
    errors = (out != gt).sum()
    assert errors < 0.1 * (coarse != gt).sum(), errors


def test_tiny_preset_semantic_runs_and_is_seeded(photo) -> None:
    refiner = Refiner.from_checkpoint("tiny", seed=3, config=FAST)
    mask = blob_mask(photo.shape[:2], (200, 190), 100)
    out = refiner.refine(photo, mask)
    assert out.shape == photo.shape[:2] and out.dtype == bool
    assert np.array_equal(out, refiner.refine(photo, mask))


def test_empty_coarse_mask_gives_empty_output_with_warning(photo) -> None:
    refiner = Refiner.from_checkpoint("tiny", seed=0, config=FAST)
    mask = np.zeros(photo.shape[:2], bool)
    mask[:10, :10] = True  # 100 px <= 128
    with pytest.warns(UserWarning, match="empty mask"):
        out = refiner.refine(photo, mask)
    assert not out.any()


def test_small_image_uses_a_smaller_patch(monkeypatch) -> None:
    from segrefiner.inference import semantic

    patches: list[tuple[list[int], tuple[int, ...], int]] = []
    local_step = semantic.local_step

    def spy(model, diffusion, work, size):
        probs = local_step(model, diffusion, work, size)
        for (_, _, box), prob in zip(work, probs, strict=True):
            patches.append((list(box), tuple(prob.shape), size))
        return probs

    monkeypatch.setattr(semantic, "local_step", spy)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (160, 200, 3), dtype=np.uint8)
    mask = blob_mask((160, 200), (100, 80), 50)
    assert FAST.patch_size == 256 > 200  # the image is smaller than a patch both ways
    out = Refiner.from_checkpoint("tiny", seed=0, config=FAST).refine(image, mask)
    assert out.shape == (160, 200)
    # The patch side is the image side (not 256, not a square of the smaller side): every
    # patch is the whole image, refined at the network's size and pasted back at 160 x 200.
    assert patches and all(box == [0, 0, 200, 160] for box, _, _ in patches)
    assert all(shape == (1, 160, 200) and size == FAST.model_size for _, shape, size in patches)


def test_group_packs_images_and_matches_one_at_a_time(photo) -> None:
    """Patches of several images share batches (batch 3 straddles image boundaries), yet
    every output equals refining that image alone; an empty-mask item stays empty."""
    from segrefiner.diffusion import DiscreteDiffusion
    from segrefiner.inference import item_generator
    from segrefiner.inference.semantic import SemanticItem, refine_semantic_group
    from segrefiner.model import build_unet

    torch.manual_seed(0)
    model = build_unet("tiny").eval()
    diffusion = DiscreteDiffusion()
    cfg = InferenceConfig(model_size=32, patch_size=64, batch_size=3)
    rng = np.random.default_rng(1)
    small = rng.integers(0, 255, (48, 60, 3), dtype=np.uint8)  # smaller than a patch
    empty = np.zeros(photo.shape[:2], bool)
    empty[:5, :5] = True
    inputs = [
        (photo, blob_mask(photo.shape[:2], (200, 190), 100)),
        (small, blob_mask((48, 60), (30, 24), 15)),
        (photo, empty),
        (photo[:200, :300].copy(), blob_mask((200, 300), (150, 100), 60, seed=2)),
    ]

    def items():
        return [
            SemanticItem(img, mask, item_generator(7, "s", k), f"item {k}")
            for k, (img, mask) in enumerate(inputs)
        ]

    with pytest.warns(UserWarning, match="item 2"):
        packed = refine_semantic_group(model, diffusion, items(), cfg)
    with pytest.warns(UserWarning, match="item 2"):
        alone = [refine_semantic_group(model, diffusion, [it], cfg)[0] for it in items()]
    assert not packed[2].mask.any() and np.isnan(packed[2].score) and packed[2].features is None
    for k, (a, b) in enumerate(zip(packed, alone, strict=True)):
        assert a.mask.shape == inputs[k][1].shape
        assert np.array_equal(a.mask, b.mask), k
        # the score too, up to the network's float rounding, which depends on the batch size
        assert a.score == pytest.approx(b.score, rel=1e-6, nan_ok=True), k
    # the local step changed something: not just the global pass
    assert any((a.mask != inputs[k][1]).sum() > 0 for k, a in enumerate(packed))


def test_group_needs_generators_for_all_or_none(photo) -> None:
    from segrefiner.diffusion import DiscreteDiffusion
    from segrefiner.inference.semantic import SemanticItem, refine_semantic_group
    from segrefiner.model import build_unet

    mask = blob_mask(photo.shape[:2], (200, 190), 100)
    items = [SemanticItem(photo, mask, torch.Generator()), SemanticItem(photo, mask, None)]
    with pytest.raises(ValueError, match="every item"):
        refine_semantic_group(build_unet("tiny"), DiscreteDiffusion(), items, FAST)


def test_group_names_the_item_with_a_bad_mask(photo) -> None:
    from segrefiner.diffusion import DiscreteDiffusion
    from segrefiner.errors import InputError
    from segrefiner.inference.semantic import SemanticItem, refine_semantic_group
    from segrefiner.model import build_unet

    good = SemanticItem(photo, blob_mask(photo.shape[:2], (200, 190), 100), name="a.png")
    stacked = SemanticItem(photo, np.zeros((2, *photo.shape[:2]), bool), name="b.png")
    small = SemanticItem(photo, np.zeros((10, 10), bool), name="c.png")
    model, diffusion = build_unet("tiny"), DiscreteDiffusion()
    with pytest.raises(InputError, match=r"b\.png: coarse: expected an H x W mask"):
        refine_semantic_group(model, diffusion, [good, stacked], FAST)
    with pytest.raises(InputError, match=r"c\.png: coarse: mask size 10x10"):
        refine_semantic_group(model, diffusion, [good, small], FAST)
    gray = SemanticItem(photo[..., 0], blob_mask(photo.shape[:2], (200, 190), 100), name="d.png")
    with pytest.raises(InputError, match=r"d\.png: image: expected an H x W x 3 RGB array"):
        refine_semantic_group(model, diffusion, [good, gray], FAST)


def _echo_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Returns its mask channel, sure of every pixel: nothing looks uncertain, so the global
    pass places no patch and the output is the mask the local step would have refined."""
    return 20.0 * (x[:, 3:4] - 0.5)


@pytest.mark.parametrize("local_mask", ["global", "coarse"])
def test_local_mask_chooses_what_uncovered_pixels_keep(local_mask: str) -> None:
    height, width, size = 200, 300, 64
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    coarse = blob_mask((height, width), (100, 150), 70)
    coarse[20, 10:290] = True  # a 1-px line: thinner than a global-pass block (3 x 4 px)
    config = InferenceConfig(model_size=size, local_mask=local_mask)
    generator = torch.Generator().manual_seed(0)
    out = refine_semantic(_echo_model, DiscreteDiffusion(), image, coarse, generator, config).mask
    if local_mask == "coarse":
        assert np.array_equal(out, coarse)  # native resolution, line and all
    else:
        # Official: nearest down to 64 x 64 and back, by the legacy index floor(i * in / out).
        rows = (np.arange(size) * height) // size
        cols = (np.arange(size) * width) // size
        small = coarse[rows][:, cols]
        staircase = small[(np.arange(height) * size) // height][
            :, (np.arange(width) * size) // width
        ]
        assert np.array_equal(out, staircase)
        assert not np.array_equal(out, coarse)


def test_unknown_local_mask_is_refused() -> None:
    from segrefiner.errors import InputError

    with pytest.raises(InputError, match="local_mask: expected one of"):
        InferenceConfig(local_mask="native")
