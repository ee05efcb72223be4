"""Semantic (HR) refinement: a global pass then local patches (spec §5.2).

1. Global: image and mask resized (nearest) to ``model_size``; steps 5..1; the probability map
   is resized back (nearest) and thresholded -> ``global_mask``; the accumulated fine
   probability says where the model is unsure.
2. Patches: native-resolution ``patch_size`` boxes centred on low-confidence points
   (fine_prob < thr * max), de-duplicated by NMS, kept only where ``global_mask`` is mixed.
3. Local: one step at t = 0 on each patch (image + global-mask patch), in bounded batches.
4. Stitch: overlapping patch probabilities are averaged; uncovered pixels keep ``global_mask``.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from segrefiner.diffusion import Denoiser, DiscreteDiffusion, sample_loop
from segrefiner.inference.config import InferenceConfig
from segrefiner.inference.preprocess import check_image, check_masks, normalize_image


def global_step(
    model: Denoiser,
    diffusion: DiscreteDiffusion,
    image: torch.Tensor,
    coarse: torch.Tensor,
    generator: torch.Generator | None,
    size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """All steps but the last on the whole image at ``size`` x ``size``.

    ``image``: float (1, 3, H, W) normalized; ``coarse``: (H, W) bool. Returns
    ``(global_mask, fine_prob)``: bool (H, W) and float (size, size).
    """
    height, width = coarse.shape
    small_img = F.interpolate(image, (size, size), mode="nearest")
    small_mask = F.interpolate(coarse.to(image.dtype)[None, None], (size, size), mode="nearest")
    steps = diffusion.inference_steps[:-1]
    gens = None if generator is None else [generator]
    prob, fine_prob = sample_loop(
        model, diffusion, small_img, (small_mask >= 0.5).float(), steps, gens
    )
    global_mask = F.interpolate(prob, (height, width), mode="nearest")[0, 0] >= 0.5
    return global_mask, fine_prob[0, 0]


def nms_boxes(boxes: np.ndarray, scores: np.ndarray, iou_thr: float) -> np.ndarray:
    """Greedy NMS: indices of the kept boxes, highest score first (ties: lower index first).

    ``boxes``: (N, 4) ``[x0, y0, x1, y1)``; a box is dropped when its IoU with a kept box is
    greater than ``iou_thr``.
    """
    order = np.argsort(-scores, kind="stable")
    boxes = boxes.astype(np.float64)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        best = order[0]
        keep.append(best)
        rest = order[1:]
        iw = np.minimum(boxes[best, 2], boxes[rest, 2]) - np.maximum(boxes[best, 0], boxes[rest, 0])
        ih = np.minimum(boxes[best, 3], boxes[rest, 3]) - np.maximum(boxes[best, 1], boxes[rest, 1])
        inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
        iou = inter / (areas[best] + areas[rest] - inter)
        order = rest[iou <= iou_thr]
    return np.asarray(keep, dtype=np.int64)


def propose_patches(
    fine_prob: np.ndarray, height: int, width: int, config: InferenceConfig
) -> np.ndarray:
    """Patch boxes centred on the global pass's low-confidence points.

    ``fine_prob``: (S, S) float accumulated fine probability. Points with
    ``fine_prob < fine_prob_thr * max`` map to full resolution by truncation; each gets a
    ``patch_size`` box centred on it, shifted (not shrunk) into the image; NMS by score
    ``1 - fine_prob``. Returns int64 (K, 4) ``[x0, y0, x1, y1)``. On an image smaller than
    ``patch_size`` the box side is the image side.
    """
    fine_prob = np.asarray(fine_prob, dtype=np.float64)
    size_y, size_x = fine_prob.shape
    ys, xs = np.nonzero(fine_prob < config.fine_prob_thr * fine_prob.max())
    if ys.size == 0:
        return np.zeros((0, 4), dtype=np.int64)
    scores = 1.0 - fine_prob[ys, xs]
    cy = ys.astype(np.int64) * height // size_y  # int(y * H / S), exact in integers
    cx = xs.astype(np.int64) * width // size_x
    pw, ph = min(config.patch_size, width), min(config.patch_size, height)
    x0 = np.clip(cx - config.patch_size // 2, 0, width - pw)
    y0 = np.clip(cy - config.patch_size // 2, 0, height - ph)
    boxes = np.stack([x0, y0, x0 + pw, y0 + ph], axis=1)
    return boxes[nms_boxes(boxes, scores, config.iou_thr)]


def mixed_boxes(mask: torch.Tensor, boxes: np.ndarray) -> np.ndarray:
    """Boolean (K,) flags: the box region of ``mask`` (H, W) holds both 0 and 1 pixels."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=bool)
    integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    integral[1:, 1:] = mask.cpu().numpy().astype(np.int64).cumsum(0).cumsum(1)
    x0, y0, x1, y1 = boxes.T
    total = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return (total > 0) & (total < (x1 - x0) * (y1 - y0))


def local_step(
    model: Denoiser,
    diffusion: DiscreteDiffusion,
    image: torch.Tensor,
    global_mask: torch.Tensor,
    boxes: np.ndarray,
    config: InferenceConfig,
) -> torch.Tensor:
    """The last step (t = 0) on native-resolution patches, ``config.batch_size`` at a time.

    ``boxes``: (K, 4) ``[x0, y0, x1, y1)``, all of one size. Returns float (K, 1, ph, pw)
    foreground probabilities. Patches whose side differs from ``model_size`` (images smaller
    than a patch) are resized for the network and back. Callers bound memory by passing at
    most a batch of boxes (see :func:`refine_patches`).
    """
    if len(boxes) == 0:
        return image.new_zeros((0, 1, 0, 0))
    ph, pw = int(boxes[0, 3] - boxes[0, 1]), int(boxes[0, 2] - boxes[0, 0])
    size = config.model_size
    out = []
    for start in range(0, len(boxes), config.batch_size):
        chunk = boxes[start : start + config.batch_size].tolist()
        imgs = torch.cat([image[:, :, y0:y1, x0:x1] for x0, y0, x1, y1 in chunk])
        masks = torch.stack([global_mask[y0:y1, x0:x1] for x0, y0, x1, y1 in chunk])[:, None]
        masks = masks.to(image.dtype)
        if (ph, pw) != (size, size):
            imgs = F.interpolate(imgs, (size, size), mode="bilinear", align_corners=False)
            masks = F.interpolate(masks, (size, size), mode="nearest")
        prob, _ = sample_loop(model, diffusion, imgs, masks, [0])
        if (ph, pw) != (size, size):
            prob = F.interpolate(prob, (ph, pw), mode="bilinear", align_corners=False)
        out.append(prob)
    return torch.cat(out)


class PatchAccumulator:
    """Running sum and count of patch probabilities over the image (memory: two H x W maps)."""

    def __init__(self, global_mask: torch.Tensor):
        self.global_mask = global_mask
        self.total = torch.zeros(global_mask.shape, dtype=torch.float32, device=global_mask.device)
        self.count = torch.zeros(global_mask.shape, dtype=torch.float32, device=global_mask.device)

    def add(self, probs: torch.Tensor, boxes: np.ndarray) -> None:
        for prob, (x0, y0, x1, y1) in zip(probs, boxes.tolist(), strict=True):
            self.total[y0:y1, x0:x1] += prob[0].float()
            self.count[y0:y1, x0:x1] += 1.0

    def result(self) -> torch.Tensor:
        """Mean probability >= 0.5 where covered; ``global_mask`` elsewhere. bool (H, W)."""
        covered = self.count > 0
        refined = self.global_mask.clone()
        refined[covered] = (self.total[covered] / self.count[covered]) >= 0.5
        return refined


def stitch_patches(global_mask: torch.Tensor, probs: torch.Tensor, boxes: np.ndarray) -> torch.Tensor:
    """Average overlapping patch probabilities; threshold 0.5 where covered, else keep
    ``global_mask``. Returns bool (H, W)."""
    acc = PatchAccumulator(global_mask)
    acc.add(probs, boxes)
    return acc.result()


def refine_patches(
    model: Denoiser,
    diffusion: DiscreteDiffusion,
    image: torch.Tensor,
    global_mask: torch.Tensor,
    boxes: np.ndarray,
    config: InferenceConfig,
) -> torch.Tensor:
    """Local step over any number of patches with bounded memory: one batch of patch
    probabilities alive at a time. Returns bool (H, W)."""
    acc = PatchAccumulator(global_mask)
    for start in range(0, len(boxes), config.batch_size):
        chunk = boxes[start : start + config.batch_size]
        acc.add(local_step(model, diffusion, image, global_mask, chunk, config), chunk)
    return acc.result()


def refine_semantic(
    model: Denoiser,
    diffusion: DiscreteDiffusion,
    image: np.ndarray,
    coarse: np.ndarray,
    generator: torch.Generator | None,
    config: InferenceConfig = InferenceConfig(),
    device: torch.device | str = "cpu",
    name: str = "mask",
) -> np.ndarray:
    """Refine one high-resolution mask (the HR / semantic path).

    ``image``: (H, W, 3) uint8 RGB; ``coarse``: (H, W) binary. A coarse mask with at most
    ``config.min_foreground`` pixels gives an empty mask, as the official code does (with a
    warning). Returns (H, W) bool.
    """
    image = check_image(image)
    height, width = image.shape[:2]
    coarse = check_masks(coarse, (height, width), name)
    if coarse.ndim != 2:
        raise ValueError(f"{name}: expected an H x W mask, got shape {coarse.shape}")
    if int(coarse.sum()) <= config.min_foreground:
        warnings.warn(
            f"{name}: coarse mask has {int(coarse.sum())} <= {config.min_foreground} foreground "
            "pixels; returning an empty mask (official behaviour)",
            stacklevel=2,
        )
        return np.zeros((height, width), dtype=bool)
    image_t = normalize_image(image, device)
    coarse_t = torch.from_numpy(coarse).to(device)
    global_mask, fine_prob = global_step(
        model, diffusion, image_t, coarse_t, generator, config.model_size
    )
    boxes = propose_patches(fine_prob.cpu().numpy(), height, width, config)
    boxes = boxes[mixed_boxes(global_mask, boxes)]
    if len(boxes) == 0:
        return global_mask.cpu().numpy()
    return refine_patches(model, diffusion, image_t, global_mask, boxes, config).cpu().numpy()
