"""LR training data: one random instance per image, online coarse mask, object crop (spec §4.3).

Per sample (all draws from the sample's generator, in this order):

1. read the image (``H x W x 3`` uint8 RGB; its size must match the annotation file);
2. choose one of the image's usable annotations uniformly (not crowd, ``area > min_area``,
   box of at least 1 x 1 pixel overlapping the image) and decode its mask;
3. coarse mask of the mask on the full image: :func:`segrefiner.data.degrade.modify_boundary`
   (the official recipe), or, with several ``coarse_kinds``, a kind drawn by its weight and made
   by :mod:`segrefiner.data.coarse_kinds`;
4. crop around the mask's tight box with ``pad`` pixels of random margin per axis
   (:func:`segrefiner.training.transforms.lr_object_box`);
5. resize to ``crop_size`` (bilinear image, nearest masks), flip horizontally with
   probability ``flip_prob``, normalise.

Images without a usable annotation, or smaller than ``min_image_side``, are left out when the
set is built (from the annotation file alone, no pixels read).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from segrefiner import io
from segrefiner.data.coarse_kinds import coarse_mask
from segrefiner.data.coco import Annotation, InstanceSet, parse_instances
from segrefiner.data.degrade import modify_boundary
from segrefiner.data.lvis import parse_lvis
from segrefiner.errors import InputError
from segrefiner.training.batching import PositionDataset, SkipSample
from segrefiner.training.config import DataConfig
from segrefiner.training.transforms import lr_object_box, make_crop, mask_box

log = logging.getLogger(__name__)


def usable(ann: Annotation, height: int, width: int, min_area: float) -> bool:
    """Whether an annotation may be chosen (the official ``_parse_ann_info`` filter)."""
    x, y, w, h = ann.bbox
    inter_w = max(0.0, min(x + w, width) - max(x, 0.0))
    inter_h = max(0.0, min(y + h, height) - max(y, 0.0))
    return not ann.iscrowd and inter_w * inter_h > 0 and ann.area > min_area and w >= 1 and h >= 1


def load_instances(path: str | os.PathLike, image_root: str | os.PathLike) -> InstanceSet:
    """An LVIS v1 or COCO instances file (LVIS when its categories carry a ``synset``)."""
    data = io.read_json(path)
    categories = data.get("categories") if isinstance(data, dict) else None
    is_lvis = bool(categories) and isinstance(categories[0], dict) and "synset" in categories[0]
    if is_lvis:
        return parse_lvis(data, source=str(path), image_root=image_root)
    return parse_instances(data, source=str(path), image_root=image_root)


class LRTrainingSet(PositionDataset):
    """LVIS-style instance training set indexed by sample position.

    ``dataset[p]`` is a dict with ``image`` float32 (3, S, S) normalised RGB, ``gt`` and
    ``coarse`` float32 (1, S, S) in {0, 1}, plus the bookkeeping of
    :meth:`PositionDataset.__getitem__`.
    """

    crops_per_sample = 1

    def __init__(self, instances: InstanceSet, config: DataConfig, seed: int) -> None:
        super().__init__(seed, config.max_retries)
        self.instances = instances
        self.crop_size = config.crop_size
        self.pad = config.lr.pad
        self.flip_prob = config.flip_prob
        self.coarse_kinds = config.lr.coarse_kinds
        weights = np.asarray(config.lr.coarse_weights or [1.0] * len(self.coarse_kinds), float)
        self.coarse_p = weights / weights.sum()
        self.items: list[tuple[int, tuple[Annotation, ...]]] = []
        dropped = 0
        for image_id, info in instances.images.items():
            anns = tuple(
                a
                for a in instances.annotations_of(image_id)
                if usable(a, info.height, info.width, config.lr.min_area)
            )
            if anns and min(info.height, info.width) >= config.lr.min_image_side:
                self.items.append((image_id, anns))
            else:
                dropped += 1
        if not self.items:
            raise InputError(f"{instances.source}: no image has a usable annotation")
        log.info(
            "LR training set %s: %d images (%d without a usable annotation left out)",
            instances.source,
            len(self.items),
            dropped,
        )

    @classmethod
    def from_config(cls, config: DataConfig, seed: int) -> LRTrainingSet:
        root = Path(config.root)
        instances = load_instances(root / config.lr.annotations, root / config.lr.image_root)
        return cls(instances, config, seed)

    def __len__(self) -> int:
        return len(self.items)

    def record_name(self, index: int) -> str:
        image_id = self.items[index][0]
        return f"image {image_id} ({self.instances.images[image_id].file_name})"

    def make_sample(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        image_id, anns = self.items[index]
        image = self.instances.read_image(image_id)
        ann = anns[int(rng.integers(len(anns)))]
        gt = self.instances.annotation_mask(ann)
        box = mask_box(gt)
        if box is None:
            raise SkipSample(f"annotation {ann.id} decodes to an empty mask")
        if len(self.coarse_kinds) == 1 and self.coarse_kinds[0] == "official":
            kind = "official"  # no draw: the official recipe's random stream stays as it was
            coarse = modify_boundary(gt, rng)
        else:
            kind = self.coarse_kinds[int(rng.choice(len(self.coarse_kinds), p=self.coarse_p))]
            coarse = coarse_mask(kind, gt, rng)
        height, width = gt.shape
        crop_box = lr_object_box(box, height, width, self.pad, rng)
        flip = bool(rng.random() < self.flip_prob)
        sample = make_crop(image, gt, coarse, crop_box, self.crop_size, flip)
        sample.update(box=np.asarray(crop_box), flip=flip, annotation_id=ann.id, coarse_kind=kind)
        return sample
