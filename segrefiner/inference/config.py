"""Inference settings (spec §5, the official ``test_cfg`` values as defaults)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from segrefiner.config import from_dict as strict_from_dict
from segrefiner.errors import InputError

# ImageNet statistics on the 0-255 scale, RGB order (the official ``img_norm_cfg``).
IMAGE_MEAN = (123.675, 116.28, 103.53)
IMAGE_STD = (58.395, 57.12, 57.375)
# Largest network input / patch side accepted: 8x the official 256 (one 2048 x 2048 input of the
# official network already needs tens of GB); larger values are typos, not settings.
MAX_SIDE = 2048
# What the HR path's local step refines (InferenceConfig.local_mask); the first is official.
LOCAL_MASKS = ("global", "coarse")
# How the instance path puts a refined crop back (InferenceConfig.paste); the first is official.
PASTES = ("crop", "changes")


@dataclass(frozen=True)
class InferenceConfig:
    """How a refiner runs. Defaults are the official LR (instance) and HR (semantic) settings."""

    model_size: int = 256  # side of the square network input
    batch_size: int = 32  # instances / patches per network call (official ``batch_max``)
    # instance (LR) mode
    pad_width: int = 20  # pixels added around the coarse mask's box before cropping
    area_thr: int = 512  # instances with fewer coarse pixels are passed through unrefined
    # How a refined crop goes back into the image. "crop" (official): the crop's probabilities
    # resampled onto the box and thresholded, so even pixels the network left alone come back
    # through a 256 x 256 round trip. "changes" (not official): only what the network changed
    # (refined minus coarse crop, resampled) is applied to the coarse mask at native resolution.
    paste: str = "crop"
    # semantic (HR) mode
    patch_size: int = 256  # native-resolution side of a local patch
    fine_prob_thr: float = 0.9  # patches centre on points with fine_prob < thr * max(fine_prob)
    iou_thr: float = 0.3  # NMS threshold between patch boxes
    min_foreground: int = 128  # coarse masks with at most this many pixels give an empty mask
    # The mask the local patches refine and that pixels no patch covers keep. "global"
    # (official): the global pass's output resized back (nearest), a staircase of blocks of
    # image side / model_size pixels. "coarse" (not official): the coarse mask at native
    # resolution, the global pass only placing the patches.
    local_mask: str = "global"
    # not official: keep the coarse mask of an item whose refinement score (the predicted IoU
    # change, a fraction; see segrefiner.inference.score) is below this; None: off
    guard: float | None = None

    def __post_init__(self) -> None:
        sizes = (("model_size", self.model_size, 8), ("patch_size", self.patch_size, 8))
        for name, value, low in sizes:
            if not isinstance(value, int) or not low <= value <= MAX_SIDE:
                raise InputError(
                    f"{name}: {value!r} is out of range; expected an integer in [{low}, "
                    f"{MAX_SIDE}] (the official size is 256)"
                )
        counts = (
            ("batch_size", self.batch_size, 1),
            ("pad_width", self.pad_width, 0),
            ("area_thr", self.area_thr, 0),
            ("min_foreground", self.min_foreground, 0),
        )
        for name, value, low in counts:
            if not isinstance(value, int) or value < low:
                raise InputError(f"{name}: expected an integer >= {low}, got {value!r}")
        if self.guard is not None and (
            isinstance(self.guard, bool)
            or not isinstance(self.guard, int | float)
            or not -1.0 <= self.guard <= 1.0
        ):
            raise InputError(
                f"guard: expected a predicted IoU change in [-1, 1] (e.g. 0.0) or None, "
                f"got {self.guard!r}"
            )
        if self.paste not in PASTES:
            raise InputError(f"paste: expected one of {list(PASTES)}, got {self.paste!r}")
        if self.local_mask not in LOCAL_MASKS:
            raise InputError(
                f"local_mask: expected one of {list(LOCAL_MASKS)}, got {self.local_mask!r}"
            )
        for name, value in (("fine_prob_thr", self.fine_prob_thr), ("iou_thr", self.iou_thr)):
            if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise InputError(f"{name}: expected a number in [0, 1], got {value!r}")

    def replace(self, **changes: Any) -> InferenceConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> InferenceConfig:
        """Strictly (:func:`segrefiner.config.from_dict`): unknown keys and wrong types are
        errors naming the key."""
        return strict_from_dict(cls, values, "inference settings")
