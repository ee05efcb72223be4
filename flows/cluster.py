"""The Dask cluster of a flow run, chosen per run from its parameters.

A flow's own task runner is fixed when the flow is defined, but the cluster is a run
parameter. So flows are defined with Prefect's default runner, and a flow run opens its Dask
runner with :func:`on_cluster` (a ``DaskTaskRunner`` built from the run's
:class:`~flows.params.ClusterParams`, used through Prefect's public ``TaskRunner`` API: its
context manager, ``submit`` and ``map``). Stage tasks go there through :func:`submit` and
:func:`map_tasks` (and :func:`flows.tasks.map_shards`); outside ``on_cluster`` they fall back to
the flow's own runner.

GPU stages annotate their shard tasks with a ``GPU`` resource (:func:`gpu_annotation`): on a
cluster whose workers were started with ``--resources GPU=1`` (one worker per GPU) each shard
gets a GPU of its own; a cluster started here has one worker per GPU (dask-cuda's
``LocalCUDACluster`` where installed, see :func:`pipelines.cluster.local_cluster`).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import dask
from prefect.utilities.callables import get_call_parameters
from prefect_dask import DaskTaskRunner

from flows.params import ClusterParams
from pipelines.cluster import local_cluster, visible_gpus
from services.settings import HOST

__all__ = [
    "gpu_annotation",
    "local_cluster_kwargs",
    "map_tasks",
    "on_cluster",
    "submit",
    "task_runner_for",
]

_RUNNER: contextvars.ContextVar[DaskTaskRunner | None] = contextvars.ContextVar(
    "segrefiner_flow_cluster", default=None
)


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


def task_runner_for(
    params: ClusterParams, *, gpu: bool = False, gpus_per_worker: int = 1
) -> DaskTaskRunner:
    """A Dask task runner for ``params`` (not started).

    With ``params.address``: that scheduler. Else a cluster started here: with ``gpu`` and one
    GPU per worker, one worker process per visible GPU (at most ``n_workers``), each seeing
    only its own card; with more GPUs per worker (training) its workers advertise
    ``gpus_per_worker`` GPUs each; else a LocalCluster on loopback.
    """
    if params.address:
        return DaskTaskRunner(address=params.address)
    gpus = visible_gpus()[: params.n_workers] if gpu and params.processes else []
    if gpus and gpus_per_worker == 1:  # one worker per GPU, each seeing only its own
        return DaskTaskRunner(
            cluster_class=local_cluster,
            cluster_kwargs={**local_cluster_kwargs(params), "gpus": gpus},
        )
    per_worker = gpus_per_worker if gpu else 0
    return DaskTaskRunner(cluster_kwargs=local_cluster_kwargs(params, gpus_per_worker=per_worker))


@contextlib.contextmanager
def on_cluster(
    params: ClusterParams, *, gpu: bool = False, gpus_per_worker: int = 1
) -> Iterator[DaskTaskRunner]:
    """Inside a flow run: start the run's Dask runner (:func:`task_runner_for`); the tasks
    submitted through this module inside go to it. The cluster is started on the first
    submission and closed (a given scheduler only disconnected from) on exit."""
    with task_runner_for(params, gpu=gpu, gpus_per_worker=gpus_per_worker) as runner:
        token = _RUNNER.set(runner)
        try:
            yield runner
        finally:
            _RUNNER.reset(token)


def submit(task: Any, *args: Any, **kwargs: Any) -> Any:
    """``task.submit(*args, **kwargs)`` on this flow run's cluster (a Prefect future)."""
    runner = _RUNNER.get()
    if runner is None:
        return task.submit(*args, **kwargs)
    return runner.submit(task, get_call_parameters(task.fn, args, kwargs))


def map_tasks(task: Any, **kwargs: Any) -> Any:
    """``task.map(**kwargs)`` on this flow run's cluster (``unmapped`` values as usual)."""
    runner = _RUNNER.get()
    if runner is None:
        return task.map(**kwargs)
    return runner.map(task, get_call_parameters(task.fn, (), kwargs, apply_defaults=False))


@contextlib.contextmanager
def gpu_annotation(device: str, gpus: int = 1) -> Iterator[None]:
    """Tasks submitted inside need ``gpus`` GPU resources when ``device`` is CUDA."""
    if device.startswith("cuda"):
        with dask.annotate(resources={"GPU": gpus}):
            yield
    else:
        yield
