"""Flows ``train-lr`` and ``train-hr``: a YAML recipe trained under torchrun in a subprocess
(one Prefect task on the Dask cluster, asking for as many GPUs as processes), curves logged to
MLflow while it runs, the final checkpoint registered as ``segrefiner-lr`` / ``segrefiner-hr``.

A failed or interrupted training continues from ``<checkpoint.dir>/latest.pt`` on the task's
retries and on the next flow run (the recipe's ``checkpoint.resume: auto``). Relative paths in
the recipe (data root, checkpoint folder) are made absolute against the flow's working
directory, so workers started elsewhere write to the same place.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from flows.caching import keyed
from flows.checkpoints import register_checkpoint
from flows.cluster import gpu_annotation, on_cluster, submit
from flows.params import TrainParams
from flows.tasks import absolute, artifact_key
from flows.tracking import Tracker, tracked_run
from flows.training_log import MlflowTrainingCallback, follow_jsonl
from pipelines.fingerprint import content_key
from pipelines.train import anchored_overrides, train_stage
from segrefiner.errors import InputError
from segrefiner.training.config import load_train_config
from segrefiner.training.distributed import default_nproc

__all__ = ["train_hr", "train_lr"]

DEFAULT_LR = TrainParams(config="configs/segrefiner_lr.yaml")
DEFAULT_HR = TrainParams(config="configs/segrefiner_hr.yaml")
MODEL_NAMES = {"lr": "segrefiner-lr", "hr": "segrefiner-hr"}


def _finished(parameters: dict[str, Any]) -> bool:
    return (Path(parameters["run_dir"]) / "model.pt").is_file()


@task(
    name="train",
    retries=2,
    retry_delay_seconds=10,
    cache_key_fn=keyed("config", "overrides", "until", exists=_finished),
)
def train_task(
    config: str,
    overrides: list[str],
    nproc: int,
    until: int | None,
    timeout_s: float | None,
    run_dir: str,
    content_key: str,
) -> dict[str, Any]:
    """torchrun in a subprocess; resumes from ``latest.pt`` when a previous try left one."""
    return train_stage(config, overrides, nproc=nproc, until=until, timeout=timeout_s)


def run_training(params: TrainParams, kind: str) -> dict[str, Any]:
    """The body of train-lr / train-hr."""
    logger = get_run_logger()
    config_path = absolute(params.config)
    config = load_train_config(config_path, list(params.overrides))
    if config.data.task != kind:
        raise InputError(f"{params.config}: data.task is {config.data.task!r}, not {kind!r}")
    overrides = anchored_overrides(config, list(params.overrides))
    config = load_train_config(config_path, overrides)
    nproc = params.nproc or default_nproc(config.runtime)
    gpu = config.runtime.device != "cpu" and _gpus() > 0
    run_dir = Path(config.checkpoint.dir)
    recipe = hashlib.sha256(Path(config_path).read_bytes()).hexdigest()
    key = content_key(files={"recipe": config_path}, config=config.to_dict(), nproc=nproc)
    tags = {
        "task": kind,
        "recipe": config_path,
        "recipe.sha256": recipe,
        "run_dir": str(run_dir),
        "nproc": nproc,
    }
    logger.info("train-%s: %s (%d processes) -> %s", kind, config.name, nproc, run_dir)
    tracker = Tracker() if params.track else None
    with tracked_run(
        params.track,
        "train",
        f"{kind}/{config.name}@{recipe[:12]}",
        tags=tags,
        params=config.to_dict(),
        tracker=tracker,
    ) as run:
        stop = threading.Event()
        follower = follow_jsonl(run_dir / "metrics.jsonl", MlflowTrainingCallback(run), stop)
        try:
            with gpu_annotation("cuda" if gpu else "cpu", gpus=nproc):
                future = submit(
                    train_task, config_path, overrides, nproc, params.until, params.timeout_s,
                    str(run_dir), key,
                )  # fmt: skip
            result = future.result()
        finally:
            stop.set()
            follower.join(timeout=30)
        run.log_metrics({f"final/{k}": v for k, v in (result.get("metrics") or {}).items()})
        run.set_tags({"finished": result["finished"], "step": result["step"]})
        for name in ("train.log", "result.json", "metrics.jsonl"):
            run.log_artifact(run_dir / name, "training")
        run.log_text(Path(config_path).read_text(encoding="utf-8"), "recipe.yaml")
        version = None
        if tracker is not None and params.register_model and result.get("checkpoint"):
            version = register_checkpoint(
                tracker,
                run,  # type: ignore[arg-type]
                result["checkpoint"],
                MODEL_NAMES[kind],
                promote=params.promote,
                tags={"recipe": config.name, "step": result["step"]},
            )
            logger.info("registered %s version %s", MODEL_NAMES[kind], version)
    create_table_artifact(
        [{"metric": k, "value": v} for k, v in (result.get("metrics") or {}).items()],
        key=artifact_key("train", kind, "final"),
        description=f"train-{kind} {config.name}: step {result['step']}",
    )
    return {**result, "registered_version": version, "mlflow_run_id": run.run_id}


def _gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@flow(name="train-lr")
def train_lr(params: TrainParams = DEFAULT_LR) -> dict[str, Any]:
    """Train LR-SegRefiner (LVIS-style data, online coarse masks) and register it."""
    with on_cluster(params.cluster, gpu=_gpus() > 0, gpus_per_worker=max(1, _gpus())):
        return run_training(params, "lr")


@flow(name="train-hr")
def train_hr(params: TrainParams = DEFAULT_HR) -> dict[str, Any]:
    """Train HR-SegRefiner (DIS-TR + ThinObject-5K, offline coarse masks) and register it."""
    with on_cluster(params.cluster, gpu=_gpus() > 0, gpus_per_worker=max(1, _gpus())):
        return run_training(params, "hr")
