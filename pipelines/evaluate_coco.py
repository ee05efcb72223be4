"""COCO-format instance results, coarse vs refined: the AP table (mask AP and boundary AP), the
per-detection rows and the report's pictures. Plain functions of paths; the evaluate-coco stage
(:mod:`pipelines.evaluate_stage`) calls them.

The scores come from :mod:`segrefiner.metrics`; the table and pictures from
:mod:`pipelines.reports`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from pipelines.reports import GalleryItem, MetricRow, draw_report, gallery_order
from segrefiner.data.coco import COCO_CATEGORY_IDS, load_coco_instances, load_segmentor_results
from segrefiner.errors import InputError
from segrefiner.io import read_json
from segrefiner.metrics import boundary_iou, evaluate_instances, iou

__all__ = ["AP_KEYS", "MATCH_IOU", "ap_table", "draw_coco_report", "instance_rows"]

AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")
MATCH_IOU = 0.5  # a detection is scored against the ground truth it overlaps at least this much


def ap_table(
    annotations: str | os.PathLike,
    api: str,
    name: str,
    coarse: str | os.PathLike,
    refined: str | os.PathLike,
) -> list[MetricRow]:
    """Mask AP and boundary AP of the coarse and the refined results against the ground truth
    ``annotations`` (read with ``api``, as :func:`segrefiner.metrics.evaluate_instances`); rows
    keyed ``<name>_mask_<AP key>`` / ``<name>_boundary_<AP key>``, keys the refined results have.

    Lenient: entries the checks reject are left out of both (and counted by the stage).
    """
    reports = {
        (variant, iou_type): evaluate_instances(
            annotations, path, iou_type, api, strict=False
        ).metrics
        for variant, path in (("coarse", coarse), ("refined", refined))
        for iou_type in ("segm", "boundary")
    }
    rows = []
    for iou_type, word in (("segm", "mask"), ("boundary", "boundary")):
        coarse_ap, refined_ap = reports["coarse", iou_type], reports["refined", iou_type]
        for key in AP_KEYS:
            if key not in refined_ap:
                continue
            rows.append(
                MetricRow(
                    key=f"{name}_{word}_{key}",
                    label=f"{name} {word} {key}",
                    coarse=coarse_ap.get(key),
                    refined=refined_ap.get(key),
                )
            )
    return rows


def _best_match(mask: np.ndarray, candidates: list[tuple[int, np.ndarray]]) -> tuple[int, Any]:
    """(annotation id, mask) of the candidate ``mask`` overlaps most, if IoU >= ``MATCH_IOU``;
    else ``(-1, None)``."""
    best_id, best_iou, best_gt = -1, 0.0, None
    for ann_id, gt in candidates:
        value = iou(mask, gt) or 0.0
        if value > best_iou:
            best_id, best_iou, best_gt = ann_id, value, gt
    return (best_id, best_gt) if best_iou >= MATCH_IOU else (-1, None)


def instance_rows(
    annotations: str | os.PathLike,
    image_list: str | os.PathLike,
    image_root: str | os.PathLike,
    coarse: str | os.PathLike,
    refined: str | os.PathLike,
) -> list[dict[str, Any]]:
    """Per detection: the ground truth (``annotations``) its coarse mask matches (same
    category, IoU >= 0.5) and coarse / refined IoU and boundary IoU with it; ``changed`` =
    1 - IoU(coarse, refined); ``refine_score`` as the refined file has it (``None``: not
    refined)."""
    images = load_coco_instances(image_list, image_root)
    gt = load_coco_instances(annotations, image_root)
    before = load_segmentor_results(coarse, images, strict=False, category_ids=COCO_CATEGORY_IDS)
    after = load_segmentor_results(refined, images, strict=False, category_ids=COCO_CATEGORY_IDS)
    refined_groups = {g.image.id: g.detections for g in after.groups}
    raw = read_json(refined)
    rows: list[dict[str, Any]] = []
    for group in before.groups:
        image_id = group.image.id
        fine = refined_groups.get(image_id, ())
        if len(fine) != len(group.detections):
            raise InputError(f"{refined}: image {image_id} has other detections than {coarse}")
        try:
            anns = gt.annotations_of(image_id)
        except InputError:
            anns = []  # an image the ground truth does not cover
        candidates: dict[int, list[tuple[int, np.ndarray]]] = {}
        for ann in anns:
            if not ann.iscrowd:
                candidates.setdefault(ann.category_id, []).append((ann.id, gt.annotation_mask(ann)))
        for number, (det, ref) in enumerate(zip(group.detections, fine)):
            c_mask, r_mask = det.mask(), ref.mask()
            gt_id, gt_mask = _best_match(c_mask, candidates.get(det.category_id, []))
            row: dict[str, Any] = {
                "image_id": image_id,
                "detection": number,
                "category_id": det.category_id,
                "score": round(det.score, 4),
                "gt_id": gt_id if gt_id >= 0 else None,
                "changed": 1.0 - (iou(c_mask, r_mask) or 1.0),
                "refine_score": raw[ref.index].get("refine_score"),
            }
            for name, mask in (("coarse", c_mask), ("refined", r_mask)):
                row[f"{name}_iou"] = iou(mask, gt_mask) if gt_mask is not None else None
                row[f"{name}_boundary_iou"] = (
                    boundary_iou(mask, gt_mask) if gt_mask is not None else None
                )
            row["delta_iou"] = (
                row["refined_iou"] - row["coarse_iou"] if row["coarse_iou"] is not None else None
            )
            rows.append(row)
    return rows


def draw_coco_report(
    rows: list[dict[str, Any]],
    table: list[MetricRow],
    annotations: str | os.PathLike,
    image_list: str | os.PathLike,
    image_root: str | os.PathLike,
    coarse: str | os.PathLike,
    refined: str | os.PathLike,
    out_dir: str | os.PathLike,
    gallery_size: int,
    gallery_sort: str = "changed",
) -> dict[str, str | None]:
    """``<out_dir>/before_after.png`` (``table`` and per-detection mask IoU) and
    ``<out_dir>/gallery.png``: the ``gallery_size`` most changed detections of ``rows`` (from
    :func:`instance_rows`; or, ``gallery_sort="score"``, the lowest refinement scores) with
    their ground truth in ``annotations``. The PNG paths (``gallery`` ``None``: no rows)."""
    pairs = [(r["coarse_iou"], r["refined_iou"]) for r in rows if r["coarse_iou"] is not None]
    chosen = gallery_order(rows, gallery_sort, lambda r: r["changed"])[:gallery_size]
    items = _gallery_items(chosen, annotations, image_list, image_root, coarse, refined)
    return draw_report(table, pairs, "mask IoU", items, out_dir)


def _gallery_items(
    chosen: list[dict[str, Any]],
    annotations: str | os.PathLike,
    image_list: str | os.PathLike,
    image_root: str | os.PathLike,
    coarse: str | os.PathLike,
    refined: str | os.PathLike,
) -> Iterator[GalleryItem]:
    """The gallery lines of the ``chosen`` rows (files read only when there are some)."""
    if not chosen:
        return
    images = load_coco_instances(image_list, image_root)
    gt = load_coco_instances(annotations, image_root)
    before = load_segmentor_results(coarse, images, strict=False, category_ids=COCO_CATEGORY_IDS)
    after = load_segmentor_results(refined, images, strict=False, category_ids=COCO_CATEGORY_IDS)
    b_groups = {g.image.id: g.detections for g in before.groups}
    a_groups = {g.image.id: g.detections for g in after.groups}
    gt_masks = {a.id: a for a in gt.annotations}
    for row in chosen:
        image_id, n = row["image_id"], row["detection"]
        c_mask = b_groups[image_id][n].mask()
        r_mask = a_groups[image_id][n].mask()
        gt_id = row["gt_id"]
        g_mask = None if gt_id is None else gt.annotation_mask(gt_masks[gt_id])
        title = f"image {image_id} #{n}: changed {100 * row['changed']:.1f}%"
        if row["delta_iou"] is not None:
            title += f", IoU {100 * row['delta_iou']:+.1f}"
        if row.get("refine_score") is not None:
            title += f", score {100 * row['refine_score']:+.1f}"
        pixels = images.read_image(image_id)
        yield GalleryItem.cropped(title, pixels, c_mask, r_mask, g_mask)
