"""Flow ``evaluate``: coarse vs refined outputs that already exist, on one dataset.

COCO-format results: mask AP and boundary AP (COCO or LVIS protocol) and per-detection rows;
BIG / DIS mask folders: pooled IoU and mBA (per DIS set). One MLflow run in the dataset's
refine experiment (``refine-coco`` / ``refine-big`` / ``refine-dis``) tagged ``stage=evaluate``,
so it sits beside the refinement runs in the compare view.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from prefect import flow

from flows import coco, hr
from flows.checkpoints import ResolvedCheckpoint
from flows.cluster import on_cluster, submit
from flows.params import EvaluateParams, GroundTruth
from flows.refine import finish_run
from flows.tasks import absolute
from flows.tracking import run_name, tracked_run
from pipelines.evaluate_hr import evaluation_from_folders
from pipelines.fingerprint import content_key
from pipelines.models import checkpoint_id
from pipelines.reports import write_csv

__all__ = ["evaluate"]

DEFAULT_EVALUATE = EvaluateParams()


def _checkpoint(label: str | None) -> ResolvedCheckpoint:
    if not label:
        return ResolvedCheckpoint("", "unknown", "")
    try:
        return ResolvedCheckpoint(label, "file", checkpoint_id(label))
    except (FileNotFoundError, OSError):  # a name only: kept as the label
        return ResolvedCheckpoint(label, "label", f"label:{Path(label).stem}")


@flow(name="evaluate")
def evaluate(params: EvaluateParams = DEFAULT_EVALUATE) -> dict[str, Any]:
    """Score coarse and refined outputs against the ground truth; report and log them."""
    with on_cluster(params.cluster):
        ckpt = _checkpoint(params.checkpoint)
        coarse, refined = absolute(params.coarse), absolute(params.refined)
        truth = absolute(params.ground_truth)
        report_dir = Path(absolute(params.output_dir))
        report_dir.mkdir(parents=True, exist_ok=True)
        name = run_name(params.label, params.segmentor, ckpt.sha or None)
        tags = {
            "dataset": params.label,
            "segmentor": params.segmentor,
            "checkpoint.sha256": ckpt.sha,
            "stage": "evaluate",
            "coarse": coarse,
            "refined": refined,
        }
        with tracked_run(
            params.report.track,
            f"refine-{params.dataset}",
            name,
            tags=tags,
            params={"params": params.model_dump()},
        ) as run:
            if params.dataset == "coco":
                gt = GroundTruth(name=params.gt_name, annotations=truth, api=params.api)
                image_list, image_root = absolute(params.image_list), absolute(params.image_root)
                key = content_key(files={"coarse": coarse, "refined": refined, "gt": truth})
                table_future = submit(coco.evaluate_coco, gt, coarse, refined, key)
                rows = submit(
                    coco.instance_rows, gt, image_list, image_root, coarse, refined, key
                ).result()
                table = table_future.result()
                write_csv(rows, report_dir / "per_instance.csv")
                pictures = coco.report_coco(
                    rows, table, gt, image_list, image_root, coarse, refined, str(report_dir),
                    params.report.gallery_size, params.report.gallery_sort,
                )  # fmt: skip
            else:
                evaluation = evaluation_from_folders(
                    params.dataset, truth, coarse, refined, params.sets
                )
                table, rows = hr.evaluate_outputs(evaluation, refined, report_dir)
                pictures = hr.report_hr(
                    rows, table, evaluation, refined, str(report_dir), params.report.gallery_size,
                    params.report.gallery_sort,
                )  # fmt: skip
            title = f"evaluate {name}"
            summary = {"items": len(rows)}
            result = finish_run(
                run, table, summary, pictures, ckpt, Path(refined), report_dir,
                f"evaluate-{params.dataset}", title,
            )  # fmt: skip
        return {**result, "checkpoint": dataclasses.asdict(ckpt)}
