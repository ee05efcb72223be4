"""Instance (LR) refinement: each object refined in its own 256 x 256 crop (spec §5.1).

The pieces are separate so a batch pipeline can pack crops from many images into full network
batches: :func:`instance_boxes` -> :func:`crop_instances` -> :func:`refine_crops` ->
:func:`paste_masks`. :func:`refine_instances` chains them for one image.

Every refined crop also gets its refinement score (:mod:`segrefiner.inference.score`), and
with ``InferenceConfig.guard`` set an instance whose score is below it keeps its coarse mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from segrefiner.diffusion import Denoiser, DiscreteDiffusion, sample_loop
from segrefiner.inference.config import InferenceConfig
from segrefiner.inference.preprocess import check_image, check_masks, normalize_image
from segrefiner.inference.score import (
    FEATURES,
    ScoreCalibration,
    default_calibration,
    guard_keeps_coarse,
    score_features,
)


def instance_boxes(masks: np.ndarray, pad_width: int) -> np.ndarray:
    """Crop boxes of binary masks: the tight box of each mask padded by ``pad_width`` pixels on
    every side and clipped to the image.

    ``masks``: (N, H, W) bool, each with at least one pixel. Returns int64 (N, 4) boxes
    ``[x0, y0, x1, y1]`` in pixels with exclusive ``x1``, ``y1`` (XYXY, half-open).
    """
    n, height, width = masks.shape
    boxes = np.zeros((n, 4), dtype=np.int64)
    for i, mask in enumerate(masks):
        cols = np.flatnonzero(mask.any(axis=0))
        rows = np.flatnonzero(mask.any(axis=1))
        if cols.size == 0:
            raise ValueError(f"mask {i} is empty; it has no box")
        boxes[i] = (
            max(cols[0] - pad_width, 0),
            max(rows[0] - pad_width, 0),
            min(cols[-1] + 1 + pad_width, width),
            min(rows[-1] + 1 + pad_width, height),
        )
    return boxes


def crop_instances(
    image: torch.Tensor, masks: torch.Tensor, boxes: np.ndarray, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop and resize each box of the image and of its mask to ``size`` x ``size``.

    ``image``: float (1, 3, H, W) normalized; ``masks``: (N, H, W) bool or float; ``boxes`` as
    :func:`instance_boxes`. Bilinear resizing (half-pixel centres, no antialias) as the official
    code; the mask is re-binarised at 0.5. Returns float (N, 3, size, size) and float
    (N, 1, size, size) in {0, 1}.
    """
    images, crops = [], []
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        img = image[:, :, y0:y1, x0:x1]
        msk = masks[i, y0:y1, x0:x1].to(image.dtype)[None, None]
        images.append(F.interpolate(img, (size, size), mode="bilinear", align_corners=False))
        crops.append(F.interpolate(msk, (size, size), mode="bilinear", align_corners=False))
    if not images:
        empty = image.new_zeros((0, 3, size, size))
        return empty, image.new_zeros((0, 1, size, size))
    return torch.cat(images), (torch.cat(crops) >= 0.5).to(image.dtype)


@dataclass
class CropResults:
    """What the reverse process gives for K crops: ``probs`` float (K, 1, S, S) foreground
    probabilities of the last step and ``features`` float64 (K, len(FEATURES)) for the score."""

    probs: torch.Tensor
    features: torch.Tensor = field(default_factory=lambda: torch.zeros((0, len(FEATURES))))

    def __len__(self) -> int:
        return int(self.probs.shape[0])

    def __getitem__(self, index: slice) -> CropResults:
        return CropResults(self.probs[index], self.features[index])

    @staticmethod
    def cat(parts: Sequence[CropResults]) -> CropResults:
        return CropResults(
            torch.cat([p.probs for p in parts]), torch.cat([p.features for p in parts])
        )


def refine_crops(
    model: Denoiser,
    diffusion: DiscreteDiffusion,
    images: torch.Tensor,
    coarse: torch.Tensor,
    generators: Sequence[torch.Generator] | None,
    batch_size: int,
    steps: Sequence[int] | None = None,
) -> CropResults:
    """Run the full reverse process on crops in chunks of ``batch_size``.

    ``images``: float (N, 3, S, S); ``coarse``: float (N, 1, S, S) in {0, 1}; ``generators``:
    one per crop. Returns the (N, 1, S, S) foreground probabilities of the last step and each
    crop's score features.
    """
    steps = diffusion.inference_steps if steps is None else list(steps)
    out = []
    for start in range(0, images.shape[0], batch_size):
        stop = start + batch_size
        gens = None if generators is None else generators[start:stop]
        chunk = coarse[start:stop]
        prob, fine_prob = sample_loop(model, diffusion, images[start:stop], chunk, steps, gens)
        out.append(CropResults(prob, score_features(chunk, prob, fine_prob)))
    if not out:
        return CropResults(images.new_zeros((0, 1, *images.shape[2:])))
    return CropResults.cat(out)


def _to_box(crop: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resample one (1, 1, S, S) map onto a ``height`` x ``width`` box: pixel centres at +0.5,
    bilinear, zero padding outside the map (the official ``grid_sample`` paste)."""
    device = crop.device
    gy = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) * (2.0 / height) - 1.0
    gx = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) * (2.0 / width) - 1.0
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None]  # (1, h, w, 2)
    return F.grid_sample(crop.float(), grid, mode="bilinear", align_corners=False)[0, 0]


def paste_masks(probs: torch.Tensor, boxes: np.ndarray, height: int, width: int) -> torch.Tensor:
    """Paste crop probabilities back into full-size masks and threshold at 0.5 (the official
    paste, ``InferenceConfig.paste == "crop"``).

    Each (S, S) map is resampled onto its box (:func:`_to_box`). Pixels outside the box stay
    0: there the zero padding keeps the value below 0.5. Returns bool (N, H, W).
    """
    out = torch.zeros((probs.shape[0], height, width), dtype=torch.bool, device=probs.device)
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        out[i, y0:y1, x0:x1] = _to_box(probs[i : i + 1], y1 - y0, x1 - x0) >= 0.5
    return out


def paste_changes(
    probs: torch.Tensor, coarse: torch.Tensor, boxes: np.ndarray, masks: np.ndarray
) -> np.ndarray:
    """Apply what the network changed to the coarse masks at native resolution (not
    official, ``InferenceConfig.paste == "changes"``).

    ``probs``, ``coarse``: (K, 1, S, S) refined probabilities and the coarse crops they were
    refined from; ``masks``: (K, H, W) the native coarse masks. The change ``probs - coarse``
    is resampled onto each box like :func:`paste_masks`; a pixel becomes foreground where it
    is >= 0.5, background where it is <= -0.5, and keeps its coarse value elsewhere, so a crop
    the network left as it was returns the coarse mask pixel for pixel. Returns bool (K, H, W).
    """
    out = np.array(masks, dtype=bool, copy=True)
    change = probs.float() - coarse.float()
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        moved = _to_box(change[i : i + 1], y1 - y0, x1 - x0).cpu().numpy()
        box = out[i, y0:y1, x0:x1]
        box[moved >= 0.5] = True
        box[moved <= -0.5] = False
    return out


@dataclass
class PreparedInstances:
    """One image's instances cropped for the network (see :func:`prepare_instances`).

    ``todo`` indexes the instances that get refined (area >= ``area_thr``); ``crops`` and
    ``coarse`` hold their (K, 3, S, S) / (K, 1, S, S) network inputs; ``boxes`` their crop boxes.
    """

    masks: np.ndarray  # (N, H, W) bool, the coarse masks
    todo: np.ndarray  # (K,) int64
    boxes: np.ndarray  # (K, 4) int64 [x0, y0, x1, y1)
    crops: torch.Tensor  # (K, 3, S, S) float
    coarse: torch.Tensor  # (K, 1, S, S) float in {0, 1}

    @property
    def num_crops(self) -> int:
        return int(self.todo.size)


def prepare_instances(
    image: np.ndarray,
    masks: np.ndarray,
    config: InferenceConfig = InferenceConfig(),
    device: torch.device | str = "cpu",
) -> PreparedInstances:
    """Validate one image's masks and crop the instances to refine.

    ``image``: (H, W, 3) uint8 RGB; ``masks``: (N, H, W) binary. Batch pipelines concatenate
    the crops of several images, run :func:`refine_crops` once, and hand each image its slice
    of the probabilities in :func:`finish_instances`.
    """
    image = check_image(image)
    height, width = image.shape[:2]
    masks = check_masks(masks, (height, width), "masks")
    if masks.ndim != 3:
        raise ValueError(f"masks must be N x H x W, got shape {masks.shape}")
    todo = np.flatnonzero(masks.reshape(len(masks), -1).sum(axis=1) >= config.area_thr)
    size = config.model_size
    if todo.size == 0:
        empty = torch.zeros((0, 3, size, size), device=device)
        return PreparedInstances(masks, todo, np.zeros((0, 4), np.int64), empty, empty[:, :1])
    boxes = instance_boxes(masks[todo], config.pad_width)
    image_t = normalize_image(image, device)
    crops, coarse = crop_instances(image_t, torch.from_numpy(masks[todo]).to(device), boxes, size)
    return PreparedInstances(masks, todo, boxes, crops, coarse)


@dataclass
class FinishedInstances:
    """One image's refined instances: ``masks`` bool (N, H, W); ``scores`` float64 (N,) the
    refinement score (NaN for instances that were not refined); ``guarded`` bool (N,) the
    instances that kept their coarse mask because their score was below the guard;
    ``features`` float64 (N, len(FEATURES)) what the scores were computed from (NaN rows for
    instances that were not refined)."""

    masks: np.ndarray
    scores: np.ndarray
    guarded: np.ndarray
    features: np.ndarray

    @staticmethod
    def empty(height: int, width: int) -> FinishedInstances:
        return FinishedInstances(
            np.zeros((0, height, width), bool),
            np.zeros(0),
            np.zeros(0, bool),
            np.zeros((0, len(FEATURES))),
        )


def finish_instances(
    prepared: PreparedInstances,
    results: CropResults,
    config: InferenceConfig = InferenceConfig(),
    calibration: ScoreCalibration | None = None,
) -> FinishedInstances:
    """Paste the refined crop probabilities (K, 1, S, S) back and score them; instances that
    were not refined, and those the guard (``config.guard``) holds back, keep their coarse
    masks. ``calibration``: ``None`` for :func:`default_calibration`."""
    result = prepared.masks.copy()
    n = len(result)
    scores = np.full(n, np.nan)
    guarded = np.zeros(n, dtype=bool)
    features = np.full((n, len(FEATURES)), np.nan)
    if prepared.num_crops:
        calibration = calibration or default_calibration("instance")
        features[prepared.todo] = results.features.numpy()
        scores[prepared.todo] = calibration.score(results.features)
        height, width = result.shape[1:]
        held = guard_keeps_coarse(scores[prepared.todo], config.guard)
        guarded[prepared.todo] = held
        go = np.flatnonzero(~held)
        probs = results.probs
        coarse = prepared.coarse
        if len(go) < prepared.num_crops:
            index = torch.as_tensor(go, device=probs.device)
            probs, coarse = probs[index], coarse[index.to(coarse.device)]
        if len(go) and config.paste == "changes":
            todo = prepared.todo[go]
            result[todo] = paste_changes(probs, coarse, prepared.boxes[go], result[todo])
        elif len(go):
            pasted = paste_masks(probs, prepared.boxes[go], height, width)
            result[prepared.todo[go]] = pasted.cpu().numpy()
    return FinishedInstances(result, scores, guarded, features)


def refine_instances(
    model: Denoiser,
    diffusion: DiscreteDiffusion,
    image: np.ndarray,
    masks: np.ndarray,
    generators: Sequence[torch.Generator] | None,
    config: InferenceConfig = InferenceConfig(),
    device: torch.device | str = "cpu",
    calibration: ScoreCalibration | None = None,
) -> FinishedInstances:
    """Refine every instance mask of one image (the LR / instance path).

    ``image``: (H, W, 3) uint8 RGB; ``masks``: (N, H, W) binary; ``generators``: one per
    instance (see :func:`segrefiner.inference.seeding.item_generator`). Instances with fewer
    than ``config.area_thr`` pixels are returned unchanged. Returns the (N, H, W) bool masks
    with their scores (see :class:`FinishedInstances`).
    """
    prepared = prepare_instances(image, masks, config, device)
    if prepared.num_crops == 0:
        return finish_instances(prepared, CropResults(prepared.coarse), config, calibration)
    gens = None if generators is None else [generators[i] for i in prepared.todo]
    results = refine_crops(
        model, diffusion, prepared.crops, prepared.coarse, gens, config.batch_size
    )
    return finish_instances(prepared, results, config, calibration)
