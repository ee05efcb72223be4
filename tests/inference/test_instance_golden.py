"""End-to-end golden of the instance (LR) path: every pixel of `refine_instances` on a real
photograph, against a per-item re-implementation written here from the spec (§3.3, §5.1) and
a hand-computable network whose output depends on the mask channel, so the reverse step's
commit / revert decisions show in the result.

The reference shares nothing with the code under test but the per-item seeding contract
(`item_generator`: an item's noise is ``torch.rand((5, 1, S, S))`` from its own generator, one
slice per noisy step).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from segrefiner.diffusion import DiscreteDiffusion
from segrefiner.inference import InferenceConfig
from segrefiner.inference.instance import refine_instances
from segrefiner.inference.seeding import item_generator
from tests.conftest import blob_mask

# spec §5.1 and §7 (img_norm_cfg), written out, not imported
MEAN = np.array([123.675, 116.28, 103.53])
STD = np.array([58.395, 57.12, 57.375])
ALPHA_BAR = [0.8, 0.64, 0.48, 0.32, 0.16, 0.0]  # cumulative stay-fine, t = 0..5 (§3.1)
PAD, AREA_THR = 20, 512
SIZE = 64  # the network side used here (256 in the official config): small keeps CPU fast


def mask_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A network by hand: trusts the current mask, pulled by the red channel, less sure at
    noisier steps. Logit = 1.5 (2 m - 1) + 1.2 (red - 0.4) - 0.15 t."""
    red, mask = x[:, :1], x[:, 3:4]
    return 1.5 * (2.0 * mask - 1.0) + 1.2 * (red - 0.4) - 0.15 * t.view(-1, 1, 1, 1).float()


def _reference_one(image: np.ndarray, coarse: np.ndarray, gen: torch.Generator) -> np.ndarray:
    """One instance, spec §5.1 steps 2-4 and the reverse loop of §3.3, batch of one."""
    height, width = coarse.shape
    ys, xs = np.nonzero(coarse)
    x0, y0 = max(xs.min() - PAD, 0), max(ys.min() - PAD, 0)
    x1, y1 = min(xs.max() + 1 + PAD, width), min(ys.max() + 1 + PAD, height)
    norm = ((image.astype(np.float64) - MEAN) / STD).astype(np.float32)
    img = torch.from_numpy(norm[y0:y1, x0:x1].transpose(2, 0, 1).copy())[None]
    msk = torch.from_numpy(coarse[y0:y1, x0:x1].astype(np.float32))[None, None]
    img = F.interpolate(img, (SIZE, SIZE), mode="bilinear", align_corners=False)
    m_coarse = F.interpolate(msk, (SIZE, SIZE), mode="bilinear", align_corners=False) >= 0.5
    m_coarse = m_coarse.float()
    noise = torch.rand((5, 1, SIZE, SIZE), generator=gen)[:, None]  # (5, 1, 1, S, S)
    x, fine = m_coarse, torch.zeros_like(m_coarse)
    for step, t in enumerate([5, 4, 3, 2, 1, 0]):
        logits = mask_model(torch.cat([img, x], 1), torch.tensor([t]))
        conf = 2.0 * (torch.sigmoid(logits) - 0.5).abs()
        prev = 1.0 if t == 0 else ALPHA_BAR[t - 1]
        fine = fine + (1.0 - fine) * (conf * (prev - ALPHA_BAR[t]) / (1.0 - conf * ALPHA_BAR[t]))
        if t == 0:
            prob = torch.sigmoid(logits)[0, 0].double().numpy()
            break
        commit = noise[step] < fine
        x = torch.where(commit, (logits >= 0).float(), m_coarse)
    # §5.1 step 4: bilinear sampling at pixel centres, zero padding outside the map
    out = np.zeros((height, width), bool)
    h, w = y1 - y0, x1 - x0
    sy = (np.arange(h) + 0.5) * SIZE / h - 0.5  # source row of each box row
    sx = (np.arange(w) + 0.5) * SIZE / w - 0.5
    padded = np.zeros((SIZE + 2, SIZE + 2))
    padded[1:-1, 1:-1] = prob
    r0, c0 = np.floor(sy).astype(int), np.floor(sx).astype(int)
    fy, fx = (sy - r0)[:, None], (sx - c0)[None, :]
    r0, c0 = r0 + 1, c0 + 1  # into the padded map
    value = (
        padded[np.ix_(r0, c0)] * (1 - fy) * (1 - fx)
        + padded[np.ix_(r0, c0 + 1)] * (1 - fy) * fx
        + padded[np.ix_(r0 + 1, c0)] * fy * (1 - fx)
        + padded[np.ix_(r0 + 1, c0 + 1)] * fy * fx
    )
    out[y0:y1, x0:x1] = value >= 0.5
    return out


def test_refine_instances_matches_the_reference_pixel_for_pixel(photo) -> None:
    h, w = photo.shape[:2]
    masks = np.stack(
        [
            blob_mask((h, w), (150, 170), 70, seed=1),
            blob_mask((h, w), (40, 360), 60, seed=2),  # cut by the image border: clipped box
            blob_mask((h, w), (300, 90), 45, seed=3),
            np.pad(np.ones((20, 25), bool), ((200, h - 220), (300, w - 325))),  # 500 px: passed
        ]
    )
    assert masks[3].sum() == 500 < AREA_THR
    config = InferenceConfig(model_size=SIZE, batch_size=2)  # items of one batch share nothing
    gens = [item_generator(11, "golden", i) for i in range(len(masks))]
    got = refine_instances(mask_model, DiscreteDiffusion(), photo, masks, gens, config).masks
    for i, coarse in enumerate(masks):
        if coarse.sum() < AREA_THR:
            want = coarse
        else:
            want = _reference_one(photo, coarse, item_generator(11, "golden", i))
        assert np.array_equal(got[i], want), (i, int((got[i] != want).sum()))
    # the network moved pixels, and the commit noise mattered: another seed, other masks
    assert all((got[i] != masks[i]).any() for i in range(3))
    other = [item_generator(12, "golden", i) for i in range(len(masks))]
    again = refine_instances(mask_model, DiscreteDiffusion(), photo, masks, other, config).masks
    assert any((again[i] != got[i]).any() for i in range(3))


# --------------------------------------------------------------------------- semantic (HR)

PATCH, FINE_THR, NMS_IOU = 64, 0.9, 0.3  # patch side (256 officially), §5.2 thresholds


def _nearest(array: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Legacy nearest (§5.2): source index = floor(dst * in / out)."""
    h, w = array.shape[:2]
    rows = (np.arange(out_h) * h) // out_h
    cols = (np.arange(out_w) * w) // out_w
    return array[rows][:, cols]


def _reference_semantic(image: np.ndarray, coarse: np.ndarray, gen: torch.Generator) -> np.ndarray:
    height, width = coarse.shape
    norm = ((image.astype(np.float64) - MEAN) / STD).astype(np.float32)
    # 2. global step, indices 5..1
    img = torch.from_numpy(_nearest(norm, SIZE, SIZE).transpose(2, 0, 1).copy())[None]
    m_coarse = torch.from_numpy(_nearest(coarse, SIZE, SIZE).astype(np.float32))[None, None]
    noise = torch.rand((4, 1, SIZE, SIZE), generator=gen)[:, None]
    x, fine = m_coarse, torch.zeros_like(m_coarse)
    for step, t in enumerate([5, 4, 3, 2, 1]):
        logits = mask_model(torch.cat([img, x], 1), torch.tensor([t]))
        conf = 2.0 * (torch.sigmoid(logits) - 0.5).abs()
        fine = fine + (1.0 - fine) * (
            conf * (ALPHA_BAR[t - 1] - ALPHA_BAR[t]) / (1.0 - conf * ALPHA_BAR[t])
        )
        if t == 1:
            prob = torch.sigmoid(logits)[0, 0].numpy()
            break
        x = torch.where(noise[step] < fine, (logits >= 0).float(), m_coarse)
    global_mask = _nearest(prob, height, width) >= 0.5
    f = fine[0, 0].double().numpy()
    # 3. patches: low-confidence points, boxes centred on them shifted inside, NMS, mixed only
    ys, xs = np.nonzero(f < FINE_THR * f.max())
    scores = 1.0 - f[ys, xs]
    boxes = []
    for y, x in zip(ys, xs, strict=True):
        cy, cx = int(y * height / SIZE), int(x * width / SIZE)
        bx = min(max(cx - PATCH // 2, 0), width - PATCH)
        by = min(max(cy - PATCH // 2, 0), height - PATCH)
        boxes.append((bx, by, bx + PATCH, by + PATCH))
    order = sorted(range(len(boxes)), key=lambda i: (-scores[i], i))
    kept: list[tuple[int, int, int, int]] = []
    for i in order:
        a = boxes[i]
        overlaps = False
        for b in kept:
            iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
            ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
            inter = iw * ih
            if inter / (2 * PATCH * PATCH - inter) > NMS_IOU:
                overlaps = True
                break
        if not overlaps:
            kept.append(a)
    kept = [b for b in kept if 0 < global_mask[b[1] : b[3], b[0] : b[2]].sum() < PATCH * PATCH]
    # 4-5. local step at t = 0 on each patch; covered pixels take the mean probability
    total = np.zeros((height, width))
    count = np.zeros((height, width))
    for x0, y0, x1, y1 in kept:
        patch = torch.from_numpy(norm[y0:y1, x0:x1].transpose(2, 0, 1).copy())[None]
        mask = torch.from_numpy(global_mask[y0:y1, x0:x1].astype(np.float32))[None, None]
        p = torch.sigmoid(mask_model(torch.cat([patch, mask], 1), torch.tensor([0])))
        total[y0:y1, x0:x1] += p[0, 0].numpy()
        count[y0:y1, x0:x1] += 1
    out = global_mask.copy()
    covered = count > 0
    out[covered] = total[covered] / count[covered] >= 0.5
    return out


def test_refine_semantic_matches_the_reference_pixel_for_pixel(photo) -> None:
    from segrefiner.inference.semantic import SemanticItem, refine_semantic_group

    h, w = photo.shape[:2]
    coarses = [blob_mask((h, w), (190, 200), 110, seed=4), blob_mask((h, w), (80, 300), 60, seed=5)]
    config = InferenceConfig(model_size=SIZE, patch_size=PATCH, batch_size=3)
    items = [
        SemanticItem(photo, c, item_generator(5, "hr", i), f"item {i}")
        for i, c in enumerate(coarses)
    ]
    got = refine_semantic_group(mask_model, DiscreteDiffusion(), items, config)
    for i, coarse in enumerate(coarses):
        want = _reference_semantic(photo, coarse, item_generator(5, "hr", i))
        assert np.array_equal(got[i].mask, want), (i, int((got[i].mask != want).sum()))
        assert (want != coarse).any()
