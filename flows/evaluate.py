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
from flows.cluster import on_cluster
from flows.params import EvaluateParams
from flows.refine import finish_run, run_evaluation
from flows.tasks import absolute
from flows.tracking import run_name, tracked_run
from pipelines.evaluate_hr import evaluation_from_folders
from pipelines.models import checkpoint_id

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
                tasks = coco.EVAL_TASKS
                scored = {
                    "coarse": coarse,
                    "refined": refined,
                    "ground_truths": [
                        {"name": params.gt_name, "annotations": truth, "api": params.api}
                    ],
                    "image_list": absolute(params.image_list),
                    "image_root": absolute(params.image_root),
                }
            else:
                tasks = hr.EVAL_TASKS
                evaluation = evaluation_from_folders(
                    params.dataset, truth, coarse, refined, params.sets
                )
                scored = {"evaluation": evaluation, "pred_root": refined}
            table, evaluated = run_evaluation(tasks, report_dir, params.report, scored)
            title = f"evaluate {name}"
            summary = {"items": evaluated["rows"]}
            result = finish_run(
                run, table, summary, evaluated["pictures"], ckpt, Path(refined), report_dir,
                f"evaluate-{params.dataset}", title,
            )  # fmt: skip
        return {**result, "checkpoint": dataclasses.asdict(ckpt)}
