from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipelines.config import RefineConfig
from pipelines.refine_hr import list_samples, prepare_refine_hr, refine_hr, run_refine_hr_shard
from pipelines.stores import MaskStore
from segrefiner.errors import InputError
from segrefiner.io import read_mask

CONFIG = RefineConfig(checkpoint="tiny", seed=1, model_size=32, batch_size=4)


def _pngs(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*.png"))
        if ".work" not in p.parts
    }


def test_dis_official_naming_shards_and_resume(demo_ci: Path, tmp_path: Path) -> None:
    records = list_samples("dis", demo_ci)
    assert {r.split for r in records} == {"DIS-VD", "DIS-TE1"}
    one = tmp_path / "one"
    summary = refine_hr(records, one, CONFIG)
    assert summary["samples"] == len(records) and summary["failed"] == 0
    outputs = _pngs(one)
    assert sorted(outputs) == sorted(f"{r.split}/{r.name}.png" for r in records)
    for rec in records:
        out = read_mask(one / rec.split / f"{rec.name}.png")
        assert out.shape == read_mask(rec.coarse).shape
    # two shards, one run, then a resumed run after a "kill" after the first shard
    two = tmp_path / "two"
    shards = prepare_refine_hr(records, two, two / ".work", CONFIG, num_shards=2)
    first = run_refine_hr_shard(two / ".work", CONFIG, shards[0])
    refine_hr(records, two, CONFIG, num_shards=2)
    store = MaskStore.open(two / ".work" / "refined.zarr")
    assert store.completion_record(shards[0].name)["seconds"] == first["seconds"]
    assert _pngs(two) == outputs
    assert np.array_equal(
        store.read_mask("refined", records[0].sample_id),
        read_mask(one / records[0].split / f"{records[0].name}.png"),
    )


def test_big_naming_and_the_manifest_scores(demo_ci: Path, tmp_path: Path) -> None:
    import dataclasses

    records = list_samples("big", demo_ci, folder="big/test")
    out = tmp_path / "big"
    summary = refine_hr(records, out, CONFIG)
    assert sorted(_pngs(out)) == sorted(f"{r.name}_refine.png" for r in records)
    rows = json.loads((out / ".work" / "manifest.json").read_text())["samples"]
    scores = [r["refine_score"] for r in rows]
    assert all(isinstance(s, float) for s in scores) and not any(r["guarded"] for r in rows)
    assert summary["scores"]["count"] == len(rows) and summary["guarded"] == 0
    # the guard above every score keeps every coarse mask, and the manifest says so
    held = tmp_path / "held"
    config = dataclasses.replace(CONFIG, guard=min(1.0, max(scores) + 0.01))
    summary = refine_hr(records, held, config)
    assert summary["guarded"] == len(records) and summary["guard"] == config.guard
    for rec in records:
        assert np.array_equal(read_mask(held / f"{rec.name}_refine.png"), read_mask(rec.coarse))


def test_failed_sample_passes_coarse_through(demo_ci: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(demo_ci / "dis", data / "dis")
    records = list_samples("dis", data)
    records[0].image.write_bytes(b"broken")
    out = tmp_path / "out"
    summary = refine_hr(records, out, CONFIG)
    assert summary["failed"] == 1 and summary["ok"] == len(records) - 1
    assert summary["passed_through"] == 1
    rows = json.loads((out / ".work" / "manifest.json").read_text())["samples"]
    bad = next(r for r in rows if r["sample_id"] == records[0].sample_id)
    assert "unreadable image" in bad["reason"] and bad["written"]
    written = read_mask(out / records[0].split / f"{records[0].name}.png")
    assert np.array_equal(written, read_mask(records[0].coarse))


def test_a_coarse_mask_of_another_size_fails_and_writes_nothing(
    demo_ci: Path, tmp_path: Path
) -> None:
    from PIL import Image

    data = tmp_path / "data"
    shutil.copytree(demo_ci / "dis", data / "dis")
    records = list_samples("dis", data)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(records[0].coarse)
    out = tmp_path / "out"
    summary = refine_hr(records, out, CONFIG)
    assert summary["failed"] == 1 and summary["passed_through"] == 0
    rows = json.loads((out / ".work" / "manifest.json").read_text())["samples"]
    bad = next(r for r in rows if r["sample_id"] == records[0].sample_id)
    assert "differs from the image size" in bad["reason"] and not bad["written"]
    assert not (out / records[0].split / f"{records[0].name}.png").exists()


def test_outputs_follow_the_umask(demo_ci: Path, tmp_path: Path) -> None:
    import stat

    import segrefiner.io

    records = list_samples("big", demo_ci, folder="big/test")[:1]
    refine_hr(records, tmp_path / "out", CONFIG)
    (png,) = (tmp_path / "out").glob("*.png")
    assert stat.S_IMODE(png.stat().st_mode) == 0o666 & ~segrefiner.io._UMASK


def test_listing_errors(demo_ci: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown dataset"):
        list_samples("voc", demo_ci)
    with pytest.raises(InputError, match="coarse masks' folder"):
        list_samples("thin", demo_ci)
    with pytest.raises(InputError, match="no DIS-5K"):
        list_samples("dis", tmp_path)


@pytest.fixture(scope="module")
def packed_by_three(demo_ci: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """DIS and BIG refined with three images sharing batches: the reference of the packing and
    the out-of-memory tests (made once)."""
    import dataclasses

    records = list_samples("dis", demo_ci) + list_samples("big", demo_ci, folder="big/test")
    out = tmp_path_factory.mktemp("pack3")
    refine_hr(records, out, dataclasses.replace(CONFIG, pack_images=3))
    return _pngs(out)


def test_packing_images_does_not_change_outputs(
    demo_ci: Path, tmp_path: Path, packed_by_three: dict[str, bytes]
) -> None:
    import dataclasses

    records = list_samples("dis", demo_ci) + list_samples("big", demo_ci, folder="big/test")
    assert len(records) >= 3
    refine_hr(records, tmp_path, dataclasses.replace(CONFIG, pack_images=1))
    assert _pngs(tmp_path) == packed_by_three


def test_out_of_memory_splits_the_group_then_fails_alone(
    demo_ci: Path, tmp_path: Path, monkeypatch, packed_by_three: dict[str, bytes]
) -> None:
    import dataclasses

    import torch

    import segrefiner.inference.packing as packing

    records = list_samples("dis", demo_ci) + list_samples("big", demo_ci, folder="big/test")
    config = dataclasses.replace(CONFIG, pack_images=3)
    real = packing.refine_semantic_group
    victim = str(records[1].coarse)
    calls = []

    def flaky(model, diffusion, items, infer, device, calibration):
        calls.append((len(items), infer.batch_size))
        if len(items) > 1 or any(item.name == victim for item in items):
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, diffusion, items, infer, device, calibration)

    monkeypatch.setattr(packing, "refine_semantic_group", flaky)
    out = tmp_path / "out"
    summary = refine_hr(records, out, config)
    assert (3, 4) in calls and (3, 2) in calls and (3, 1) in calls and (1, 1) in calls
    assert summary["failed"] == 1 and summary["ok"] == len(records) - 1
    rows = json.loads((out / ".work" / "manifest.json").read_text())["samples"]
    assert [r["sample_id"] for r in rows] == [r.sample_id for r in records]
    bad = rows[1]
    assert "out of memory at batch size 1" in bad["reason"] and bad["written"]
    got, want = _pngs(out), packed_by_three
    name = f"{records[1].split}/{records[1].name}.png"  # a DIS sample
    assert np.array_equal(read_mask(out / name), read_mask(records[1].coarse))
    assert {k: v for k, v in got.items() if k != name} == {
        k: v for k, v in want.items() if k != name
    }
