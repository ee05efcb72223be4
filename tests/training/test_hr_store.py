"""HR training with the offline coarse masks of a gen-coarse-hr mask store."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from pipelines.stores import MaskStore
from pipelines.train import StoreCoarseSource, main
from segrefiner.data.folders import read_hr_training
from segrefiner.errors import InputError
from segrefiner.training import FolderCoarseSource, load_train_config
from tests.training.conftest import tiny_overrides


@pytest.fixture(scope="module")
def store(hr_root, tmp_path_factory):
    records = read_hr_training(hr_root)
    path = tmp_path_factory.mktemp("store") / "coarse_hr.zarr"
    ids = [r.sample_id for r in records]
    store = MaskStore.create(
        path, layout="coarse-hr", kinds=("coarse", "coarse_expand"), sample_ids=ids
    )
    folders = FolderCoarseSource(records)
    for sample_id in ids[1:]:  # the first sample has no masks (as if it failed)
        for kind in ("coarse", "coarse_expand"):
            store.write_mask(kind, sample_id, folders.get(sample_id, kind))
    return path, ids


def test_store_source_reads_masks_and_names_missing_ones(hr_root, store) -> None:
    path, ids = store
    source = StoreCoarseSource(path)
    folder = FolderCoarseSource(read_hr_training(hr_root))
    mask = source.get(ids[1], "coarse_expand")
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask, folder.get(ids[1], "coarse_expand"))
    with pytest.raises(InputError, match=f"{ids[0]}: no coarse mask in the store"):
        source.get(ids[0], "coarse")
    with pytest.raises(InputError, match="no mask store"):
        StoreCoarseSource(path.parent / "missing.zarr")


def test_hr_training_from_the_store(hr_root, store, tmp_path, capsys) -> None:
    path, _ = store
    run = tmp_path / "run"
    overrides = tiny_overrides(
        hr_root,
        run,
        **{
            "data.task": "hr",
            "data.hr.coarse": "store",
            "data.hr.coarse_store": str(path),
            "data.hr.patch_size": 64,
            "data.num_workers": 1,  # the store is read in a forked worker process
            "schedule.max_iters": 3,
        },
    )
    config_path = tmp_path / "hr.yaml"
    config_path.write_text(yaml.safe_dump(load_train_config(None, overrides).to_dict()))
    assert main(["--config", str(config_path)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["finished"] and result["step"] == 3
    # 2 images per iteration -> 4 crops (object + patch each)
    assert result["metrics"]["crops_per_s"] == pytest.approx(2 * result["metrics"]["samples_per_s"])
    # 6 draws from 4 images: epoch 0 holds every image, so the one without store masks was
    # drawn, replaced and counted.
    assert result["skipped"] >= 1
    log = (run / "metrics.jsonl").read_text()
    assert json.loads(log.splitlines()[-1])["skipped"] == result["skipped"]
