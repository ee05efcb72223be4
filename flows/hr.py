"""BIG and DIS-5K, the Prefect wiring: the HR refinement stage (:mod:`pipelines.refine_hr`),
folder evaluation (pooled IoU and mBA, per DIS set, on the cluster) and the report
(:mod:`pipelines.evaluate_hr`) as tasks.

Output folder of one run (``<output_dir>/<content key>/``, ``<output_dir>/latest`` links to
the most recent)::

    masks/                     refined masks, official names (BIG <name>_refine.png,
                               DIS <set>/<name>.png)
    work/                      the stage's work directory
    report/metrics.json, per_image.csv, gallery.png, before_after.png
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from flows.cluster import submit
from flows.tasks import stage_tasks
from pipelines.evaluate_hr import (
    FolderSet,
    HREvaluation,
    draw_hr_report,
    folder_results,
    manifest_scores,
    score_folder,
)
from pipelines.refine_hr import REFINE_HR, list_samples
from pipelines.reports import MetricRow, write_csv
from segrefiner.data.folders import SampleRecord
from segrefiner.metrics import FolderReport

__all__ = [
    "TASKS",
    "evaluate_folder",
    "evaluate_outputs",
    "list_records",
    "report_hr",
]


@task(name="list-samples")
def list_records(params: Any, data_root: str) -> list[SampleRecord]:
    """The dataset's samples: BIG ``params.folder``, DIS ``params.sets`` with coarse masks of
    ``params.segmentor``."""
    if params.dataset_kind == "big":
        return list_samples("big", data_root, folder=params.folder)
    sets = tuple(params.sets) if params.sets else None
    return list_samples("dis", data_root, sets=sets, segmentor=params.segmentor)


# prepare-refine-hr, refine-hr-shard, finalize-refine-hr
TASKS = stage_tasks(REFINE_HR)


# --------------------------------------------------------------------------- evaluation


@task(name="evaluate-folder")
def evaluate_folder(folder: FolderSet, naming: str, pred_root: str) -> FolderReport:
    """Pooled IoU and mBA of one folder, coarse and refined; missing files are listed
    (:func:`pipelines.evaluate_hr.score_folder`)."""
    return score_folder(folder, naming, pred_root)


def evaluate_outputs(
    evaluation: HREvaluation,
    pred_root: str,
    report_dir: str | Path,
    work_dir: str | Path | None = None,
) -> tuple[list[MetricRow], list[dict[str, Any]]]:
    """Score every set on the cluster; the table rows and the per-image rows (CSV written).
    With ``work_dir``, each row also gets its ``refine_score`` from the stage's manifest."""
    scores = manifest_scores(work_dir)
    futures = [submit(evaluate_folder, s, evaluation.naming, pred_root) for s in evaluation.sets]
    table: list[MetricRow] = []
    rows: list[dict[str, Any]] = []
    for folder, future in zip(evaluation.sets, futures):
        folder_table, folder_rows = folder_results(
            evaluation, folder, future.result(), pred_root, scores
        )
        table += folder_table
        rows += folder_rows
    write_csv(rows, Path(report_dir) / "per_image.csv")
    return table, rows


@task(name="report-hr")
def report_hr(
    rows: list[dict[str, Any]],
    table: list[MetricRow],
    evaluation: HREvaluation,
    pred_root: str,
    out_dir: str,
    gallery_size: int,
    gallery_sort: str = "changed",
) -> dict[str, str | None]:
    """The gallery and the before/after plot, PNG paths
    (:func:`pipelines.evaluate_hr.draw_hr_report`)."""
    return draw_hr_report(rows, table, evaluation, pred_root, out_dir, gallery_size, gallery_sort)
