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

from flows.caching import keyed, work_shard_done, work_store_exists
from flows.cluster import submit
from flows.tasks import shard_progress
from pipelines.evaluate_hr import (
    FolderSet,
    HREvaluation,
    draw_hr_report,
    folder_results,
    manifest_scores,
    score_folder,
)
from pipelines.refine import RefineConfig
from pipelines.refine_hr import (
    finalize_refine_hr,
    list_samples,
    prepare_refine_hr,
    run_refine_hr_shard,
)
from pipelines.reports import MetricRow, write_csv
from pipelines.sharding import Shard
from segrefiner.data.folders import SampleRecord
from segrefiner.metrics import FolderReport

__all__ = [
    "evaluate_folder",
    "evaluate_outputs",
    "finalize_hr",
    "list_records",
    "prepare_hr",
    "refine_hr_shard",
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


def _manifest_exists(parameters: dict[str, Any]) -> bool:
    return (Path(parameters["work_dir"]) / "manifest.json").is_file()


@task(
    name="prepare-refine-hr",
    cache_key_fn=keyed("out_dir", "work_dir", "num_shards", exists=work_store_exists),
)
def prepare_hr(
    records: list[SampleRecord],
    out_dir: str,
    work_dir: str,
    config: RefineConfig,
    num_shards: int,
    content_key: str,
) -> list[Shard]:
    """Plan the shards and create (or resume) the store."""
    return prepare_refine_hr(records, out_dir, work_dir, config, num_shards=num_shards)


@task(
    name="refine-hr-shard",
    retries=1,
    cache_key_fn=keyed("work_dir", "shard", exists=work_shard_done),
)
def refine_hr_shard(
    work_dir: str, config: RefineConfig, shard: Shard, content_key: str
) -> dict[str, Any]:
    """Refine one shard's images (a completed shard is skipped by the stage itself)."""
    with shard_progress("refine-hr", shard.index, len(shard)):
        return run_refine_hr_shard(work_dir, config, shard)


@task(name="finalize-refine-hr", cache_key_fn=keyed("work_dir", exists=_manifest_exists))
def finalize_hr(work_dir: str, content_key: str) -> dict[str, Any]:
    """Check that every shard finished; write the manifest."""
    return finalize_refine_hr(work_dir)


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
