"""The Dask task runner of the flows, pointed at a cluster chosen per flow run.

A flow's task runner is fixed when the flow is defined, but the cluster is a run parameter.
prefect-dask creates its client on the first submission, so :func:`use_cluster`, called at the
start of a flow run (before any task is submitted), sets the scheduler address or the
LocalCluster's size on this run's copy of the runner.

GPU stages annotate their shard tasks with a ``GPU`` resource (:func:`gpu_annotation`): on a
cluster whose workers were started with ``--resources GPU=1`` (one worker per GPU) each shard
gets a GPU of its own; a LocalCluster started here has one worker per GPU, each with
``CUDA_VISIBLE_DEVICES`` set to its card.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import dask
from prefect.context import FlowRunContext
from prefect_dask import DaskTaskRunner

from flows.params import ClusterParams
from flows.settings import HOST
from pipelines.cluster import local_cluster, visible_gpus

__all__ = ["dask_task_runner", "gpu_annotation", "local_cluster_kwargs", "use_cluster"]


def local_cluster_kwargs(params: ClusterParams, gpus_per_worker: int = 0) -> dict[str, Any]:
    """LocalCluster arguments: loopback only, no dashboard."""
    kwargs: dict[str, Any] = {
        "n_workers": params.n_workers,
        "threads_per_worker": params.threads_per_worker,
        "processes": params.processes,
        "dashboard_address": None,
        # The scheduler's HTTP endpoint (health, metrics) runs even without a dashboard; keep it
        # on loopback and off the conventional port 8787.
        "scheduler_kwargs": {"dashboard_address": f"{HOST}:0"},
    }
    if params.processes:  # threads talk in-process and take no host
        kwargs["host"] = HOST
    if gpus_per_worker:
        kwargs["resources"] = {"GPU": gpus_per_worker}
    return kwargs


def dask_task_runner() -> DaskTaskRunner:
    """The runner flows are defined with (a default LocalCluster until :func:`use_cluster`)."""
    return DaskTaskRunner(cluster_kwargs=local_cluster_kwargs(ClusterParams()))


def use_cluster(params: ClusterParams, *, gpu: bool = False, gpus_per_worker: int = 1) -> None:
    """Point this flow run's Dask runner at ``params``; call before submitting any task.

    With ``gpu`` and one GPU per worker, the LocalCluster is one worker process per visible GPU
    (at most ``n_workers``), each seeing only its own card; with more GPUs per worker (training)
    its workers advertise ``gpus_per_worker`` GPUs each. Does nothing when the flow runs with
    another task runner (e.g. swapped in a test).
    """
    context = FlowRunContext.get()
    runner = context.task_runner if context else None
    if not isinstance(runner, DaskTaskRunner):
        return
    if runner._client is not None:  # prefect-dask makes its client on first use
        raise RuntimeError("use_cluster() must run before the flow submits its first task")
    if params.address:
        runner.address = params.address
        runner.cluster_kwargs = {}
    else:
        runner.address = None
        runner.cluster_class = None
        runner.resolved_cluster_class = None
        gpus = visible_gpus()[: params.n_workers] if gpu and params.processes else []
        if gpus and gpus_per_worker == 1:  # one worker per GPU, each seeing only its own
            runner.cluster_class = local_cluster
            runner.cluster_kwargs = {**local_cluster_kwargs(params), "gpus": gpus}
        else:
            per_worker = gpus_per_worker if gpu else 0
            runner.cluster_kwargs = local_cluster_kwargs(params, gpus_per_worker=per_worker)


@contextlib.contextmanager
def gpu_annotation(device: str, gpus: int = 1) -> Iterator[None]:
    """Tasks submitted inside need ``gpus`` GPU resources when ``device`` is CUDA."""
    if device.startswith("cuda"):
        with dask.annotate(resources={"GPU": gpus}):
            yield
    else:
        yield
