"""HR training data: DIS-TR + ThinObject-5K train with offline coarse masks (spec §4.4).

Per image (all draws from the sample's generator, in this order):

1. read image and ground truth (same size, else the record is skipped);
2. with probability ``expand_prob`` take the offline ``coarse_expand`` mask, else ``coarse``,
   from a :class:`CoarseSource` (PNG folders here; the zarr store of gen-coarse-hr in
   ``pipelines/train.py``);
3. object crop: the ground truth's box with random margins on all sides
   (:func:`~segrefiner.training.transforms.hr_object_box`);
4. patch: a native-resolution ``patch_size`` square holding both foreground and background
   (:func:`~segrefiner.training.transforms.mixed_patch`, bounded; where no such patch exists
   a random one is used and a note is logged); its coarse mask is, with probability
   ``online_patch_prob``, a fresh :func:`~segrefiner.data.degrade.modify_boundary` of the
   ground-truth patch, else the same crop of the offline mask; with ``global_patch_prob`` > 0
   (not official) it is instead, with that probability, the crop of the ground truth or of
   the offline mask resampled as the global pass resamples it (:func:`global_resampled`),
   and that patch is trained as the local step runs at inference: at t = 0 with the whole
   resampled mask as the network's mask input (``patch_exact``), not a forward-process mix;
   with ``native_patch_prob`` > 0 (not official), with that probability, the crop of a
   whole-image coarse mask at native resolution (the offline one or a segmentor-like kind of
   :mod:`segrefiner.data.coarse_kinds`), trained the same exact way: what the local step
   refines with ``InferenceConfig.local_mask = "coarse"``;
5. both crops resized to ``crop_size``, one flip decision for both, normalised.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from segrefiner.data.coarse_kinds import coarse_mask
from segrefiner.data.degrade import modify_boundary
from segrefiner.data.folders import SampleRecord, load_sample, read_hr_training
from segrefiner.errors import InputError
from segrefiner.io import read_mask
from segrefiner.training.batching import PositionDataset, SkipSample
from segrefiner.training.config import DataConfig
from segrefiner.training.transforms import (
    crop,
    finish_crop,
    hr_object_box,
    make_crop,
    mask_box,
    mixed_patch,
    patch_side,
)

log = logging.getLogger(__name__)

COARSE_KINDS = ("coarse", "coarse_expand")


@runtime_checkable
class CoarseSource(Protocol):
    """Offline coarse masks by sample id. ``get`` returns an ``H x W`` ``bool`` mask of
    ``kind`` (``"coarse"`` or ``"coarse_expand"``) and raises :class:`InputError` naming the
    sample when there is none (the sample is then skipped)."""

    def get(self, sample_id: str, kind: str) -> np.ndarray: ...


class FolderCoarseSource:
    """Coarse masks as 0/255 PNGs in the official layout: beside each sample's image folder,
    ``<kind>/<name>.png`` (``dis/DIS-TR/coarse/<n>.png``, ``thin_object/coarse_expand/<n>.png``),
    as the official script and ``pipelines.coarse.export_pngs`` write them."""

    def __init__(self, records: Sequence[SampleRecord]) -> None:
        self._paths = {r.sample_id: (r.image.parent.parent, r.name) for r in records}

    def path(self, sample_id: str, kind: str) -> Path:
        if kind not in COARSE_KINDS:
            raise ValueError(f"unknown coarse kind {kind!r}; expected one of {COARSE_KINDS}")
        try:
            folder, name = self._paths[sample_id]
        except KeyError:
            raise InputError(f"{sample_id}: no such sample in the coarse mask folders") from None
        return folder / kind / f"{name}.png"

    def get(self, sample_id: str, kind: str) -> np.ndarray:
        return read_mask(self.path(sample_id, kind))


def global_resampled(mask: np.ndarray, box: Sequence[int], size: int) -> np.ndarray:
    """The ``box`` ``[x0, y0, x1, y1)`` of ``mask`` (H, W) after nearest resampling of the whole
    mask to ``size`` x ``size`` and back, as the HR global pass does with torch's legacy
    nearest (source index ``floor(dst * in / out)``). Only the box is computed. bool."""
    height, width = mask.shape
    x0, y0, x1, y1 = box
    rows = _nearest_sources(height, size)  # small grid -> full-resolution rows
    cols = _nearest_sources(width, size)
    up_rows = _nearest_sources(size, height)[y0:y1]  # full-resolution rows -> small grid
    up_cols = _nearest_sources(size, width)[x0:x1]
    return np.asarray(mask, dtype=bool)[np.ix_(rows[up_rows], cols[up_cols])]


def _nearest_sources(length: int, size: int) -> np.ndarray:
    """Source indices of torch's legacy nearest resize of ``length`` samples to ``size``:
    ``floor(dst * length / size)``."""
    return np.arange(size) * length // size


def global_view(
    image: np.ndarray, gt: np.ndarray, coarse: np.ndarray, size: int, flip: bool
) -> dict[str, np.ndarray]:
    """The whole image and masks as the HR global pass sees them: torch's legacy nearest
    resize to ``size`` x ``size`` (source index ``floor(dst * in / out)``), then as
    :func:`~segrefiner.training.transforms.make_crop` (flip, normalise, float32)."""
    height, width = gt.shape
    grid = np.ix_(_nearest_sources(height, size), _nearest_sources(width, size))
    return finish_crop(image[grid], gt[grid], coarse[grid], flip)


class HRTrainingSet(PositionDataset):
    """HR training set indexed by sample position: two crops per image.

    ``dataset[p]`` holds ``object_image`` / ``patch_image`` float32 (3, S, S) and
    ``object_gt``, ``object_coarse``, ``patch_gt``, ``patch_coarse`` float32 (1, S, S) in
    {0, 1}, plus the bookkeeping of :meth:`PositionDataset.__getitem__`.
    """

    crops_per_sample = 2

    def __init__(
        self,
        records: Sequence[SampleRecord],
        coarse_source: CoarseSource,
        config: DataConfig,
        seed: int,
    ) -> None:
        super().__init__(seed, config.max_retries)
        if not records:
            raise InputError("the HR training set is empty")
        self.records = list(records)
        self.coarse_source = coarse_source
        self.crop_size = config.crop_size
        self.flip_prob = config.flip_prob
        self.hr = config.hr
        log.info("HR training set: %d images", len(self.records))

    @classmethod
    def from_config(
        cls, config: DataConfig, seed: int, coarse_source: CoarseSource | None = None
    ) -> HRTrainingSet:
        """DIS-TR + ThinObject-5K train under ``config.root``. Without ``coarse_source`` the
        PNG folders are used; a store configuration needs the source passed in (the library
        does not read zarr: use ``pipelines/train.py``)."""
        # strict=False: a listed sample with a missing file is skipped at training time with
        # its reason, instead of refusing the whole data set.
        records = read_hr_training(config.root, strict=False)
        if coarse_source is None:
            if config.hr.coarse == "store":
                raise InputError(
                    "data.hr.coarse is 'store': run training through pipelines/train.py, which "
                    "reads the gen-coarse-hr mask store, or use data.hr.coarse=folders"
                )
            coarse_source = FolderCoarseSource(records)
        return cls(records, coarse_source, config, seed)

    def __len__(self) -> int:
        return len(self.records)

    def record_name(self, index: int) -> str:
        return self.records[index].sample_id

    def make_sample(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        record = self.records[index]
        sample = load_sample(record)
        image, gt = sample.image, sample.gt
        if gt is None:
            raise SkipSample("no ground-truth mask")
        box = mask_box(gt)
        if box is None:
            raise SkipSample("empty ground-truth mask")
        kind = "coarse_expand" if rng.random() < self.hr.expand_prob else "coarse"
        coarse = np.asarray(self.coarse_source.get(record.sample_id, kind), dtype=bool)
        if coarse.shape != gt.shape:
            raise SkipSample(
                f"{kind} mask is {coarse.shape[1]}x{coarse.shape[0]} (WxH) but the image is "
                f"{gt.shape[1]}x{gt.shape[0]}"
            )
        height, width = gt.shape
        object_box = hr_object_box(box, height, width, rng)
        side = patch_side(height, width, self.hr.patch_size)
        patch = mixed_patch(gt, side, rng, self.hr.patch_tries)
        notes = []
        if not patch.mixed:
            notes.append(
                f"{record.sample_id}: no {side}x{side} patch holds both foreground and "
                "background; used a random patch"
            )
        gt_patch = crop(gt, patch.box)
        if self.hr.global_patch_prob > 0 and rng.random() < self.hr.global_patch_prob:
            source = gt if rng.random() < 0.5 else coarse
            coarse_patch = global_resampled(source, patch.box, self.hr.global_size)
            patch_source = "global-gt" if source is gt else f"global-{kind}"
        elif self.hr.native_patch_prob > 0 and rng.random() < self.hr.native_patch_prob:
            native = self.hr.native_kinds[int(rng.integers(len(self.hr.native_kinds)))]
            whole_coarse = coarse if native == "offline" else coarse_mask(native, gt, rng)
            coarse_patch = crop(whole_coarse, patch.box)
            patch_source = f"native-{kind if native == 'offline' else native}"
        elif rng.random() < self.hr.online_patch_prob:
            coarse_patch = modify_boundary(gt_patch, rng)
            patch_source = "online"
        else:
            coarse_patch = crop(coarse, patch.box)
            patch_source = kind
        flip = bool(rng.random() < self.flip_prob)
        whole = self.hr.global_object_prob > 0 and rng.random() < self.hr.global_object_prob
        obj = (
            global_view(image, gt, coarse, self.crop_size, flip)
            if whole
            else make_crop(image, gt, coarse, object_box, self.crop_size, flip)
        )
        out: dict[str, Any] = {}
        for prefix, values in (
            ("object_", obj),
            (
                "patch_",
                make_crop(
                    crop(image, patch.box),
                    gt_patch,
                    coarse_patch,
                    (0, 0, side, side),
                    self.crop_size,
                    flip,
                ),
            ),
        ):
            out.update({prefix + k: v for k, v in values.items()})
        out.update(
            object_box=np.asarray(object_box),
            patch_box=np.asarray(patch.box),
            flip=flip,
            coarse_kind=kind,
            object_source="global" if whole else "box",
            patch_source=patch_source,
            # a global-pass or native patch trains as the local step infers: t = 0, x_t = its
            # coarse mask
            patch_exact=patch_source.startswith(("global-", "native-")),
            notes=notes,
        )
        return out
