"""Flow ``evaluate`` on outputs made beforehand: its numbers are the metric functions' numbers
on the same files, for COCO-format results and for BIG mask folders."""

from __future__ import annotations

import pytest

from flows.params import ClusterParams, EvaluateParams, ReportParams

THREADS = ClusterParams(n_workers=1, threads_per_worker=2, processes=False)


def _evaluate(tmp_path, dataset, coarse, refined, ground_truth, **fields) -> tuple[dict, dict]:
    """The flow's result (label ``<dataset>-demo``, on threads, reports under
    ``tmp_path/report``) and its table by key."""
    from flows.evaluate import evaluate

    params = EvaluateParams(
        dataset=dataset,
        label=f"{dataset}-demo",
        coarse=str(coarse),
        refined=str(refined),
        ground_truth=str(ground_truth),
        output_dir=str(tmp_path / "report"),
        cluster=THREADS,
        **fields,
    )
    result = evaluate(params)
    return result, {row["key"]: row for row in result["table"]}


@pytest.mark.usefixtures("prefect_server")
def test_evaluate_coco_results(demo_ci, coco_two_images, mlflow_store, tmp_path) -> None:
    from mlflow import MlflowClient

    from pipelines.config import RefineConfig
    from pipelines.refine_coco import refine_coco
    from segrefiner.metrics import instance_ap

    gt = demo_ci / "coco/annotations/instances_val2017.json"
    refined = tmp_path / "refined.segm.json"
    refine_coco(
        coco_two_images, gt, demo_ci / "coco/val2017", refined,
        RefineConfig("tiny", model_size=32, seed=2),
    )  # fmt: skip
    result, table = _evaluate(
        tmp_path,
        "coco",
        coco_two_images,
        refined,
        gt,
        gt_name="coco",
        api="coco",
        image_list=str(gt),
        image_root=str(demo_ci / "coco/val2017"),
        report=ReportParams(gallery_size=2, gallery_sort="score"),
    )
    for iou_type, word in (("segm", "mask"), ("boundary", "boundary")):
        for variant, path in (("coarse", coco_two_images), ("refined", refined)):
            want = instance_ap(str(gt), str(path), iou_type, strict=False)["AP"]
            assert table[f"coco_{word}_AP"][variant] == pytest.approx(want), (iou_type, variant)
    assert (tmp_path / "report" / "gallery.png").is_file()
    run = MlflowClient(mlflow_store).get_run(result["mlflow_run_id"])
    assert run.data.tags["stage"] == "evaluate"
    assert run.data.metrics["refined/coco_mask_AP"] == pytest.approx(
        table["coco_mask_AP"]["refined"]
    )


@pytest.mark.usefixtures("prefect_server")
def test_evaluate_big_folders(demo_ci, mlflow_store, tmp_path) -> None:
    from pipelines.config import RefineConfig
    from pipelines.refine_hr import list_samples, refine_hr
    from segrefiner.metrics import evaluate_mask_folders

    records = list_samples("big", demo_ci, folder="big/test")
    out = tmp_path / "refined"
    refine_hr(records, out, RefineConfig("tiny", model_size=32, seed=1, batch_size=4))
    folder = demo_ci / "big" / "test"
    _, table = _evaluate(tmp_path, "big", folder, out, folder, report=ReportParams(gallery_size=1))
    want = evaluate_mask_folders(folder, out, folder, "big")
    assert table["iou"]["refined"] == pytest.approx(want.refined.iou)
    assert table["mba"]["refined"] == pytest.approx(want.refined.mba)
    assert table["iou"]["coarse"] == pytest.approx(want.coarse.iou)
    assert table["iou"]["refined"] != table["iou"]["coarse"]  # the refinement is visible
