"""Flows ``refine-coco``, ``refine-big`` and ``refine-dis``: prepare (one task) -> one task per
shard on Dask -> finalize (one task) -> evaluate coarse vs refined -> report and log.

Each flow run opens one MLflow run in the experiment of its task (``refine-coco`` ...), named
``<dataset>/<segmentor>@<checkpoint short hash>`` and tagged with the Prefect flow run; a
failure marks it FAILED with the error. The same bodies (:func:`run_refine_coco`,
:func:`run_refine_hr`) serve the re-evaluation flow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows import coco, hr
from flows.checkpoints import ResolvedCheckpoint, resolve_checkpoint
from flows.cluster import on_cluster
from flows.params import (
    RefineBigParams,
    RefineCocoParams,
    RefineDisParams,
    RefineParams,
    ReportParams,
)
from flows.tasks import StageTasks, absolute, log_outcome, publish_metrics
from flows.tracking import NullRun, TrackedRun, run_name, tracked_run
from pipelines.config import EvaluateConfig
from pipelines.evaluate_hr import HREvaluation, default_evaluation
from pipelines.fingerprint import run_folder
from pipelines.reports import (
    MetricRow,
    draw_score_histogram,
    format_table,
    metric_rows,
    score_metrics,
    write_report,
)
from segrefiner.data.folders import SampleRecord
from segrefiner.model import PRESETS

__all__ = [
    "finish_run",
    "refine_big",
    "refine_coco",
    "refine_dis",
    "refine_run",
    "resolve_model",
    "run_evaluation",
    "run_refine_coco",
    "run_refine_hr",
]

DEFAULT_COCO = RefineCocoParams()
DEFAULT_BIG = RefineBigParams()
DEFAULT_DIS = RefineDisParams()


def _local(spec: str) -> str:
    # Registry references and preset names stay as they are; files become absolute.
    if spec.startswith("models:/") or (spec in PRESETS and not Path(spec).exists()):
        return spec
    return absolute(spec)


def resolve_model(refine: RefineParams) -> ResolvedCheckpoint:
    """The checkpoint file behind ``refine.checkpoint`` (registry, fallback, file, preset)."""
    fallback = refine.fallback_checkpoint
    return resolve_checkpoint(_local(refine.checkpoint), _local(fallback) if fallback else None)


def _tags(dataset: str, segmentor: str, ckpt: ResolvedCheckpoint) -> dict[str, str]:
    return {
        "dataset": dataset,
        "segmentor": segmentor,
        "checkpoint.sha256": ckpt.sha,
        "checkpoint.source": ckpt.source,
        "checkpoint.path": ckpt.path,
    }


@contextmanager
def refine_run(
    params: RefineCocoParams | RefineBigParams | RefineDisParams,
    ckpt: ResolvedCheckpoint,
    tags: dict[str, str] | None = None,
) -> Iterator[TrackedRun | NullRun]:
    """The MLflow run of one refinement: experiment ``refine-<dataset kind>``, named
    ``<dataset>/<segmentor>@<checkpoint>``, params = the stage config and the flow params."""
    config = params.refine.config(ckpt.path)
    with tracked_run(
        params.report.track,
        f"refine-{params.dataset_kind}",
        run_name(params.dataset, params.segmentor, ckpt.sha),
        tags={**_tags(params.dataset, params.segmentor, ckpt), **(tags or {})},
        params={"refine": dataclasses.asdict(config), "params": params.model_dump()},
    ) as run:
        yield run


# --------------------------------------------------------------------------- COCO


def run_refine_coco(
    params: RefineCocoParams,
    ckpt: ResolvedCheckpoint,
    run: TrackedRun | NullRun,
    title: str | None = None,
) -> dict[str, Any]:
    """The body of refine-coco, inside a flow run (Dask runner configured) and an open
    MLflow run (see :func:`refine_run`)."""
    logger = get_run_logger()
    config = params.refine.config(ckpt.path)
    results, annotations = absolute(params.results), absolute(params.annotations)
    image_root, out = absolute(params.image_root), Path(absolute(params.output_dir))
    gts = [
        gt.model_copy(update={"annotations": absolute(gt.annotations)})
        for gt in params.ground_truths
    ]
    title = title or f"refine-coco {run_name(params.dataset, params.segmentor, ckpt.sha)}"
    logger.info("%s: checkpoint %s (%s)", title, ckpt.path, ckpt.source)
    inputs = {"results": results, "annotations": annotations, "image_root": image_root}
    key = coco.TASKS.key(config, params.num_shards, inputs)
    folder = run_folder(out, key)
    work, output, report_dir = folder / "work", folder / "refined.segm.json", folder / "report"
    refresh = params.refresh_cache
    shards = coco.TASKS.run_prepare(str(work), config, params.num_shards, key, inputs, refresh)
    records = coco.TASKS.run_shards(
        shards, str(work), config, key, refresh, stage="refine-coco", device=config.device
    )
    summary = coco.TASKS.run_finalize(str(work), key, {"output": str(output)}, refresh)
    logger.info("refined %d detections in %d shards", summary["refined"], len(records))

    scored = {
        "coarse": results,
        "refined": str(output),
        "ground_truths": gts,
        "image_list": annotations,
        "image_root": image_root,
    }
    table, evaluated = run_evaluation(coco.EVAL_TASKS, report_dir, params.report, scored, refresh)
    pictures = evaluated["pictures"]
    return finish_run(run, table, summary, pictures, ckpt, output, report_dir, "refine-coco", title)


def run_evaluation(
    tasks: StageTasks,
    report_dir: Path,
    report: ReportParams,
    inputs: dict[str, Any],
    refresh: bool = False,
) -> tuple[list[MetricRow], dict[str, Any]]:
    """An evaluation stage (:mod:`pipelines.evaluate_stage`) into ``report_dir``, keyed on
    its fingerprint: the table and finalize's summary (``rows``, ``csv``,
    ``pictures``).

    Prepare runs every time: the report folder is not keyed by the evaluation's inputs (a run
    folder may be scored against other ground truths), so its plan is checked against them
    and an evaluation of other inputs found there is replaced (``overwrite``)."""
    config = EvaluateConfig(**report.model_dump(exclude={"track"}))
    key, work = tasks.key(config, None, inputs), str(report_dir)
    shards = tasks.run_prepare(work, config, None, key, {**inputs, "overwrite": True}, refresh=True)
    tasks.run_shards(shards, work, config, key, refresh, stage=tasks.stage.name)
    summary = tasks.run_finalize(work, key, {}, refresh)
    return metric_rows(summary["table"]), summary


def finish_run(
    run: TrackedRun | NullRun,
    table: list[MetricRow],
    summary: dict[str, Any],
    pictures: dict[str, Any],
    ckpt: ResolvedCheckpoint,
    output: Path,
    report_dir: Path,
    stage: str,
    title: str,
) -> dict[str, Any]:
    """Write the report files, log them and the metrics to the run, publish the table to the
    Prefect UI; the flow's return value."""
    scores = summary.get("scores")
    histogram = draw_score_histogram(scores, report_dir / "refine_scores.png", summary.get("guard"))
    if histogram is not None:
        pictures = {**pictures, "scores": str(histogram)}
    run.log_metrics(score_metrics(scores))
    outcome = {
        "title": title,
        "mlflow_run_id": run.run_id,
        "checkpoint": dataclasses.asdict(ckpt),
        "output": str(output),
        "summary": summary,
        "pictures": pictures,
    }
    write_report(report_dir, table, outcome)
    log_outcome(run, table, report_dir=report_dir, output=output, summary=summary, title=title)
    publish_metrics(table, stage=stage, title=title)
    get_run_logger().info("\n%s", format_table(table, title))
    return {**outcome, "table": [r.as_dict() for r in table]}


@flow(name="refine-coco")
def refine_coco(params: RefineCocoParams = DEFAULT_COCO) -> dict[str, Any]:
    """Refine a segmentor's COCO-format instance results; mask AP and boundary AP before/after."""
    with on_cluster(params.cluster, gpu=params.refine.device.startswith("cuda")):
        ckpt = resolve_model(params.refine)
        with refine_run(params, ckpt) as run:
            return run_refine_coco(params, ckpt, run)


# --------------------------------------------------------------------------- BIG / DIS


def run_refine_hr(
    params: RefineBigParams | RefineDisParams,
    records: list[SampleRecord],
    evaluation: HREvaluation,
    ckpt: ResolvedCheckpoint,
    run: TrackedRun | NullRun,
    title: str | None = None,
) -> dict[str, Any]:
    """The body of refine-big / refine-dis for ``records`` (inside a flow run and an open
    MLflow run), scored as ``evaluation`` says."""
    logger = get_run_logger()
    config = params.refine.config(ckpt.path)
    stage = f"refine-{params.dataset_kind}"
    title = title or f"{stage} {run_name(params.dataset, params.segmentor, ckpt.sha)}"
    logger.info("%s: %d images, checkpoint %s (%s)", title, len(records), ckpt.path, ckpt.source)
    key = hr.TASKS.key(config, params.num_shards, {"records": records})
    folder = run_folder(Path(absolute(params.output_dir)), key)
    masks_dir, work, report_dir = folder / "masks", folder / "work", folder / "report"
    refresh = params.refresh_cache
    inputs = {"records": records, "out_dir": str(masks_dir)}
    shards = hr.TASKS.run_prepare(str(work), config, params.num_shards, key, inputs, refresh)
    hr.TASKS.run_shards(shards, str(work), config, key, refresh, stage=stage, device=config.device)
    summary = hr.TASKS.run_finalize(str(work), key, {}, refresh)
    scored = {"evaluation": evaluation, "pred_root": str(masks_dir), "refine_work": str(work)}
    table, evaluated = run_evaluation(hr.EVAL_TASKS, report_dir, params.report, scored, refresh)
    pictures = evaluated["pictures"]
    return finish_run(run, table, summary, pictures, ckpt, masks_dir, report_dir, stage, title)


def _refine_hr_flow(params: RefineBigParams | RefineDisParams) -> dict[str, Any]:
    with on_cluster(params.cluster, gpu=params.refine.device.startswith("cuda")):
        ckpt = resolve_model(params.refine)
        data_root = absolute(params.data_root)
        with refine_run(params, ckpt) as run:
            records = hr.list_records(params, data_root)
            evaluation = default_evaluation(params, data_root, records)
            return run_refine_hr(params, records, evaluation, ckpt, run)


@flow(name="refine-big")
def refine_big(params: RefineBigParams = DEFAULT_BIG) -> dict[str, Any]:
    """Refine BIG coarse masks with the HR model; IoU and mBA before/after."""
    return _refine_hr_flow(params)


@flow(name="refine-dis")
def refine_dis(params: RefineDisParams = DEFAULT_DIS) -> dict[str, Any]:
    """Refine DIS-5K coarse masks with the HR model; IoU and mBA per set before/after."""
    return _refine_hr_flow(params)
