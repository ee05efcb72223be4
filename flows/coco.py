"""COCO-format instance results, the Prefect wiring: the refine-coco stage
(:mod:`pipelines.refine_coco`), its evaluation (mask AP and boundary AP, coarse vs refined) and
its report (:mod:`pipelines.evaluate_coco`) as cached tasks.

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
from typing import Any

from prefect import task

from flows.caching import keyed
from flows.params import GroundTruth
from flows.tasks import stage_tasks
from pipelines.evaluate_coco import ap_table, draw_coco_report
from pipelines.evaluate_coco import instance_rows as coco_instance_rows
from pipelines.refine import RefineConfig
from pipelines.refine_coco import REFINE_COCO
from pipelines.reports import MetricRow

__all__ = [
    "TASKS",
    "config_for_key",
    "evaluate_coco",
    "instance_rows",
    "report_coco",
]


# prepare-refine-coco, refine-coco-shard, finalize-refine-coco
TASKS = stage_tasks(REFINE_COCO)


@task(name="evaluate-coco", cache_key_fn=keyed("ground_truth"))
def evaluate_coco(
    ground_truth: GroundTruth, coarse: str, refined: str, content_key: str
) -> list[MetricRow]:
    """Mask AP and boundary AP of the coarse and the refined results against one ground truth
    (:func:`pipelines.evaluate_coco.ap_table`)."""
    return ap_table(ground_truth.annotations, ground_truth.api, ground_truth.name, coarse, refined)


@task(name="per-instance-rows", cache_key_fn=keyed("ground_truth", "image_list"))
def instance_rows(
    ground_truth: GroundTruth,
    image_list: str,
    image_root: str,
    coarse: str,
    refined: str,
    content_key: str,
) -> list[dict[str, Any]]:
    """Per-detection rows, matched against one ground truth
    (:func:`pipelines.evaluate_coco.instance_rows`)."""
    return coco_instance_rows(ground_truth.annotations, image_list, image_root, coarse, refined)


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
    """The gallery and the before/after plot, PNG paths
    (:func:`pipelines.evaluate_coco.draw_coco_report`)."""
    return draw_coco_report(
        rows, table, ground_truth.annotations, image_list, image_root, coarse, refined, out_dir,
        gallery_size, gallery_sort,
    )  # fmt: skip


def config_for_key(config: RefineConfig) -> RefineConfig:
    """The config without the checkpoint's path: its content hash stands for it in keys."""
    return dataclasses.replace(config, checkpoint="")
