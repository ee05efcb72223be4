"""Stages ``evaluate-coco`` and ``evaluate-hr``: coarse vs refined outputs scored in shards (the
:class:`~pipelines.stage.Stage` contract), so that evaluation runs on the cluster, resumes and
is cached like the refinement stages, and the flows only wire it.

The work folder is the report folder::

    .evaluate/plan.json             what the shards score: inputs, units, fingerprint, config
    .evaluate/shards/<shard>.json   one shard's table rows and per-item rows (its completion
                                    record, written atomically)
    .evaluate/report.json           finalize's summary, with the fingerprint and config it is of
    per_instance.csv (COCO) | per_image.csv (BIG/DIS), before_after.png, gallery.png

``evaluate-coco``: one shard per ground truth, its AP table rows
(:func:`pipelines.evaluate_coco.ap_table`), and one shard for the per-detection rows against the
first ground truth (:func:`pipelines.evaluate_coco.instance_rows`). ``evaluate-hr``: one shard
per scored folder (:func:`pipelines.evaluate_hr.score_folder` and
:func:`pipelines.evaluate_hr.folder_results`, with the refinement scores of the HR stage's
manifest when its work folder is given). The shard count is the number of these units.

The plan holds a fingerprint of the inputs' contents (:func:`coco_content_key`,
:func:`hr_content_key`): preparing a folder that holds the evaluation of other inputs is
refused, or with ``overwrite`` that evaluation is dropped; the same inputs resume (a record is
what a re-run would compute). Each record names the fingerprint it was made for, and finalize
takes the records in plan order, whatever order the shards ran in. The config only shapes the
pictures, so a new one keeps the records and redraws.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipelines.config import EvaluateConfig
from pipelines.evaluate_coco import ap_table, draw_coco_report, instance_rows
from pipelines.evaluate_hr import (
    FolderSet,
    HREvaluation,
    draw_hr_report,
    folder_results,
    manifest_scores,
    score_folder,
)
from pipelines.fingerprint import content_key, path_sha256, plain
from pipelines.reports import MetricRow, write_csv
from pipelines.sharding import Shard, plan_shards
from pipelines.stage import Stage
from segrefiner.errors import InputError
from segrefiner.io import read_json, write_json

__all__ = [
    "EVALUATE_COCO",
    "EVALUATE_HR",
    "coco_content_key",
    "finalize_evaluate_coco",
    "finalize_evaluate_hr",
    "hr_content_key",
    "prepare_evaluate_coco",
    "prepare_evaluate_hr",
    "run_evaluate_coco_shard",
    "run_evaluate_hr_shard",
]

EVALUATE_COCO_NAME = "evaluate-coco"
EVALUATE_HR_NAME = "evaluate-hr"
STATE = ".evaluate"  # the stages' own files, beside the report

Scorer = Callable[[dict[str, Any], dict[str, Any]], tuple[list[MetricRow], list[dict[str, Any]]]]


# --------------------------------------------------------------------------- the folder


def _state(work: str | os.PathLike) -> Path:
    return Path(work) / STATE


def _plan_path(work: str | os.PathLike) -> Path:
    return _state(work) / "plan.json"


def _record_path(work: str | os.PathLike, shard: Shard) -> Path:
    return _state(work) / "shards" / f"{shard.name}.json"


def _report_path(work: str | os.PathLike) -> Path:
    return _state(work) / "report.json"


def _read_plan(work: str | os.PathLike, stage: str) -> dict[str, Any]:
    path = _plan_path(work)
    plan = read_json(path)  # names the file when the folder was never prepared
    if plan.get("stage") != stage:
        raise InputError(f"{path}: plans {plan.get('stage')!r}, not {stage!r}")
    return plan


def _planned(work: str | os.PathLike, stage: str) -> bool:
    path = _plan_path(work)
    return path.is_file() and read_json(path).get("stage") == stage


def _plan(
    work_dir: str | os.PathLike,
    stage: str,
    fingerprint: str,
    config: EvaluateConfig,
    inputs: dict[str, Any],
    units: list[dict[str, Any]],
    overwrite: bool,
) -> list[Shard]:
    """Write the plan (one shard per unit) after checking the folder holds no evaluation of
    other inputs; with ``overwrite`` such an evaluation's records are dropped first."""
    work = Path(work_dir)
    path = _plan_path(work)
    if path.is_file():
        old = read_json(path)
        if (old.get("stage"), old.get("fingerprint")) != (stage, fingerprint):
            if not overwrite:
                raise InputError(
                    f"{work}: holds the {old.get('stage')} evaluation of other inputs; use "
                    "another folder or overwrite"
                )
            shutil.rmtree(_state(work))
    shards = plan_shards(len(units), max(len(units), 1))
    write_json(
        path,
        {
            "stage": stage,
            "fingerprint": fingerprint,
            "config": dataclasses.asdict(config),
            "inputs": inputs,
            "units": units,
            "shards": [dataclasses.asdict(s) for s in shards],
        },
    )
    return shards


def _record(work: str | os.PathLike, shard: Shard, plan: dict[str, Any]) -> dict[str, Any] | None:
    """The shard's record when it was made for this plan (a shard still running when the
    folder was re-planned may write one for the old inputs) and covers the same units."""
    path = _record_path(work, shard)
    if not path.is_file():
        return None
    record = read_json(path)
    same = (record.get("fingerprint"), record.get("start"), record.get("stop"))
    return record if same == (plan["fingerprint"], shard.start, shard.stop) else None


def _shard_done(work: str | os.PathLike, shard: Shard, stage: str) -> bool:
    return _planned(work, stage) and _record(work, shard, _read_plan(work, stage)) is not None


def _run_shard(
    work_dir: str | os.PathLike, shard: Shard, stage: str, score: Scorer
) -> dict[str, Any]:
    """Score the shard's units and write its record; a shard with a record is skipped.
    Returns counts only (the rows stay on disk)."""
    started = time.perf_counter()
    plan = _read_plan(work_dir, stage)
    done = _record(work_dir, shard, plan)
    if done is None:
        table: list[MetricRow] = []
        rows: list[dict[str, Any]] = []
        for unit in plan["units"][shard.start : shard.stop]:
            unit_table, unit_rows = score(plan["inputs"], unit)
            table += unit_table
            rows += unit_rows
        done = {
            "stage": stage,
            "fingerprint": plan["fingerprint"],
            "shard": shard.index,
            "start": shard.start,
            "stop": shard.stop,
            "table": [dataclasses.asdict(r) for r in table],
            "rows": [_plain_row(r) for r in rows],
            "seconds": round(time.perf_counter() - started, 3),
        }
        write_json(_record_path(work_dir, shard), done)
        skipped = False
    else:
        skipped = True
    return {
        "shard": shard.index,
        "table_rows": len(done["table"]),
        "rows": len(done["rows"]),
        "seconds": done["seconds"],
        "skipped": skipped,
    }


def _plain_row(row: dict[str, Any]) -> dict[str, Any]:
    """A per-item row with numpy scalars as Python numbers (JSON records)."""
    return {k: v.item() if hasattr(v, "item") else v for k, v in row.items()}


def _gather(
    work: str | os.PathLike, stage: str
) -> tuple[dict[str, Any], list[MetricRow], list[dict[str, Any]]]:
    """The plan, and the table and rows of every record in plan order."""
    plan = _read_plan(work, stage)
    shards = [Shard(**s) for s in plan["shards"]]
    records = [_record(work, s, plan) for s in shards]
    missing = [s.index for s, r in zip(shards, records) if r is None]
    if missing:
        raise InputError(
            f"{work}: {stage} shards {missing} are not complete; run the stage again to finish them"
        )
    table = [MetricRow(**row) for r in records for row in r["table"]]  # type: ignore[index]
    rows = [row for r in records for row in r["rows"]]  # type: ignore[index]
    return plan, table, rows


def _finish(
    work: str | os.PathLike,
    plan: dict[str, Any],
    table: list[MetricRow],
    rows: list[dict[str, Any]],
    csv: Path,
    pictures: dict[str, str | None],
) -> dict[str, Any]:
    """The summary, also written beside the records for :func:`_finalized`."""
    summary = {
        "table": [r.as_dict() for r in table],
        "rows": len(rows),
        "csv": str(csv),
        "pictures": pictures,
    }
    report = {"fingerprint": plan["fingerprint"], "config": plan["config"], "summary": summary}
    write_json(_report_path(work), report)
    return summary


def _finalized(work: str | os.PathLike, stage: str) -> bool:
    """The report of the planned inputs and config is there, with its CSV and pictures."""
    if not _planned(work, stage) or not _report_path(work).is_file():
        return False
    plan, report = _read_plan(work, stage), read_json(_report_path(work))
    if (report.get("fingerprint"), report.get("config")) != (plan["fingerprint"], plan["config"]):
        return False
    summary = report["summary"]
    files = [summary["csv"], *(p for p in summary["pictures"].values() if p)]
    return all(Path(f).is_file() for f in files)


# --------------------------------------------------------------------------- evaluate-coco


def _truth(ground_truth: Any) -> dict[str, str]:
    """A ground truth (a mapping or an object with these fields) as name, annotations, api."""
    fields = plain(ground_truth)
    if not isinstance(fields, Mapping):
        fields = {k: getattr(ground_truth, k) for k in ("name", "annotations", "api")}
    return {
        "name": str(fields["name"]),
        "annotations": os.fspath(fields["annotations"]),
        "api": str(fields.get("api", "coco")),
    }


def coco_content_key(
    config: EvaluateConfig | None,
    *,
    coarse: str | os.PathLike,
    refined: str | os.PathLike,
    ground_truths: Sequence[Any],
    image_list: str | os.PathLike,
    image_root: str | os.PathLike,
) -> str:
    """What a COCO evaluation depends on: the files' contents, the ground truths' names and
    APIs, the image root and ``config`` (``None``: the scores only, the plan's fingerprint)."""
    truths = [_truth(gt) for gt in ground_truths]
    files = {"coarse": coarse, "refined": refined, "image_list": image_list}
    files |= {f"gt{i}": t["annotations"] for i, t in enumerate(truths)}
    return content_key(
        files=files,
        config=config,
        ground_truths=[(t["name"], t["api"]) for t in truths],
        image_root=str(Path(image_root).resolve()),
    )


def prepare_evaluate_coco(
    *,
    work_dir: str | os.PathLike,
    config: EvaluateConfig,
    coarse: str | os.PathLike,
    refined: str | os.PathLike,
    ground_truths: Sequence[Any],
    image_list: str | os.PathLike,
    image_root: str | os.PathLike,
    num_shards: int | None = None,
    overwrite: bool = False,
) -> list[Shard]:
    """Plan the evaluation of ``coarse`` vs ``refined`` (COCO results files) against
    ``ground_truths`` (name, annotations, api), detections read with the images of
    ``image_list`` under ``image_root``. ``num_shards`` is ignored: one shard per unit."""
    truths = [_truth(gt) for gt in ground_truths]
    inputs = {
        "coarse": os.fspath(coarse),
        "refined": os.fspath(refined),
        "ground_truths": truths,
        "image_list": os.fspath(image_list),
        "image_root": os.fspath(image_root),
    }
    units = [{"kind": "ap", "gt": i} for i in range(len(truths))]
    units += [{"kind": "rows", "gt": 0}] if truths else []
    fingerprint = coco_content_key(None, **inputs)
    return _plan(work_dir, EVALUATE_COCO_NAME, fingerprint, config, inputs, units, overwrite)


def _score_coco(
    inputs: dict[str, Any], unit: dict[str, Any]
) -> tuple[list[MetricRow], list[dict[str, Any]]]:
    truth = inputs["ground_truths"][unit["gt"]]
    coarse, refined = inputs["coarse"], inputs["refined"]
    if unit["kind"] == "ap":
        return ap_table(truth["annotations"], truth["api"], truth["name"], coarse, refined), []
    rows = instance_rows(
        truth["annotations"], inputs["image_list"], inputs["image_root"], coarse, refined
    )
    return [], rows


def run_evaluate_coco_shard(
    work_dir: str | os.PathLike, config: EvaluateConfig, shard: Shard
) -> dict[str, Any]:
    """One shard of evaluate-coco (see :func:`prepare_evaluate_coco`); a done shard is skipped."""
    return _run_shard(work_dir, shard, EVALUATE_COCO_NAME, _score_coco)


def finalize_evaluate_coco(work_dir: str | os.PathLike) -> dict[str, Any]:
    """``per_instance.csv``, ``before_after.png`` and ``gallery.png`` (none without ground
    truths) from the records; the summary: ``table`` (rows as dicts), ``rows`` (per-detection
    row count), ``csv`` and ``pictures`` (PNG paths)."""
    plan, table, rows = _gather(work_dir, EVALUATE_COCO_NAME)
    inputs, config = plan["inputs"], EvaluateConfig(**plan["config"])
    csv = write_csv(rows, Path(work_dir) / "per_instance.csv")
    pictures: dict[str, str | None] = {}
    if inputs["ground_truths"]:
        pictures = draw_coco_report(
            rows, table, inputs["ground_truths"][0]["annotations"], inputs["image_list"],
            inputs["image_root"], inputs["coarse"], inputs["refined"], work_dir,
            config.gallery_size, config.gallery_sort,
        )  # fmt: skip
    return _finish(work_dir, plan, table, rows, csv, pictures)


# --------------------------------------------------------------------------- evaluate-hr


def _evaluation(data: dict[str, Any]) -> HREvaluation:
    """An :class:`HREvaluation` back from its plan entry."""
    sets = tuple(FolderSet(**{**s, "names": tuple(s["names"])}) for s in data["sets"])
    return HREvaluation(data["naming"], sets)


def hr_content_key(
    config: EvaluateConfig | None,
    *,
    evaluation: HREvaluation,
    pred_root: str | os.PathLike,
    refine_work: str | os.PathLike | None = None,
) -> str:
    """What a BIG/DIS evaluation depends on: the masks under every set's ground-truth, coarse
    and refined folders, the HR stage's manifest (the refinement scores), the evaluation and
    ``config`` (``None``: the scores only, the plan's fingerprint). A folder shared by several
    roles (BIG keeps ground truths and coarse masks together) is hashed once."""
    roles: dict[str, Path] = {}
    for i, folder in enumerate(evaluation.sets):
        roles[f"{i}/gt"] = Path(folder.gt_dir)
        roles[f"{i}/coarse"] = Path(folder.coarse_dir)
        roles[f"{i}/refined"] = Path(pred_root) / folder.pred_subdir
    if refine_work is not None:
        roles["manifest"] = Path(refine_work) / "manifest.json"
    hashes: dict[Path, str | None] = {}
    for path in roles.values():
        if path.resolve() not in hashes:
            hashes[path.resolve()] = path_sha256(path) if path.exists() else None
    return content_key(
        config=config,
        digests={role: hashes[path.resolve()] for role, path in roles.items()},
        evaluation=evaluation,
        pred_root=str(Path(pred_root).resolve()),
    )


def prepare_evaluate_hr(
    *,
    work_dir: str | os.PathLike,
    config: EvaluateConfig,
    evaluation: HREvaluation,
    pred_root: str | os.PathLike,
    refine_work: str | os.PathLike | None = None,
    num_shards: int | None = None,
    overwrite: bool = False,
) -> list[Shard]:
    """Plan the evaluation of the refined masks under ``pred_root`` as ``evaluation`` says;
    ``refine_work``: the HR stage's work folder, whose manifest gives each per-image row its
    ``refine_score``. ``num_shards`` is ignored: one shard per scored folder."""
    inputs = {
        "evaluation": dataclasses.asdict(evaluation),
        "pred_root": os.fspath(pred_root),
        "refine_work": None if refine_work is None else os.fspath(refine_work),
    }
    units = [{"set": i, "name": s.name} for i, s in enumerate(evaluation.sets)]
    fingerprint = hr_content_key(
        None, evaluation=evaluation, pred_root=pred_root, refine_work=refine_work
    )
    return _plan(work_dir, EVALUATE_HR_NAME, fingerprint, config, inputs, units, overwrite)


def _score_hr(
    inputs: dict[str, Any], unit: dict[str, Any]
) -> tuple[list[MetricRow], list[dict[str, Any]]]:
    evaluation = _evaluation(inputs["evaluation"])
    folder, pred_root = evaluation.sets[unit["set"]], inputs["pred_root"]
    report = score_folder(folder, evaluation.naming, pred_root)
    scores = manifest_scores(inputs["refine_work"])
    return folder_results(evaluation, folder, report, pred_root, scores)


def run_evaluate_hr_shard(
    work_dir: str | os.PathLike, config: EvaluateConfig, shard: Shard
) -> dict[str, Any]:
    """One shard of evaluate-hr (see :func:`prepare_evaluate_hr`); a done shard is skipped."""
    return _run_shard(work_dir, shard, EVALUATE_HR_NAME, _score_hr)


def finalize_evaluate_hr(work_dir: str | os.PathLike) -> dict[str, Any]:
    """``per_image.csv``, ``before_after.png`` and ``gallery.png`` from the records; the
    summary as :func:`finalize_evaluate_coco` (``rows``: per-image rows)."""
    plan, table, rows = _gather(work_dir, EVALUATE_HR_NAME)
    inputs, config = plan["inputs"], EvaluateConfig(**plan["config"])
    csv = write_csv(rows, Path(work_dir) / "per_image.csv")
    pictures = draw_hr_report(
        rows, table, _evaluation(inputs["evaluation"]), inputs["pred_root"], work_dir,
        config.gallery_size, config.gallery_sort,
    )  # fmt: skip
    return _finish(work_dir, plan, table, rows, csv, pictures)


# --------------------------------------------------------------------------- the stages


def _evaluation_stage(
    name: str, prepare: Any, run_shard: Any, finalize: Any, key: Callable[..., str]
) -> Stage:
    # The stage contract (pipelines.stage); the work folder is the report folder, no outputs.
    return Stage(
        name, prepare, run_shard, finalize, functools.partial(_planned, stage=name),
        functools.partial(_shard_done, stage=name), functools.partial(_finalized, stage=name),
        functools.partial(_fingerprint, key),
    )  # fmt: skip


def _fingerprint(key: Callable[..., str], config: Any, num_shards: Any, **inputs: Any) -> str:
    # the stage contract's fingerprint: the content key with the config (shards: one per unit)
    inputs.pop("overwrite", None)
    return key(config, **inputs)


EVALUATE_COCO = _evaluation_stage(
    EVALUATE_COCO_NAME, prepare_evaluate_coco, run_evaluate_coco_shard, finalize_evaluate_coco,
    coco_content_key,
)  # fmt: skip
EVALUATE_HR = _evaluation_stage(
    EVALUATE_HR_NAME, prepare_evaluate_hr, run_evaluate_hr_shard, finalize_evaluate_hr,
    hr_content_key,
)  # fmt: skip
