"""COCO-format instance results: the refine-coco stage as Prefect tasks, its evaluation
(mask AP and boundary AP, coarse vs refined) and its report.

Output folder of one run (``<output_dir>/<content key>/``, ``<output_dir>/latest`` links to
the most recent)::

    refined.segm.json          the refined results (input order, same fields, refined masks)
    work/                      the stage's work directory (zarr store, shard inputs and parts)
    report/metrics.json        the table, the summary, the checkpoint and where it came from
    report/per_instance.csv    per detection: matched ground truth, coarse/refined IoU, boundary IoU
    report/gallery.png         the most changed detections: coarse / refined / ground truth
    report/before_after.png    metric bars and per-detection coarse vs refined IoU
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task

from flows.caching import keyed, work_shard_done, work_store_exists
from flows.params import GroundTruth
from flows.reports import (
    GalleryItem,
    MetricRow,
    crop_box,
    draw_before_after,
    draw_gallery,
    gallery_order,
)
from flows.tasks import shard_progress
from pipelines.refine import RefineConfig
from pipelines.refine_coco import (
    finalize_refine_coco,
    prepare_refine_coco,
    run_refine_coco_shard,
)
from pipelines.sharding import Shard
from segrefiner.data.coco import COCO_CATEGORY_IDS, load_coco_instances, load_segmentor_results
from segrefiner.errors import InputError
from segrefiner.io import read_json
from segrefiner.metrics import boundary_iou, evaluate_instances, iou

__all__ = [
    "evaluate_coco",
    "finalize_coco",
    "instance_rows",
    "prepare_coco",
    "refine_coco_shard",
    "report_coco",
]

AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")
MATCH_IOU = 0.5  # a detection is scored against the ground truth it overlaps at least this much


def _output_exists(parameters: dict[str, Any]) -> bool:
    return Path(parameters["output"]).is_file()


@task(
    name="prepare-refine-coco",
    cache_key_fn=keyed("work_dir", "num_shards", exists=work_store_exists),
)
def prepare_coco(
    results: str,
    annotations: str,
    image_root: str,
    work_dir: str,
    config: RefineConfig,
    num_shards: int,
    content_key: str,
) -> list[Shard]:
    """Check the results, set bad entries aside, plan the shards (see
    :func:`pipelines.refine_coco.prepare_refine_coco`)."""
    return prepare_refine_coco(
        results, annotations, image_root, work_dir, config, num_shards=num_shards
    )


@task(
    name="refine-coco-shard",
    retries=1,
    cache_key_fn=keyed("work_dir", "shard", exists=work_shard_done),
)
def refine_coco_shard(
    work_dir: str, config: RefineConfig, shard: Shard, content_key: str
) -> dict[str, Any]:
    """Refine one shard (a completed shard is skipped by the stage itself)."""
    with shard_progress("refine-coco", shard.index, len(shard)):
        return run_refine_coco_shard(work_dir, config, shard)


@task(name="finalize-refine-coco", cache_key_fn=keyed("work_dir", "output", exists=_output_exists))
def finalize_coco(work_dir: str, output: str, content_key: str) -> dict[str, Any]:
    """Assemble the refined results file and the manifest."""
    return finalize_refine_coco(work_dir, output)


@task(name="evaluate-coco", cache_key_fn=keyed("ground_truth"))
def evaluate_coco(
    ground_truth: GroundTruth, coarse: str, refined: str, content_key: str
) -> list[MetricRow]:
    """Mask AP and boundary AP of the coarse and the refined results against one ground truth.

    Lenient: entries the checks reject are left out of both (and counted by the stage).
    """
    reports = {
        (variant, iou_type): evaluate_instances(
            ground_truth.annotations, path, iou_type, ground_truth.api, strict=False
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
                    key=f"{ground_truth.name}_{word}_{key}",
                    label=f"{ground_truth.name} {word} {key}",
                    coarse=coarse_ap.get(key),
                    refined=refined_ap.get(key),
                )
            )
    return rows


def _best_match(mask: np.ndarray, candidates: list[tuple[int, np.ndarray]]) -> tuple[int, Any]:
    best_id, best_iou, best_gt = -1, 0.0, None
    for ann_id, gt in candidates:
        value = iou(mask, gt) or 0.0
        if value > best_iou:
            best_id, best_iou, best_gt = ann_id, value, gt
    return (best_id, best_gt) if best_iou >= MATCH_IOU else (-1, None)


@task(name="per-instance-rows", cache_key_fn=keyed("ground_truth", "image_list"))
def instance_rows(
    ground_truth: GroundTruth,
    image_list: str,
    image_root: str,
    coarse: str,
    refined: str,
    content_key: str,
) -> list[dict[str, Any]]:
    """Per detection: the ground truth its coarse mask matches (same category, IoU >= 0.5) and
    coarse / refined IoU and boundary IoU with it; ``changed`` = 1 - IoU(coarse, refined);
    ``refine_score`` as the refined file has it (``None``: not refined)."""
    images = load_coco_instances(image_list, image_root)
    gt = load_coco_instances(ground_truth.annotations, image_root)
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


@task(name="report-coco")
def report_coco(
    rows: list[dict[str, Any]],
    table: list[MetricRow],
    ground_truth: GroundTruth,
    image_list: str,
    image_root: str,
    coarse: str,
    refined: str,
    out_dir: str,
    gallery_size: int,
    gallery_sort: str = "changed",
) -> dict[str, str | None]:
    """The gallery of the most changed detections (or, ``gallery_sort="score"``, of the lowest
    refinement scores) and the before/after plot (PNG paths)."""
    out = Path(out_dir)
    pairs = [(r["coarse_iou"], r["refined_iou"]) for r in rows if r["coarse_iou"] is not None]
    plot = draw_before_after(table, pairs, out / "before_after.png", pair_label="mask IoU")
    chosen = gallery_order(rows, gallery_sort, lambda r: r["changed"])[:gallery_size]
    gallery = None
    if chosen:
        images = load_coco_instances(image_list, image_root)
        gt = load_coco_instances(ground_truth.annotations, image_root)
        before = load_segmentor_results(
            coarse, images, strict=False, category_ids=COCO_CATEGORY_IDS
        )
        after = load_segmentor_results(
            refined, images, strict=False, category_ids=COCO_CATEGORY_IDS
        )
        b_groups = {g.image.id: g.detections for g in before.groups}
        a_groups = {g.image.id: g.detections for g in after.groups}
        gt_masks = {a.id: a for a in gt.annotations}
        items = []
        for row in chosen:
            image_id, n = row["image_id"], row["detection"]
            c_mask = b_groups[image_id][n].mask()
            r_mask = a_groups[image_id][n].mask()
            gt_id = row["gt_id"]
            g_mask = None if gt_id is None else gt.annotation_mask(gt_masks[gt_id])
            y0, y1, x0, x1 = crop_box([c_mask, r_mask, g_mask], c_mask.shape)
            pixels = images.read_image(image_id)[y0:y1, x0:x1]
            title = f"image {image_id} #{n}: changed {100 * row['changed']:.1f}%"
            if row["delta_iou"] is not None:
                title += f", IoU {100 * row['delta_iou']:+.1f}"
            if row.get("refine_score") is not None:
                title += f", score {100 * row['refine_score']:+.1f}"
            items.append(
                GalleryItem(
                    title=title,
                    image=pixels,
                    coarse=c_mask[y0:y1, x0:x1],
                    refined=r_mask[y0:y1, x0:x1],
                    gt=None if g_mask is None else g_mask[y0:y1, x0:x1],
                )
            )
        gallery = draw_gallery(items, out / "gallery.png")
    return {"plot": str(plot), "gallery": str(gallery) if gallery else None}


def config_for_key(config: RefineConfig) -> RefineConfig:
    """The config without the checkpoint's path: its content hash stands for it in keys."""
    return dataclasses.replace(config, checkpoint="")
