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
from pathlib import Path
from typing import Any

from prefect import task

from flows.caching import keyed, work_shard_done, work_store_exists
from flows.params import GroundTruth
from flows.tasks import shard_progress
from pipelines.evaluate_coco import ap_table, draw_coco_report
from pipelines.evaluate_coco import instance_rows as coco_instance_rows
from pipelines.refine import RefineConfig
from pipelines.refine_coco import (
    finalize_refine_coco,
    prepare_refine_coco,
    run_refine_coco_shard,
)
from pipelines.reports import MetricRow
from pipelines.sharding import Shard

__all__ = [
    "config_for_key",
    "evaluate_coco",
    "finalize_coco",
    "instance_rows",
    "prepare_coco",
    "refine_coco_shard",
    "report_coco",
]


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
