"""The evaluation stages (evaluate-coco, evaluate-hr) run as any stage is run (prepare, every
shard, finalize): their table is the metric functions' table on the same files, a shard with a
record is not scored again, the order the shards run in changes nothing, and a folder holding
the evaluation of other inputs is refused (or, with overwrite, replaced)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines import evaluate_stage
from pipelines.config import EvaluateConfig
from pipelines.evaluate_coco import ap_table, instance_rows
from pipelines.evaluate_hr import (
    HREvaluation,
    evaluation_for,
    folder_results,
    manifest_scores,
    score_folder,
)
from pipelines.evaluate_stage import EVALUATE_COCO, EVALUATE_HR
from pipelines.reports import write_csv
from pipelines.stage import Stage
from segrefiner.errors import InputError
from segrefiner.io import read_mask, write_mask

CONFIG = EvaluateConfig(gallery_size=2)


def run(
    stage: Stage,
    work: Path,
    inputs: dict[str, Any],
    *,
    config: EvaluateConfig = CONFIG,
    order: Sequence[int] | None = None,
    overwrite: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The stage end to end in this process, as pipelines.refine.run_stage runs one, with the
    shards in ``order``: finalize's summary and the shards' records."""
    shards = stage.prepare(
        work_dir=work, config=config, num_shards=None, overwrite=overwrite, **inputs
    )
    chosen = shards if order is None else [shards[i] for i in order]
    records = [stage.run_shard(str(work), config, shard) for shard in chosen]
    return stage.finalize(work), records


@pytest.fixture(scope="module")
def coco_inputs(demo_ci: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two demo images' detections, refined by the random tiny network; LVIS and COCO."""
    import json

    from pipelines.config import RefineConfig
    from pipelines.refine_coco import refine_coco

    folder = tmp_path_factory.mktemp("evaluate-coco")
    results = json.loads((demo_ci / "results" / "segmentor_val.segm.json").read_text())
    keep = sorted({r["image_id"] for r in results})[:2]
    coarse = folder / "coarse.segm.json"
    coarse.write_text(json.dumps([r for r in results if r["image_id"] in keep]))
    image_list = demo_ci / "coco/annotations/instances_val2017.json"
    image_root = demo_ci / "coco/val2017"
    refined = folder / "refined.segm.json"
    refine_coco(coarse, image_list, image_root, refined, RefineConfig("tiny", model_size=32))
    return {
        "coarse": str(coarse),
        "refined": str(refined),
        "ground_truths": [
            {
                "name": "lvis",
                "annotations": str(demo_ci / "lvis/annotations/lvis_v1_val_cocofied.json"),
                "api": "lvis",
            },
            {"name": "coco", "annotations": str(image_list), "api": "coco"},
        ],
        "image_list": str(image_list),
        "image_root": str(image_root),
    }


@pytest.fixture(scope="module")
def dis_inputs(demo_ci: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The demo's two DIS sets refined by the random tiny network, with the stage's manifest."""
    from pipelines.config import RefineConfig
    from pipelines.refine_hr import list_samples, refine_hr

    out = tmp_path_factory.mktemp("evaluate-hr") / "masks"
    records = list_samples("dis", demo_ci, sets=("DIS-TE1", "DIS-VD"), segmentor="isnet")
    refine_hr(records, out, RefineConfig("tiny", model_size=32, seed=1, batch_size=4))
    evaluation = evaluation_for("dis", records, demo_ci / "dis")
    assert len(evaluation.sets) == 2
    return {"evaluation": evaluation, "pred_root": str(out), "refine_work": str(out / ".work")}


def _csv(rows: list[dict[str, Any]], path: Path) -> bytes:
    return write_csv(rows, path).read_bytes()


# --------------------------------------------------------------------------- the numbers


def test_coco_table_and_rows_are_the_metric_functions(coco_inputs, tmp_path) -> None:
    summary, records = run(EVALUATE_COCO, tmp_path / "report", coco_inputs)

    inputs, truths = coco_inputs, coco_inputs["ground_truths"]
    want = [
        row.as_dict()
        for gt in truths
        for row in ap_table(
            gt["annotations"], gt["api"], gt["name"], inputs["coarse"], inputs["refined"]
        )
    ]
    assert summary["table"] == want
    assert {"lvis_mask_AP", "coco_boundary_AP"} <= {r["key"] for r in summary["table"]}
    rows = instance_rows(
        truths[0]["annotations"],
        inputs["image_list"],
        inputs["image_root"],
        inputs["coarse"],
        inputs["refined"],
    )
    assert summary["rows"] == len(rows) > 0
    report = tmp_path / "report"
    assert (report / "per_instance.csv").read_bytes() == _csv(rows, tmp_path / "want.csv")
    assert len(records) == len(truths) + 1  # one per ground truth, one for the rows
    assert not any(r["skipped"] for r in records)
    for name in ("before_after.png", "gallery.png"):
        assert (report / name).is_file()
    assert summary["pictures"]["gallery"] == str(report / "gallery.png")
    assert EVALUATE_COCO.finalized(report)


def test_coco_without_ground_truths_writes_an_empty_report(coco_inputs, tmp_path) -> None:
    summary, records = run(EVALUATE_COCO, tmp_path, {**coco_inputs, "ground_truths": []})
    assert records == [] and summary["table"] == [] and summary["pictures"] == {}
    assert (tmp_path / "per_instance.csv").read_text().strip() == "name"


def test_hr_table_and_rows_are_score_folder(dis_inputs, tmp_path) -> None:
    summary, records = run(EVALUATE_HR, tmp_path / "report", dis_inputs)

    evaluation: HREvaluation = dis_inputs["evaluation"]
    pred_root = dis_inputs["pred_root"]
    scores = manifest_scores(dis_inputs["refine_work"])
    table, rows = [], []
    for folder in evaluation.sets:
        report = score_folder(folder, evaluation.naming, pred_root)
        folder_table, folder_rows = folder_results(evaluation, folder, report, pred_root, scores)
        table += folder_table
        rows += folder_rows
    assert summary["table"] == [r.as_dict() for r in table]
    assert {"DIS-TE1_iou", "DIS-VD_mba"} <= {r["key"] for r in summary["table"]}
    assert summary["rows"] == len(rows) > 0
    assert all(r["refine_score"] is not None for r in rows)  # joined from the manifest
    csv = tmp_path / "report" / "per_image.csv"
    assert csv.read_bytes() == _csv(rows, tmp_path / "want.csv")
    assert len(records) == 2
    assert (tmp_path / "report" / "before_after.png").is_file()
    assert EVALUATE_HR.finalized(tmp_path / "report")


# --------------------------------------------------------------------------- resume and order


def test_done_shards_are_not_scored_again(coco_inputs, tmp_path, monkeypatch) -> None:
    work = tmp_path / "report"
    first, _ = run(EVALUATE_COCO, work, coco_inputs)
    shards = EVALUATE_COCO.prepare(work_dir=work, config=CONFIG, **coco_inputs)
    assert all(EVALUATE_COCO.shard_done(work, s) for s in shards)

    calls: list[str] = []

    def counted(name: str, real: Any) -> Any:
        def wrapper(*args: Any) -> Any:
            calls.append(name)
            return real(*args)

        return wrapper

    monkeypatch.setattr(evaluate_stage, "ap_table", counted("ap", ap_table))
    monkeypatch.setattr(evaluate_stage, "instance_rows", counted("rows", instance_rows))
    again, records = run(EVALUATE_COCO, work, coco_inputs)
    assert calls == [] and all(r["skipped"] for r in records)
    assert again == first

    # a lost record: only its shard is scored again
    (work / ".evaluate" / "shards" / f"{shards[1].name}.json").unlink()
    assert not EVALUATE_COCO.shard_done(work, shards[1])
    again, records = run(EVALUATE_COCO, work, coco_inputs)
    assert calls == ["ap"] and [r["skipped"] for r in records] == [True, False, True]
    assert again == first

    # another gallery keeps the records and redraws
    assert EVALUATE_COCO.finalized(work)
    other = EvaluateConfig(gallery_size=1, gallery_sort="score")
    EVALUATE_COCO.prepare(work_dir=work, config=other, **coco_inputs)
    assert not EVALUATE_COCO.finalized(work)
    assert all(EVALUATE_COCO.shard_done(work, s) for s in shards)
    again, _ = run(EVALUATE_COCO, work, coco_inputs, config=other)
    assert again["table"] == first["table"] and EVALUATE_COCO.finalized(work)


def test_unfinished_shards_stop_finalize(coco_inputs, tmp_path) -> None:
    shards = EVALUATE_COCO.prepare(work_dir=tmp_path, config=CONFIG, **coco_inputs)
    EVALUATE_COCO.run_shard(str(tmp_path), CONFIG, shards[0])
    with pytest.raises(InputError, match=r"shards \[1, 2\] are not complete"):
        EVALUATE_COCO.finalize(tmp_path)
    assert not EVALUATE_COCO.finalized(tmp_path)


@pytest.mark.parametrize("stage_name", ["coco", "hr"])
def test_shard_order_does_not_matter(stage_name, coco_inputs, dis_inputs, tmp_path) -> None:
    stage, inputs = (
        (EVALUATE_COCO, coco_inputs) if stage_name == "coco" else (EVALUATE_HR, dis_inputs)
    )
    forward, _ = run(stage, tmp_path / "forward", inputs)
    count = len(stage.prepare(work_dir=tmp_path / "forward", config=CONFIG, **inputs))
    backward, _ = run(stage, tmp_path / "backward", inputs, order=range(count)[::-1])

    def same(summary: dict[str, Any]) -> dict[str, Any]:  # without the folder's own paths
        return {k: v for k, v in summary.items() if k not in ("csv", "pictures")}

    assert same(backward) == same(forward)
    csv = Path(forward["csv"]).name
    assert (tmp_path / "backward" / csv).read_bytes() == (tmp_path / "forward" / csv).read_bytes()


# --------------------------------------------------------------------------- other inputs


def test_other_coco_inputs_are_refused_or_replaced(coco_inputs, tmp_path) -> None:
    work = tmp_path / "report"
    both, _ = run(EVALUATE_COCO, work, coco_inputs)
    coco_only = {**coco_inputs, "ground_truths": coco_inputs["ground_truths"][1:]}
    with pytest.raises(InputError, match="evaluation of other inputs"):
        EVALUATE_COCO.prepare(work_dir=work, config=CONFIG, **coco_only)
    swapped = {**coco_inputs, "coarse": coco_inputs["refined"], "refined": coco_inputs["coarse"]}
    with pytest.raises(InputError, match="evaluation of other inputs"):
        EVALUATE_COCO.prepare(work_dir=work, config=CONFIG, **swapped)
    with pytest.raises(InputError, match="evaluation of other inputs"):
        EVALUATE_HR.prepare(
            work_dir=work,
            config=CONFIG,
            evaluation=HREvaluation("plain", ()),
            pred_root=str(tmp_path),
        )
    assert EVALUATE_COCO.finalized(work)  # refused: nothing was touched

    replaced, records = run(EVALUATE_COCO, work, coco_only, overwrite=True)
    assert not any(r["skipped"] for r in records)  # the old records were dropped
    keys = {r["key"] for r in replaced["table"]}
    assert keys and all(k.startswith("coco_") for k in keys)
    assert replaced["table"] == [r for r in both["table"] if r["key"].startswith("coco_")]


def test_changed_masks_are_other_inputs(dis_inputs, tmp_path) -> None:
    """The HR fingerprint is of the masks' contents, not their paths."""
    pred_root = tmp_path / "masks"
    shutil.copytree(dis_inputs["pred_root"], pred_root)
    inputs = {**dis_inputs, "pred_root": str(pred_root)}
    run(EVALUATE_HR, tmp_path / "report", inputs)
    EVALUATE_HR.prepare(work_dir=tmp_path / "report", config=CONFIG, **inputs)  # same: resumes

    mask_path = next(pred_root.glob("DIS-VD/*.png"))
    mask = read_mask(mask_path)
    write_mask(mask_path, np.logical_not(mask))
    with pytest.raises(InputError, match="evaluation of other inputs"):
        EVALUATE_HR.prepare(work_dir=tmp_path / "report", config=CONFIG, **inputs)


def test_config_is_checked() -> None:
    with pytest.raises(InputError, match="gallery_sort"):
        EvaluateConfig(gallery_sort="random")
    with pytest.raises(InputError, match="gallery_size"):
        EvaluateConfig(gallery_size=-1)
