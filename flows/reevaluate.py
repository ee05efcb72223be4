"""Flow ``reevaluate`` (deployed on a schedule): segmentor outputs dropped into the inbox since
the last run are refined with the champion checkpoint and scored, one MLflow run each.

Per drop (see :mod:`pipelines.inbox`): skip it when the ledger already has its content with this
checkpoint; else check it (a ``check-drop`` task named after it), refine, evaluate coarse vs
refined and log one MLflow run ``<dataset>/<segmentor>@<checkpoint>`` in the dataset's refine
experiment. The checkpoint is the registry's ``champion`` of ``segrefiner-lr`` (COCO) or
``segrefiner-hr`` (BIG/DIS), else the configured fallback file. A malformed drop fails its own
task and MLflow run (tagged ``error``), is written to the ledger as failed (not retried until
its content changes, or with ``retry_failed``) and does not stop the other drops.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from flows.checkpoints import ResolvedCheckpoint
from flows.cluster import on_cluster
from flows.params import (
    GroundTruth,
    ReevaluateParams,
    RefineBigParams,
    RefineCocoParams,
    RefineDisParams,
)
from flows.refine import refine_run, resolve_model, run_refine_coco, run_refine_hr
from flows.tasks import absolute, artifact_key
from flows.tracking import run_name, short_checkpoint, tracked_run
from pipelines.evaluate_hr import evaluation_for
from pipelines.inbox import Drop, Ledger, drop_records, find_drops
from segrefiner.data.coco import COCO_CATEGORY_IDS, load_coco_instances, load_segmentor_results
from segrefiner.data.folders import SampleRecord
from segrefiner.errors import InputError

__all__ = ["reevaluate"]

DEFAULT_REEVALUATE = ReevaluateParams()


@task(name="find-drops")
def find_drops_task(inbox: str) -> list[Drop]:
    """The drops in the inbox, with their content hashes."""
    return find_drops(inbox)


@task(name="check-drop")
def check_drop(drop: Drop, data_root: str, params: ReevaluateParams) -> list[SampleRecord] | int:
    """A COCO drop must hold usable detections (returns how many); a mask drop must pair every
    mask with a dataset image (returns the samples)."""
    if drop.dataset != "coco":
        return drop_records(drop, data_root, params.big_folder)
    images = load_coco_instances(
        Path(data_root) / params.coco_annotations, Path(data_root) / params.coco_image_root
    )
    results = load_segmentor_results(
        drop.path, images, strict=False, category_ids=COCO_CATEGORY_IDS
    )
    if results.num_detections == 0:
        reasons = "; ".join(r.reason for r in results.rejected[:3]) or "the file is empty"
        raise InputError(f"{drop.relative}: no usable detections ({reasons})")
    return results.num_detections


def _output_dir(params: ReevaluateParams, drop: Drop, ckpt: ResolvedCheckpoint) -> str:
    name = f"{drop.content[:12]}@{short_checkpoint(ckpt.sha)}"
    return str(Path(absolute(params.output_dir)) / drop.dataset / drop.segmentor / name)


def _evaluate_drop(
    drop: Drop, ckpt: ResolvedCheckpoint, params: ReevaluateParams, data_root: str
) -> dict[str, Any]:
    """Refine and score one drop inside its own MLflow run."""
    refine = params.refine.model_copy(update={"checkpoint": ckpt.path, "fallback_checkpoint": None})
    tags = {"stage": "reevaluate", "inbox.path": drop.relative, "inbox.sha256": drop.content}
    checker = check_drop.with_options(task_run_name=f"check {drop.label}")
    # what the drop's refine parameters take from the drop and from ``params``, on any dataset
    shared = {
        "dataset": drop.dataset,
        "segmentor": drop.segmentor,
        "output_dir": _output_dir(params, drop, ckpt),
        "num_shards": params.num_shards,
        "refine": refine,
        "cluster": params.cluster,
        "report": params.report,
    }
    if drop.dataset == "coco":
        root = Path(data_root)
        coco = RefineCocoParams(
            results=drop.path,
            annotations=str(root / params.coco_annotations),
            image_root=str(root / params.coco_image_root),
            ground_truths=[
                GroundTruth(name=g.name, annotations=str(root / g.annotations), api=g.api)
                for g in params.coco_ground_truths
            ],
            **shared,
        )
        with refine_run(coco, ckpt, tags) as run:
            checker(drop, data_root, params)
            return run_refine_coco(coco, ckpt, run, title=f"reevaluate {drop.label}")
    cls = RefineBigParams if drop.dataset == "big" else RefineDisParams
    hr_params = cls(data_root=data_root, **shared)
    with refine_run(hr_params, ckpt, tags) as run:
        records = checker(drop, data_root, params)
        gt_root = Path(data_root) / (params.big_folder if drop.dataset == "big" else "dis")
        evaluation = evaluation_for(drop.dataset, records, gt_root)
        return run_refine_hr(
            hr_params, records, evaluation, ckpt, run, title=f"reevaluate {drop.label}"
        )


def _checkpoint_for(dataset: str, params: ReevaluateParams) -> ResolvedCheckpoint:
    if dataset == "coco":
        spec, fallback = params.lr_checkpoint, params.fallback_lr_checkpoint
    else:
        spec, fallback = params.hr_checkpoint, params.fallback_hr_checkpoint
    update = {"checkpoint": spec, "fallback_checkpoint": fallback}
    return resolve_model(params.refine.model_copy(update=update))


@flow(name="reevaluate")
def reevaluate(params: ReevaluateParams = DEFAULT_REEVALUATE) -> dict[str, Any]:
    """Evaluate every inbox drop not yet evaluated with the current champion checkpoint."""
    logger = get_run_logger()
    with on_cluster(params.cluster, gpu=params.refine.device.startswith("cuda")):
        data_root = absolute(params.data_root)
        ledger = Ledger(absolute(params.ledger))
        drops = find_drops_task(absolute(params.inbox))
        checkpoints: dict[str, ResolvedCheckpoint | Exception] = {}
        outcome: dict[str, list[dict[str, Any]]] = {"evaluated": [], "skipped": [], "failed": []}
        for drop in drops:
            kind = "lr" if drop.dataset == "coco" else "hr"
            if kind not in checkpoints:
                try:
                    checkpoints[kind] = _checkpoint_for(drop.dataset, params)
                except (FileNotFoundError, InputError) as exc:
                    checkpoints[kind] = exc
            ckpt = checkpoints[kind]
            item: dict[str, Any] = {"drop": drop.label, "path": drop.relative}
            if isinstance(ckpt, Exception):
                # No checkpoint at all: a FAILED run says so; the ledger stays open for later.
                item["error"] = f"no {kind.upper()} checkpoint: {ckpt}"
                logger.error("%s: %s", drop.label, item["error"])
                try:
                    with tracked_run(
                        params.report.track,
                        f"refine-{drop.dataset}",
                        run_name(drop.dataset, drop.segmentor, None),
                        tags={"stage": "reevaluate", "inbox.path": drop.relative},
                    ):
                        raise ckpt
                except Exception:
                    pass
                outcome["failed"].append(item)
                continue
            item["checkpoint"] = ckpt.sha
            seen = ledger.done(drop.content, ckpt.sha, retry_failed=params.retry_failed)
            if seen:
                logger.info(
                    "%s: evaluated before (%s, %s)", drop.label, seen["status"], seen["time"]
                )
                outcome["skipped"].append({**item, "status": seen["status"]})
                continue
            try:
                result = _evaluate_drop(drop, ckpt, params, data_root)
            except Exception as exc:  # reported per drop; the other drops go on
                item["error"] = f"{type(exc).__name__}: {exc}"
                logger.error("%s: failed: %s", drop.label, item["error"])
                ledger.record(drop, ckpt.sha, "failed", error=item["error"])
                outcome["failed"].append(item)
                continue
            item.update(mlflow_run_id=result["mlflow_run_id"], output=result["output"])
            item["metrics"] = {r["key"]: r["refined"] for r in result["table"][:4]}
            ledger.record(drop, ckpt.sha, "ok", mlflow_run_id=result["mlflow_run_id"])
            outcome["evaluated"].append(item)
        rows = [
            {"drop": i["drop"], "status": status, "detail": i.get("error") or i.get("mlflow_run_id")}
            for status in ("evaluated", "failed", "skipped")
            for i in outcome[status]
        ]  # fmt: skip
        if rows:
            create_table_artifact(
                rows, key=artifact_key("reevaluate", "drops"), description="inbox drops this run"
            )
        logger.info("reevaluate: %s", ", ".join(f"{len(v)} {k}" for k, v in outcome.items()))
        return outcome
