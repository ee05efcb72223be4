"""COCO and LVIS evaluators with boundary IoU, and LVIS's evaluator made to run on NumPy 2.

Only the pairwise IoU computation is replaced (pycocotools' ``COCOeval.computeIoU`` and
lvis' ``LVISEval.compute_iou``); matching, accumulation and summaries are the libraries' own.
For ``boundary`` the IoU of a (detection, ground truth) pair is ``min(mask IoU, boundary
IoU)``; a crowd ground truth keeps the mask IoU (COCO; LVIS treats nothing as crowd), as the
Boundary IoU API and lvis-api's ``lvis_challenge_2021`` branch do.

Cost: boundary bands dominate, so each is computed at most once, and only where it can change a
value. A pair whose mask IoU is 0 has min(...) = 0 whatever its boundary IoU, so its bands are
not needed; ground-truth bands are kept in a :class:`BandCache` keyed by the mask itself, so
they survive across evaluations of several result files against one annotation file. The
per-image work can run on local processes or a Dask client.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval

from segrefiner.metrics._parallel import TaskRunner, chunked
from segrefiner.metrics.boundary import DILATION_RATIO, Band, band_iou, band_of_rle


def _counts_key(rle: dict[str, Any]) -> tuple[int, int, bytes]:
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return int(rle["size"][0]), int(rle["size"][1]), bytes(counts)


class BandCache:
    """Boundary bands of ground-truth masks, keyed by the mask's RLE (content, not ids).

    Reuse one cache across evaluations of the same annotations (e.g. several result files, or
    both the COCO and the LVIS protocol) so their bands are computed once. Bands depend on the
    dilation ratio, which is fixed per cache.
    """

    def __init__(self, dilation_ratio: float = DILATION_RATIO) -> None:
        self.dilation_ratio = float(dilation_ratio)
        self._bands: dict[tuple[int, int, bytes], Band] = {}

    def __len__(self) -> int:
        return len(self._bands)

    def get(self, rle: dict[str, Any]) -> Band | None:
        return self._bands.get(_counts_key(rle))

    def put(self, rle: dict[str, Any], band: Band) -> None:
        self._bands[_counts_key(rle)] = band


@dataclass
class _Group:
    """One (image, category) cell: detections sorted as the evaluator sorts them, and GTs."""

    key: tuple[int, int]
    dt_rles: list[dict[str, Any]]
    gt_rles: list[dict[str, Any]]
    gt_crowd: list[int]


@dataclass
class _Job:
    groups: list[_Group]
    gt_bands: dict[tuple[int, int, bytes], Band]
    dilation_ratio: float


def _job_ious(job: _Job) -> tuple[dict[tuple[int, int], Any], dict[tuple[int, int, bytes], Band]]:
    """IoU matrices (or ``[]``) for each cell of a job, and the ground-truth bands it computed."""
    out: dict[tuple[int, int], Any] = {}
    new_bands: dict[tuple[int, int, bytes], Band] = {}
    for group in job.groups:
        out[group.key] = _group_ious(group, job, new_bands)
    return out, new_bands


def _group_ious(group: _Group, job: _Job, new_bands: dict[tuple[int, int, bytes], Band]) -> Any:
    if not group.dt_rles or not group.gt_rles:
        return []  # what pycocotools' mask.iou returns when one side is empty
    mask_ious = np.asarray(mask_utils.iou(group.dt_rles, group.gt_rles, group.gt_crowd))
    ious = mask_ious.copy()
    crowd = np.asarray(group.gt_crowd, dtype=bool)
    # min(mask IoU, boundary IoU) only differs from the mask IoU where the masks overlap.
    need = (mask_ious > 0) & ~crowd[None, :]
    if not need.any():
        return ious
    dt_bands: dict[int, Band] = {}
    gt_bands: dict[int, Band] = {}
    for i, j in zip(*np.nonzero(need)):
        i, j = int(i), int(j)
        if i not in dt_bands:
            dt_bands[i] = band_of_rle(group.dt_rles[i], job.dilation_ratio)
        if j not in gt_bands:
            key = _counts_key(group.gt_rles[j])
            band = job.gt_bands.get(key) or new_bands.get(key)
            if band is None:
                band = band_of_rle(group.gt_rles[j], job.dilation_ratio)
                new_bands[key] = band
            gt_bands[j] = band
        ious[i, j] = min(mask_ious[i, j], band_iou(dt_bands[i], gt_bands[j]))
    return ious


def _compute_boundary_ious(
    groups: list[_Group], cache: BandCache, runner: TaskRunner | None = None
) -> dict[tuple[int, int], Any]:
    """Boundary-type IoU matrices for every cell, using and filling ``cache``."""
    runner = runner if runner is not None else TaskRunner()
    # Cells of one image stay together; chunks of images balance the workers.
    by_image: dict[int, list[_Group]] = {}
    for group in groups:
        by_image.setdefault(group.key[0], []).append(group)
    jobs = []
    for chunk in chunked(list(by_image.values()), 4 * runner.slots if runner.parallel else 1):
        cells = [g for image in chunk for g in image]
        cached = {}
        for g in cells:
            for rle in g.gt_rles:
                band = cache.get(rle)
                if band is not None:
                    cached[_counts_key(rle)] = band
        jobs.append(_Job(cells, cached, cache.dilation_ratio))
    ious: dict[tuple[int, int], Any] = {}
    for cell_ious, new_bands in runner.map(_job_ious, jobs):
        ious.update(cell_ious)
        for key, band in new_bands.items():
            cache._bands[key] = band
    return ious


def _sorted_by_score(dts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    # The evaluators' own order: stable sort on descending score.
    order = np.argsort([-d["score"] for d in dts], kind="mergesort")
    return [dts[i] for i in order]


class BoundaryCOCOeval(COCOeval):
    """``COCOeval`` whose pairwise IoU is ``min(mask IoU, boundary IoU)`` (crowd: mask IoU).

    Use like ``COCOeval(gt, dt, "segm")``: ``evaluate()``, ``accumulate()``, ``summarize()``.
    ``band_cache`` keeps ground-truth bands across evaluations; ``runner`` spreads the band work
    over processes or a Dask cluster.
    """

    def __init__(
        self,
        coco_gt: Any,
        coco_dt: Any,
        band_cache: BandCache | None = None,
        runner: TaskRunner | None = None,
    ) -> None:
        # "segm" makes the parent turn every mask into RLE and summarise as mask AP does.
        super().__init__(coco_gt, coco_dt, iouType="segm")
        self.band_cache = band_cache if band_cache is not None else BandCache()
        self.runner = runner
        self._boundary_ious: dict[tuple[int, int], Any] = {}

    def _prepare(self) -> None:
        super()._prepare()
        p = self.params
        groups = []
        for img_id in p.imgIds:
            for cat_id in p.catIds if p.useCats else [-1]:
                if p.useCats:
                    gt, dt = self._gts[img_id, cat_id], self._dts[img_id, cat_id]
                else:
                    gt = [g for c in p.catIds for g in self._gts[img_id, c]]
                    dt = [d for c in p.catIds for d in self._dts[img_id, c]]
                if not gt and not dt:
                    continue
                dt = _sorted_by_score(dt)[: p.maxDets[-1]]
                groups.append(
                    _Group(
                        (img_id, cat_id),
                        [d["segmentation"] for d in dt],
                        [g["segmentation"] for g in gt],
                        [int(g["iscrowd"]) for g in gt],
                    )
                )
        self._boundary_ious = _compute_boundary_ious(groups, self.band_cache, self.runner)

    def computeIoU(self, imgId: int, catId: int) -> Any:  # the parent's name
        return self._boundary_ious.get((imgId, catId), [])


def _numpy_with_float() -> types.ModuleType:
    """A stand-in for the ``numpy`` module that also has the ``np.float`` alias NumPy 2 dropped."""
    shim = types.ModuleType("numpy")
    shim.__dict__.update(np.__dict__)
    shim.float = float  # type: ignore[attr-defined]
    return shim


def lvis_evaluator_class() -> type:
    """``LVISEval`` subclasses are built on first use: ``lvis`` is an optional dependency."""
    global _LVIS_CLASS
    if _LVIS_CLASS is None:
        _LVIS_CLASS = _build_lvis_class()
    return _LVIS_CLASS


_LVIS_CLASS: type | None = None


def _build_lvis_class() -> type:
    import lvis.eval as lvis_eval

    base = lvis_eval.LVISEval
    # PyPI lvis 0.5.3's accumulate() uses ``np.float``, removed in NumPy 1.24. Rather than
    # changing numpy for everyone, run that one method with its own globals, where ``np`` is a
    # numpy stand-in that still has ``float``. The method's code is lvis' own, unchanged.
    accumulate = types.FunctionType(
        base.accumulate.__code__,
        {**vars(lvis_eval), "np": _numpy_with_float()},
        "accumulate",
        base.accumulate.__defaults__,
        base.accumulate.__closure__,
    )

    class LVISEvaluator(base):  # type: ignore[misc, valid-type]
        """``LVISEval`` that runs on NumPy 2 and adds ``iou_type="boundary"``."""

        def __init__(
            self,
            lvis_gt: Any,
            lvis_dt: Any,
            iou_type: str = "segm",
            band_cache: BandCache | None = None,
            runner: TaskRunner | None = None,
        ) -> None:
            if iou_type not in ("segm", "bbox", "boundary"):
                raise ValueError(f"iou_type: {iou_type} is not supported")
            super().__init__(lvis_gt, lvis_dt, iou_type="bbox" if iou_type == "bbox" else "segm")
            self.boundary = iou_type == "boundary"
            self.band_cache = band_cache if band_cache is not None else BandCache()
            self.runner = runner
            self._boundary_ious: dict[tuple[int, int], Any] = {}

        def _prepare(self) -> None:
            super()._prepare()
            if not self.boundary:
                return
            p = self.params
            groups = []
            for img_id in p.img_ids:
                for cat_id in p.cat_ids if p.use_cats else [-1]:
                    gt, dt = self._get_gt_dt(img_id, cat_id)
                    if not gt and not dt:
                        continue
                    groups.append(
                        _Group(
                            (img_id, cat_id),
                            [d["segmentation"] for d in _sorted_by_score(dt)],
                            [g["segmentation"] for g in gt],
                            [0] * len(gt),  # lvis treats no annotation as crowd
                        )
                    )
            self._boundary_ious = _compute_boundary_ious(groups, self.band_cache, self.runner)

        def compute_iou(self, img_id: int, cat_id: int) -> Any:
            if not self.boundary:
                return super().compute_iou(img_id, cat_id)
            return self._boundary_ious.get((img_id, cat_id), [])

        def accumulate(self) -> None:
            accumulate(self)

    return LVISEvaluator
