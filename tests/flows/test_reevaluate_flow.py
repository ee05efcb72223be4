"""reevaluate: a new drop is evaluated once, a renamed copy and a second run skip it, a malformed
drop is reported (failed task, FAILED MLflow run with the error) without stopping the others."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flows.params import ClusterParams, ReevaluateParams, RefineParams, ReportParams

TINY = RefineParams(checkpoint="tiny", model_size=32, batch_size=8)


def params(demo: Path, tmp: Path) -> ReevaluateParams:
    return ReevaluateParams(
        inbox=str(tmp / "inbox"),
        data_root=str(demo),
        ledger=str(tmp / "ledger.json"),
        output_dir=str(tmp / "out"),
        # Nothing registered in the fresh MLflow store: the fallback (a preset) is used.
        lr_checkpoint="models:/segrefiner-lr@champion",
        fallback_lr_checkpoint="tiny",
        hr_checkpoint="tiny",
        num_shards=1,
        refine=TINY,
        cluster=ClusterParams(n_workers=1, processes=False),
        report=ReportParams(gallery_size=2),
    )


@pytest.mark.usefixtures("prefect_server")
def test_reevaluate_new_once_skips_known_reports_malformed(
    demo_ci, coco_two_images, mlflow_store, tmp_path
):
    from mlflow import MlflowClient

    from flows.reevaluate import reevaluate
    from pipelines.inbox import Ledger

    inbox = tmp_path / "inbox"
    (inbox / "coco/maskrcnn").mkdir(parents=True)
    shutil.copyfile(coco_two_images, inbox / "coco/maskrcnn/val.segm.json")
    (inbox / "coco/broken").mkdir(parents=True)
    (inbox / "coco/broken/val.segm.json").write_text('[{"image_id": 1, "bbox": [0, 0')
    (inbox / "coco/maskrcnn/.uploading.json").write_text("ignored: hidden")
    dis = inbox / "dis/isnet/DIS-VD"
    dis.mkdir(parents=True)
    for mask in (demo_ci / "dis/coarse/isnet/DIS-VD").glob("*.png"):
        shutil.copyfile(mask, dis / mask.name)

    first = reevaluate(params(demo_ci, tmp_path))

    assert sorted(i["drop"] for i in first["evaluated"]) == [
        "coco/maskrcnn/val.segm.json",
        "dis/isnet",
    ]
    assert [i["drop"] for i in first["failed"]] == ["coco/broken/val.segm.json"]
    assert "malformed JSON" in first["failed"][0]["error"]
    client = MlflowClient(mlflow_store)
    runs = {
        r.info.run_name: r
        for name in ("refine-coco", "refine-dis")
        for r in client.search_runs([client.get_experiment_by_name(name).experiment_id])
    }
    assert runs["coco/maskrcnn@tiny"].info.status == "FINISHED"
    assert "refined/lvis_mask_AP" in runs["coco/maskrcnn@tiny"].data.metrics
    assert runs["coco/maskrcnn@tiny"].data.tags["checkpoint.source"] == "fallback"
    assert "refined/DIS-VD_mba" in runs["dis/isnet@tiny"].data.metrics
    failed = runs["coco/broken@tiny"]
    assert failed.info.status == "FAILED"
    assert "malformed JSON" in failed.data.tags["error"]
    ledger = Ledger(tmp_path / "ledger.json")
    assert sorted(e["status"] for e in ledger.entries.values()) == ["failed", "ok", "ok"]

    # The same output under another name and folder is not new; neither is anything else.
    (inbox / "coco/renamed").mkdir()
    shutil.copyfile(coco_two_images, inbox / "coco/renamed/copy.json")
    second = reevaluate(params(demo_ci, tmp_path))

    assert second["evaluated"] == [] and second["failed"] == []
    assert len(second["skipped"]) == 4
    assert len(client.search_runs([runs["coco/maskrcnn@tiny"].info.experiment_id])) == 2
