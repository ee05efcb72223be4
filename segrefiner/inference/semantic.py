"""Semantic (HR) refinement: a global pass then local patches (spec §5.2).

1. Global: image and mask resized (nearest) to ``model_size``; steps 5..1; the probability map
   is resized back (nearest) and thresholded -> ``global_mask``; the accumulated fine
   probability says where the model is unsure.
2. Patches: native-resolution ``patch_size`` boxes centred on low-confidence points
   (fine_prob < thr * max), de-duplicated by NMS, kept only where ``global_mask`` is mixed.
3. Local: one step at t = 0 on each patch (image + global-mask patch), in bounded batches.
4. Stitch: overlapping patch probabilities are averaged; uncovered pixels keep ``global_mask``.

With ``InferenceConfig.local_mask == "coarse"`` (not official) steps 2-4 take the coarse mask
at native resolution in place of ``global_mask``: the global pass only says where to look, and
its resampling staircase (blocks of image side / ``model_size`` pixels) never reaches the
output.

Each result also gets its refinement score (:mod:`segrefiner.inference.score`), from the final
probability (patch means where covered, the global pass's elsewhere) and the global pass's
accumulated fine probability over the coarse mask's box padded by ``pad_width``; with
``InferenceConfig.guard`` set, a mask whose score is below it stays coarse.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from segrefiner.diffusion import Denoiser, DiscreteDiffusion, sample_loop
from segrefiner.errors import InputError
from segrefiner.inference.config import InferenceConfig
from segrefiner.inference.preprocess import check_image, check_masks, normalize_image
from segrefiner.inference.score import (
    ScoreCalibration,
    default_calibration,
    guard_keeps_coarse,
    score_features,
)


def global_step(
    model: Denoiser,
    diffusion: DiscreteDiffusion,
    images: Sequence[torch.Tensor],
    coarses: Sequence[torch.Tensor],
    generators: Sequence[torch.Generator] | None,
    size: int,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """All steps but the last on whole images at ``size`` x ``size``, in one batch.

    ``images``: float (1, 3, H, W) normalized, one per item (sizes may differ); ``coarses``:
    (H, W) bool; ``generators``: one per item. Returns per item
    ``(global_mask, fine_prob, global_prob)``: bool (H, W), float (size, size) and the float
    (H, W) probability that ``global_mask`` thresholds at 0.5.
    """
    small_img = torch.cat([F.interpolate(img, (size, size), mode="nearest") for img in images])
    small_mask = torch.cat(
        [
            F.interpolate(c.to(small_img.dtype)[None, None], (size, size), mode="nearest")
            for c in coarses
        ]
    )
    steps = diffusion.inference_steps[:-1]
    prob, fine_prob = sample_loop(
        model, diffusion, small_img, (small_mask >= 0.5).float(), steps, generators
    )
    out = []
    for i, c in enumerate(coarses):
        full = F.interpolate(prob[i : i + 1], c.shape, mode="nearest")[0, 0]
        out.append((full >= 0.5, fine_prob[i, 0], full))
    return out


def local_base(
    config: InferenceConfig,
    coarse: torch.Tensor,
    global_mask: torch.Tensor,
    global_prob: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """What the local step refines and uncovered pixels keep (``config.local_mask``): the
    global pass's ``(global_mask, global_prob)`` (official) or, with ``"coarse"``, the coarse
    mask (H, W) bool as both. Returns ``(mask, probability)``, each (H, W)."""
    if config.local_mask == "coarse":  # the global pass only places the patches
        return coarse, coarse
    return global_mask, global_prob


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
    patches: Sequence[tuple[torch.Tensor, torch.Tensor, Sequence[int]]],
    size: int,
) -> list[torch.Tensor]:
    """The last step (t = 0) on native-resolution patches, all in one network batch.

    ``patches``: ``(image (1, 3, H, W), global_mask (H, W), box [x0, y0, x1, y1))``; the
    patches may come from different images. Patches whose side differs from ``size`` (images
    smaller than a patch) are resized for the network and back. Returns float (1, ph, pw)
    foreground probabilities, one per patch.
    """
    if not patches:
        return []
    imgs, masks, shapes = [], [], []
    for image, global_mask, (x0, y0, x1, y1) in patches:
        img = image[:, :, y0:y1, x0:x1]
        mask = global_mask[y0:y1, x0:x1].to(image.dtype)[None, None]
        if (y1 - y0, x1 - x0) != (size, size):
            img = F.interpolate(img, (size, size), mode="bilinear", align_corners=False)
            mask = F.interpolate(mask, (size, size), mode="nearest")
        imgs.append(img)
        masks.append(mask)
        shapes.append((y1 - y0, x1 - x0))
    prob, _ = sample_loop(model, diffusion, torch.cat(imgs), torch.cat(masks), [0])
    return [
        p if shape == (size, size) else
        F.interpolate(p[None], shape, mode="bilinear", align_corners=False)[0]
        for p, shape in zip(prob, shapes, strict=True)
    ]  # fmt: skip


class PatchAccumulator:
    """Running sum and count of patch probabilities over the image (memory: two H x W maps)."""

    def __init__(self, global_mask: torch.Tensor):
        self.global_mask = global_mask
        self.total = torch.zeros(global_mask.shape, dtype=torch.float32, device=global_mask.device)
        self.count = torch.zeros(global_mask.shape, dtype=torch.float32, device=global_mask.device)

    def add(self, probs: Iterable[torch.Tensor], boxes: Iterable[Sequence[int]]) -> None:
        for prob, (x0, y0, x1, y1) in zip(probs, boxes, strict=True):
            self.total[y0:y1, x0:x1] += prob[0].float()
            self.count[y0:y1, x0:x1] += 1.0

    def result(self) -> torch.Tensor:
        """Mean probability >= 0.5 where covered; ``global_mask`` elsewhere. bool (H, W)."""
        covered = self.count > 0
        refined = self.global_mask.clone()
        refined[covered] = (self.total[covered] / self.count[covered]) >= 0.5
        return refined

    def probability(self, global_prob: torch.Tensor) -> torch.Tensor:
        """The final foreground probability: the mean patch probability where covered,
        ``global_prob`` (H, W) elsewhere; :meth:`result` is this thresholded at 0.5."""
        covered = self.count > 0
        prob = global_prob.float().clone()
        prob[covered] = self.total[covered] / self.count[covered]
        return prob


def stitch_patches(
    global_mask: torch.Tensor, probs: torch.Tensor, boxes: np.ndarray
) -> torch.Tensor:
    """Average overlapping patch probabilities; threshold 0.5 where covered, else keep
    ``global_mask``. Returns bool (H, W)."""
    acc = PatchAccumulator(global_mask)
    acc.add(probs, boxes.tolist())
    return acc.result()


@dataclass
class SemanticItem:
    """One high-resolution mask to refine: ``image`` (H, W, 3) uint8 RGB, ``coarse`` (H, W)
    binary, ``generator`` for the global pass's noise, ``name`` for messages."""

    image: np.ndarray
    coarse: np.ndarray
    generator: torch.Generator | None = None
    name: str = "mask"


@dataclass
class SemanticResult:
    """One refined mask: ``mask`` bool (H, W); ``score`` the refinement score (NaN when no
    refinement ran); ``guarded``: the guard kept the coarse mask; ``features`` float64
    (len(FEATURES),) what the score was computed from (``None`` when no refinement ran)."""

    mask: np.ndarray
    score: float = float("nan")
    guarded: bool = False
    features: np.ndarray | None = None


def semantic_score_region(coarse: torch.Tensor, pad_width: int) -> tuple[int, int, int, int]:
    """The box ``[x0, y0, x1, y1)`` the semantic score looks at: the coarse mask's tight box
    padded by ``pad_width`` and clipped, the region the instance path crops."""
    height, width = coarse.shape
    rows = torch.nonzero(coarse.any(1)).flatten()
    cols = torch.nonzero(coarse.any(0)).flatten()
    return (
        max(int(cols[0]) - pad_width, 0),
        max(int(rows[0]) - pad_width, 0),
        min(int(cols[-1]) + 1 + pad_width, width),
        min(int(rows[-1]) + 1 + pad_width, height),
    )


def semantic_features(
    coarse: torch.Tensor, prob: torch.Tensor, fine_prob: torch.Tensor, pad_width: int
) -> torch.Tensor:
    """Score features of one semantic result: ``coarse`` bool (H, W), ``prob`` the final
    float (H, W) probability, ``fine_prob`` the global pass's (S, S) accumulated fine
    probability (resampled to the image, nearest). Returns float64 (1, len(FEATURES))."""
    x0, y0, x1, y1 = semantic_score_region(coarse, pad_width)
    fine = F.interpolate(fine_prob.float()[None, None], coarse.shape, mode="nearest")[0, 0]
    region = (slice(y0, y1), slice(x0, x1))
    return score_features(coarse[region][None], prob[region][None], fine[region][None])


def refine_semantic_group(
    model: Denoiser,
    diffusion: DiscreteDiffusion,
    items: Sequence[SemanticItem],
    config: InferenceConfig = InferenceConfig(),
    device: torch.device | str = "cpu",
    calibration: ScoreCalibration | None = None,
) -> list[SemanticResult]:
    """Refine several high-resolution masks with their work packed into shared batches.

    The global passes of all items run as one batch and the local patches of all items fill
    batches of ``config.batch_size`` across image boundaries, so no batch is left part-empty
    at the end of an image. Each item's output is the same as refining it alone (its noise
    comes from its own generator; the last step draws none). Memory: the items' images and two
    H x W maps each, plus one batch of patches. Returns (H, W) bool per item, in order.

    A coarse mask with at most ``config.min_foreground`` pixels gives an empty mask, as the
    official code does (with a warning). ``calibration``: the score's (``None``: the default
    semantic calibration).
    """
    calibration = calibration or default_calibration("semantic")
    results: list[SemanticResult | None] = [None] * len(items)
    live: list[int] = []
    images, coarses = [], []
    for i, item in enumerate(items):
        label = "" if item.name == "mask" else f"{item.name}: "  # "mask": the unnamed default
        image = check_image(item.image, f"{label}image")
        height, width = image.shape[:2]
        if np.ndim(item.coarse) != 2:
            raise InputError(
                f"{label}coarse: expected an H x W mask, got shape {np.shape(item.coarse)}"
            )
        coarse = check_masks(item.coarse, (height, width), f"{label}coarse")
        if int(coarse.sum()) <= config.min_foreground:
            warnings.warn(
                f"{item.name}: coarse mask has {int(coarse.sum())} <= {config.min_foreground} "
                "foreground pixels; returning an empty mask (official behaviour)",
                stacklevel=2,
            )
            results[i] = SemanticResult(np.zeros((height, width), dtype=bool))
            continue
        live.append(i)
        images.append(normalize_image(image, device))
        coarses.append(torch.from_numpy(coarse).to(device))
    if live:
        gens = [items[i].generator for i in live]
        seeded = [g is not None for g in gens]
        if any(seeded) and not all(seeded):
            raise ValueError("give every item a generator, or none")
        passes = []
        for start in range(0, len(live), config.batch_size):
            stop = start + config.batch_size
            passes += global_step(
                model,
                diffusion,
                images[start:stop],
                coarses[start:stop],
                gens[start:stop] if all(seeded) else None,
                config.model_size,
            )
        for j, ((mask, fine, prob), coarse) in enumerate(zip(passes, coarses, strict=True)):
            base, base_prob = local_base(config, coarse, mask, prob)
            passes[j] = (base, fine, base_prob)
        accumulators, work = [], []
        for j, (global_mask, fine_prob, _) in enumerate(passes):
            height, width = global_mask.shape
            boxes = propose_patches(fine_prob.cpu().numpy(), height, width, config)
            boxes = boxes[mixed_boxes(global_mask, boxes)]
            accumulators.append(PatchAccumulator(global_mask))
            work += [(j, box) for box in boxes.tolist()]
        for start in range(0, len(work), config.batch_size):
            chunk = work[start : start + config.batch_size]
            probs = local_step(
                model,
                diffusion,
                [(images[j], passes[j][0], box) for j, box in chunk],
                config.model_size,
            )
            for (j, box), prob in zip(chunk, probs, strict=True):
                accumulators[j].add([prob], [box])
        for j, i in enumerate(live):
            _, fine_prob, global_prob = passes[j]
            prob = accumulators[j].probability(global_prob)
            features = semantic_features(coarses[j], prob, fine_prob, config.pad_width)
            score = float(calibration.score(features)[0])
            row = features[0].numpy()
            if guard_keeps_coarse(np.array([score]), config.guard)[0]:
                results[i] = SemanticResult(coarses[j].cpu().numpy().copy(), score, True, row)
            else:
                results[i] = SemanticResult(accumulators[j].result().cpu().numpy(), score,
                                            False, row)  # fmt: skip
            passes[j] = None  # type: ignore[call-overload]  # free the full-size maps early
            accumulators[j] = None  # type: ignore[call-overload]
    return results  # type: ignore[return-value]


def refine_semantic(
    model: Denoiser,
    diffusion: DiscreteDiffusion,
    image: np.ndarray,
    coarse: np.ndarray,
    generator: torch.Generator | None,
    config: InferenceConfig = InferenceConfig(),
    device: torch.device | str = "cpu",
    name: str = "mask",
    calibration: ScoreCalibration | None = None,
) -> SemanticResult:
    """Refine one high-resolution mask (the HR / semantic path); see
    :func:`refine_semantic_group`. ``image``: (H, W, 3) uint8 RGB; ``coarse``: (H, W) binary.
    Returns the (H, W) bool mask with its score."""
    item = SemanticItem(image, coarse, generator, name)
    return refine_semantic_group(model, diffusion, [item], config, device, calibration)[0]
