"""Every deployment, served by one long-running process: ``python -m flows.deployments``.

``python -m services up`` starts it in the background against the local Prefect server;
then ``prefect deployment run refine-coco/demo --watch`` (or any deployment below) runs in it.
Stopping it with SIGINT pauses the schedules until it serves again.

Default parameters point at the data root ``SEGREFINER_DATA_ROOT`` (``data``, laid out as the
official README says; the demo sets ``data/demo``); ``refine-coco/demo`` always refines the
demo data set with the demo checkpoint, ``refine-big/demo`` and ``refine-dis/demo`` the demo's
BIG and DIS sets with the shipped HR model (``checkpoints/segrefiner_hr_real.pt``). Checkpoints come from the model registry's
``champion`` alias, falling back to the released official files in ``checkpoints/``, else the
shipped defaults (``segrefiner_lr_real.pt``, ``segrefiner_hr_real.pt``), else for LR the demo
checkpoint (:func:`flows.params.fallback_lr`, :func:`flows.params.fallback_hr`).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from prefect import serve
from prefect.deployments.runner import EntrypointType, RunnerDeployment

from flows.coarse import gen_coarse_hr
from flows.evaluate import evaluate
from flows.params import (
    DEMO_CHECKPOINT,
    HR_CHAMPION,
    LR_CHAMPION,
    OFFICIAL_HR,
    OFFICIAL_LR,
    ClusterParams,
    CoarseHRParams,
    EvaluateParams,
    GroundTruth,
    ReevaluateParams,
    RefineBigParams,
    RefineCocoParams,
    RefineDisParams,
    RefineParams,
    TrainParams,
    fallback_hr,
    fallback_lr,
    shipped_checkpoint,
)
from flows.reevaluate import reevaluate
from flows.refine import refine_big, refine_coco, refine_dis
from flows.train import train_hr, train_lr
from services.settings import load_settings

__all__ = [
    "DEMO_ROOT",
    "OFFICIAL_HR",
    "OFFICIAL_LR",
    "build_deployments",
    "demo_big_params",
    "demo_dis_params",
    "demo_params",
    "main",
]

DEMO_ROOT = "data/demo"


def _coco_truths(root: str) -> list[GroundTruth]:
    return [
        GroundTruth(name="lvis", annotations=f"{root}/lvis/annotations/lvis_v1_val_cocofied.json",
                    api="lvis"),
        GroundTruth(name="coco", annotations=f"{root}/coco/annotations/instances_val2017.json"),
    ]  # fmt: skip


def demo_params() -> RefineCocoParams:
    """refine-coco/demo: the demo segmentor's val results, the demo checkpoint, 2 shards."""
    return RefineCocoParams(
        dataset="coco-demo",
        segmentor="demo-segmentor",
        results=f"{DEMO_ROOT}/results/segmentor_val.segm.json",
        annotations=f"{DEMO_ROOT}/coco/annotations/instances_val2017.json",
        image_root=f"{DEMO_ROOT}/coco/val2017",
        ground_truths=_coco_truths(DEMO_ROOT),
        output_dir="runs/refine-coco/demo",
        num_shards=2,
        refine=RefineParams(checkpoint=DEMO_CHECKPOINT),
        cluster=ClusterParams(n_workers=2),
    )


def demo_big_params() -> RefineBigParams:
    """refine-big/demo: the demo's BIG-like test images (2048-3072 px, coarse ``*_seg.png``
    next to them), the shipped HR model, 2 shards."""
    return RefineBigParams(
        dataset="big-demo",
        segmentor="demo-segmentor",
        data_root=DEMO_ROOT,
        folder="big/test",
        gt_folder="big/test",
        output_dir="runs/refine-big/demo",
        num_shards=2,
        refine=RefineParams(checkpoint=shipped_checkpoint("hr")),
        cluster=ClusterParams(n_workers=2),
    )


def demo_dis_params() -> RefineDisParams:
    """refine-dis/demo: the demo's DIS-VD and DIS-TE1 images with their isnet-like coarse
    masks, the shipped HR model, 2 shards."""
    return RefineDisParams(
        dataset="dis-demo",
        segmentor="isnet",
        data_root=DEMO_ROOT,
        sets=["DIS-VD", "DIS-TE1"],
        output_dir="runs/refine-dis/demo",
        num_shards=2,
        refine=RefineParams(checkpoint=shipped_checkpoint("hr")),
        cluster=ClusterParams(n_workers=2),
    )


def _as_parameters(params: Any) -> dict[str, Any]:
    return {"params": params.model_dump(mode="json")}


def build_deployments(data_root: str, interval_s: int) -> list[RunnerDeployment]:
    """The deployments, defaults pointing at ``data_root``; re-evaluation every ``interval_s``."""
    r = data_root
    lr = RefineParams(checkpoint=LR_CHAMPION, fallback_checkpoint=fallback_lr())
    hr = RefineParams(checkpoint=HR_CHAMPION, fallback_checkpoint=fallback_hr())
    specs: list[tuple[Any, str, Any, dict[str, Any]]] = [
        (refine_coco, "demo", demo_params(), {"tags": ["demo"]}),
        (
            refine_coco,
            "default",
            RefineCocoParams(
                results=f"{r}/results/segmentor_val.segm.json",
                annotations=f"{r}/coco/annotations/instances_val2017.json",
                image_root=f"{r}/coco/val2017",
                ground_truths=_coco_truths(r),
                refine=lr,
            ),
            {},
        ),
        (refine_big, "demo", demo_big_params(), {"tags": ["demo"]}),
        (refine_dis, "demo", demo_dis_params(), {"tags": ["demo"]}),
        (refine_big, "default", RefineBigParams(data_root=r, refine=hr), {}),
        (refine_dis, "default", RefineDisParams(data_root=r, refine=hr), {}),
        (
            gen_coarse_hr,
            "default",
            CoarseHRParams(data_root=r, store=f"{r}/coarse_hr.zarr"),
            {},
        ),
        (
            train_lr,
            "default",
            TrainParams(config="configs/segrefiner_lr.yaml", overrides=[f"data.root={r}"]),
            {},
        ),
        (
            train_hr,
            "default",
            TrainParams(
                config="configs/segrefiner_hr.yaml",
                overrides=[f"data.root={r}", f"data.hr.coarse_store={r}/coarse_hr.zarr"],
            ),
            {},
        ),
        (
            evaluate,
            "default",
            EvaluateParams(
                coarse=f"{r}/results/segmentor_val.segm.json",
                ground_truth=f"{r}/lvis/annotations/lvis_v1_val_cocofied.json",
                image_list=f"{r}/coco/annotations/instances_val2017.json",
                image_root=f"{r}/coco/val2017",
            ),
            {},
        ),
        (
            reevaluate,
            "scheduled",
            ReevaluateParams(
                data_root=r,
                fallback_lr_checkpoint=fallback_lr(),
                fallback_hr_checkpoint=fallback_hr(),
            ),
            # One at a time: runs share the ledger.
            {"interval": timedelta(seconds=interval_s), "concurrency_limit": 1},
        ),
    ]
    return [
        flow.to_deployment(
            name,
            parameters=_as_parameters(params),
            description=(flow.description or "").strip().splitlines()[0],
            entrypoint_type=EntrypointType.MODULE_PATH,
            **options,
        )
        for flow, name, params, options in specs
    ]


def main() -> None:
    settings = load_settings()
    os.chdir(settings.root)  # relative parameters are relative to the project
    # Two flow runs at a time: the machine's cores are shared by their Dask workers.
    serve(*build_deployments(settings.data_root, settings.reevaluate_interval_s), limit=2)


if __name__ == "__main__":
    main()
