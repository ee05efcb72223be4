"""Typed flow parameters (pydantic models: Prefect builds the deployment forms from them).

Paths are strings, relative to the working directory of the process that runs the flow (the
project root for served deployments) or absolute; flows resolve them before any task runs, so
Dask workers always receive absolute paths. Checkpoints are a file, a preset name (random
weights: smoke tests only) or a registry reference ``models:/<name>@<alias>`` with a file to
fall back to when the registry has none (:func:`fallback_lr`, :func:`fallback_hr`: the released
official file, else the shipped default, else the last resort).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from pipelines.config import EvaluateConfig, RefineConfig
from pipelines.settings import pydantic_fields
from segrefiner.checkpoint import default_checkpoint_path

__all__ = [
    "DATA_ROOT",
    "DEMO_CHECKPOINT",
    "OFFICIAL_HR",
    "OFFICIAL_LR",
    "ClusterParams",
    "CoarseHRParams",
    "EvaluateParams",
    "GroundTruth",
    "ReevaluateParams",
    "RefineBigParams",
    "RefineCocoParams",
    "RefineDisParams",
    "RefineParams",
    "ReportParams",
    "TrainParams",
    "fallback_hr",
    "fallback_lr",
    "shipped_checkpoint",
]

# The default data root: every default path below under it is moved under the served data root
# by flows.deployments.rooted, so these models hold the only copy of the defaults.
DATA_ROOT = "data"
DEMO_CHECKPOINT = "checkpoints/demo_lr_tiny.pt"
LR_CHAMPION = "models:/segrefiner-lr@champion"
HR_CHAMPION = "models:/segrefiner-hr@champion"
OFFICIAL_LR = "checkpoints/segrefiner_lr_latest.pth"
OFFICIAL_HR = "checkpoints/segrefiner_hr_latest.pth"


def shipped_checkpoint(kind: Literal["lr", "hr"]) -> str:
    """Where the shipped default model of ``kind`` is (segrefiner.checkpoint), whether or not
    the file is there: relative to the working directory when it lies under it, like the other
    parameters."""
    path, cwd = default_checkpoint_path(kind).resolve(), Path.cwd().resolve()
    return os.path.relpath(path, cwd) if path.is_relative_to(cwd) else str(path)


def _shipped(kind: Literal["lr", "hr"]) -> str | None:
    # The shipped default; None while the file does not exist.
    return shipped_checkpoint(kind) if default_checkpoint_path(kind).is_file() else None


def fallback_lr() -> str:
    """The LR checkpoint used when the registry has no champion: the released official file,
    else the shipped default, else the demo checkpoint."""
    if Path(OFFICIAL_LR).is_file():
        return OFFICIAL_LR
    # The demo model is trained on synthetic composites: the last resort, so that a fresh clone
    # still runs end to end.
    return _shipped("lr") or DEMO_CHECKPOINT


def fallback_hr() -> str:
    """The HR checkpoint used when the registry has no champion: the released official file,
    else the shipped default, else the official file's path (there is no demo HR model, so a
    run without any of them stops with that file named as missing)."""
    if Path(OFFICIAL_HR).is_file():
        return OFFICIAL_HR
    return _shipped("hr") or OFFICIAL_HR


class _Params(BaseModel):
    # Unknown keys are errors, as in the YAML configs: a misspelt parameter never goes unseen.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClusterParams(_Params):
    """Where the shard tasks run: a Dask scheduler, or a LocalCluster started for the run."""

    address: str | None = Field(
        None, description="Dask scheduler (tcp://host:8786); empty: a LocalCluster on 127.0.0.1"
    )
    n_workers: int = Field(2, ge=1, description="LocalCluster workers")
    threads_per_worker: int = Field(1, ge=1)
    processes: bool = Field(True, description="LocalCluster workers as processes (else threads)")


class _RefineParams(_Params):
    # RefineParams' base: what create_model cannot declare (the model config and methods).

    def config(self, checkpoint_path: str) -> RefineConfig:
        """The stage config for a resolved checkpoint file (or preset): every field of
        :class:`~pipelines.config.RefineConfig` but the checkpoint comes from the field of the
        same name here (RefineParams is generated from RefineConfig's declaration)."""
        shared = {f.name for f in dataclasses.fields(RefineConfig)} - {"checkpoint"}
        return RefineConfig(checkpoint=checkpoint_path, **self.model_dump(include=shared))


# Generated from RefineConfig's declaration (pipelines.settings), so a new setting of the stage
# is a parameter of every flow, with the same default, limits and help; only the checkpoint
# differs (a flow default, and registry references resolved by the flows).
RefineParams = create_model(
    "RefineParams",
    __base__=_RefineParams,
    __module__=__name__,
    __doc__="The model and how it runs (:class:`pipelines.config.RefineConfig`).",
    checkpoint=(
        str,
        Field(DEMO_CHECKPOINT, description="checkpoint file, preset, or models:/<name>@<alias>"),
    ),
    fallback_checkpoint=(
        str | None,
        Field(None, description="used when a models:/ reference finds nothing in the registry"),
    ),
    **pydantic_fields(RefineConfig, exclude={"checkpoint"}),
)


# What goes to MLflow and the Prefect UI besides the metrics: the tracking switch, and the
# report's settings generated from the evaluation stages' declaration (EvaluateConfig).
ReportParams = create_model(
    "ReportParams",
    __base__=_Params,
    __module__=__name__,
    __doc__="What goes to MLflow and the Prefect UI besides the metrics.",
    track=(bool, Field(True, description="log an MLflow run")),
    **pydantic_fields(EvaluateConfig),
)


class GroundTruth(_Params):
    """Instance annotations to score against; ``name`` prefixes the metric names."""

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    annotations: str
    api: Literal["coco", "lvis"] = "coco"


class _RefineRun(_Params):
    # What the parameters of every refinement flow share; ``dataset_kind`` names the flow's
    # experiment (refine-<kind>).
    dataset_kind: ClassVar[str]
    num_shards: int = Field(4, ge=1)
    refine: RefineParams = RefineParams(checkpoint=HR_CHAMPION)
    cluster: ClusterParams = ClusterParams()
    report: ReportParams = ReportParams()
    refresh_cache: bool = Field(False, description="ignore cached task results")


class RefineCocoParams(_RefineRun):
    """refine-coco: a segmentor's COCO-format instance results, refined and scored."""

    dataset_kind: ClassVar[str] = "coco"
    dataset: str = Field("coco", description="label in MLflow run names and tags")
    segmentor: str = Field("segmentor", description="label of the results' producer")
    results: str = "data/results/segmentor_val.segm.json"
    annotations: str = Field(
        "data/coco/annotations/instances_val2017.json", description="image list and sizes"
    )
    image_root: str = "data/coco/val2017"
    ground_truths: list[GroundTruth] = Field(
        default_factory=lambda: [
            GroundTruth(
                name="lvis",
                annotations="data/lvis/annotations/lvis_v1_val_cocofied.json",
                api="lvis",
            ),
            GroundTruth(name="coco", annotations="data/coco/annotations/instances_val2017.json"),
        ],
        description="first one gives the per-instance rows and the gallery",
    )
    output_dir: str = Field("runs/refine-coco/default", description="refined JSON, work, reports")
    refine: RefineParams = Field(
        default_factory=lambda: RefineParams(
            checkpoint=LR_CHAMPION, fallback_checkpoint=fallback_lr()
        )
    )


class RefineBigParams(_RefineRun):
    """refine-big: BIG test images with a segmentor's coarse masks (``<name>_seg.png``)."""

    dataset_kind: ClassVar[str] = "big"
    dataset: str = "big"
    segmentor: str = "deeplab"
    data_root: str = "data"
    folder: str = Field("big/coarse/deeplab", description="<name>_im.jpg and coarse _seg.png")
    gt_folder: str = Field("big/test", description="ground truths <name>_gt.png")
    output_dir: str = "runs/refine-big/default"


class RefineDisParams(_RefineRun):
    """refine-dis: DIS-5K sets with a segmentor's coarse masks (``dis/coarse/<segmentor>``)."""

    dataset_kind: ClassVar[str] = "dis"
    dataset: str = "dis"
    segmentor: str = "isnet"
    data_root: str = "data"
    sets: list[str] | None = Field(None, description="default: every DIS-VD/TE set present")
    output_dir: str = "runs/refine-dis/default"


class EvaluateParams(_Params):
    """evaluate: coarse vs refined outputs that already exist, on one dataset."""

    dataset: Literal["coco", "big", "dis"] = "coco"
    label: str = Field("coco", description="dataset label in MLflow run names and tags")
    segmentor: str = "segmentor"
    checkpoint: str | None = Field(None, description="what refined the outputs (for the tags)")
    coarse: str = Field(
        "data/results/segmentor_val.segm.json",
        description="coco: results JSON; big: folder of _seg.png; dis: folder of <set>/",
    )
    refined: str = Field(
        "runs/refine-coco/default/refined.segm.json",
        description="coco: results JSON; big: folder of _refine.png; dis: folder of <set>/",
    )
    ground_truth: str = Field(
        "data/lvis/annotations/lvis_v1_val_cocofied.json",
        description="coco: annotations JSON; big: folder of _gt.png; dis: the dis/ folder",
    )
    gt_name: str = Field("lvis", pattern=r"^[a-z0-9_]+$", description="coco: metric prefix")
    api: Literal["coco", "lvis"] = "lvis"
    image_list: str = Field(
        "data/coco/annotations/instances_val2017.json", description="coco: images and sizes"
    )
    image_root: str = "data/coco/val2017"
    sets: list[str] | None = Field(None, description="dis: sets (default: those refined)")
    output_dir: str = "runs/evaluate/default"
    cluster: ClusterParams = ClusterParams(n_workers=1)
    report: ReportParams = ReportParams()


class ReevaluateParams(_Params):
    """reevaluate: new segmentor outputs in the inbox, refined with the champion and scored."""

    inbox: str = Field("data/inbox", description="<inbox>/<dataset>/<segmentor>/...")
    data_root: str = Field("data", description="the data root the drops refer to")
    ledger: str = Field("runs/reevaluate/ledger.json", description="what was evaluated")
    output_dir: str = "runs/reevaluate"
    lr_checkpoint: str = LR_CHAMPION
    hr_checkpoint: str = HR_CHAMPION
    fallback_lr_checkpoint: str | None = Field(default_factory=fallback_lr)
    fallback_hr_checkpoint: str | None = Field(default_factory=fallback_hr)
    coco_annotations: str = "coco/annotations/instances_val2017.json"
    coco_image_root: str = "coco/val2017"
    coco_ground_truths: list[GroundTruth] = Field(
        default_factory=lambda: [
            GroundTruth(
                name="lvis", annotations="lvis/annotations/lvis_v1_val_cocofied.json", api="lvis"
            ),
            GroundTruth(name="coco", annotations="coco/annotations/instances_val2017.json"),
        ],
        description="annotation paths relative to data_root",
    )
    big_folder: str = Field("big/test", description="BIG images and _gt.png, under data_root")
    num_shards: int = Field(2, ge=1)
    retry_failed: bool = Field(False, description="evaluate drops that failed before again")
    refine: RefineParams = RefineParams(checkpoint=LR_CHAMPION)
    cluster: ClusterParams = ClusterParams()
    report: ReportParams = ReportParams()


class CoarseHRParams(_Params):
    """gen-coarse-hr: offline coarse masks of DIS-TR + ThinObject-5K train into a zarr store."""

    data_root: str = "data"
    store: str = "data/coarse_hr.zarr"
    seed: int = Field(0, ge=0)
    num_shards: int | None = Field(None, ge=1, description="default: one per 64 samples")
    images: str | None = Field(None, description="a folder of images instead (with masks)")
    masks: str | None = None
    overwrite: bool = False
    cluster: ClusterParams = ClusterParams()
    refresh_cache: bool = False


class TrainParams(_Params):
    """train-lr / train-hr: a YAML recipe run under torchrun; the result registered."""

    config: str = "configs/segrefiner_lr.yaml"
    overrides: list[str] = Field(default_factory=list, description="dotted KEY=VALUE overrides")
    nproc: int | None = Field(None, ge=1, description="processes (GPUs); default from config")
    until: int | None = Field(None, ge=1, description="stop after this iteration")
    timeout_s: float | None = Field(None, gt=0)
    register_model: bool = Field(True, description="register the checkpoint in the registry")
    promote: Literal["never", "if-none", "always"] = Field(
        "if-none", description="set the champion alias: never, when there is none, always"
    )
    cluster: ClusterParams = ClusterParams(n_workers=1)
    track: bool = True
