"""Flow gen-coarse-hr against the stage it wraps, and the registry's champion promotion."""

from __future__ import annotations

import numpy as np
import pytest

from flows.params import ClusterParams, CoarseHRParams

THREADS = ClusterParams(n_workers=1, threads_per_worker=2, processes=False)


@pytest.mark.usefixtures("prefect_server")
def test_gen_coarse_hr_flow_writes_the_stages_masks(demo_ci, tmp_path) -> None:
    from flows.coarse import gen_coarse_hr
    from pipelines.coarse import generate_coarse_hr
    from pipelines.stores import MaskStore

    store = tmp_path / "flow.zarr"
    params = CoarseHRParams(
        data_root=str(demo_ci), store=str(store), seed=3, num_shards=2, cluster=THREADS
    )
    summary = gen_coarse_hr(params)
    direct = tmp_path / "direct.zarr"
    generate_coarse_hr(demo_ci, direct, seed=3, num_shards=1, n_workers=1, processes=False)
    a, b = MaskStore.open(store), MaskStore.open(direct)
    ids = a.sample_ids
    assert ids and ids == b.sample_ids and summary["ok"] == len(ids)
    assert a.kinds == b.kinds
    for sample_id in ids:  # shard count and the flow wrapper do not change a pixel
        for kind in a.kinds:
            assert np.array_equal(a.read_mask(kind, sample_id), b.read_mask(kind, sample_id))
    again = gen_coarse_hr(params)  # a re-run finds every shard done
    assert again["skipped_shards"] == 2


def test_champion_promotion_rules(mlflow_store, tmp_path) -> None:
    from flows.checkpoints import champion, download_version, register_checkpoint
    from flows.tracking import Tracker
    from segrefiner.checkpoint import save_checkpoint
    from segrefiner.model import build_unet

    tracker = Tracker()
    files = []
    for seed in range(4):
        path = tmp_path / f"model{seed}.pt"
        save_checkpoint(path, build_unet("tiny", seed=seed))
        files.append(path)
    name = "segrefiner-test"
    assert champion(tracker, name) is None
    versions = []
    for path, promote in zip(files, ["never", "if-none", "if-none", "always"], strict=True):
        with tracker.run("train-test", path.stem) as run:
            versions.append(register_checkpoint(tracker, run, path, name, promote=promote))
        current = champion(tracker, name)
        got = None if current is None else str(current.version)
        # never: no alias yet; the first if-none takes it; the second leaves it; always moves it
        step = len(versions) - 1
        want = None if step == 0 else versions[1] if step in (1, 2) else versions[3]
        assert got == want, (promote, got, want)
    downloaded = download_version(tracker, champion(tracker, name), tmp_path / "cache")
    assert downloaded.read_bytes() == files[3].read_bytes()
