"""Metrics: IoU, mBA, boundary IoU, mask AP and boundary AP.

- :func:`iou`, :func:`pooled_iou`: per-image IoU and the BIG/DIS dataset-level IoU.
- :func:`boundary_accuracy`, :func:`mean_boundary_accuracy`, :func:`mba_radii`: CascadePSP's
  boundary accuracy (mBA).
- :func:`mask_to_boundary`, :func:`boundary_iou`: the Boundary IoU paper's band and IoU.
- :func:`instance_ap`, :func:`evaluate_instances`: COCO/LVIS mask AP and boundary AP.
- :func:`evaluate_mask_folders`, :func:`evaluate_dis`, :func:`evaluate_thin_object`: folder
  evaluation as the official BIG/DIS scripts do it.

All values are fractions in [0, 1]; an undefined value is ``None``, never NaN.
"""

from segrefiner.metrics.boundary import (
    Band,
    band_of_mask,
    boundary_iou,
    boundary_width,
    mask_to_boundary,
)
from segrefiner.metrics.evaluators import BandCache, BoundaryCOCOeval, lvis_evaluator_class
from segrefiner.metrics.folders import (
    DIS_SPLITS,
    FolderReport,
    ImageRow,
    MaskScores,
    SetScores,
    evaluate_dis,
    evaluate_mask_folders,
    evaluate_thin_object,
    read_name_list,
)
from segrefiner.metrics.instances import InstanceEvalReport, evaluate_instances, instance_ap
from segrefiner.metrics.masks import OverlapCounts, iou, overlap_counts, pooled_iou
from segrefiner.metrics.mba import (
    BandCounts,
    BoundaryAccuracySummary,
    band_counts,
    boundary_accuracy,
    mba_radii,
    mean_boundary_accuracy,
)

__all__ = [
    "DIS_SPLITS",
    "Band",
    "BandCache",
    "BandCounts",
    "BoundaryAccuracySummary",
    "BoundaryCOCOeval",
    "FolderReport",
    "ImageRow",
    "InstanceEvalReport",
    "MaskScores",
    "OverlapCounts",
    "SetScores",
    "band_counts",
    "band_of_mask",
    "boundary_accuracy",
    "boundary_iou",
    "boundary_width",
    "evaluate_dis",
    "evaluate_instances",
    "evaluate_mask_folders",
    "evaluate_thin_object",
    "instance_ap",
    "iou",
    "lvis_evaluator_class",
    "mask_to_boundary",
    "mba_radii",
    "mean_boundary_accuracy",
    "overlap_counts",
    "pooled_iou",
    "read_name_list",
]
