"""Stage gen-coarse-hr: determinism across shardings, resuming, failures, manifest, export."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pipelines.coarse as coarse
from pipelines.coarse import (
    CoarseHRConfig,
    ShardsFailedError,
    export_pngs,
    finalize_coarse_hr,
    generate_coarse_hr,
    plan_shards,
    prepare_coarse_hr,
    read_manifest,
    run_shard,
    sample_rng,
)
from pipelines.stores import MaskStore
from segrefiner.data.degrade import modify_boundary, modify_boundary_expand
from segrefiner.errors import InputError
from segrefiner.io import read_mask
from tests.pipelines.conftest import BROKEN, files, snapshot

# Threads in this process: a cluster starts in well under a second.
THREADS = {"processes": False, "n_workers": 2, "threads_per_worker": 1}


def test_plan_shards() -> None:
    for n, k in [(10, 3), (13, 1), (13, 13), (5, 8), (1000, 7)]:
        shards = plan_shards(n, k)
        assert len(shards) == min(n, k)
        assert [s.index for s in shards] == list(range(len(shards)))
        assert shards[0].start == 0 and shards[-1].stop == n
        assert all(a.stop == b.start for a, b in itertools.pairwise(shards))
        sizes = [s.stop - s.start for s in shards]
        assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    assert plan_shards(0, 4) == []
    assert plan_shards(10, 3)[1].name == "00001"
    with pytest.raises(ValueError):
        plan_shards(10, 0)


def test_sample_rng_depends_on_seed_id_and_kind_only() -> None:
    def draw(*args: object) -> list[int]:
        return sample_rng(*args).integers(0, 2**31, 4).tolist()  # type: ignore[arg-type]

    assert draw(0, "a/b", "coarse") == draw(0, "a/b", "coarse")
    assert draw(0, "a/b", "coarse") != draw(1, "a/b", "coarse")
    assert draw(0, "a/b", "coarse") != draw(0, "a/c", "coarse")
    assert draw(0, "a/b", "coarse") != draw(0, "a/b", "coarse_expand")
    with pytest.raises(ValueError):
        sample_rng(-1, "a", "coarse")


def _generate(hr_root, tmp_path_factory, name: str, num_shards: int) -> tuple[Path, dict]:
    root, _ = hr_root
    store = tmp_path_factory.mktemp(name) / "coarse.zarr"
    return store, generate_coarse_hr(root, store, seed=5, num_shards=num_shards, **THREADS)


@pytest.fixture(scope="module")
def one_shard(hr_root, tmp_path_factory) -> tuple[Path, dict]:
    return _generate(hr_root, tmp_path_factory, "one", 1)


@pytest.fixture(scope="module")
def three_shards(hr_root, tmp_path_factory) -> tuple[Path, dict]:
    return _generate(hr_root, tmp_path_factory, "three", 3)


def test_summary_and_manifest(hr_root, one_shard) -> None:
    root, good = hr_root
    store_path, summary = one_shard
    assert summary["complete"] and summary["samples"] == len(good) + len(BROKEN)
    assert (summary["ok"], summary["failed"]) == (len(good), len(BROKEN))
    assert summary["shards"] == 1 and summary["skipped_shards"] == 0
    reasons = {f["sample_id"]: f["reason"] for f in summary["failed_samples"]}
    assert set(reasons) == set(BROKEN)
    for sid, needle in BROKEN.items():
        assert needle in reasons[sid], (sid, reasons[sid])
        assert str(root) not in reasons[sid]  # reasons are relative to the data root
    manifest = read_manifest(store_path)
    assert [r["sample_id"] for r in manifest] == sorted(good + list(BROKEN))
    by_id = {r["sample_id"]: r for r in manifest}
    for sid in good:
        row = by_id[sid]
        assert row["status"] == "ok" and row["reason"] == ""
        gt = read_mask(root / row["gt"])
        assert (row["height"], row["width"]) == gt.shape
    assert by_id["dis/DIS-TR/no_image"]["image"] == "dis/DIS-TR/im/no_image.jpg"
    assert by_id["dis/DIS-TR/no_image"]["status"] == "failed"


def test_masks_are_the_library_degradation(hr_root, one_shard) -> None:
    root, good = hr_root
    store = MaskStore.open(one_shard[0])
    params = CoarseHRConfig(data_root=str(root), seed=5).generator()["params"]
    for sid in good:
        # the official script's reading: any non-zero grey level is foreground
        gt = np.asarray(Image.open(root / store.mask_attrs("coarse", sid)["gt"]).convert("L")) > 0
        expected = {
            "coarse": modify_boundary(gt, sample_rng(5, sid, "coarse"), **params),
            "coarse_expand": modify_boundary_expand(
                gt, sample_rng(5, sid, "coarse_expand"), **params
            ),
        }
        for kind, mask in expected.items():
            assert np.array_equal(store.read_mask(kind, sid), mask), (kind, sid)
        assert not np.array_equal(expected["coarse"], gt)


def test_anti_aliased_edges_are_foreground_as_in_the_official_script(tmp_path) -> None:
    gt = np.zeros((64, 64), np.uint8)
    gt[16:48, 16:48] = 255
    gt[15, 16:48] = gt[48, 16:48] = 60  # a soft edge: below 128, above 0
    (tmp_path / "data/photos").mkdir(parents=True)
    (tmp_path / "data/labels").mkdir(parents=True)
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(tmp_path / "data/photos/s.png")
    Image.fromarray(gt).save(tmp_path / "data/labels/s.png")
    generate_coarse_hr(
        tmp_path / "data", tmp_path / "s.zarr", images="photos", masks="labels", seed=2, **THREADS
    )
    store = MaskStore.open(tmp_path / "s.zarr")
    params = CoarseHRConfig(data_root=str(tmp_path / "data"), seed=2).generator()["params"]
    (sid,) = [row["sample_id"] for row in read_manifest(tmp_path / "s.zarr")]
    expected = modify_boundary(gt > 0, sample_rng(2, sid, "coarse"), **params)
    assert np.array_equal(store.read_mask("coarse", sid), expected)
    assert not np.array_equal(
        expected, modify_boundary(gt >= 128, sample_rng(2, sid, "coarse"), **params)
    )


def test_store_attrs(hr_root, one_shard) -> None:
    root, _ = hr_root
    attrs = MaskStore.open(one_shard[0]).attrs
    assert attrs["layout"] == "coarse-hr" and attrs["kinds"] == ["coarse", "coarse_expand"]
    assert attrs["seed"] == 5 and attrs["complete"] is True
    assert attrs["generator"]["params"] == {
        "iou_target": 0.8,
        "regional_sample_rate": 0.1,
        "sample_rate": 0.1,
        "move_rate": 0.0,
    }
    assert attrs["producer"]["version"]
    assert attrs["data_root"] == str(root.resolve())
    assert (attrs["ok"], attrs["failed"]) == (9, 4)


def test_shard_count_does_not_change_the_store(one_shard, three_shards) -> None:
    assert snapshot(one_shard[0]) == snapshot(three_shards[0])
    # Byte for byte, apart from the shard plan (root attrs and completion records).
    assert files(one_shard[0], skip="shards") | {"zarr.json": b""} == files(
        three_shards[0], skip="shards"
    ) | {"zarr.json": b""}


def test_other_seed_gives_other_masks(hr_root, one_shard, tmp_path) -> None:
    root, good = hr_root
    generate_coarse_hr(root, tmp_path / "s.zarr", seed=6, num_shards=2, **THREADS)
    a, b = MaskStore.open(one_shard[0]), MaskStore.open(tmp_path / "s.zarr")
    assert all(not np.array_equal(a.read_mask("coarse", s), b.read_mask("coarse", s)) for s in good)


def test_resume_after_interruption(hr_root, three_shards, tmp_path) -> None:
    root, _ = hr_root
    store_path = tmp_path / "s.zarr"
    config = CoarseHRConfig(data_root=str(root), seed=5)
    shards = prepare_coarse_hr(root, store_path, config, num_shards=3)
    # Shard 1 finished; shard 0 was killed after writing its masks, before its record;
    # shard 2 was killed after writing a mask of a sample that then failed (an earlier input).
    assert not run_shard(store_path, shards[1], config).skipped
    run_shard(store_path, shards[0], config)
    store = MaskStore.open(store_path, "r+")
    store.clear_completion(shards[0].name)
    stray = "thin_object/train/listed_only"
    assert shards[2].start <= store.sample_ids.index(stray) < shards[2].stop
    store.write_mask("coarse", stray, np.ones((4, 4), bool))
    assert finalize_coarse_hr(store_path)["missing_shards"] == [0, 2]
    with pytest.raises(InputError, match="not complete"):
        read_manifest(store_path)

    summary = generate_coarse_hr(root, store_path, seed=5, num_shards=3, **THREADS)
    assert summary["complete"] and summary["skipped_shards"] == 1
    assert files(store_path) == files(three_shards[0])


def test_failing_shard_is_reported_and_retried(
    hr_root, three_shards, tmp_path, monkeypatch
) -> None:
    root, _ = hr_root
    store_path = tmp_path / "s.zarr"
    real = coarse._make_masks

    def flaky(gt, sample_id, config):
        if sample_id.startswith("thin_object/train/thin 03"):  # in the last shard
            raise RuntimeError("worker lost")
        return real(gt, sample_id, config)

    monkeypatch.setattr(coarse, "_make_masks", flaky)
    with pytest.raises(ShardsFailedError, match="shard 2: RuntimeError: worker lost") as err:
        generate_coarse_hr(root, store_path, seed=5, num_shards=3, **THREADS)
    assert set(err.value.failures) == {2}
    assert MaskStore.open(store_path).completed_units() == ["00000", "00001"]
    assert MaskStore.open(store_path).attrs["complete"] is False

    monkeypatch.setattr(coarse, "_make_masks", real)
    summary = generate_coarse_hr(root, store_path, seed=5, num_shards=3, **THREADS)
    assert summary["skipped_shards"] == 2 and summary["ok"] == 9
    assert files(store_path) == files(three_shards[0])


def test_existing_store_checks_inputs(hr_root, three_shards, tmp_path) -> None:
    root, _ = hr_root
    store_path = tmp_path / "s.zarr"
    generate_coarse_hr(root, store_path, seed=5, num_shards=3, **THREADS)
    with pytest.raises(InputError, match="seed 5 differs from 7"):
        generate_coarse_hr(root, store_path, seed=7, **THREADS)
    config = CoarseHRConfig(data_root=str(root), seed=5, iou_target=0.7)
    with pytest.raises(InputError, match="degradation parameters differ"):
        generate_coarse_hr(root, store_path, config=config, **THREADS)
    with pytest.raises(InputError, match="config differs"):
        run_shard(store_path, plan_shards(13, 3)[0], config)
    # A finished store re-planned with another shard count ends the same.
    summary = generate_coarse_hr(root, store_path, seed=5, num_shards=2, **THREADS)
    assert summary["skipped_shards"] == 0 and MaskStore.open(store_path).completed_units() == [
        "00000",
        "00001",
    ]
    assert snapshot(store_path) == snapshot(three_shards[0])
    # Re-running a finished store does nothing.
    again = generate_coarse_hr(root, store_path, seed=5, num_shards=2, **THREADS)
    assert again["skipped_shards"] == 2
    summary = generate_coarse_hr(root, store_path, seed=7, overwrite=True, **THREADS)
    assert summary["complete"] and MaskStore.open(store_path).attrs["seed"] == 7


def test_export_official_pngs(hr_root, one_shard, tmp_path) -> None:
    _, good = hr_root
    store = MaskStore.open(one_shard[0])
    assert export_pngs(one_shard[0], tmp_path) == 2 * len(good)
    dis = next(s for s in good if s.startswith("dis/"))
    name = dis.split("/")[-1]
    png = tmp_path / "dis/DIS-TR/coarse" / f"{name}.png"
    assert np.array_equal(read_mask(png), store.read_mask("coarse", dis))
    expand = tmp_path / "thin_object/coarse_expand/thin 00.png"
    assert np.array_equal(
        read_mask(expand), store.read_mask("coarse_expand", "thin_object/train/thin 00")
    )
    assert set(np.unique(np.asarray(Image.open(png))).tolist()) <= {0, 255}
    collection = json.loads((tmp_path / "collection_hr.json").read_text())
    assert len(collection["dis"]) == 5 and len(collection["thin"]) == 4
    entry = next(e for e in collection["dis"] if e["filename"].endswith(f"{name}.jpg"))
    assert entry["maskname"] == f"dis/DIS-TR/gt/{name}.png"
    assert entry["coarsename"] == f"dis/DIS-TR/coarse/{name}.png"
    assert entry["expandname"] == f"dis/DIS-TR/coarse_expand/{name}.png"
    assert (entry["height"], entry["width"]) == store.read_mask("coarse", dis).shape


def test_pairs_folder_and_process_workers(tmp_path) -> None:
    from tests.pipelines.shapes import random_object, save_image, save_mask

    rng = np.random.default_rng(3)
    for i in range(4):
        save_image(tmp_path / f"data/photos/p{i}.png", 60, 70, rng)
        save_mask(tmp_path / f"data/labels/p{i}.png", random_object(60, 70, rng))
    common = {"seed": 1, "images": "photos", "masks": "labels"}
    a = generate_coarse_hr(
        tmp_path / "data", tmp_path / "a.zarr", num_shards=1, **common, **THREADS
    )
    # A worker process: arguments and results cross a process boundary.
    b = generate_coarse_hr(
        tmp_path / "data", tmp_path / "b.zarr", num_shards=4, n_workers=1, processes=True, **common
    )
    assert a["ok"] == b["ok"] == 4
    assert snapshot(tmp_path / "a.zarr") == snapshot(tmp_path / "b.zarr")
    assert read_manifest(tmp_path / "a.zarr")[0]["sample_id"] == "pairs/all/p0"
    assert export_pngs(tmp_path / "a.zarr", tmp_path / "out", kinds=["coarse"]) == 4
    assert (tmp_path / "out/coarse/p0.png").is_file()
    assert not (tmp_path / "out/collection_hr.json").exists()


def test_existing_scheduler_is_used_and_left_running(hr_root, one_shard, tmp_path) -> None:
    from distributed import Client, LocalCluster

    root, _ = hr_root
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        summary = generate_coarse_hr(
            root, tmp_path / "s.zarr", seed=5, num_shards=2, dask_address=cluster.scheduler_address
        )
        assert summary["complete"]
        with Client(cluster) as client:  # the stage did not close the cluster
            assert client.submit(sum, [1, 2]).result() == 3
    assert snapshot(tmp_path / "s.zarr") == snapshot(one_shard[0])
