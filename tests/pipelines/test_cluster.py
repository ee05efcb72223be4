"""One worker per GPU: each worker process sees only its card. Checked through the environment
the workers get (no GPU is needed for that)."""

from __future__ import annotations

import os
import sys

import pytest

from pipelines.cluster import local_cluster, visible_gpus
from pipelines.sharding import plan_shards, run_shards
from pipelines.stage import local_gpus
from segrefiner.errors import InputError


def _visible(folder: str, shard) -> tuple[int, str | None, str]:
    """Report the GPU this worker sees, after both workers have taken a shard: each shard
    leaves a file named after its worker's GPU, and waits (with a deadline) for the other
    worker's file, so one worker cannot run every shard before the other starts."""
    import time
    from pathlib import Path

    gpu = os.environ.get("CUDA_VISIBLE_DEVICES")
    here = Path(folder)
    (here / f"gpu-{gpu}").touch()
    deadline = time.monotonic() + 30.0
    while len(list(here.glob("gpu-*"))) < 2 and not (here / "gave-up").exists():
        if time.monotonic() > deadline:
            (here / "gave-up").touch()  # the assertions report it; later shards do not wait
            break
        time.sleep(0.01)
    return shard.index, gpu, folder


def test_visible_gpus_follows_cuda_visible_devices(monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3")
    assert visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,-1,1")
    assert visible_gpus() == ["0"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []


def test_local_gpus_caps_workers_and_needs_a_gpu(monkeypatch, caplog) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    assert local_gpus(1) == ["5"]
    assert local_gpus(4) == ["5", "7"]
    assert "4 workers asked for on 2 GPUs" in caplog.text
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(InputError, match="no GPU is visible"):
        local_gpus(2)


def test_shards_spread_over_one_worker_per_gpu(tmp_path) -> None:
    shards = plan_shards(6, 6)
    results, failures = run_shards(
        _visible, shards, (str(tmp_path),), n_workers=1, gpus=["3", "5"], resources={"GPU": 1}
    )
    assert not failures
    assert sorted(r[0] for r in results) == list(range(6))
    assert {r[1] for r in results} == {"3", "5"}  # each worker saw its own GPU only
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu-3", "gpu-5"]  # both took shards


def test_gpu_workers_must_be_processes() -> None:
    with pytest.raises(InputError, match="worker processes"):
        local_cluster(gpus=["0"], processes=False)


def test_flow_runner_gets_one_worker_per_gpu(monkeypatch) -> None:
    import flows.cluster as fc
    from flows.params import ClusterParams

    monkeypatch.setattr(fc, "visible_gpus", lambda: ["0", "1", "2"])
    runner = fc.task_runner_for(ClusterParams(n_workers=2), gpu=True)
    assert runner.cluster_class is local_cluster and runner.cluster_kwargs["gpus"] == ["0", "1"]
    runner = fc.task_runner_for(ClusterParams(n_workers=1), gpu=True, gpus_per_worker=2)
    assert runner.cluster_class is None and runner.cluster_kwargs["resources"] == {"GPU": 2}
    runner = fc.task_runner_for(ClusterParams(n_workers=2), gpu=False)
    assert runner.cluster_class is None and "resources" not in runner.cluster_kwargs
    runner = fc.task_runner_for(ClusterParams(address="tcp://127.0.0.1:8786"), gpu=True)
    assert runner.address == "tcp://127.0.0.1:8786" and runner.cluster_class is None


def test_one_worker_per_gpu_uses_dask_cuda_where_installed(monkeypatch) -> None:
    """dask-cuda cannot run without GPUs: a stand-in module records what it is given."""
    import importlib.util
    import types

    made = {}

    class LocalCUDACluster:
        def __init__(self, **kwargs) -> None:
            made.update(kwargs)

    fake = types.ModuleType("dask_cuda")
    fake.LocalCUDACluster = LocalCUDACluster
    monkeypatch.setitem(sys.modules, "dask_cuda", fake)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: object() if name == "dask_cuda" else real_find_spec(name, *a),
    )
    cluster = local_cluster(gpus=["3", "5"], threads_per_worker=2)
    assert isinstance(cluster, LocalCUDACluster)
    assert made["CUDA_VISIBLE_DEVICES"] == "3,5" and made["n_workers"] == 2
    assert made["threads_per_worker"] == 2 and made["resources"] == {"GPU": 1}
    assert made["host"] == "127.0.0.1" and made["dashboard_address"] is None


def test_gpu_cluster_refuses_localcluster_only_options() -> None:
    with pytest.raises(TypeError, match="memory_limit"):
        local_cluster(gpus=["0"], memory_limit="1GB")
