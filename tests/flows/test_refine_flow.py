"""refine-coco end to end on two demo images: shards on Dask, evaluation, report, MLflow run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from flows.params import (
    ClusterParams,
    GroundTruth,
    RefineCocoParams,
    RefineParams,
    ReportParams,
)

# The random `tiny` network at 32 px: the wiring is under test, not the model.
TINY = RefineParams(checkpoint="tiny", model_size=32, batch_size=8)
THREADS = ClusterParams(n_workers=1, processes=False)


def coco_params(demo: Path, results: Path, out: Path, **changes) -> RefineCocoParams:
    return RefineCocoParams(
        dataset="coco-demo",
        segmentor="demo",
        results=str(results),
        annotations=str(demo / "coco/annotations/instances_val2017.json"),
        image_root=str(demo / "coco/val2017"),
        ground_truths=[
            GroundTruth(
                name="lvis",
                annotations=str(demo / "lvis/annotations/lvis_v1_val_cocofied.json"),
                api="lvis",
            ),
            GroundTruth(
                name="coco", annotations=str(demo / "coco/annotations/instances_val2017.json")
            ),
        ],
        output_dir=str(out),
        num_shards=2,
        refine=TINY,
        cluster=THREADS,
        report=ReportParams(gallery_size=3),
        **changes,
    )


@pytest.mark.usefixtures("prefect_server")
def test_refine_coco_end_to_end(demo_ci, coco_two_images, mlflow_store, tmp_path):
    from mlflow import MlflowClient

    from flows.refine import refine_coco

    out = tmp_path / "out"
    result = refine_coco(coco_params(demo_ci, coco_two_images, out))

    assert Path(result["output"]).parent == (out / "latest").resolve()
    refined = json.loads((out / "latest/refined.segm.json").read_text())
    coarse = json.loads(coco_two_images.read_text())
    assert len(refined) == len(coarse)
    assert [r["image_id"] for r in refined] == [r["image_id"] for r in coarse]
    keys = {row["key"] for row in result["table"]}
    assert {"lvis_mask_AP", "lvis_boundary_AP", "coco_mask_APl", "coco_boundary_APs"} <= keys
    assert result["summary"]["shards"] == 2
    # the table's numbers are the metric functions' numbers on the same files
    from segrefiner.metrics import instance_ap

    table = {row["key"]: row for row in result["table"]}
    lvis = str(demo_ci / "lvis/annotations/lvis_v1_val_cocofied.json")
    coco = str(demo_ci / "coco/annotations/instances_val2017.json")
    for variant, path in (
        ("coarse", coco_two_images),
        ("refined", out / "latest/refined.segm.json"),
    ):
        want = instance_ap(lvis, str(path), "segm", "lvis", strict=False)["AP"]
        assert table["lvis_mask_AP"][variant] == pytest.approx(want), variant
        want = instance_ap(coco, str(path), "boundary", strict=False)["AP"]
        assert table["coco_boundary_AP"][variant] == pytest.approx(want), variant
    report = out / "latest/report"
    for name in (
        "metrics.json",
        "metrics.md",
        "per_instance.csv",
        "before_after.png",
        "gallery.png",
    ):
        assert (report / name).is_file(), name

    client = MlflowClient(mlflow_store)
    run = client.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.run_name.startswith("coco-demo/demo@")
    assert run.data.tags["dataset"] == "coco-demo"
    assert run.data.tags["checkpoint.sha256"] == "preset:tiny"
    assert run.data.tags["prefect.flow_run_id"]
    assert run.data.params["refine.model_size"] == "32"
    for key in ("coarse/lvis_mask_AP", "refined/lvis_mask_AP", "delta/lvis_boundary_AP"):
        assert key in run.data.metrics, key
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert {"report/gallery.png", "report/before_after.png", "report/per_instance.csv"} <= artifacts
    assert not any("/." in path for path in artifacts)  # the evaluation's own state stays local
    assert [a.path for a in client.list_artifacts(run.info.run_id, "refined")] == [
        "refined/refined.segm.json"
    ]
    # the refinement scores: in the results file, the per-instance rows, the histogram and
    # the run's metrics, which agree with the file
    scores = [r["refine_score"] for r in refined if "refine_score" in r]
    assert scores and result["summary"]["scores"]["count"] == len(scores)
    assert run.data.metrics["score/count"] == len(scores)
    assert run.data.metrics["score/mean"] == pytest.approx(np.mean(scores), abs=1e-6)
    assert run.data.metrics["stage/guarded"] == 0
    assert "report/refine_scores.png" in artifacts
    rows = list(csv.DictReader((report / "per_instance.csv").open()))
    assert sorted(float(r["refine_score"]) for r in rows if r["refine_score"]) == sorted(scores)


@pytest.mark.usefixtures("prefect_server")
def test_demo_hr_deployments_run_on_the_demo_layout(demo_ci, mlflow_store, tmp_path):
    """refine-big/demo and refine-dis/demo as deployed, pointed at the CI-scale demo data and
    the random tiny network (the shipped HR model's weights are not under test here)."""
    from flows.deployments import demo_big_params, demo_dis_params
    from flows.refine import refine_big, refine_dis

    for flow, make, expected in (
        (refine_big, demo_big_params, "BIG"),
        (refine_dis, demo_dis_params, "DIS-VD"),
    ):
        out = tmp_path / expected
        params = make().model_copy(
            update={
                "data_root": str(demo_ci),
                "output_dir": str(out),
                "refine": TINY,
                "cluster": THREADS,
                "report": ReportParams(gallery_size=2),
            }
        )
        result = flow(params)
        table = {row["key"]: row for row in result["table"]}
        assert table and all(row["metric"].endswith(("IoU", "mBA")) for row in table.values()), (
            table
        )
        assert all(row["coarse"] is not None for row in table.values())
        assert result["summary"]["shards"] == min(2, result["summary"]["samples"])
        assert (out / "latest/report/metrics.json").is_file()
        masks = list((out / "latest/masks").rglob("*.png"))
        assert len(masks) == result["summary"]["ok"] == result["summary"]["samples"] > 0
        rows = list(csv.DictReader((out / "latest/report/per_image.csv").open()))
        assert rows and all(r["refine_score"] for r in rows)  # joined from the manifest
        assert result["summary"]["scores"]["count"] == len(masks)


def _stage_states(flow_run_id: str) -> dict[str, str]:
    """State name of each stage task run of a flow run (prepare, shards, finalize)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    stage = ("prepare-refine-coco", "refine-coco-shard", "finalize-refine-coco")
    return {r.name: r.state.name for r in runs if r.name.startswith(stage)}


@pytest.mark.usefixtures("prefect_server")
def test_refine_coco_stage_tasks_are_cached_while_their_products_exist(
    demo_ci, coco_two_images, mlflow_store, tmp_path
):
    """A second run with the same inputs takes prepare and finalize from the cache (shards
    find their completion records and return at once; their keys are stored from then on).
    After the refined file is deleted, finalize runs again and writes it back."""
    from mlflow import MlflowClient

    from flows.refine import refine_coco

    params = coco_params(demo_ci, coco_two_images, tmp_path / "out")
    params = params.model_copy(update={"ground_truths": []})  # the stage is under test
    client = MlflowClient(mlflow_store)

    def states() -> dict[str, str]:
        run = client.get_run(refine_coco(params)["mlflow_run_id"])
        found = _stage_states(run.data.tags["prefect.flow_run_id"])
        return {n.rsplit("-", 1)[0] + f"/{i}": s for i, (n, s) in enumerate(sorted(found.items()))}

    def by_task(found: dict[str, str]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for name, state in found.items():
            out.setdefault(name.split("/")[0], set()).add(state)
        return out

    assert by_task(states()) == {
        "prepare-refine-coco": {"Completed"},
        "refine-coco-shard": {"Completed"},
        "finalize-refine-coco": {"Completed"},
    }
    output = next((tmp_path / "out").glob("*/refined.segm.json"))
    assert by_task(states()) == {
        "prepare-refine-coco": {"Cached"},
        "refine-coco-shard": {"Completed"},  # the stage skipped them; their keys are stored now
        "finalize-refine-coco": {"Cached"},
    }
    before = output.read_bytes()
    output.unlink()
    assert by_task(states())["finalize-refine-coco"] == {"Completed"}
    assert output.read_bytes() == before
