"""The public API: refine masks with numpy in and numpy out.

::

    from segrefiner import Refiner
    refiner = Refiner.from_checkpoint("segrefiner_hr_latest.pth", device="cuda", seed=0)
    fine = refiner.refine(image, coarse)              # semantic / HR path
    fines = refiner.refine_instances(image, coarses)  # instance / LR path
    fines, scores = refiner.refine_instances(image, coarses, return_scores=True)

A score is the refinement's predicted IoU change (see :mod:`segrefiner.inference.score`);
``config.guard`` keeps the coarse mask of items scored below it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence

import numpy as np
import torch

from segrefiner.checkpoint import ModelSource, load_for_inference
from segrefiner.device import resolve_device
from segrefiner.diffusion import DiscreteDiffusion
from segrefiner.errors import InputError
from segrefiner.inference.config import InferenceConfig
from segrefiner.inference.instance import FinishedInstances, refine_instances
from segrefiner.inference.preprocess import check_image, check_masks
from segrefiner.inference.score import ScoreCalibration
from segrefiner.inference.seeding import item_generator
from segrefiner.inference.semantic import refine_semantic
from segrefiner.model import DenoiseUNet


class Refiner:
    """Refines coarse binary masks with a SegRefiner network.

    ``seed``: with an int, every output is reproducible and an item's result depends only on
    (seed, item key), not on what else is refined with it; ``None`` draws a fresh seed.
    """

    def __init__(
        self,
        model: DenoiseUNet,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        config: InferenceConfig | None = None,
        diffusion: DiscreteDiffusion | None = None,
        calibrations: dict[str, ScoreCalibration] | None = None,
    ):
        self.device = resolve_device(device)
        # what it was loaded from (:meth:`from_checkpoint`), e.g. for a run's fingerprint
        self.source: ModelSource | None = None
        # the score's calibration per path ("instance", "semantic"); missing: the default
        self.calibrations = dict(calibrations or {})
        self.model = model.to(self.device).eval()
        self.seed = secrets.randbits(63) if seed is None else int(seed)
        self.config = config or InferenceConfig()
        self.diffusion = diffusion or DiscreteDiffusion(num_steps=model.config.num_timesteps)
        if self.config.model_size % model.config.size_multiple:
            raise InputError(
                f"model_size {self.config.model_size} is not a multiple of "
                f"{model.config.size_multiple}"
            )

    @classmethod
    def from_checkpoint(
        cls,
        path_or_preset: str | os.PathLike | ModelSource,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        config: InferenceConfig | None = None,
    ) -> Refiner:
        """Build from a checkpoint file (official or this project's), a preset name, or what
        :func:`~segrefiner.checkpoint.resolve_checkpoint` made of either.

        A checkpoint of this project may carry inference settings (``meta["inference"]``, e.g.
        a demo model trained at another ``model_size``); an explicit ``config`` wins.
        """
        resolve_device(device)  # a bad device is named before anything loads
        loaded = load_for_inference(path_or_preset)
        refiner = cls(
            loaded.model,
            device=device,
            seed=seed,
            config=config or loaded.inference,
            calibrations=loaded.calibrations,
        )
        refiner.source = loaded.source
        return refiner

    def _generators(self, keys: Sequence[object]) -> list[torch.Generator]:
        # A tuple key is the item's identity in parts, e.g. ("coco", image_id, index), the same
        # identity the batch stages use, so both paths draw the same noise for an item.
        return [
            item_generator(self.seed, *key)
            if isinstance(key, tuple)
            else item_generator(self.seed, key)
            for key in keys
        ]

    def refine_detailed(self, image: np.ndarray, coarse: np.ndarray, key: object = 0):
        """:meth:`refine` with everything it knows: a
        :class:`~segrefiner.inference.semantic.SemanticResult` (mask, score, score features,
        whether the guard kept the coarse mask)."""
        (generator,) = self._generators([key])
        return refine_semantic(
            self.model,
            self.diffusion,
            image,
            coarse,
            generator,
            self.config,
            self.device,
            calibration=self.calibrations.get("semantic"),
        )

    def refine(
        self, image: np.ndarray, coarse: np.ndarray, key: object = 0, return_score: bool = False
    ) -> np.ndarray | tuple[np.ndarray, float]:
        """Refine one mask over the whole image (semantic / HR path: global + local steps).

        ``image``: (H, W, 3) uint8 RGB. ``coarse``: (H, W) binary (bool, {0, 1}, {0, 255} or
        float probabilities thresholded at 0.5). ``key``: the item's identity for seeding.
        Returns (H, W) bool; with ``return_score``, ``(mask, score)`` (score NaN when the
        coarse mask was too small to refine).
        """
        result = self.refine_detailed(image, coarse, key)
        return (result.mask, result.score) if return_score else result.mask

    def refine_instances_detailed(
        self, image: np.ndarray, coarses: np.ndarray, keys: Sequence[object] | None = None
    ) -> FinishedInstances:
        """:meth:`refine_instances` with everything it knows: a
        :class:`~segrefiner.inference.instance.FinishedInstances` (masks, scores, score
        features, which instances the guard kept coarse)."""
        coarses = np.asarray(coarses)
        if coarses.ndim != 3:
            raise InputError(f"coarses: expected N x H x W masks, got shape {coarses.shape}")
        keys = list(range(len(coarses))) if keys is None else list(keys)
        if len(keys) != len(coarses):
            raise InputError(f"{len(keys)} keys for {len(coarses)} masks")
        if len(coarses) == 0:  # nothing to refine: an empty result of the image's size
            height, width = check_image(image).shape[:2]
            check_masks(coarses, (height, width), "coarses")
            return FinishedInstances.empty(height, width)
        return refine_instances(
            self.model,
            self.diffusion,
            image,
            coarses,
            self._generators(keys),
            self.config,
            self.device,
            calibration=self.calibrations.get("instance"),
        )

    def refine_instances(
        self,
        image: np.ndarray,
        coarses: np.ndarray,
        keys: Sequence[object] | None = None,
        return_scores: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Refine instance masks of one image (instance / LR path: one crop per instance).

        ``image``: (H, W, 3) uint8 RGB. ``coarses``: (N, H, W) binary. ``keys``: one identity
        per instance for seeding (default: its index). Instances with fewer than
        ``config.area_thr`` pixels come back unchanged. Returns (N, H, W) bool; with
        ``return_scores``, ``(masks, scores)`` with float64 (N,) scores (NaN: not refined).
        """
        result = self.refine_instances_detailed(image, coarses, keys)
        return (result.masks, result.scores) if return_scores else result.masks
