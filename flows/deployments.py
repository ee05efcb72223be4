"""Every deployment, served by one long-running process: ``python -m flows.deployments``.

``python -m services up`` starts it in the background against the local Prefect server;
then ``prefect deployment run refine-coco/demo --watch`` (or any deployment below) runs in it.
Stopping it with SIGINT pauses the schedules until it serves again.

Default parameters are the parameter models' own, their paths under ``data/`` moved under the
data root ``SEGREFINER_DATA_ROOT`` (``data``, laid out as the official README says; the demo
sets ``data/demo``; the re-evaluation inbox is ``<data root>/inbox``). ``refine-coco/demo``
always refines the demo data set with the demo checkpoint, ``refine-big/demo`` and
``refine-dis/demo`` the demo's BIG and DIS sets with the shipped HR model
(``checkpoints/segrefiner_hr_real.pt``). Checkpoints come from the model registry's
``champion`` alias, falling back to the released official files in ``checkpoints/``, else the
shipped defaults (``segrefiner_lr_real.pt``, ``segrefiner_hr_real.pt``), else for LR the demo
checkpoint (:func:`flows.params.fallback_lr`, :func:`flows.params.fallback_hr`).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, TypeVar

from prefect import serve
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from pydantic import BaseModel

from flows.coarse import gen_coarse_hr
from flows.evaluate import evaluate
from flows.params import (
    DATA_ROOT,
    DEMO_CHECKPOINT,
    HR_CHAMPION,
    LR_CHAMPION,
    OFFICIAL_HR,
    OFFICIAL_LR,
    CoarseHRParams,
    EvaluateParams,
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
P = TypeVar("P", bound=BaseModel)


def rooted(params: P, root: str) -> P:
    """``params`` with every path under the default data root (``data``) moved under
    ``root``: the parameter models keep the only copy of the defaults, and a deployment
    names just what differs."""

    def move(value: Any) -> Any:
        if isinstance(value, str) and (value == DATA_ROOT or value.startswith(f"{DATA_ROOT}/")):
            return root + value[len(DATA_ROOT) :]
        if isinstance(value, list):
            return [move(v) for v in value]
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        return value

    return type(params).model_validate(move(params.model_dump()))


def demo_params() -> RefineCocoParams:
    """refine-coco/demo: the demo segmentor's val results, the demo checkpoint, 2 shards."""
    return rooted(
        RefineCocoParams(
            dataset="coco-demo", segmentor="demo-segmentor", output_dir="runs/refine-coco/demo",
            num_shards=2, refine=RefineParams(checkpoint=DEMO_CHECKPOINT),
        ),
        DEMO_ROOT,
    )  # fmt: skip


def demo_big_params() -> RefineBigParams:
    """refine-big/demo: the demo's BIG-like test images (2048-3072 px, coarse ``*_seg.png``
    next to them), the shipped HR model, 2 shards."""
    return rooted(
        RefineBigParams(
            dataset="big-demo", segmentor="demo-segmentor", folder="big/test",
            output_dir="runs/refine-big/demo", num_shards=2,
            refine=RefineParams(checkpoint=shipped_checkpoint("hr")),
        ),
        DEMO_ROOT,
    )  # fmt: skip


def demo_dis_params() -> RefineDisParams:
    """refine-dis/demo: the demo's DIS-VD and DIS-TE1 images with their isnet-like coarse
    masks, the shipped HR model, 2 shards."""
    return rooted(
        RefineDisParams(
            dataset="dis-demo", sets=["DIS-VD", "DIS-TE1"], output_dir="runs/refine-dis/demo",
            num_shards=2, refine=RefineParams(checkpoint=shipped_checkpoint("hr")),
        ),
        DEMO_ROOT,
    )  # fmt: skip


def _as_parameters(params: Any) -> dict[str, Any]:
    return {"params": params.model_dump(mode="json")}


def build_deployments(data_root: str, interval_s: int) -> list[RunnerDeployment]:
    """The deployments, defaults pointing at ``data_root``; re-evaluation every ``interval_s``."""
    r = data_root
    lr = RefineParams(checkpoint=LR_CHAMPION, fallback_checkpoint=fallback_lr())
    hr = RefineParams(checkpoint=HR_CHAMPION, fallback_checkpoint=fallback_hr())
    train_hr_overrides = [f"data.root={r}", f"data.hr.coarse_store={r}/coarse_hr.zarr"]
    demo = {"tags": ["demo"]}
    specs: list[tuple[Any, str, Any, dict[str, Any]]] = [
        (refine_coco, "demo", demo_params(), demo),
        (refine_coco, "default", rooted(RefineCocoParams(refine=lr), r), {}),
        (refine_big, "demo", demo_big_params(), demo),
        (refine_dis, "demo", demo_dis_params(), demo),
        (refine_big, "default", rooted(RefineBigParams(refine=hr), r), {}),
        (refine_dis, "default", rooted(RefineDisParams(refine=hr), r), {}),
        (gen_coarse_hr, "default", rooted(CoarseHRParams(), r), {}),
        (train_lr, "default", TrainParams(overrides=[f"data.root={r}"]), {}),
        (train_hr, "default",
         TrainParams(config="configs/segrefiner_hr.yaml", overrides=train_hr_overrides), {}),
        (evaluate, "default", rooted(EvaluateParams(), r), {}),
        (
            reevaluate,
            "scheduled",
            rooted(ReevaluateParams(), r),
            # One at a time: runs share the ledger.
            {"interval": timedelta(seconds=interval_s), "concurrency_limit": 1},
        ),
    ]  # fmt: skip
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
